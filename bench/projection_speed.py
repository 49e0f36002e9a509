"""Rendering speed from cubemap / EAC frames against equirect frames (:class:`pan360.reproject.Renderer`).

Makes one 3840x1920 equirect picture (a real panorama from ../shared/media/equirect_images when that
folder is there, resized; else a smooth, detailed synthetic one), converts it with ffmpeg's v360
(imageio_ffmpeg's binary) to each cube layout, straight to yuv420p as a decoder would deliver it:

- ``eac`` at v360's default size for this input (3840x2160) and at 3:2 (2880x1920);
- ``c3x2`` (2880x1920) and ``c6x1`` (5760x960), v360's default sizes: faces of 960 pixels, i.e. the
  equirect's 3840 / 4.

Then times ``Renderer.render_yuv420`` to 1280x720 (90° FOV) over a moving view (yaw sweeping the full
circle, pitch and roll varying: every frame a new view, so every frame new tables), ``--frames``
frames, for all layouts in the same process, the repetitions interleaved (the layout order rotates
each repetition) and the median taken; also the tables alone (Y + chroma: what changes with the
layout besides the remap's memory access). Ratios are layout / equirect.

    python bench/projection_speed.py [--frames 100] [--reps 7] [--backend opencv|torch] [--json out.json]

Decoding is not timed (the frames are in memory): the source picture is still, the view moves.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pan360 import geometry as geo  # noqa: E402
from pan360.reproject import Renderer  # noqa: E402

EQ_SIZE = (3840, 1920)
OUT_SIZE = (1280, 720)
H_FOV = 90.0
SHARED = Path(__file__).resolve().parents[2] / "shared" / "media" / "equirect_images"
# (name, v360 output, size or None for v360's default)
LAYOUTS = [
    ("equirect", "equirect", None),
    ("eac", "eac", None),
    ("eac 3:2", "eac", (2880, 1920)),
    ("c3x2", "c3x2", None),
    ("c6x1", "c6x1", None),
]


def synthetic_panorama(w: int, h: int) -> np.ndarray:
    """Smooth colours plus detail at several scales (not a flat test card), RGB uint8."""
    rng = np.random.default_rng(0)
    img = np.zeros((h, w, 3), np.float32)
    for scale, amp in ((16, 60.0), (64, 40.0), (256, 25.0), (1024, 15.0)):
        noise = rng.normal(0.0, 1.0, (max(2, scale // 2), scale, 3)).astype(np.float32)
        img += amp * cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(128.0 + img, 0, 255).astype(np.uint8)


def source_picture() -> tuple[np.ndarray, str]:
    for name in ("pannellum_examplepano.jpg", "aframe_puydesancy.jpg"):
        path = SHARED / name
        if path.is_file():
            img = cv2.imread(str(path))
            if img is not None:
                return cv2.resize(img, EQ_SIZE, interpolation=cv2.INTER_AREA)[..., ::-1].copy(), name
    return synthetic_panorama(*EQ_SIZE), "synthetic"


def to_yuv420(ff: str, png: Path, proj: str, size: tuple[int, int] | None) -> tuple[np.ndarray, ...]:
    """The picture as ``proj`` in yuv420p planes (Y, U, V), converted by v360 (equirect: format only)."""
    vf = "format=yuv420p" if proj == "equirect" else f"v360=e:{proj}" + (f":w={size[0]}:h={size[1]}" if size else "")
    probe = subprocess.run([ff, "-v", "error", "-i", str(png), "-vf", vf, "-frames:v", "1", "-f", "rawvideo",
                            "-pix_fmt", "yuv420p", "-"], capture_output=True, check=True).stdout
    if size is None:  # ask ffmpeg for the default size
        info = subprocess.run([ff, "-v", "info", "-i", str(png), "-vf", vf, "-frames:v", "1", "-f", "null", "-"],
                              capture_output=True, text=True).stderr
        line = [x for x in info.splitlines() if "Video:" in x and "Stream #0:0" in x][-1]
        dims = next(tok for tok in line.replace(",", " ").split() if "x" in tok and tok.split("x")[0].isdigit())
        size = (int(dims.split("x")[0]), int(dims.split("x")[1]))
    w, h = size
    cw, ch = (w + 1) // 2, (h + 1) // 2
    buf = np.frombuffer(probe, np.uint8)
    assert buf.size == w * h + 2 * cw * ch, (proj, size, buf.size)
    y = buf[: w * h].reshape(h, w).copy()
    u = buf[w * h : w * h + cw * ch].reshape(ch, cw).copy()
    v = buf[w * h + cw * ch :].reshape(ch, cw).copy()
    return y, u, v


def views(n: int) -> list[geo.View]:
    vf = geo.v_fov_for(H_FOV, *OUT_SIZE)
    return [geo.View(-180.0 + 360.0 * i / n + 0.37, 35.0 * math.sin(2 * math.pi * i / n * 3) + 10.0 * math.sin(i / 5.0),
                     5.0 * math.sin(i / 7.0), H_FOV, vf) for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--backend", default="opencv", choices=["opencv", "torch"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import imageio_ffmpeg

    ff = imageio_ffmpeg.get_ffmpeg_exe()
    picture, origin = source_picture()
    sources = {}
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "equirect.png"
        cv2.imwrite(str(png), picture[..., ::-1])
        for name, proj, size in LAYOUTS:
            sources[name] = (proj, to_yuv420(ff, png, proj, size))
    path = views(args.frames)
    renderers = {}
    for name, (proj, (y, u, v)) in sources.items():
        r = Renderer(y.shape[1], y.shape[0], *OUT_SIZE, device=args.device, backend=args.backend, projection=proj)
        r.render_yuv420(y, u, v, path[0])  # warm-up (torch: kernels, caches)
        renderers[name] = r
    names = list(sources)
    render_ms: dict[str, list[float]] = {n: [] for n in names}
    table_ms: dict[str, list[float]] = {n: [] for n in names}
    sync = None
    if args.backend == "torch" and "cuda" in args.device:
        import torch

        sync = torch.cuda.synchronize
    for rep in range(args.reps):
        order = names[rep % len(names):] + names[: rep % len(names)]
        for name in order:
            r, (proj, (y, u, v)) = renderers[name], sources[name]
            t0 = time.perf_counter()
            for vw in path:
                r.render_yuv420(y, u, v, vw)
            if sync:
                sync()
            render_ms[name].append((time.perf_counter() - t0) * 1e3 / len(path))
            if args.backend == "opencv":
                sizes = [(y.shape[1], y.shape[0]), (u.shape[1], u.shape[0]), (v.shape[1], v.shape[0])]
                t0 = time.perf_counter()
                for vw in path:
                    r._cache_key = None  # the tables of a new view, as render_yuv420 computes them
                    r._cpu_tables(vw, sizes, [False, True, True])
                table_ms[name].append((time.perf_counter() - t0) * 1e3 / len(path))
    med = {n: float(np.median(render_ms[n])) for n in names}
    tmed = {n: float(np.median(table_ms[n])) if table_ms[n] else math.nan for n in names}
    print(f"source: {origin}, output {OUT_SIZE[0]}x{OUT_SIZE[1]} at {H_FOV:g}°, {args.frames} moving-view frames, "
          f"{args.reps} interleaved repetitions, backend {args.backend} on {args.device} (medians, ms per frame)")
    print(f"{'layout':10s} {'frame':>11s} {'render ms':>10s} {'ratio':>6s} {'tables ms':>10s} {'ratio':>6s} "
          f"{'spread':>12s}")
    rows = []
    for name in names:
        y = sources[name][1][0]
        lo, hi = min(render_ms[name]), max(render_ms[name])
        row = {"layout": name, "size": [int(y.shape[1]), int(y.shape[0])], "render_ms": med[name],
               "render_ratio": med[name] / med["equirect"], "tables_ms": tmed[name],
               "tables_ratio": tmed[name] / tmed["equirect"], "render_ms_all": render_ms[name],
               "tables_ms_all": table_ms[name]}
        rows.append(row)
        print(f"{name:10s} {y.shape[1]:>5d}x{y.shape[0]:<5d} {med[name]:10.2f} {row['render_ratio']:6.3f} "
              f"{tmed[name]:10.2f} {row['tables_ratio']:6.3f} {lo:5.2f}-{hi:5.2f}")
    if args.json:
        args.json.write_text(json.dumps({"source": origin, "frames": args.frames, "reps": args.reps,
                                         "backend": args.backend, "device": args.device, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
