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
from pan360.media import MediaInfo, probe  # noqa: E402

REAL = REPO.parent / "shared" / "media" / "real360_foa"
PAN_DEFAULT = "pan360 render (default, automatic)"
PAN_FOA = "  the same, --saliency foa"
PAN_NONE = "  the same, --saliency none"
FFMPEG = "ffmpeg v360 fixed view"


def default_clip() -> Path:
    for clip in sorted(REAL.glob("*.webm")) + sorted(REAL.glob("*.mp4")):
        info = probe(clip)
        if (info.eye_width, info.eye_height) == (1920, 960) and info.audio is not None:
            return clip
    raise SystemExit(f"no 1920x960 clip in {REAL}; give --input")


def commands(clip: Path, info: MediaInfo, out: Path) -> tuple[tuple[int, int], dict[str, list[str]]]:
    """The output size (pan360's default for the clip) and each contender's command line, writing into ``out``."""
    w, h = geometry.default_output_size(info.eye_width, geometry.DEFAULT_FOV)
    vf = f"v360=e:flat:h_fov={geometry.DEFAULT_FOV:g}:v_fov={v_fov(geometry.DEFAULT_FOV, w, h):.6f}:w={w}:h={h}"
    pan = [sys.executable, "-m", "pan360", "render", str(clip), "--size", f"{w}x{h}", "--overwrite", "-q"]
    return (w, h), {
        PAN_DEFAULT: [*pan, "-o", str(out / "pan.mp4")],
        FFMPEG: [ffmpeg_exe(), "-v", "error", "-y", "-i", str(clip), "-vf", vf, "-c:v", "libx264", "-preset", "medium",
                 "-crf", "20", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2", str(out / "ff.mp4")],
        # where the time goes: the same render with the FOA map alone, and with no saliency at all
        PAN_FOA: [*pan, "-o", str(out / "pan_foa.mp4"), "--saliency", "foa"],
        PAN_NONE: [*pan, "-o", str(out / "pan_none.mp4"), "--saliency", "none"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=1, help="alternating runs of each contender")
    args = ap.parse_args()
    clip = (args.input or default_clip()).resolve()
    info = probe(clip)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        (w, h), cmds = commands(clip, info, Path(tmp))
        print(f"{clip.name}: {info.eye_width}x{info.eye_height}, {info.duration:.1f} s -> {w}x{h}, medium, crf 20")
        for run in range(args.runs):
            rows.append((run, {name: timed(cmd) for name, cmd in cmds.items()}))
    print(f"\n{'run':>3s} {'contender':36s} {'wall s':>8s} {'CPU s':>8s} {'peak RSS MiB':>13s} {'CPU / ffmpeg':>13s}")
    for run, res in rows:
        for name in (PAN_DEFAULT, PAN_FOA, PAN_NONE, FFMPEG):
            r = res[name]
            print(f"{run:3d} {name:36s} {r['wall_s']:8.2f} {r['cpu_s']:8.2f} {r['peak_rss_mib']:13d} "
                  f"{r['cpu_s'] / res[FFMPEG]['cpu_s']:13.2f}")


if __name__ == "__main__":
    main()
