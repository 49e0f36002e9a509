"""pan360's command line against the ffmpeg program, issue 14's four measurements in one run.

Sections (``--sections``, default all four), each printed as one table of wall seconds, CPU seconds
(user + system of the child process, ``getrusage``) and peak RSS, then the ratios of CPU seconds (wall
beside them) with their targets, PASS or FAIL:

``light``
    8 s of 3840x1920 at 30 fps, ffmpeg's ``testsrc2`` drifting sideways (``scroll=h=0.0007``), x264
    veryfast crf 23, a 440 Hz mono AAC tone (bench/profile_render.py's clip); output 1280x720,
    veryfast, crf 23, audio kept.
``4k``
    10 s of 3840x1920 at 30 fps, ``testsrc2`` plus noise (``alls=5``: ~47 Mb/s, the bitrate of real
    360° camera files), no audio; output 1280x720, medium, crf 20.

    For both, the contenders are:

    - the CLI, ``python -m pan360 render CLIP -o OUT --path PATH.json --size WxH --preset P --crf C
      --overwrite -q``, along a fixed path (yaw 40°, pitch -15°, 90° h-FOV) and along a moving one (a
      ±60° yaw sweep over the clip and a ±10° pitch wave of 4 s), trajectories written with
      ``pan360.paths.save_path``;
    - ffmpeg's complete render of the fixed view, ``v360=e:flat:yaw=40:pitch=-15``, same x264
      settings, audio as AAC;
    - the ffmpeg program's own parts, each timed alone: its decode of the clip (``-f null``, video and
      audio), its x264 of exactly pan360's pictures, fixed and moving (rendered beforehand, untimed,
      by ``pan360.reproject.Renderer`` along the CLI's own resampled path, written as raw yuv420p;
      reading a raw file back is timed alone and taken out) and its AAC encode of the track (a wav
      written beforehand; reading it is taken out). Decode + x264 (+ AAC) is what ffmpeg itself spends
      on the same pictures with a reprojection that costs nothing: the floor.

    Targets: pan360 / the floor of its own pictures <= 1.05, fixed and moving; on ``4k`` also pan360
    fixed / ffmpeg fixed view <= 1.0 and pan360 moving / ffmpeg fixed view <= 1.15 (on ``light`` those
    two are printed without a target).
``full``
    The whole default render of a real FOA clip, the first 1920x960 clip with audio in
    ../shared/media/real360_foa (bench/full_render.py's clip and commands): ``python -m pan360 render
    CLIP -o OUT --size WxH --overwrite -q`` (default analysis, medium, crf 20), the same with
    ``--saliency foa`` and with ``--saliency none``, and ffmpeg's fixed-view render at the same size
    with AAC stereo. Target: pan360 default / ffmpeg fixed view <= 1.3. Skipped, with a line, when the
    folder is absent; ``--full-input`` names another clip.
``cuda``
    When ``torch.cuda.is_available()``: bench/cuda_timing.py's measurements (``render_video`` on the CPU
    and on CUDA, ``network_maps`` on CUDA), in a child process; otherwise one line.

Every timed command is a child process run under this script's ``--rss`` wrapper, whose
RUSAGE_CHILDREN then holds exactly that one process. ``--runs N`` runs a section's commands N times,
alternating (each round starting one command later, so that no contender always runs in the same
place), and reports the medians of wall and CPU seconds (peak RSS: the largest); each ratio is the
median of the rounds' own ratios (a contender against its peer of the same round), printed with their
range. pan360's modules run from bytecode, as in an installation (``PYTHONDONTWRITEBYTECODE`` is
dropped for the children; the cache goes to the workdir). The load average is printed before and
after. Generated clips stay in ``--workdir`` (default: a temporary folder) and are reused; outputs go
to its ``out/``; the raw pictures and the wav are deleted after their section.
``--device`` is the pan360 renders' (and the picture dump's) device. ``--quick`` runs the same code on
tiny inputs, 1 s 960x480 clips rendered to 320x180 (``full``: a generated 1 s 960x480 clip with FOA
audio, unless ``--full-input``; ``cuda``: a 1 s 960x480 clip): a smoke test, its verdicts meaningless.

Run from the repository root::

    python bench/benchmark.py                                  # all sections, one run each
    python bench/benchmark.py --runs 3 --workdir /tmp/bw --json bench.json
    python bench/benchmark.py --sections light,4k
    python bench/benchmark.py --quick --workdir /tmp/bq        # smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SECTIONS = ("light", "4k", "full", "cuda")

FF_FIXED = "ffmpeg v360 fixed view (complete render)"
PAN = {"fixed": "pan360 render --path, fixed view", "moving": "pan360 render --path, moving path"}
DECODE = "ffmpeg decode of the clip (-f null)"
READ_RAW = "ffmpeg reading a raw picture file back"
X264 = {"fixed": "ffmpeg x264 of pan360's fixed pictures", "moving": "ffmpeg x264 of pan360's moving pictures"}
READ_WAV = "ffmpeg reading the wav back"
AAC = "ffmpeg AAC of the track"

Result = dict[str, Any]  # wall_s, cpu_s, peak_rss_mib (and runs, for a measured command)


def ffmpeg_exe() -> str:
    """The system ffmpeg if there is one, else imageio-ffmpeg's binary."""
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def v_fov(h_fov: float, width: int, height: int) -> float:
    """Vertical FOV (degrees) of a gnomonic view of ``h_fov`` with square pixels."""
    return math.degrees(2.0 * math.atan(math.tan(math.radians(h_fov) / 2.0) * height / width))


