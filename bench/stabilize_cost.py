"""What stabilisation costs: the same work with and without a camera rotation (issue 12).

The clip's motion metadata is replaced, in this process, by a camera that turns 90° over the clip while
rolling ±20° (the shared media hold no 360° file with GPMF), and each stage is timed both ways, runs
alternating (off, world, off, world, …) so machine noise mostly cancels:

- **analysis** (``pipeline.analyse``, ``--saliency`` as given): ``world`` adds the FOA field's rotation
  before its maps and the maps' rotation for the network;
- **render** of the *same output pictures*: ``world`` renders the planned world-frame path, each view
  composed with the camera's rotation, with the rotated FOA's stereo; ``off`` renders those composed
  views as a camera-frame path with the plain FOA's stereo. The pictures and the x264 work are the same,
  so the difference is what stabilising adds to the render. (A camera that moves changes the view every
  frame whatever the mode, so the remap tables are rebuilt per frame in both.)

    python bench/stabilize_cost.py [CLIP] [--saliency foa] [--repeat 2]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
from pathlib import Path

import numpy as np

from pan360 import geometry, pipeline
from pan360.media import motion as M
from pan360.media import probe

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = REPO.parent / "shared" / "media" / "real360_foa" / "sphere360gt_0FB9jMXMP8A_19.webm"


def turning_camera(duration: float, rate: float = 30.0) -> M.CameraMotion:
    t = np.arange(0.0, duration + 1.0 / rate, 1.0 / rate)
    q = [M.quat_from_matrix(geometry.rotation_matrix(90.0 * s / duration, 5.0 * np.sin(s), 20.0 * np.sin(2 * s)))
         for s in t]
    return M.CameraMotion(t, M.quat_normalize(np.stack(q)), "gpmf-cori")


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clip", nargs="?", type=Path, default=DEFAULT_CLIP)
    ap.add_argument("--saliency", default="foa")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--size", default="1280x720")
    args = ap.parse_args()
    info = probe(args.clip)
    motion = turning_camera(info.duration)
    M.read_camera_motion = lambda source: motion  # the stand-in metadata (see the docstring)
    from dataclasses import replace

    from pan360.rendering import render_video

    rows: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            for mode in ("off", "world"):
                c0 = cpu()
                a = pipeline.analyse(args.clip, saliency=args.saliency, stabilize=mode, size=args.size)
                rows.setdefault(("analysis", mode), []).append(cpu() - c0)
                if mode == "world":
                    world = a
            stab, path = world.stabilization, world.path
            views = [stab.camera_view(i, path.view(i)) for i in range(len(path))]
            camera_path = replace(path, yaw=np.array([v.yaw for v in views]), pitch=np.array([v.pitch for v in views]),
                                  roll=np.array([v.roll for v in views]), frame="camera")
            for mode in ("off", "world"):
                p, s = (camera_path, None) if mode == "off" else (path, stab)
                audio = pipeline.output_audio(world.track, p, stabilization=s)
                c0 = cpu()
                render_video(world.info, p, Path(tmp) / f"{mode}.mp4", audio=audio, device="cpu", stabilization=s)
                rows.setdefault(("render", mode), []).append(cpu() - c0)
    print(f"{args.clip.name}: {info.n_frames} frames, {info.eye_width}x{info.eye_height} -> {args.size}, "
          f"--saliency {args.saliency}, {args.repeat} runs each, alternating")
    print("| stage | --stabilize off, CPU s | world, CPU s | world / off |")
    print("|---|---|---|---|")
    for stage in ("analysis", "render"):
        off, wor = statistics.median(rows[(stage, "off")]), statistics.median(rows[(stage, "world")])
        print(f"| {stage} | {off:.2f} | {wor:.2f} | {wor / off:.3f} |")


if __name__ == "__main__":
    main()
