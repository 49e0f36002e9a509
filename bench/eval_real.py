"""How often the default ``pan360 render`` keeps a hand-annotated sound source in view, on real 360° clips.

Input: a folder (default: ``shared/media/real360_foa`` beside the checkout, the development media) holding ``annotations.json``
(``clips``: NAME -> ``file`` and ``points`` [time s, yaw deg, pitch deg], v360 convention: yaw + right,
pitch + up, 0/0 = frame centre) and the clips it names (equirect video with 4-channel ambiX FOA audio).

For every clip and rotation DEG the clip is first turned so that the subject is not in front:

- every frame's equirect picture is rolled horizontally, ``np.roll(frame, round(DEG / 360 * W), axis=1)``
  (W = the probed eye width, which spans 360° whatever the aspect: 1920x960 and 1920x1080 alike), so the
  content moves RIGHT by DEG degrees (a column at yaw y ends at yaw y + DEG);
- the FOA is rotated by the same yaw: ``rotate_foa(foa, -DEG)``. ``rotate_foa(foa, yaw)`` brings
  direction ``yaw`` to the front, i.e. moves a source from y to y - yaw (checked in
  tests/test_eval_real.py), hence the minus sign.

Each rotated clip is written in up to two audio variants, as H.264 + AAC MP4 (pan360's VideoWriter, the
original eye size): ``foa`` = the rotated 4-channel ambiX (a 4-channel stream without FuMa tags is ambiX
for pan360, see pan360.media.probe.ambisonic_kind; checked after writing), ``mono`` = the W (omni)
channel alone. The copies are cached in the work folder and reused on a rerun.

Each copy is rendered with the public API, ``pan360.pipeline.render`` (default settings: saliency
``auto``, bundled weights, default FOV; only the output size is small, which does not change the
camera path), timed, and its trajectory is scored with :func:`pan360.metrics.points_in_view`
(what ``pan360 eval points TRAJECTORY ANNOTATIONS --clip NAME --rotate DEG`` runs): a point is in
view when it projects inside the camera frame of the path frame nearest to its time.

    python bench/eval_real.py                                   # all clips, rotations 100 and -140, foa + mono
    python bench/eval_real.py --clips guitar19 --rotations 100 --audio mono
    python bench/eval_real.py --workdir /tmp/er --json out.json --saliency foa

Exit status: 0 done, 1 some render or score failed, 2 the media folder is absent or unusable.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pan360.errors import Pan360Error  # noqa: E402
from pan360.media import VideoWriter, atomic_output, iter_frames, probe, read_audio  # noqa: E402
from pan360.spatial.ambisonics import rotate_foa  # noqa: E402

DEFAULT_MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media" / "real360_foa"
DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "pan360-eval-real"
AUDIO_VARIANTS = ("foa", "mono")
AUDIO_BITRATE_PER_CHANNEL = 128_000  # AAC: generous, the inter-channel relations carry the direction


def roll_shift(deg: float, width: int) -> int:
    """Columns to roll a full-360 equirect picture of ``width`` so that its content moves right by ``deg``."""
    return int(round(deg / 360.0 * width))


def rotate_picture(frame: np.ndarray, shift: int) -> np.ndarray:
    """The (H, W, ...) equirect picture with its content moved right by ``shift`` columns (wrapping)."""
    return np.roll(frame, shift, axis=1)


def rotate_audio(foa: np.ndarray, deg: float) -> np.ndarray:
    """ambiX (4, N) with every source moved from yaw y to y + ``deg`` (pan360 yaw, + right)."""
    return rotate_foa(foa, -deg)


def copy_name(clip: str, deg: float, audio: str) -> str:
    """File name of a rotated copy in the work folder."""
    return f"{clip}_rot{deg:+g}_{audio}.mp4"


def write_rotated(src: str | Path, deg: float, outputs: dict[str, Path], *, crf: float = 16,
                  preset: str = "veryfast") -> dict:
    """Write ``src`` turned by ``deg`` (content moving right) to ``outputs`` (audio variant -> path).

    Variants: "foa" (the rotated 4-channel ambiX) and "mono" (the W channel). The video is decoded once
    and encoded once per variant, at the probed eye size, with the source's frame times. Each file is
    written atomically. Returns what was done (shift in columns, the exact degrees it means, sizes).
    """
    unknown = set(outputs) - set(AUDIO_VARIANTS)
    if unknown:
        raise Pan360Error(f"unknown audio variant(s) {sorted(unknown)}; use {', '.join(AUDIO_VARIANTS)}")
    info = probe(src)
    if info.audio is None:
        raise Pan360Error(f"{Path(src).name} has no audio")
    track = read_audio(info)
    if track.channels != 4:
        raise Pan360Error(f"{Path(src).name}: {track.channels}-channel audio, FOA (4 channels) needed")
    foa = track.foa()  # FuMa input is converted to ambiX here
    audio = {"foa": rotate_audio(foa, deg), "mono": np.ascontiguousarray(foa[:1])}
    w, h = info.eye_width, info.eye_height
    shift = roll_shift(deg, w)
    with contextlib.ExitStack() as stack:
        writers = []
        for variant, out in outputs.items():
            tmp = stack.enter_context(atomic_output(out, overwrite=True, inputs=[src]))
            sound = audio[variant]
            writer = VideoWriter(tmp, w, h, fps=info.fps, duration=info.duration, crf=crf, preset=preset,
                                 audio=sound, sample_rate=track.sample_rate,
                                 audio_bitrate=AUDIO_BITRATE_PER_CHANNEL * sound.shape[0])
            writers.append(stack.enter_context(writer))
        for t, rgb in iter_frames(info, fmt="rgb24"):
            rolled = rotate_picture(rgb, shift)
            for writer in writers:
                writer.write(rolled, t)
    # pan360 must read the foa copy as ambisonic without being told (ambisonic_kind: 4 channels -> ambiX)
    for variant, out in outputs.items():
        got = probe(out).audio
        want = ("ambix", 4) if variant == "foa" else (None, 1)
        if got is None or (got.ambisonic, got.channels) != want:
            out.unlink(missing_ok=True)
            raise Pan360Error(f"{out.name}: pan360 reads its audio as {got}, expected {want}")
    return {"shift_px": shift, "shift_deg": shift * 360.0 / w, "eye_size": [w, h], "frames": info.n_frames,
            "source_audio": track.ambisonic}


def load_annotations(media: Path) -> dict:
    """The ``clips`` of ``media/annotations.json``."""
    doc = json.loads((media / "annotations.json").read_text(encoding="utf-8"))
    return doc["clips"]


def evaluate(copy: Path, render_dir: Path, annotations: Path, clip: str, deg: float, *, size: str,
             saliency: str, weights: str | None, device: str, preset: str) -> dict:
    """Render one rotated copy with pan360.pipeline.render and score its path on the annotated points."""
    from pan360 import pipeline
    from pan360.metrics import load_annotated_points, points_in_view
    from pan360.paths import load_path

    out = render_dir / f"{copy.stem}_render.mp4"
    traj = render_dir / f"{copy.stem}_trajectory.json"
    t0 = time.perf_counter()
    res = pipeline.render(copy, out, size=size, trajectory_out=traj, overwrite=True, saliency=saliency,
                          weights=weights, device=device, preset=preset)
    wall = time.perf_counter() - t0
    report = points_in_view(load_path(traj), load_annotated_points(annotations, clip), rotate=deg)
    errors = [p.angular_error for p in report.points]
    return {"in_view": report.in_view, "total": report.total, "share": report.share,
            "mean_angular_error": float(np.mean(errors)), "saliency_source": res.saliency_source,
            "wall_s": wall, "notes": list(res.notes), "render": str(out), "trajectory": str(traj),
            "points": report.as_dict()["points"]}


def _fmt_row(clip: str, audio: str, deg: str, inview: str, err: str, src: str, wall: str) -> str:
    return f"{clip:<12} {audio:<5} {deg:>6} {inview:>9} {err:>8} {src:<8} {wall:>7}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="in-view share of hand-annotated sources on rotated real 360° clips")
    ap.add_argument("--media", type=Path, default=DEFAULT_MEDIA,
                    help="folder with annotations.json and the clips (default: shared/media/real360_foa beside the checkout)")
    ap.add_argument("--rotations", type=float, nargs="+", default=[100.0, -140.0], metavar="DEG",
                    help="degrees to turn each clip, content moving right for > 0 (default: 100 -140)")
    ap.add_argument("--audio", nargs="+", choices=AUDIO_VARIANTS, default=list(AUDIO_VARIANTS),
                    help="audio variants: foa (rotated ambiX), mono (the W channel) (default: both)")
    ap.add_argument("--clips", nargs="+", metavar="NAME", help="annotated clips to run (default: all)")
    ap.add_argument("--size", default="320x180", help="render output size (default %(default)s)")
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                    help="rotated copies (cached) and renders (default %(default)s)")
    ap.add_argument("--json", type=Path, metavar="OUT.json", help="also write everything as JSON")
    ap.add_argument("--weights", help="network checkpoint for render (default: the bundled weights)")
    ap.add_argument("--saliency", default="auto", help="render's saliency source (default %(default)s)")
    ap.add_argument("--device", default="auto", help="render device: auto, cpu, cuda (default %(default)s)")
    ap.add_argument("--preset", default="medium", help="x264 preset of the rendered NFoV video (default %(default)s)")
    ap.add_argument("--copy-crf", type=float, default=16, help="x264 crf of the rotated copies (default %(default)s)")
    ap.add_argument("--copy-preset", default="veryfast", help="x264 preset of the rotated copies (default %(default)s)")
    ap.add_argument("--rebuild", action="store_true", help="rewrite the rotated copies even if cached")
    args = ap.parse_args(argv)

    command = shlex.join([sys.executable, *(sys.argv if argv is None else [__file__, *argv])])
    print(f"command: {command}")
    media = args.media
    if not (media / "annotations.json").is_file():
        print(f"media folder absent or without annotations.json: {media} (give --media DIR)", file=sys.stderr)
        return 2
    clips = load_annotations(media)
    names = args.clips or sorted(clips)
    missing = [n for n in names if n not in clips]
    if missing:
        print(f"unknown clip(s) {', '.join(missing)}; annotated: {', '.join(sorted(clips))}", file=sys.stderr)
        return 2
    absent = [clips[n]["file"] for n in names if not (media / clips[n]["file"]).is_file()]
    if absent:
        print(f"clip file(s) missing in {media}: {', '.join(absent)}", file=sys.stderr)
        return 2
    copies_dir, render_dir = args.workdir / "copies", args.workdir / "renders"
    copies_dir.mkdir(parents=True, exist_ok=True)
    render_dir.mkdir(parents=True, exist_ok=True)
    annotations = media / "annotations.json"

    rows: list[dict] = []
    failed = False
    print(_fmt_row("clip", "audio", "rot°", "in-view", "err°", "saliency", "wall s"))
    for name in names:
        src = media / clips[name]["file"]
        for deg in args.rotations:
            paths = {a: copies_dir / copy_name(name, deg, a) for a in args.audio}
            todo = {a: p for a, p in paths.items() if args.rebuild or not p.is_file()}
            copy_info: dict = {"shift_px": roll_shift(deg, probe(src).eye_width)}
            if todo:
                t0 = time.perf_counter()
                try:
                    copy_info = write_rotated(src, deg, todo, crf=args.copy_crf, preset=args.copy_preset)
                except Pan360Error as exc:
                    failed = True
                    print(f"{name} rot {deg:+g}: cannot write the rotated copy: {exc}", file=sys.stderr)
                    continue
                copy_info["write_s"] = time.perf_counter() - t0
            for audio in args.audio:
                row = {"clip": name, "file": clips[name]["file"], "audio": audio, "rotation": deg,
                       "copy": str(paths[audio]), "cached": audio not in todo, **copy_info}
                try:
                    row.update(evaluate(paths[audio], render_dir, annotations, name, deg, size=args.size,
                                        saliency=args.saliency, weights=args.weights, device=args.device,
                                        preset=args.preset))
                except Pan360Error as exc:
                    failed = True
                    row["error"] = str(exc)
                    print(_fmt_row(name, audio, f"{deg:+g}", "error", "", "", ""), f" {exc}")
                    rows.append(row)
                    continue
                rows.append(row)
                print(_fmt_row(name, audio, f"{deg:+g}", f"{row['in_view']}/{row['total']}",
                               f"{row['mean_angular_error']:.1f}", row["saliency_source"], f"{row['wall_s']:.1f}"),
                      flush=True)

    totals = {}
    for audio in args.audio:
        done = [r for r in rows if r["audio"] == audio and "error" not in r]
        k, n = sum(r["in_view"] for r in done), sum(r["total"] for r in done)
        errs = [p["angular_error"] for r in done for p in r["points"]]
        totals[audio] = {"in_view": k, "total": n, "share": k / n if n else math.nan,
                         "mean_angular_error": float(np.mean(errs)) if errs else math.nan,
                         "runs": len(done), "wall_s": sum(r["wall_s"] for r in done)}
        t = totals[audio]
        share = f" ({100 * t['share']:.0f}%)" if n else ""
        print(_fmt_row("total", audio, "", f"{k}/{n}", f"{t['mean_angular_error']:.1f}", "", f"{t['wall_s']:.1f}")
              + share)
    if args.json is not None:
        doc = {"command": command, "media": str(media), "rotations": args.rotations, "audio": args.audio,
               "clips": names, "size": args.size, "saliency": args.saliency, "weights": args.weights,
               "rows": rows, "totals": totals}
        args.json.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        print(f"json: {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
