"""The whole automatic render against ffmpeg's fixed-view render of the same clip, in one run.

``pan360 render CLIP`` as a user runs it (audio decode, FOA maps, the network, planning, rendering,
camera-following stereo; the default saliency, preset medium, crf 20) against the ffmpeg program
rendering one fixed ``v360=e:flat`` view of the same clip at the same size, same x264 settings, with
its audio as AAC stereo. Each runs as a child process (wall, CPU, peak RSS through bench/benchmark.py's
``timed``). Issue 14's target: pan360 ≤ 1.3x ffmpeg (CPU) on a 10 s 1920x960 real FOA clip.

    python bench/full_render.py                      # the first 1920x960 clip of ../shared/media/real360_foa
    python bench/full_render.py --input clip.mp4 --runs 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO))

from benchmark import ffmpeg_exe, timed, v_fov  # noqa: E402

from pan360 import geometry  # noqa: E402
from pan360.media import probe  # noqa: E402

REAL = REPO.parent / "shared" / "media" / "real360_foa"


def default_clip() -> Path:
    for clip in sorted(REAL.glob("*.webm")) + sorted(REAL.glob("*.mp4")):
        info = probe(clip)
        if (info.eye_width, info.eye_height) == (1920, 960) and info.audio is not None:
            return clip
    raise SystemExit(f"no 1920x960 clip in {REAL}; give --input")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=1, help="alternating runs of each contender")
    args = ap.parse_args()
    clip = args.input or default_clip()
    info = probe(clip)
    w, h = geometry.default_output_size(info.eye_width, geometry.DEFAULT_FOV)
    ff = ffmpeg_exe()
    vf = f"v360=e:flat:h_fov={geometry.DEFAULT_FOV:g}:v_fov={v_fov(geometry.DEFAULT_FOV, w, h):.6f}:w={w}:h={h}"
    print(f"{clip.name}: {info.eye_width}x{info.eye_height}, {info.duration:.1f} s -> {w}x{h}, medium, crf 20")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            pan = timed([sys.executable, "-m", "pan360", "render", str(clip), "-o", f"{tmp}/pan.mp4", "--size",
                         f"{w}x{h}", "--overwrite", "-q"])
            ffm = timed([ff, "-v", "error", "-y", "-i", str(clip), "-vf", vf, "-c:v", "libx264", "-preset", "medium",
                         "-crf", "20", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2", f"{tmp}/ff.mp4"])
            # where the time goes: the same render with the FOA map alone, and with no saliency at all
            split = [timed([sys.executable, "-m", "pan360", "render", str(clip), "-o", f"{tmp}/pan_{s}.mp4",
                            "--size", f"{w}x{h}", "--saliency", s, "--overwrite", "-q"]) for s in ("foa", "none")]
            rows.append((run, pan, ffm, split))
    print(f"\n{'run':>3s} {'contender':36s} {'wall s':>8s} {'CPU s':>8s} {'peak RSS MiB':>13s} {'CPU / ffmpeg':>13s}")
    for run, pan, ffm, split in rows:
        named = (("pan360 render (default, automatic)", pan), ("  the same, --saliency foa", split[0]),
                 ("  the same, --saliency none", split[1]), ("ffmpeg v360 fixed view", ffm))
        for name, r in named:
            print(f"{run:3d} {name:36s} {r['wall_s']:8.2f} {r['cpu_s']:8.2f} {r['peak_rss_mib']:13d} "
                  f"{r['cpu_s'] / ffm['cpu_s']:13.2f}")


if __name__ == "__main__":
    main()
