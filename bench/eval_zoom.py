"""Does ``--zoom`` help? The same analyses with and without it, on generated scenes with ground truth.

Per scene (bench/eval_scenes.py's generator and seeds; FOA saliency, analysis only): the share of
frames with the sounding source in view, away from switches (> 0.5 s, the acceptance metric) and
around them (<= 0.5 s, where a wider view during a pan could help), and the mean horizontal FOV while
the source is in view (smaller: the source is bigger in the frame).

    python bench/eval_zoom.py [--n 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_scenes import SEED_BASE  # noqa: E402

from pan360 import metrics, pipeline  # noqa: E402
from pan360.synthetic import random_scene, write_scene  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5)
    args = ap.parse_args()
    print("| scene | in view away from switches, off / zoom | near switches, off / zoom | mean h_fov in view, off / zoom |")
    print("|---|---|---|---|")
    totals = {k: [] for k in ("away_off", "away_on", "near_off", "near_on")}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.n):
            seed = SEED_BASE + i
            rng = np.random.default_rng([seed, 99])
            noise_db = float(rng.uniform(-6.0, 0.0))
            scene = random_scene(seed, width=1280, height=640, duration=float(rng.uniform(8.0, 12.0)),
                                 diffuse_noise_db=noise_db, reverb=bool(i % 2))
            video = Path(tmp) / f"s{seed}.mp4"
            gt = write_scene(scene, video, crf=23, preset="veryfast")
            row = {}
            for zoom in (False, True):
                path = pipeline.analyse(video, saliency="foa", zoom=zoom, framing=False).path
                inside = metrics.in_view(path, gt.yaw, gt.pitch)
                away = metrics.scored_frames(path.times, gt.switch_times, 0.5) & (gt.sounding >= 0)
                near = ~metrics.scored_frames(path.times, gt.switch_times, 0.5) & (gt.sounding >= 0)
                k = "on" if zoom else "off"
                row[f"away_{k}"], row[f"near_{k}"] = inside[away], inside[near]
                row[f"fov_{k}"] = float(path.h_fov[inside].mean())
                totals[f"away_{k}"].append(inside[away])
                totals[f"near_{k}"].append(inside[near])

            def pct(a: np.ndarray) -> str:
                return f"{100 * a.mean():.1f}%" if a.size else "-"
            print(f"| {seed} | {pct(row['away_off'])} / {pct(row['away_on'])} | {pct(row['near_off'])} / "
                  f"{pct(row['near_on'])} | {row['fov_off']:.0f} / {row['fov_on']:.0f} |", flush=True)
    cat = {k: np.concatenate(v) for k, v in totals.items()}
    print(f"| all | {100 * cat['away_off'].mean():.1f}% / {100 * cat['away_on'].mean():.1f}% | "
          f"{100 * cat['near_off'].mean():.1f}% / {100 * cat['near_on'].mean():.1f}% | |")


if __name__ == "__main__":
    main()
