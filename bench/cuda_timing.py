"""CUDA timings, for a GPU machine without ffmpeg (so no ratio against v360; see benchmark.py for that).

Generates (with PyAV) a 10 s 3840x1920 30 fps clip (``--seconds``, ``--in-size``) with 4-channel FOA
audio, then times, in this one process:

- ``render_video`` to 1280x720 (libx264 medium, crf 20) along a moving yaw path, on the CPU and on
  CUDA, twice each (the first CUDA run includes CUDA start-up), with each stage's busy seconds;
- ``network_maps`` on CUDA (every frame, autocast) for the ``small`` and ``vgg16`` models (random
  weights: the cost does not depend on them), twice each, and on the CPU at its default rate.

    python bench/cuda_timing.py --json out.json
    python bench/cuda_timing.py --seconds 1 --in-size 960x480     # quick

bench/benchmark.py's ``cuda`` section runs this and prints its numbers as a table.

These produced the CUDA numbers in bench/README.md and README.md (NVIDIA H200, 16 cores).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pan360 import geometry as geo  # noqa: E402
from pan360.media import probe, read_audio  # noqa: E402
from pan360.paths import CameraPath  # noqa: E402
from pan360.rendering import render_video  # noqa: E402

SECONDS, FPS, SIZE, RATE = 10, 30, (3840, 1920), 48000


def make_clip(path: Path, seconds: int = SECONDS, size: tuple[int, int] = SIZE) -> None:
    """A smooth random panorama scrolling sideways, with a noise source moving in yaw (ambiX)."""
    rng = np.random.default_rng(0)
    base = np.clip(rng.normal(128, 50, (240, 480, 3)), 0, 255).astype(np.uint8)
    base = cv2.resize(base, size, interpolation=cv2.INTER_CUBIC)
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
        vs.options = {"preset": "veryfast", "crf": "20"}
        a = c.add_stream("aac", rate=RATE, layout="quad")
        for i in range(seconds * FPS):
            for p in vs.encode(av.VideoFrame.from_ndarray(np.roll(base, 8 * i, axis=1), format="rgb24")):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
        n = RATE * seconds
        s = (0.1 * rng.standard_normal(n)).astype(np.float32)
        az = np.radians(60 * np.sin(np.arange(n) / RATE))
        foa = np.stack([s, s * np.sin(az), 0 * s, s * np.cos(az)]).astype(np.float32)  # W Y Z X
        for k in range(0, n, 1024):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(foa[:, k:k + 1024]), format="fltp", layout="quad")
            f.sample_rate, f.pts = RATE, k
            for p in a.encode(f):
                c.mux(p)
        for p in a.encode(None):
            c.mux(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--seconds", type=int, default=SECONDS, help="length of the generated clip")
    ap.add_argument("--in-size", default=f"{SIZE[0]}x{SIZE[1]}", help="size of the generated clip")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.in_size.lower().split("x"))

    import torch

    if not torch.cuda.is_available():
        sys.exit("cuda_timing.py needs a CUDA device")
    from pan360.nn.model import SoundLocalizer
    from pan360.sources.network import network_maps

    work = Path(tempfile.mkdtemp(prefix="pan360-cuda-"))
    clip = work / "clip4k.mp4"
    t0 = time.perf_counter()
    make_clip(clip, args.seconds, size)
    res: dict = {"device": torch.cuda.get_device_name(), "clip": f"{args.seconds} s {args.in_size}",
                 "clip_gen_s": round(time.perf_counter() - t0, 2)}
    info = probe(clip)
    n = len(info.frame_times)
    yaw = 40 + 60 * np.sin(2 * np.pi * info.frame_times / args.seconds)
    path = CameraPath(info.frame_times, yaw, np.full(n, -15.0), np.zeros(n), np.full(n, 90.0),
                      np.full(n, geo.v_fov_for(90.0, 1280, 720)), 1280, 720, float(info.fps))
    for device in ("cpu", "cuda", "cpu", "cuda"):
        stats: dict = {}
        t0 = time.perf_counter()
        render_video(info, path, work / f"r_{device}.mp4", crf=20, preset="medium", device=device, stats=stats)
        res.setdefault(f"render_{device}_s", []).append(round(time.perf_counter() - t0, 2))
        res[f"stages_{device}"] = {k: round(v, 2) for k, v in stats.items()}
    track = read_audio(info)
    for arch in ("small", "vgg16"):
        torch.manual_seed(0)
        model = SoundLocalizer(arch=arch)
        for _ in range(2):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            maps = network_maps(model, info, track, device="cuda")
            torch.cuda.synchronize()
            res.setdefault(f"net_{arch}_cuda_s", []).append(round(time.perf_counter() - t0, 2))
        res[f"net_{arch}_frames"] = int(maps.shape[0])
    t0 = time.perf_counter()
    network_maps(SoundLocalizer(arch="small"), info, track, device="cpu")
    res["net_small_cpu_default_rate_s"] = round(time.perf_counter() - t0, 2)
    print(json.dumps(res, indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
