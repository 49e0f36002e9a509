"""Speed and memory of pan360's renderer against ffmpeg's own v360, in one run.

Measures, on one 4K equirect clip (generated, or ``--input``), the same output size, x264 preset and crf,
audio dropped for every contender:

(a) the ffmpeg binary rendering a FIXED view with ``v360=e:flat`` (its best case: one remap table);
(b) optionally (``--moving``) ffmpeg with the view moving every frame through ``sendcmd`` (v360 rebuilds
    its whole table per command), on the first ``--moving-seconds`` of the clip;
(c) ``pan360.rendering.render_video`` along a moving path (slow sinusoidal yaw and pitch), in a child
    process whose peak RSS is read from ``resource.getrusage(RUSAGE_SELF)``, and along ffmpeg's fixed view;
(d) the floor of any renderer on that moving path: ``render_video`` with the reprojection replaced by
    replaying the same pictures, rendered into memory beforehand, so only the 4K decode and the x264
    encode of that moving picture are left (``--no-floor`` skips it);
(e) the same bound from the ffmpeg program's own parts, each timed alone (``--no-floor`` skips it):
    its decode of the input, and its x264 encode of raw pictures written beforehand, untimed: its own
    fixed view and pan360's moving path. Its decode plus its x264 of the moving pictures is what
    ffmpeg itself would spend on the moving path with a free reprojection.

Prints a table with wall times, the ratio pan360 / ffmpeg-fixed (target <= 1.0) and the peak RSS;
``--json FILE`` writes the numbers. Run from the repository root:

    python bench/benchmark.py                 # 10 s 3840x1920 generated clip
    python bench/benchmark.py --input my360.mp4 --moving
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ffmpeg_exe() -> str:
    """The system ffmpeg if there is one, else imageio-ffmpeg's binary."""
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def v_fov(h_fov: float, width: int, height: int) -> float:
    return math.degrees(2.0 * math.atan(math.tan(math.radians(h_fov) / 2.0) * height / width))


def path_angles(t: float, seconds: float) -> tuple[float, float]:
    """The moving path: one slow yaw sweep (±60°) and a gentle pitch wave over the clip."""
    return 40.0 + 60.0 * math.sin(2.0 * math.pi * t / max(seconds, 1.0)), -15.0 + 10.0 * math.sin(2.0 * math.pi * t / 4.0)


def generate(ff: str, out: Path, seconds: float, width: int, height: int, fps: int) -> None:
    """A 4K equirect test clip: moving test pattern plus noise (so it does not compress to nothing)."""
    src = f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds}"
    # alls=5 gives ~47 Mb/s at 4K30, the bitrate of real 360° camera files.
    cmd = [ff, "-v", "error", "-y", "-f", "lavfi", "-i", src, "-vf", "noise=alls=5:allf=t",
           "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-an", str(out)]
    subprocess.run(cmd, check=True)


