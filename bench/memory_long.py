"""Peak memory of ``pan360 render`` against the input's duration (long recordings).

Generates, for each duration, a 64x32 equirect video (1 fps unless ``--fps``) with 4-channel 48 kHz first-order ambisonic
audio (a broadband source circling the camera once a minute, ffmpeg lavfi, AAC), renders it with
``pan360 render`` in a child process for each ``--saliency`` value and prints the child's peak RSS
(``ru_maxrss``) and CPU seconds. The video is tiny on purpose: what grows is the audio and the maps.

    python bench/memory_long.py                       # 30 s and 600 s, saliency auto and none
    python bench/memory_long.py --durations 30 600 10800 --saliency foa none
    python bench/memory_long.py --durations 30 600 --fps 30 --saliency foa     # what the maps cost

Issue 11's target: at 600 s within 150 MB of the 30 s figure, and 3 hours under 2 GB.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def make_clip(path: Path, seconds: int, fps: int = 1) -> None:
    """64x32 grey video at ``fps`` + 4-channel ambiX noise from a direction turning at 6°/s (W, Y, Z, X)."""
    az = "(2*PI*t/60)"
    noise = "(random(0)-0.5)"
    # ambiX ACN/SN3D: W, Y = sin(az), Z = 0, X = cos(az) for a source on the horizon
    expr = f"{noise}*0.5|{noise}*0.5*sin({az})|0|{noise}*0.5*cos({az})"
    subprocess.run(
        [ffmpeg(), "-v", "error", "-y",
         "-f", "lavfi", "-i", f"color=c=gray:s=64x32:r={fps}:d={seconds}",
         "-f", "lavfi", "-i", f"aevalsrc='{expr}':s=48000:d={seconds}",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "128k", "-shortest", str(path)],
        check=True)


def peak_rss(cmd: list[str]) -> tuple[float, float]:
    """(peak RSS MiB, CPU s) of ``cmd``, run through a small wrapper process whose only child it is."""
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
               "ru = resource.getrusage(resource.RUSAGE_CHILDREN); "
               "print(ru.ru_maxrss / 1024, ru.ru_utime + ru.ru_stime)")
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], check=True, capture_output=True, text=True)
    rss, cpu = out.stdout.split()[-2:]
    return float(rss), float(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--durations", type=int, nargs="+", default=[30, 600])
    ap.add_argument("--saliency", nargs="+", default=["auto", "none"])
    ap.add_argument("--fps", type=int, default=1, help="video frame rate (what the maps grow with)")
    ap.add_argument("--work", type=Path, default=None, help="folder for the generated clips (default: a temporary one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        print(f"{'seconds':>8s} {'fps':>4s} {'saliency':>9s} {'peak RSS MiB':>13s} {'CPU s':>8s}")
        for seconds in args.durations:
            clip = work / (f"long_{seconds}s.mp4" if args.fps == 1 else f"long_{seconds}s_{args.fps}fps.mp4")
            if not clip.exists():
                make_clip(clip, seconds, args.fps)
            for sal in args.saliency:
                out = Path(tmp) / f"out_{seconds}_{sal}.mp4"
                rss, cpu = peak_rss([sys.executable, "-m", "pan360", "render", str(clip), "-o", str(out),
                                     "--saliency", sal, "--preset", "ultrafast", "--overwrite", "-q"])
                print(f"{seconds:8d} {args.fps:4d} {sal:>9s} {rss:13.0f} {cpu:8.1f}", flush=True)
                out.unlink(missing_ok=True)


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
