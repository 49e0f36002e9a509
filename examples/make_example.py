"""Make examples/example.mp4: a generated 12 s 360° scene with first-order ambisonic audio.

Four objects around the viewer, one sounding at a time (it brightens and pulses while it sounds):
a drum, then a bell 180° behind it (a fast pan), then a bird that flies across the front while it
sings, then an engine 130° away from where the bird ends. Diffuse background noise 4.5 dB below the
sounding object and light reverberation. Everything is generated (pan360.synthetic) and reproducible:
same script, same file contents up to the encoder.

    python examples/make_example.py            # writes examples/example.mp4 and example_truth.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pan360.synthetic import Scene, SceneObject, write_ground_truth, write_scene  # noqa: E402

SEED = 20240917

SCENE = Scene(
    width=1920,
    height=960,
    fps=30.0,
    duration=12.0,
    objects=(
        SceneObject("drum", yaw=-40.0, pitch=-5.0, radius=12.0, seed=SEED + 1),
        SceneObject("bell", yaw=140.0, pitch=15.0, radius=12.0, seed=SEED + 2),
        SceneObject("bird", yaw=100.0, pitch=18.0, radius=10.0, yaw_rate=-10.0, pitch_amp=6.0,
                    pitch_period=3.0, seed=SEED + 3),
        SceneObject("engine", yaw=-120.0, pitch=-20.0, radius=12.0, seed=SEED + 4),
    ),
    schedule=((0, 0.0, 3.0), (1, 3.0, 6.0), (2, 6.0, 9.0), (3, 9.0, 12.0)),
    diffuse_noise_db=-4.5,
    reverb=True,
    seed=SEED,
)


def main() -> None:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=here / "example.mp4", help="output MP4 (default: %(default)s)")
    ap.add_argument("--crf", type=int, default=20, help="x264 quality (default: %(default)s)")
    ap.add_argument("--preset", default="slow", help="x264 preset (default: %(default)s)")
    args = ap.parse_args()
    gt = write_scene(SCENE, args.out, crf=args.crf, preset=args.preset)
    truth = args.out.with_name(args.out.stem + "_truth.json")
    write_ground_truth(gt, truth)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size / 1e6:.2f} MB, {len(gt.times)} frames) and {truth}")


if __name__ == "__main__":
    main()