def timed(cmd: list[str]) -> dict:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MiB) of a child process.

    The command runs under this script's ``--rss`` wrapper, whose RUSAGE_CHILDREN then holds exactly
    that one process; its last output line is the wrapper's report, the line before the command's own.
    """
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, __file__, "--rss", "--", *cmd], check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    lines = res.stdout.strip().splitlines()
    rss, cpu = lines[-1].split()
    out = {"wall_s": wall, "cpu_s": float(cpu), "peak_rss_mib": int(rss)}
    if len(lines) > 1 and lines[-2].startswith("{"):
        out.update(json.loads(lines[-2]))
    return out


def run_pan360(args: argparse.Namespace, clip: Path, out: Path) -> dict:
    """Child process: render along the moving path; prints a JSON line with its own timings and RSS."""
    sys.path.insert(0, str(REPO))
    t0 = time.perf_counter()
    from pan360.media import probe
    from pan360.paths import CameraPath
    from pan360.rendering import render_video

    import numpy as np

    info = probe(clip)
    t = info.frame_times
    ang = np.array([path_angles(float(x), info.duration) for x in t])
    if args.fixed_view:
        ang[:] = (40.0, -15.0)
    n = len(t)
    path = CameraPath(t, ang[:, 0], ang[:, 1], np.zeros(n), np.full(n, args.fov),
                      np.full(n, v_fov(args.fov, args.width, args.height)), args.width, args.height, float(info.fps))
    if args.dump_raw:
        with open(args.dump_raw, "wb") as f:
            for planes in _rendered_pictures(info, path, args.device):
                for plane in planes:
                    f.write(np.ascontiguousarray(plane).tobytes())
        return {"frames": n, "fps": str(info.fps)}
    if args.floor:
        _replay_renderer(info, path, args.device)
    t1, cpu1 = time.perf_counter(), _cpu_self()
    stats: dict = {}
    frames = render_video(info, path, out, crf=args.crf, preset=args.preset, device=args.device, stats=stats)
    t2, cpu2 = time.perf_counter(), _cpu_self()
    return {"frames": frames, "setup_s": t1 - t0, "render_s": t2 - t1, "render_cpu_s": cpu2 - cpu1, "stages": stats}


def _cpu_self() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _rendered_pictures(info, path, device: str):
    """Every output picture along ``path`` as yuv420p planes, from the real renderer."""
    import pan360.rendering
    from pan360.media import iter_frames

    real = pan360.rendering.Renderer(info.eye_width, info.eye_height, int(path.width), int(path.height), device=device)
    idx = pan360.rendering.path_indices(path.times, info.frame_times)
    for n, (_, (y, u, v)) in enumerate(iter_frames(info, fmt="yuv420p")):
        yield real.render_yuv420(y, u, v, path.view(idx[n]))


def _replay_renderer(info, path, device: str) -> None:
    """Render every frame along ``path`` now, untimed, and make ``render_video`` replay those pictures.

    ``pan360.rendering.Renderer`` is replaced by one that hands the pictures back in order, so the timed
    ``render_video`` is left with the decode of the 4K input and the x264 encode of exactly the
    pictures the real renderer produces: the cost of everything but the reprojection.
    """
    import pan360.rendering

    pictures = list(_rendered_pictures(info, path, device))  # fresh arrays, not the decoder's

    class Replay:
        exact_tables = 0

        def __init__(self, *args, **kwargs) -> None:
            self.out_size = (int(path.width), int(path.height))
            self._next = iter(pictures)

        def render_yuv420(self, y, u, v, view):
            return next(self._next)

    pan360.rendering.Renderer = Replay  # type: ignore[misc,assignment]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, help="equirect clip to use instead of a generated one")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the generated clip")
    ap.add_argument("--in-size", default="3840x1920", help="size of the generated clip")
    ap.add_argument("--fps", type=int, default=30, help="frame rate of the generated clip")
    ap.add_argument("--size", default="1280x720", help="output size")
    ap.add_argument("--fov", type=float, default=90.0, help="horizontal field of view (degrees)")
    ap.add_argument("--crf", type=int, default=20)
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--device", default="auto", help="pan360 render device: auto, cpu or cuda")
    ap.add_argument("--moving", action="store_true", help="also time ffmpeg with the view moving every frame")
    ap.add_argument("--moving-seconds", type=float, default=2.0, help="clip length for --moving")
    ap.add_argument("--workdir", type=Path, help="keep clips and outputs here (default: a temporary folder)")
    ap.add_argument("--json", type=Path, help="write the results to this JSON file")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--fixed-view", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--dump-raw", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--no-floor", action="store_true", help="skip the no-reprojection floors (d) and (e)")
    args = ap.parse_args()
    args.width, args.height = (int(v) for v in args.size.lower().split("x"))

    if args.child:
        print(json.dumps(run_pan360(args, args.child, args.child_out)))
        return

    ff = ffmpeg_exe()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="pan360-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    clip = args.input
    if clip is None:
        iw, ih = (int(v) for v in args.in_size.lower().split("x"))
        clip = work / f"equirect_{iw}x{ih}_{args.seconds:g}s.mp4"
        if not clip.exists():
            print(f"generating {clip.name} ...", flush=True)
            generate(ff, clip, args.seconds, iw, ih, args.fps)
    load0 = os.getloadavg()
    vf = v_fov(args.fov, args.width, args.height)
    x264 = ["-c:v", "libx264", "-preset", args.preset, "-crf", str(args.crf), "-pix_fmt", "yuv420p", "-an"]
    results: dict = {"input": str(clip), "size": args.size, "fov": args.fov, "crf": args.crf, "preset": args.preset,
                     "ffmpeg": ff, "cpus": os.cpu_count(), "python": platform.python_version()}

    fixed = f"v360=e:flat:yaw=40:pitch=-15:h_fov={args.fov}:v_fov={vf:.4f}:w={args.width}:h={args.height}"
    results["ffmpeg_fixed"] = ff_fixed = timed(
        [ff, "-v", "error", "-y", "-i", str(clip), "-vf", fixed, *x264, str(work / "ffmpeg_fixed.mp4")])
    print(f"ffmpeg fixed view: {ff_fixed['wall_s']:.2f} s", flush=True)

    if args.moving:
        cmdfile = work / "moving.cmd"
        fps = args.fps if args.input is None else 30
        lines = []
        for i in range(int(args.moving_seconds * fps)):
            yaw, pitch = path_angles(i / fps, args.seconds)
            lines.append(f"{i / fps:.4f} v360 yaw {yaw:.3f}, v360 pitch {pitch:.3f};")
        cmdfile.write_text("\n".join(lines) + "\n")
        moving = f"sendcmd=f={cmdfile},v360=e:flat:reset_rot=1:h_fov={args.fov}:v_fov={vf:.4f}:w={args.width}:h={args.height}"
        short = [ff, "-v", "error", "-y", "-t", str(args.moving_seconds), "-i", str(clip)]
        m = timed([*short, "-vf", moving, *x264, str(work / "ffmpeg_moving.mp4")])
        f = timed([*short, "-vf", fixed, *x264, str(work / "ffmpeg_fixed_short.mp4")])
        m.update(seconds=args.moving_seconds, fixed_same_piece=f, slowdown_wall=m["wall_s"] / f["wall_s"],
                 slowdown_cpu=m["cpu_s"] / f["cpu_s"])
        results["ffmpeg_moving"] = m
        print(f"ffmpeg moving view ({args.moving_seconds:g} s): {m['wall_s']:.2f} s "
              f"({m['slowdown_wall']:.1f}x its fixed view)", flush=True)

    pan_args = ["--size", args.size, "--fov", str(args.fov), "--crf", str(args.crf), "--preset", args.preset,
                "--device", args.device]
    results["pan360_moving"] = pan = timed(
        [sys.executable, __file__, "--child", str(clip), "--child-out", str(work / "pan360_moving.mp4"), *pan_args])
    results["pan360_fixed"] = pan_fixed = timed(
        [sys.executable, __file__, "--child", str(clip), "--child-out", str(work / "pan360_fixed.mp4"), *pan_args,
         "--fixed-view"])
    # The floor holds every rendered picture in memory (1.4 MB a frame at 1280x720): skip it past 4 GiB.
    floor_bytes = pan["frames"] * args.width * args.height * 1.5
    if not args.no_floor and floor_bytes > 4 * 2**30:
        print(f"floor skipped: {floor_bytes / 2**30:.1f} GiB of pictures would be held in memory")
    elif not args.no_floor:
        results["floor_moving"] = floor = timed(
            [sys.executable, __file__, "--child", str(clip), "--child-out", str(work / "floor_moving.mp4"), *pan_args,
             "--floor"])
        # The floor's child renders its pictures before timing: compare its render_video part with
        # the same part of the real moving run.
        results["floor_ratio_wall"] = floor["render_s"] / ff_fixed["wall_s"]
        results["floor_ratio_cpu"] = floor["render_cpu_s"] / ff_fixed["cpu_s"]
        results["moving_render_only_ratio_cpu"] = pan["render_cpu_s"] / ff_fixed["cpu_s"]
    if not args.no_floor and floor_bytes * 2 <= 8 * 2**30:
        results["ffmpeg_parts"] = parts = ffmpeg_parts(args, ff, clip, work, fixed, pan_args)
        parts["bound_ratio_cpu"] = (parts["decode_cpu_s"] + parts["x264_moving_cpu_s"]) / ff_fixed["cpu_s"]
        parts["v360_fixed_cpu_s"] = ff_fixed["cpu_s"] - parts["decode_cpu_s"] - parts["x264_fixed_cpu_s"]
    results["ratio_fixed_wall"] = pan_fixed["wall_s"] / ff_fixed["wall_s"]
    results["ratio_fixed_cpu"] = pan_fixed["cpu_s"] / ff_fixed["cpu_s"]
    results["ratio_wall"] = pan["wall_s"] / ff_fixed["wall_s"]
    results["ratio_cpu"] = pan["cpu_s"] / ff_fixed["cpu_s"]
    results["loadavg_before"], results["loadavg_after"] = load0, os.getloadavg()

    rows = [("ffmpeg v360, fixed view", ff_fixed)]
    if "ffmpeg_moving" in results:
        m = results["ffmpeg_moving"]
        rows.append((f"ffmpeg v360, moving view ({m['seconds']:g} s piece)", m))
        rows.append((f"ffmpeg v360, fixed view ({m['seconds']:g} s piece)", m["fixed_same_piece"]))
    rows.append(("pan360 render_video, moving view", pan))
    rows.append(("pan360 render_video, same fixed view", pan_fixed))
    print(f"\n{'contender':46s} {'wall s':>8s} {'CPU s':>8s} {'peak RSS MiB':>13s}")
    for name, r in rows:
        print(f"{name:46s} {r['wall_s']:8.2f} {r['cpu_s']:8.2f} {r['peak_rss_mib']:13d}")
    print(f"\nframes: {pan['frames']}; pan360 / ffmpeg-fixed: wall {results['ratio_wall']:.2f}, "
          f"CPU {results['ratio_cpu']:.2f} (target <= 1.0); same fixed view: wall "
          f"{results['ratio_fixed_wall']:.2f}, CPU {results['ratio_fixed_cpu']:.2f}")
    print(f"pan360 process: {pan['setup_s']:.2f} s imports + probe, {pan['render_s']:.2f} s render_video "
          f"({pan['render_cpu_s']:.2f} CPU s)")
    if "floor_moving" in results:
        fl = results["floor_moving"]
        print(f"floor, moving path without reprojection (render_video part only): {fl['render_s']:.2f} s, "
              f"{fl['render_cpu_s']:.2f} CPU s; / ffmpeg-fixed: wall {results['floor_ratio_wall']:.2f}, "
              f"CPU {results['floor_ratio_cpu']:.2f}. Real moving run, same part: wall "
              f"{pan['render_s'] / ff_fixed['wall_s']:.2f}, CPU {results['moving_render_only_ratio_cpu']:.2f}")
    if "ffmpeg_parts" in results:
        p = results["ffmpeg_parts"]
        print(f"ffmpeg's parts alone (CPU s): decode {p['decode_cpu_s']:.2f}; x264 of its fixed view "
              f"{p['x264_fixed_cpu_s']:.2f}, of pan360's moving path {p['x264_moving_cpu_s']:.2f} "
              f"(+{100 * (p['x264_moving_cpu_s'] / p['x264_fixed_cpu_s'] - 1):.0f}%; raw reading "
              f"{p['read_raw_cpu_s']:.2f} taken out); decode + x264 of the moving path / ffmpeg-fixed: "
              f"CPU {p['bound_ratio_cpu']:.2f}; its v360, by difference: {p['v360_fixed_cpu_s']:.2f}")
    if pan.get("stages"):
        print("pan360 busy time per stage (s, overlapped in threads): "
              + ", ".join(f"{k} {v:.2f}" for k, v in pan["stages"].items()))
    print(f"load average before/after: {load0[0]:.2f} / {results['loadavg_after'][0]:.2f} on {os.cpu_count()} cores")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def ffmpeg_parts(args: argparse.Namespace, ff: str, clip: Path, work: Path, fixed_vf: str, pan_args: list[str]) -> dict:
    """(e): the ffmpeg program's decode and x264 encode, each timed alone.

    The raw pictures (ffmpeg's fixed view, pan360's moving path) are written to ``work`` first,
    untimed; reading them back is timed separately and taken out of the encode times.
    """
    fixed_raw, moving_raw = work / "fixed_view.yuv", work / "moving_path.yuv"
    x264 = ["-c:v", "libx264", "-preset", args.preset, "-crf", str(args.crf), "-pix_fmt", "yuv420p"]
    try:
        dump = subprocess.run(
            [sys.executable, __file__, "--child", str(clip), "--dump-raw", str(moving_raw), *pan_args],
            check=True, capture_output=True, text=True)
        fps = json.loads(dump.stdout.strip().splitlines()[-1])["fps"]  # x264's rate control sees the input's rate
        raw = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", args.size, "-r", fps]
        subprocess.run([ff, "-v", "error", "-y", "-i", str(clip), "-vf", fixed_vf, "-an", *raw, str(fixed_raw)],
                       check=True)
        decode = timed([ff, "-v", "error", "-i", str(clip), "-map", "0:v:0", "-f", "null", "-"])
        read = timed([ff, "-v", "error", *raw, "-i", str(moving_raw), "-f", "null", "-"])
        enc_fixed = timed([ff, "-v", "error", "-y", *raw, "-i", str(fixed_raw), *x264, str(work / "x264_fixed.mp4")])
        enc_moving = timed([ff, "-v", "error", "-y", *raw, "-i", str(moving_raw), *x264, str(work / "x264_moving.mp4")])
    finally:
        fixed_raw.unlink(missing_ok=True)
        moving_raw.unlink(missing_ok=True)
    return {
        "decode_cpu_s": decode["cpu_s"],
        "read_raw_cpu_s": read["cpu_s"],
        "x264_fixed_cpu_s": enc_fixed["cpu_s"] - read["cpu_s"],
        "x264_moving_cpu_s": enc_moving["cpu_s"] - read["cpu_s"],
    }


def rss_wrapper(cmd: list[str]) -> None:
    """Run ``cmd`` and print its peak RSS in MiB (ru_maxrss of the children of this small process)."""
    subprocess.run(cmd, check=True)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(ru.ru_maxrss // 1024, f"{ru.ru_utime + ru.ru_stime:.3f}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--rss" and sys.argv[2] == "--":
        rss_wrapper(sys.argv[3:])
    else:
        main()
