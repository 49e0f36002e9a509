"""Stage profile of ``pan360 render --path`` on the light clip of issue 14, rerunnable.

The clip (generated once into ``--workdir``): 8 s of 3840x1920 at 30 fps, ffmpeg's ``testsrc2`` pattern
drifting sideways (``scroll``), x264 veryfast crf 23, with a 440 Hz mono AAC tone; a fixed camera path
(yaw 40°, pitch -15°, 90° h-FOV). The render is the CLI's, ``--size 1280x720 --preset veryfast --crf 23``,
audio kept.

Two parts:

1. the whole CLI render, ``python -m pan360 render CLIP -o OUT --path PATH ...``, as a child process,
   ``--runs`` times: wall and CPU seconds (user + system of the child, ``getrusage``), median, and its
   ratio to the ffmpeg program's own parts (decode of the clip, x264 of exactly pan360's pictures,
   AAC of the track; each timed alone, ffmpeg from ``bench/benchmark.py``'s ``ffmpeg_exe``);
2. each stage alone, one after the other in one child process (so nothing overlaps): interpreter
   start-up, the imports the CLI does, probe, audio decode, the path, video decode (all frames,
   ``iter_frames``), reprojection (frames decoded beforehand, held in memory), x264 of the rendered
   pictures (``VideoWriter``, no audio), AAC of the track, and ``render_video`` itself (the three
   threads overlapped; its own busy time per stage). CPU is the process's user + system time over the
   stage, all threads included (libavcodec's and x264's own threads too).

``--cprofile N`` also prints the N heaviest functions (own time) of a single-threaded decode + render +
encode pass, to find per-frame Python work.

Run from the repository root::

    python bench/profile_render.py                       # workdir /tmp/pan360-profile, 3 whole runs
    python bench/profile_render.py --runs 5 --cprofile 25
    python bench/profile_render.py --stages-only
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZE, PRESET, CRF = "1280x720", "veryfast", 23


def ffmpeg_exe() -> str:
    sys.path.insert(0, str(REPO / "bench"))
    from benchmark import ffmpeg_exe as exe

    return exe()


def make_light_clip(clip: Path, seconds: float = 8.0, width: int = 3840, height: int = 1920) -> None:
    """The light clip: ``testsrc2`` drifting sideways at 30 fps, x264 veryfast crf 23, a 440 Hz mono AAC tone."""
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=30:duration={seconds:g},scroll=h=0.0007",
                    "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds:g}",
                    "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-b:a", "128k", "-shortest", str(clip)], check=True)


def make_inputs(work: Path) -> tuple[Path, Path]:
    """The light clip and its fixed camera path (made once)."""
    work.mkdir(parents=True, exist_ok=True)
    clip, path = work / "light_3840x1920_8s.mp4", work / "fixed_path.json"
    if not clip.exists():
        print(f"generating {clip} ...", flush=True)
        make_light_clip(clip)
    if not path.exists():
        sys.path.insert(0, str(REPO))
        import numpy as np

        from pan360.paths import constant_path, save_path

        save_path(constant_path(np.arange(240) / 30.0, 40.0, -15.0, 90.0, 1280, 720, 30.0), path)
    return clip, path


def child_usage(cmd: list[str]) -> tuple[float, float]:
    """(wall s, CPU s) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def whole_runs(clip: Path, path: Path, work: Path, runs: int) -> list[tuple[float, float]]:
    cmd = [sys.executable, "-m", "pan360", "render", str(clip), "-o", str(work / "render.mp4"), "--path", str(path),
           "--size", SIZE, "--preset", PRESET, "--crf", str(CRF), "--overwrite", "-q"]
    return [child_usage(cmd) for _ in range(runs)]


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class Stages:
    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float]] = []

    def time(self, name: str, fn, *args, **kwargs):
        t0, c0 = time.perf_counter(), _cpu()
        out = fn(*args, **kwargs)
        self.rows.append((name, time.perf_counter() - t0, _cpu() - c0))
        return out