def path_angles(t: float, seconds: float) -> tuple[float, float]:
    """The moving path: one slow yaw sweep (±60°) and a gentle pitch wave over the clip."""
    return 40.0 + 60.0 * math.sin(2.0 * math.pi * t / max(seconds, 1.0)), -15.0 + 10.0 * math.sin(2.0 * math.pi * t / 4.0)


def timed(cmd: list[str]) -> Result:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MiB) of a child process (run in the
    repository root), measured by this script's ``--rss`` wrapper around it; its stderr passes through."""
    res = subprocess.run([sys.executable, __file__, "--rss", "--", *cmd], check=True, stdout=subprocess.PIPE,
                         text=True, cwd=REPO)
    rss, cpu, wall = res.stdout.strip().splitlines()[-1].split()
    return {"wall_s": float(wall), "cpu_s": float(cpu), "peak_rss_mib": int(rss)}


def rss_wrapper(cmd: list[str]) -> None:
    """Run ``cmd``; print its peak RSS in MiB, CPU and wall seconds (RUSAGE_CHILDREN of this small process)."""
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(ru.ru_maxrss // 1024, f"{ru.ru_utime + ru.ru_stime:.3f}", f"{wall:.3f}")


def run_rounds(cmds: dict[str, list[str]], runs: int) -> dict[str, Result]:
    """Every command ``runs`` times, the commands alternating (round r starts r commands later, so that
    no contender always runs in the same place): per command the medians of wall and CPU seconds, the
    largest peak RSS and each run (in round order)."""
    done: dict[str, list[Result]] = {name: [] for name in cmds}
    names = list(cmds)
    for r in range(runs):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            done[name].append(res := timed(cmds[name]))
            print(f"  run {r + 1}/{runs}  {name}: {res['wall_s']:.2f} s, {res['cpu_s']:.2f} CPU s", flush=True)
    return {name: {"wall_s": statistics.median(x["wall_s"] for x in rs),
                   "cpu_s": statistics.median(x["cpu_s"] for x in rs),
                   "peak_rss_mib": max(x["peak_rss_mib"] for x in rs), "runs": rs} for name, rs in done.items()}


def _combine(parts: tuple[Result, ...], sign: tuple[float, ...]) -> Result:
    """Signed sums of wall and CPU seconds, of the medians and round by round (peak RSS: the largest)."""
    out: Result = {key: sum(g * p[key] for g, p in zip(sign, parts)) for key in ("wall_s", "cpu_s")}
    out["peak_rss_mib"] = max(p["peak_rss_mib"] for p in parts)
    if all("runs" in p for p in parts) and len({len(p["runs"]) for p in parts}) == 1:
        out["runs"] = [_combine(rs, sign) for rs in zip(*(p["runs"] for p in parts))]
    return out


def minus(a: Result, b: Result) -> Result:
    """``a``'s times with ``b``'s taken out (peak RSS: ``a``'s)."""
    return {**_combine((a, b), (1.0, -1.0)), "peak_rss_mib": a["peak_rss_mib"]}


def total(*parts: Result) -> Result:
    """The summed times of parts run one after the other (peak RSS: the largest)."""
    return _combine(parts, (1.0,) * len(parts))


def ratio(name: str, num: Result, den: Result, target: float | None) -> dict[str, Any]:
    """CPU (and wall) ratio ``num / den``: with several rounds the median of the rounds' own ratios (a
    contender against its peer of the same round, which drifts less than either alone on a shared
    machine), and their range."""
    pairs = list(zip(num.get("runs", []), den.get("runs", []))) or [(num, den)]
    cpus = [n["cpu_s"] / d["cpu_s"] for n, d in pairs]
    cpu = statistics.median(cpus)
    return {"name": name, "cpu": cpu, "cpu_range": [min(cpus), max(cpus)],
            "wall": statistics.median(n["wall_s"] / d["wall_s"] for n, d in pairs), "target": target,
            "pass": None if target is None else cpu <= target}


def print_section(title: str, rows: list[tuple[str, Result]], ratios: list[dict[str, Any]]) -> None:
    print(f"\n== {title}")
    print(f"{'contender':62s} {'wall s':>8s} {'CPU s':>8s} {'peak RSS MiB':>13s}")
    for name, r in rows:
        print(f"{name:62s} {r['wall_s']:8.2f} {r['cpu_s']:8.2f} {r['peak_rss_mib']:13d}")
    print(f"\n{'ratio (median of the rounds)':62s} {'CPU':>8s} {'range':>11s} {'wall':>6s} {'target (CPU)':>13s}")
    for q in ratios:
        verdict = "" if q["target"] is None else f"<= {q['target']:.2f} {'PASS' if q['pass'] else 'FAIL'}"
        lo, hi = q["cpu_range"]
        print(f"{q['name']:62s} {q['cpu']:8.2f} {lo:5.2f}-{hi:<5.2f} {q['wall']:6.2f} {verdict:>13s}")


# ---------------------------------------------------------------------------------- light and 4k
@dataclass(frozen=True)
class RenderSection:
    """A generated clip, the output settings and the targets of the ffmpeg-fixed-view ratios."""

    key: str
    title: str
    seconds: float
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    preset: str
    crf: int
    fixed_target: float | None  # pan360 fixed / ffmpeg fixed view
    moving_target: float | None  # pan360 moving / ffmpeg fixed view

    @property
    def size(self) -> str:
        return f"{self.out_size[0]}x{self.out_size[1]}"

    def x264(self) -> list[str]:
        return ["-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf), "-pix_fmt", "yuv420p"]


def render_sections(quick: bool) -> dict[str, RenderSection]:
    light_in, heavy_in, out = ((960, 480), (960, 480), (320, 180)) if quick else ((3840, 1920), (3840, 1920), (1280, 720))
    return {
        "light": RenderSection("light", "light clip (testsrc2 drifting, 440 Hz tone), veryfast crf 23, audio kept",
                               1.0 if quick else 8.0, light_in, out, "veryfast", 23, None, None),
        "4k": RenderSection("4k", "noisy 4K clip (~47 Mb/s), medium crf 20, no audio",
                            1.0 if quick else 10.0, heavy_in, out, "medium", 20, 1.0, 1.15),
    }


def generate_noisy(ff: str, out: Path, seconds: float, width: int, height: int, fps: int = 30) -> None:
    """An equirect test clip: moving test pattern plus noise (so it does not compress to nothing)."""
    src = f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds:g}"
    # alls=5 gives ~47 Mb/s at 4K30, the bitrate of real 360° camera files.
    cmd = [ff, "-v", "error", "-y", "-f", "lavfi", "-i", src, "-vf", "noise=alls=5:allf=t",
           "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-an", str(out)]
    subprocess.run(cmd, check=True)


def section_clip(spec: RenderSection, ff: str, work: Path) -> Path:
    """The section's clip in ``work``, generated when absent."""
    from profile_render import make_light_clip

    w, h = spec.in_size
    name = "light" if spec.key == "light" else "equirect"
    clip = work / f"{name}_{w}x{h}_{spec.seconds:g}s.mp4"
    if not clip.exists():
        print(f"generating {clip} ...", flush=True)
        if spec.key == "light":
            make_light_clip(clip, spec.seconds, w, h)
        else:
            generate_noisy(ff, clip, spec.seconds, w, h)
    return clip


def write_paths(info: Any, spec: RenderSection, work: Path) -> dict[str, Path]:
    """The fixed and the moving trajectory JSON, one entry per frame of the clip."""
    import numpy as np

    from pan360.paths import CameraPath, constant_path, save_path

    (w, h), t, fps = spec.out_size, info.frame_times, float(info.fps)
    yaw, pitch = np.array([path_angles(float(x), info.duration) for x in t]).T
    n = len(t)
    paths = {"fixed": constant_path(t, 40.0, -15.0, 90.0, w, h, fps),
             "moving": CameraPath(t, yaw, pitch, np.zeros(n), np.full(n, 90.0), np.full(n, v_fov(90.0, w, h)), w, h, fps)}
    files = {k: work / f"{spec.key}_{k}_path_{spec.size}.json" for k in paths}
    for k, path in paths.items():
        save_path(path, files[k])
    return files


def dump_pictures(info: Any, path_file: Path, size: tuple[int, int], raw: Path, device: str) -> None:
    """pan360's pictures along ``path_file``, as raw yuv420p: the path resampled as the CLI's ``--path``
    resamples it, every frame through the ``Renderer`` that ``render_video`` builds."""
    import numpy as np

    from pan360.media import iter_frames
    from pan360.pipeline import given_path
    from pan360.rendering import path_indices
    from pan360.reproject import Renderer

    cam = given_path(path_file, info, size)
    renderer = Renderer(info.eye_width, info.eye_height, cam.width, cam.height, device=device, projection=info.layout)
    idx = path_indices(cam.times, info.frame_times)
    with open(raw, "wb") as f:
        for n, (_, planes) in enumerate(iter_frames(info, fmt="yuv420p")):
            f.writelines(np.ascontiguousarray(p).tobytes() for p in renderer.render_yuv420(*planes, cam.view(int(idx[n]))))


def render_commands(spec: RenderSection, ff: str, clip: Path, paths: dict[str, Path], raws: dict[str, Path],
                    fps: str, wav: Path | None, out: Path, device: str) -> dict[str, list[str]]:
    """The section's commands, in the order the first round runs them."""
    w, h = spec.out_size
    fixed_vf = f"v360=e:flat:yaw=40:pitch=-15:h_fov=90:v_fov={v_fov(90.0, w, h):.6f}:w={w}:h={h}"
    audio = ["-c:a", "aac"] if wav else ["-an"]
    cmds = {FF_FIXED: [ff, "-v", "error", "-y", "-i", str(clip), "-vf", fixed_vf, *spec.x264(), *audio,
                       str(out / f"{spec.key}_ffmpeg_fixed.mp4")]}
    for k, path in paths.items():
        cmds[PAN[k]] = [sys.executable, "-m", "pan360", "render", str(clip), "-o", str(out / f"{spec.key}_pan360_{k}.mp4"),
                        "--path", str(path), "--size", spec.size, "--preset", spec.preset, "--crf", str(spec.crf),
                        "--device", device, "--overwrite", "-q"]

    def raw_in(f: Path) -> list[str]:
        return ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", spec.size, "-r", fps, "-i", str(f)]

    cmds[DECODE] = [ff, "-v", "error", "-i", str(clip), "-f", "null", "-"]
    cmds[READ_RAW] = [ff, "-v", "error", *raw_in(raws["moving"]), "-f", "null", "-"]
    for k, raw in raws.items():
        cmds[X264[k]] = [ff, "-v", "error", "-y", *raw_in(raw), *spec.x264(), str(out / f"{spec.key}_x264_{k}.mp4")]
    if wav:
        cmds[READ_WAV] = [ff, "-v", "error", "-i", str(wav), "-f", "null", "-"]
        cmds[AAC] = [ff, "-v", "error", "-y", "-i", str(wav), "-c:a", "aac", str(out / f"{spec.key}_aac.m4a")]
    return cmds


def render_section(spec: RenderSection, ff: str, work: Path, runs: int, device: str) -> dict[str, Any]:
    """Time one light/4k section; print its table; return its numbers."""
    from pan360.media import probe

    clip = section_clip(spec, ff, work)
    info = probe(clip)
    out = work / "out"
    out.mkdir(exist_ok=True)
    paths = write_paths(info, spec, work)
    raws = {k: work / f"{spec.key}_{k}_pictures.yuv" for k in paths}
    wav = work / f"{spec.key}_track.wav" if info.audio is not None else None
    try:
        print(f"{spec.key}: rendering pan360's pictures for ffmpeg's x264 (untimed) ...", flush=True)
        for k in paths:
            dump_pictures(info, paths[k], spec.out_size, raws[k], device)
        if wav:
            subprocess.run([ff, "-v", "error", "-y", "-i", str(clip), "-vn", str(wav)], check=True)
        res = run_rounds(render_commands(spec, ff, clip, paths, raws, str(info.fps), wav, out, device), runs)
    finally:
        for f in (*raws.values(), wav):
            if f:
                f.unlink(missing_ok=True)

    x264 = {k: minus(res[X264[k]], res[READ_RAW]) for k in X264}
    rows = [(name, res[name]) for name in (FF_FIXED, PAN["fixed"], PAN["moving"], DECODE, READ_RAW)]
    rows += [(f"{X264[k]} (raw read taken out)", x264[k]) for k in X264]
    aac = []
    if wav:
        aac = [minus(res[AAC], res[READ_WAV])]
        rows += [(READ_WAV, res[READ_WAV]), (f"{AAC} (wav read taken out)", aac[0])]
    floor = {k: total(res[DECODE], x264[k], *aac) for k in X264}
    rows += [(f"floor, {k} pictures: ffmpeg decode + x264{' + AAC' if wav else ''}", floor[k]) for k in X264]
    ratios = [*(ratio(f"{PAN[k]} / floor of its pictures", res[PAN[k]], floor[k], 1.05) for k in PAN),
              ratio(f"{PAN['fixed']} / ffmpeg fixed view", res[PAN["fixed"]], res[FF_FIXED], spec.fixed_target),
              ratio(f"{PAN['moving']} / ffmpeg fixed view", res[PAN["moving"]], res[FF_FIXED], spec.moving_target),
              # Context: what ffmpeg's own complete renderer spends above the same floor.
              ratio("ffmpeg v360 fixed view / floor of pan360's fixed pictures", res[FF_FIXED], floor["fixed"], None)]
    print_section(f"{spec.title}: {info.eye_width}x{info.eye_height}, {info.n_frames} frames -> {spec.size}",
                  rows, ratios)
    return {"clip": str(clip), "size": spec.size, "preset": spec.preset, "crf": spec.crf, "frames": info.n_frames,
            "measured": res, "derived": {"x264": x264, "aac": aac[0] if aac else None, "floor": floor},
            "ratios": ratios}


# ------------------------------------------------------------------------------------------ full
def make_foa_clip(ff: str, out: Path, seconds: float, width: int, height: int) -> None:
    """A small equirect clip with 4-channel ambiX audio: a 440 Hz tone from 45° to the left."""
    tone = "sin(2*PI*440*t)"
    foa = f"aevalsrc=exprs=0.2*{tone}|0.14*{tone}|0|0.14*{tone}:s=48000:d={seconds:g}:c=quad"  # W Y Z X
    subprocess.run([ff, "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=30:duration={seconds:g}",
                    "-f", "lavfi", "-i", foa, "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(out)], check=True)


def full_section(ff: str, work: Path, runs: int, clip: Path | None, quick: bool) -> dict[str, Any] | None:
    """Time the default render of a real FOA clip against ffmpeg's fixed view; print its table."""
    import full_render

    from pan360.media import probe

    if clip is not None:
        clip = clip.resolve()
    elif quick:
        clip = work / "foa_960x480_1s.mp4"
        if not clip.exists():
            make_foa_clip(ff, clip, 1.0, 960, 480)
    elif not full_render.REAL.is_dir():
        print(f"\n== full render: skipped, no {full_render.REAL} (give --full-input)")
        return None
    else:
        clip = full_render.default_clip()
    info = probe(clip)
    out = work / "out"
    out.mkdir(exist_ok=True)
    (w, h), cmds = full_render.commands(clip, info, out)
    res = run_rounds(cmds, runs)
    ff_res = res[full_render.FFMPEG]
    rows = [(name, res[name]) for name in (full_render.PAN_DEFAULT, full_render.PAN_FOA, full_render.PAN_NONE,
                                           full_render.FFMPEG)]
    ratios = [ratio(f"{name.strip()} / ffmpeg fixed view", res[name], ff_res,
                    1.3 if name == full_render.PAN_DEFAULT else None)
              for name in (full_render.PAN_DEFAULT, full_render.PAN_FOA, full_render.PAN_NONE)]
    print_section(f"full default render: {clip.name}, {info.eye_width}x{info.eye_height}, {info.duration:.1f} s "
                  f"-> {w}x{h}, medium crf 20, audio", rows, ratios)
    return {"clip": str(clip), "size": f"{w}x{h}", "measured": res, "ratios": ratios}


# ------------------------------------------------------------------------------------------ cuda
def cuda_section(work: Path, quick: bool) -> dict[str, Any] | None:
    """bench/cuda_timing.py's measurements in a child process, when there is a CUDA device."""
    try:
        import torch
    except ImportError:
        torch = None
    if torch is None or not torch.cuda.is_available():
        print("\n== CUDA: skipped, no GPU (torch.cuda.is_available() is False)")
        return None
    out = work / "cuda_timing.json"
    cmd = [sys.executable, str(BENCH / "cuda_timing.py"), "--json", str(out)]
    subprocess.run(cmd + (["--seconds", "1", "--in-size", "960x480"] if quick else []), check=True, cwd=REPO,
                   stdout=subprocess.DEVNULL)
    res = json.loads(out.read_text())
    rows = [("render_video, CPU", res["render_cpu_s"]), ("render_video, CUDA (first: with CUDA start-up)", res["render_cuda_s"]),
            (f"network_maps small, CUDA ({res['net_small_frames']} maps)", res["net_small_cuda_s"]),
            (f"network_maps vgg16, CUDA ({res['net_vgg16_frames']} maps)", res["net_vgg16_cuda_s"]),
            ("network_maps small, CPU, default rate", [res["net_small_cpu_default_rate_s"]])]
    print(f"\n== CUDA ({res['device']}), bench/cuda_timing.py, wall s; clip {res['clip']}, render to 1280x720 medium crf 20")
    print(f"{'measurement':62s} {'1st':>8s} {'2nd':>8s}")
    for name, walls in rows:
        print(f"{name:62s} " + " ".join(f"{x:8.2f}" for x in walls))
    for device in ("cpu", "cuda"):
        print(f"render_video busy s per stage, {device}: " + ", ".join(f"{k} {v}" for k, v in res[f"stages_{device}"].items()))
    return res


# ------------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    ap.add_argument("--runs", type=int, default=1, help="runs of each contender, alternating (medians reported)")
    ap.add_argument("--workdir", type=Path, help="keep the generated clips here and reuse them (default: temporary)")
    ap.add_argument("--json", type=Path, help="write the numbers to this JSON file")
    ap.add_argument("--device", default="auto", help="the pan360 --path renders' device: auto, cpu or cuda")
    ap.add_argument("--full-input", type=Path, help="the full section's clip instead of ../shared's")
    ap.add_argument("--quick", action="store_true", help="tiny inputs: a smoke test of the same code")
    args = ap.parse_args()
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if unknown := sorted(set(sections) - set(SECTIONS)):
        ap.error(f"unknown section(s): {', '.join(unknown)}")
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    sys.path[:0] = [str(REPO), str(BENCH)]

    with tempfile.TemporaryDirectory(prefix="pan360-bench-") as tmp:
        work = (args.workdir or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        ff = ffmpeg_exe()
        # pan360's modules run from bytecode, as in a user's installation: with PYTHONDONTWRITEBYTECODE
        # set (this sandbox sets it) every child would compile them again (~0.05-0.1 CPU s a run).
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "pan360")], check=True)
        load0 = os.getloadavg()
        print(f"pan360 benchmark{' (QUICK: tiny inputs, verdicts meaningless)' if args.quick else ''}: sections "
              f"{', '.join(sections)}; {args.runs} run(s); {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"ffmpeg {ff}; workdir {work}")
        print(f"load average before: {' '.join(f'{x:.2f}' for x in load0)}", flush=True)
        results: dict[str, Any] = {"quick": args.quick, "runs": args.runs, "device": args.device, "ffmpeg": ff,
                                   "cpus": os.cpu_count(), "python": platform.python_version(), "loadavg_before": load0}
        specs = render_sections(args.quick)
        for s in sections:
            if s in specs:
                results[s] = render_section(specs[s], ff, work, args.runs, args.device)
            elif s == "full":
                results[s] = full_section(ff, work, args.runs, args.full_input, args.quick)
            else:
                results[s] = cuda_section(work, args.quick)
        results["loadavg_after"] = load1 = os.getloadavg()
        print(f"\nload average before / after: {' '.join(f'{x:.2f}' for x in load0)} / "
              f"{' '.join(f'{x:.2f}' for x in load1)} (1, 5, 15 min) on {os.cpu_count()} cores")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--rss" and sys.argv[2] == "--":
        rss_wrapper(sys.argv[3:])
    else:
        main()
