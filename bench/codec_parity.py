"""pan360's decode and x264 encode in process (PyAV) against the ffmpeg program's, on the same data.

This checks whether the gap between ``pan360 render --path`` and the floor of ``bench/benchmark.py``
(ffmpeg's decode + its x264 of pan360's pictures) comes from the codecs themselves. PyAV bundles
its own FFmpeg and x264 build, which may differ from the ffmpeg program's. The light clip of
``bench/profile_render.py`` is used, generated once into ``--workdir``.

- decode: every video frame of the clip, frame threads on. ``av`` is PyAV's own loop, no
  conversion; ``iter_frames`` is pan360's decoder (yuv420p planes); ``ffmpeg`` is
  ``ffmpeg -an -i CLIP -f null -``.
- x264: 240 yuv420p 1280x720 pictures (pan360's fixed-view render of the clip, made once and
  untimed), veryfast crf 23. ``VideoWriter`` is pan360's encoder, fed planes already in memory.
  ``ffmpeg`` reads the raw file; that read is timed alone and taken out.

Each contender is a child process. In-process rows count only the decode or encode, so the
imports and reading the pictures are not included (user + system CPU of the whole process, all
threads). ``--runs`` rounds alternate the contenders; medians are printed, with each pan360 row's
ratio to ffmpeg.

Run from the repository root::

    python bench/codec_parity.py --runs 3 --workdir /tmp/pan360-profile
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from profile_render import CRF, PRESET, SIZE, child_usage, ffmpeg_exe, make_inputs  # noqa: E402

W, H = (int(v) for v in SIZE.split("x"))


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child(mode: str, clip: Path, raw: Path, work: Path) -> None:
    """One in-process contender; prints its CPU seconds as JSON."""
    sys.path.insert(0, str(REPO))
    import av
    import numpy as np

    if mode == "av":
        c0 = _cpu()
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_type = "AUTO"
            stream.codec_context.thread_count = 0
            n = sum(1 for _ in container.decode(stream))
    elif mode == "iter_frames":
        from pan360.media import iter_frames, probe

        info = probe(clip)
        c0 = _cpu()
        n = sum(1 for _ in iter_frames(info, fmt="yuv420p"))
    else:  # VideoWriter
        from pan360.media import VideoWriter

        size = W * H * 3 // 2
        pics = np.fromfile(raw, dtype=np.uint8).reshape(-1, size)
        planes = [(p[:W * H].reshape(H, W), p[W * H:W * H * 5 // 4].reshape(H // 2, W // 2),
                   p[W * H * 5 // 4:].reshape(H // 2, W // 2)) for p in pics]
        n = len(planes)
        c0 = _cpu()
        with VideoWriter(work / "parity_x264.mp4", W, H, fps=30.0, duration=n / 30.0, crf=CRF, preset=PRESET) as w:
            for i, p in enumerate(planes):
                w.write(p, i / 30.0)
    print(json.dumps({"cpu": _cpu() - c0, "frames": n}))


def in_process(mode: str, clip: Path, raw: Path, work: Path) -> float:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--workdir", str(work)],
                         check=True, capture_output=True, text=True, cwd=REPO)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["cpu"])


def make_pictures(clip: Path, path: Path, work: Path) -> Path:
    """pan360's fixed-view render of the clip, as raw yuv420p (made once)."""
    raw = work / "parity_pictures.yuv"
    if not raw.exists():
        render = work / "parity_render.mp4"
        subprocess.run([sys.executable, "-m", "pan360", "render", str(clip), "-o", str(render), "--path", str(path),
                        "--size", SIZE, "--preset", PRESET, "--crf", str(CRF), "--overwrite", "-q"],
                       check=True, cwd=REPO)
        subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(render), "-f", "rawvideo", "-pix_fmt", "yuv420p",
                        str(raw)], check=True)
    return raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/pan360-profile"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path, help="write the numbers here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    clip, path = make_inputs(args.workdir)
    raw = args.workdir / "parity_pictures.yuv"
    if args.child:
        child(args.child, clip, raw, args.workdir)
        return
    raw = make_pictures(clip, path, args.workdir)
    ff = ffmpeg_exe()
    rawin = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", SIZE, "-r", "30", "-i", str(raw)]
    rows: dict[str, list[float]] = {k: [] for k in ("decode: PyAV loop", "decode: iter_frames", "decode: ffmpeg",
                                                    "x264: VideoWriter", "x264: ffmpeg")}
    for _ in range(args.runs):
        rows["decode: PyAV loop"].append(in_process("av", clip, raw, args.workdir))
        rows["decode: iter_frames"].append(in_process("iter_frames", clip, raw, args.workdir))
        rows["decode: ffmpeg"].append(child_usage([ff, "-v", "error", "-an", "-i", str(clip), "-f", "null", "-"])[1])
        rows["x264: VideoWriter"].append(in_process("VideoWriter", clip, raw, args.workdir))
        read = child_usage([ff, "-v", "error", *rawin, "-f", "null", "-"])[1]
        enc = child_usage([ff, "-v", "error", "-y", *rawin, "-c:v", "libx264", "-preset", PRESET, "-crf", str(CRF),
                           "-pix_fmt", "yuv420p", str(args.workdir / "parity_ffmpeg.mp4")])[1]
        rows["x264: ffmpeg"].append(enc - read)
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"{'contender (CPU s, ' + str(args.runs) + ' rounds)':32s} {'median':>7s}  rounds       ratio to ffmpeg")
    for k, v in rows.items():
        peer = med["decode: ffmpeg"] if k.startswith("decode") else med["x264: ffmpeg"]
        ratio = "" if k.endswith("ffmpeg") else f"{med[k] / peer:.3f}"
        print(f"{k:32s} {med[k]:7.2f}  {' '.join(f'{x:.2f}' for x in v):12s} {ratio}")
    if args.json:
        args.json.write_text(json.dumps({"rounds": rows, "median": med}, indent=2))


if __name__ == "__main__":
    main()