def stages_child(clip: Path, path_file: Path, work: Path, cprofile: int) -> None:
    """In a fresh process: every stage alone; prints one JSON line of rows."""
    st = Stages()
    t0, c0 = time.perf_counter(), _cpu()
    sys.path.insert(0, str(REPO))
    import pan360.cli  # noqa: F401 - what `python -m pan360` imports first
    import pan360.pipeline as pl  # what the render command imports
    st.rows.append(("imports (pan360.cli + pan360.pipeline)", time.perf_counter() - t0, _cpu() - c0))

    import numpy as np

    from pan360.media import AudioStream, VideoWriter, iter_frames, probe
    from pan360.reproject import Renderer
    from pan360.rendering import path_indices, render_video

    info = st.time("probe", probe, clip)
    track = st.time("audio decode (AudioStream.load)", lambda: AudioStream(info).load())
    cam = st.time("camera path (given_path)", pl.given_path, path_file, info, (1280, 720), None)
    audio = st.time("output audio (output_audio)", pl.output_audio, track, cam)

    def decode_all() -> list:
        # copies, so the pictures can be held (the real loop holds views of the decoder's frames)
        return [(t, tuple(np.array(p) for p in planes)) for t, planes in iter_frames(info, fmt="yuv420p")]

    def decode_only() -> int:
        return sum(1 for _ in iter_frames(info, fmt="yuv420p"))

    st.time("video decode (iter_frames, all frames)", decode_only)
    frames = decode_all()
    renderer = Renderer(info.eye_width, info.eye_height, 1280, 720, device="cpu")
    idx = path_indices(cam.times, info.frame_times)
    views = [cam.view(i) for i in idx]

    def reproject(frames: list) -> list:
        return [renderer.render_yuv420(*planes, views[n]) for n, (_, planes) in enumerate(frames)]

    import cv2

    cv2.setNumThreads(1)  # as render_video does
    pictures = st.time("reprojection (render_yuv420, 1 thread)", reproject, frames)

    def x264(frames: list, pictures: list) -> None:
        with VideoWriter(work / "x264_only.mp4", 1280, 720, fps=info.fps, duration=info.duration, crf=CRF,
                         preset=PRESET) as w:
            for (t, _), pic in zip(frames, pictures):
                w.write(pic, t)

    st.time("x264 of the rendered pictures (VideoWriter)", x264, frames, pictures)
    with open(work / "pictures.yuv", "wb") as f:  # for ffmpeg's own x264 of the same pictures
        for pic in pictures:
            for plane in pic:
                f.write(np.ascontiguousarray(plane).tobytes())

    def aac() -> None:
        samples, rate = audio
        w = VideoWriter(work / "aac_only.mp4", 1280, 720, fps=info.fps, duration=info.duration, crf=CRF,
                        preset=PRESET, audio=samples, sample_rate=rate)
        w._write_audio_until(info.duration, final=True)  # the whole track, through the AAC encoder
        w.abort()

    st.time("AAC encode of the track", aac)
    del frames, pictures
    stats: dict = {}
    st.time("render_video (decode+reproject+encode, threads, AAC)", render_video, info, cam, work / "rv.mp4",
            crf=CRF, preset=PRESET, audio=audio, device="cpu", stats=stats)
    top = ""
    if cprofile:
        import cProfile
        import io
        import pstats

        def serial() -> None:
            with VideoWriter(work / "serial.mp4", 1280, 720, fps=info.fps, duration=info.duration, crf=CRF,
                             preset=PRESET, audio=audio[0], sample_rate=audio[1]) as w:
                for n, (t, planes) in enumerate(iter_frames(info, fmt="yuv420p")):
                    w.write(renderer.render_yuv420(*planes, views[n]), t)

        prof = cProfile.Profile()
        prof.runcall(serial)
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(cprofile)
        top = s.getvalue()
    print(json.dumps({"rows": st.rows, "busy": stats, "frames": info.n_frames, "cprofile": top}))


