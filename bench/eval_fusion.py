"""Does the default FOA + network fusion keep the sound in view at least as often as FOA alone?

On real 360° clips with first-order ambisonics (default: ``shared/media/real360_foa`` beside the checkout) there is no
ground truth, so the FOA direction is the proxy truth: per frame, the peak of the FOA map (frames whose
direct sound is under 2 % of the clip's loud level count as silent and are not scored). For each clip
this runs the pipeline's analysis (:func:`pan360.pipeline.analyse`, defaults, saliency ``fused``: the FOA
and network maps fused by FOA directness) and plans the same camera on its FOA maps alone, and reports the share
of scored frames whose proxy direction is in view, the mean angular error and how far the network's
own peak lies from the FOA direction. ``--frames DIR`` writes a contact sheet per clip (4 frames, with
the FOA direction, the network peak, the fused peak and both cameras' centres marked) to look at.

    python bench/eval_fusion.py                       # the bundled weights
    python bench/eval_fusion.py --weights ckpt/step2000 --frames out/fusion --json out/fusion.json
    python bench/eval_fusion.py --random-init        # plumbing check only: an untrained network

Exit status 1 when the fused camera keeps the source in view less often than FOA on any clip.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pan360 import metrics, sphere  # noqa: E402
from pan360.media import iter_frames, probe  # noqa: E402
from pan360.nn.weights import load_network  # noqa: E402
from pan360 import pipeline  # noqa: E402
from pan360.sources.network import network_input_rgb  # noqa: E402
from pan360.spatial.foa_map import map_peaks  # noqa: E402

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "media" / "real360_foa"
SILENT_SHARE = 0.02


def _mark(img: np.ndarray, yaw: float, pitch: float, colour: tuple[int, int, int], kind: str) -> None:
    import cv2

    if not (np.isfinite(yaw) and np.isfinite(pitch)):  # a silent frame has no proxy direction
        return
    h, w = img.shape[:2]
    x, y = sphere.dir_to_pixel(yaw, pitch, w, h)
    p = (int(round(float(x))), int(round(float(y))))
    if kind == "circle":
        cv2.circle(img, p, 9, colour, 2)
    elif kind == "cross":
        cv2.drawMarker(img, p, colour, cv2.MARKER_CROSS, 16, 2)
    else:
        cv2.drawMarker(img, p, colour, cv2.MARKER_SQUARE, 12, 2)


def contact_sheet(info, picks: list[int], marks: dict[str, tuple[np.ndarray, np.ndarray]], out: Path) -> None:
    """Frames ``picks`` (640 wide) with the directions of ``marks`` drawn, stacked vertically, as PNG."""
    import cv2

    style = {"foa": ((255, 255, 255), "circle"), "net": ((255, 0, 255), "square"),
             "fused": ((0, 255, 0), "cross"), "camera_foa": ((255, 255, 0), "circle"),
             "camera_fused": ((0, 160, 255), "square")}
    rows, want = [], set(picks)
    size = (int(round(640 * info.eye_height / info.eye_width / 4)) * 4, 640)
    for i, (t, data) in enumerate(iter_frames(info, fmt="yuv420p")):
        if i not in want:
            continue
        img = np.ascontiguousarray(network_input_rgb(data, size))
        for name, (yaw, pitch) in marks.items():
            colour, kind = style[name]
            _mark(img, float(yaw[i]), float(pitch[i]), colour, kind)
        cv2.putText(img, f"t={t:.1f}s", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1)
        rows.append(img)
    legend = np.zeros((22, size[1], 3), np.uint8)
    cv2.putText(legend, "white o FOA  magenta [] net  green + fused  cyan o cam(FOA)  orange [] cam(fused)",
                (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.concatenate([legend, *rows])[:, :, ::-1])


def evaluate_clip(path: Path, model, frames_dir: Path | None) -> dict:
    """The default analysis of ``path`` with ``model`` (``pan360.pipeline.analyse``, saliency "fused"),
    and the camera the pipeline plans on its FOA part alone, scored on the FOA proxy truth."""
    info = probe(path)
    if info.audio is None or info.audio.channels != 4:
        raise SystemExit(f"{path.name}: needs 4-channel FOA audio")
    t0 = time.perf_counter()
    fused_run = pipeline.analyse(path, saliency="fused", weights=model, keep_parts=True)
    wall = time.perf_counter() - t0
    info, foa, net, fused = fused_run.info, fused_run.parts["foa"], fused_run.parts["net"], fused_run.maps
    area = sphere.equirect_solid_angle(foa.shape[2], foa.shape[1])
    power = (foa * area).sum(axis=(1, 2))
    loud = float(np.percentile(power, 95)) if power.size else 0.0
    sounding = power > SILENT_SHARE * loud
    true_yaw, true_pitch, _ = map_peaks(foa)
    true_yaw = np.where(sounding, true_yaw, np.nan)
    true_pitch = np.where(sounding, true_pitch, np.nan)
    row: dict = {"clip": path.name, "frames": info.n_frames, "scored": int(sounding.sum()),
                 "analysis_s": round(wall, 2)}
    marks = {"foa": (true_yaw, true_pitch)}
    foa_cam = pipeline.plan_path(info, foa, pipeline.camera_options(info))
    for name, cam in (("foa", foa_cam), ("fused", fused_run.path)):
        rep = metrics.trajectory_report(cam, true_yaw, true_pitch)
        row[f"in_view_{name}"] = rep.in_view
        row[f"error_{name}"] = rep.mean_angular_error
        marks[f"camera_{name}"] = (cam.yaw, cam.pitch)
    net_yaw, net_pitch, _ = map_peaks(net)
    fused_yaw, fused_pitch, _ = map_peaks(fused)
    marks["net"], marks["fused"] = (net_yaw, net_pitch), (fused_yaw, fused_pitch)
    ok = sounding & ((net * area).sum(axis=(1, 2)) > 0)
    row["net_to_foa_deg"] = float(np.median(sphere.angular_distance(net_yaw, net_pitch, true_yaw, true_pitch)[ok])) \
        if ok.any() else float("nan")
    fused_err = sphere.angular_distance(fused_yaw, fused_pitch, true_yaw, true_pitch)[sounding]
    row["fused_to_foa_deg"] = float(np.median(fused_err)) if sounding.any() else float("nan")
    if frames_dir is not None:
        picks = [int(round(f * (info.n_frames - 1))) for f in (0.1, 0.37, 0.63, 0.9)]
        contact_sheet(info, picks, marks, frames_dir / f"{path.stem}.png")
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clips", nargs="*", type=Path, help=f"clips or folders (default {DEFAULT_DIR})")
    ap.add_argument("--weights", type=Path, help="network checkpoint (default: the bundled weights)")
    ap.add_argument("--random-init", action="store_true", help="untrained 'small' network (plumbing check only)")
    ap.add_argument("--frames", type=Path, help="write a contact sheet PNG per clip here")
    ap.add_argument("--json", type=Path, help="write the rows as JSON here ('-' for stdout)")
    args = ap.parse_args()

    paths = []
    for p in args.clips or [DEFAULT_DIR]:
        if not p.exists():
            print(f"skipped: {p} not found", file=sys.stderr)
            continue
        paths += sorted(q for q in p.iterdir() if q.suffix in (".webm", ".mp4", ".mov", ".mkv")) if p.is_dir() else [p]
    if not paths:
        print("no clips to evaluate", file=sys.stderr)
        return 0
    if args.random_init:
        import torch

        from pan360.nn.model import SoundLocalizer

        torch.manual_seed(0)
        model = SoundLocalizer(arch="small")
    else:
        model = load_network(args.weights)
    rows = [evaluate_clip(p, model, args.frames) for p in paths]
    worse = [r["clip"] for r in rows if r["in_view_fused"] < r["in_view_foa"]]
    summary = {"clips": len(rows), "mean_in_view_foa": float(np.mean([r["in_view_foa"] for r in rows])),
               "mean_in_view_fused": float(np.mean([r["in_view_fused"] for r in rows])), "worse": worse,
               "weights": "random-init" if args.random_init else str(args.weights or "bundled")}
    if args.json is not None:
        text = json.dumps({"rows": rows, "summary": summary}, indent=1)
        print(text) if str(args.json) == "-" else args.json.write_text(text)
    print(f"{'clip':38s} {'scored':>6s} {'in-view FOA':>11s} {'fused':>6s} {'err FOA':>8s} {'fused':>6s} "
          f"{'net-FOA':>8s} {'fused-FOA':>9s} {'total s':>7s}", file=sys.stderr)
    for r in rows:
        print(f"{r['clip'][:38]:38s} {r['scored']:6d} {r['in_view_foa']:11.3f} {r['in_view_fused']:6.3f} "
              f"{r['error_foa']:8.1f} {r['error_fused']:6.1f} {r['net_to_foa_deg']:8.1f} {r['fused_to_foa_deg']:9.1f} "
              f"{r['analysis_s']:7.1f}", file=sys.stderr)
    print(f"mean in-view: FOA {summary['mean_in_view_foa']:.3f}, fused {summary['mean_in_view_fused']:.3f}; "
          f"clips where fused is worse: {', '.join(worse) or 'none'}", file=sys.stderr)
    return 1 if worse else 0


if __name__ == "__main__":
    sys.exit(main())