def ffmpeg_parts(clip: Path, work: Path) -> list[tuple[str, float, float]]:
    """The ffmpeg program's decode of the clip (video and audio, ``-f null``), its x264 of pan360's
    rendered pictures (raw, written by the stages child; reading them back is timed alone and taken
    out) and its AAC encode of the decoded tone."""
    ff, raw = ffmpeg_exe(), work / "pictures.yuv"
    rawin = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", SIZE, "-r", "30", "-i", str(raw)]
    try:
        decode = child_usage([ff, "-v", "error", "-i", str(clip), "-f", "null", "-"])
        read = child_usage([ff, "-v", "error", *rawin, "-f", "null", "-"])
        enc = child_usage([ff, "-v", "error", "-y", *rawin, "-c:v", "libx264", "-preset", PRESET, "-crf", str(CRF),
                           "-pix_fmt", "yuv420p", str(work / "ffmpeg_x264.mp4")])
        wav = work / "tone.wav"
        subprocess.run([ff, "-v", "error", "-y", "-i", str(clip), "-vn", str(wav)], check=True)
        aac = child_usage([ff, "-v", "error", "-y", "-i", str(wav), "-c:a", "aac", str(work / "ffmpeg_aac.m4a")])
        read_wav = child_usage([ff, "-v", "error", "-i", str(wav), "-f", "null", "-"])
    finally:
        raw.unlink(missing_ok=True)
    return [("ffmpeg decode, video + audio (-f null)", *decode),
            ("ffmpeg x264 of pan360's pictures (raw read taken out)", enc[0] - read[0], enc[1] - read[1]),
            ("ffmpeg AAC of the track (wav read taken out)", aac[0] - read_wav[0], aac[1] - read_wav[1])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/pan360-profile"))
    ap.add_argument("--runs", type=int, default=3, help="whole CLI renders (median reported)")
    ap.add_argument("--stages-only", action="store_true", help="skip the whole CLI renders")
    ap.add_argument("--cprofile", type=int, default=0, help="print the N heaviest functions of a serial pass")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    clip, path = make_inputs(args.workdir)
    if args.child:
        stages_child(clip, path, args.workdir, args.cprofile)
        return

    results: dict = {}
    start = child_usage([sys.executable, "-c", "pass"])
    res = subprocess.run([sys.executable, __file__, "--child", "--workdir", str(args.workdir),
                          "--cprofile", str(args.cprofile)], check=True, capture_output=True, text=True, cwd=REPO)
    child = json.loads(res.stdout.strip().splitlines()[-1])
    rows = [("python start-up (python -c pass)", *start), *child["rows"]]
    print(f"\nstages alone, one after the other ({child['frames']} frames):")
    print(f"{'stage':58s} {'wall s':>7s} {'CPU s':>7s}")
    for name, wall, cpu in rows:
        print(f"{name:58s} {wall:7.2f} {cpu:7.2f}")
    parts = [r for r in rows if not r[0].startswith("render_video")]
    print(f"{'sum of the stages alone':58s} {sum(r[1] for r in parts):7.2f} {sum(r[2] for r in parts):7.2f}")
    print("render_video busy time per stage (wall s, overlapped): "
          + ", ".join(f"{k} {v:.2f}" for k, v in child["busy"].items()))
    results["stages"] = rows
    ff_rows = ffmpeg_parts(clip, args.workdir)
    print("\nffmpeg's own parts, each alone (the floor of any renderer of these pictures):")
    for name, wall, cpu in ff_rows:
        print(f"{name:58s} {wall:7.2f} {cpu:7.2f}")
    floor_cpu = sum(r[2] for r in ff_rows)
    print(f"{'ffmpeg decode + x264 + AAC':58s} {sum(r[1] for r in ff_rows):7.2f} {floor_cpu:7.2f}")
    results["ffmpeg_parts"] = ff_rows
    results["busy"] = child["busy"]
    if child["cprofile"]:
        print("\n" + child["cprofile"])
    if not args.stages_only and args.runs > 0:
        runs = whole_runs(clip, path, args.workdir, args.runs)
        walls, cpus = [r[0] for r in runs], [r[1] for r in runs]
        print(f"\nwhole `pan360 render --path` x{args.runs}: wall " + " ".join(f"{w:.2f}" for w in walls)
              + f" (median {statistics.median(walls):.2f}); CPU " + " ".join(f"{c:.2f}" for c in cpus)
              + f" (median {statistics.median(cpus):.2f})")
        results["whole"] = runs
        print(f"pan360 render --path / ffmpeg decode + x264 + AAC of the same pictures, CPU: "
              f"{statistics.median(cpus) / floor_cpu:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
