"""Acceptance check of the whole pipeline on held-out generated 360° scenes.

For each of N random scenes (pan360.synthetic, seeds never used by the example or the tests; several
objects, one sounding at a time, switching every 2.5–4 s, diffuse noise at 0–6 dB SNR, reverberation
in every other scene) this writes the scene as an MP4 with ambiX audio, runs pan360 on that file with
default settings and scores the camera path against the exact truth with pan360.metrics:

- in-view: share of frames, farther than 0.5 s from a switch, whose sounding source projects inside
  the rendered frame (target >= 95 %);
- camera angular speed, median and 99th percentile (target p99 <= 120 °/s);
- mean angular error between the view centre and the source.

    python bench/eval_scenes.py                    # 5 scenes, table
    python bench/eval_scenes.py --n 10 --json -    # JSON on stdout
    python bench/eval_scenes.py --keep out/        # keep the scenes, truths and rendered outputs

By default each scene goes through the public API, pan360.pipeline.render (which also renders the
NFoV video), and is scored from its --trajectory-out file; ``--analysis-only`` runs only the analysis
step render starts from (pan360.pipeline.analyse: probe -> audio -> saliency maps -> trajectory), which
is much faster.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pan360 import metrics  # noqa: E402
from pan360.paths import CameraPath, load_path  # noqa: E402
from pan360.synthetic import GroundTruth, random_scene, write_ground_truth, write_scene  # noqa: E402

SEED_BASE = 100_000  # held out: the example is hand-made, the tests use seeds < 100
TARGET_IN_VIEW, TARGET_P99 = 0.95, 120.0


def analyse(video: Path) -> CameraPath:
    """Camera path of ``video`` with the pipeline's defaults (:func:`pan360.pipeline.analyse`), without
    rendering the NFoV video."""
    from pan360 import pipeline

    return pipeline.analyse(video).path


def run_pipeline(video: Path, out_dir: Path, preset: str) -> CameraPath:
    """Camera path from the public API: pan360.pipeline.render with default settings (the x264 preset
    only changes encoding speed), read back from its --trajectory-out file."""
    from pan360 import pipeline

    traj = out_dir / f"{video.stem}_trajectory.json"
    pipeline.render(video, out_dir / f"{video.stem}_render.mp4", trajectory_out=traj, preset=preset, overwrite=True)
    return load_path(traj)


def score(path: CameraPath, gt: GroundTruth) -> dict:
    """Per-frame and summary numbers of one scene."""
    if len(path.times) != len(gt.times):
        raise SystemExit(f"camera path has {len(path.times)} frames, the scene {len(gt.times)}")
    rep = metrics.trajectory_report(path, gt.yaw, gt.pitch, gt.switch_times, margin=0.5)
    keep = metrics.scored_frames(path.times, gt.switch_times, 0.5) & (gt.sounding >= 0)
    return {
        "report": rep.as_dict(),
        "inside": metrics.in_view(path, gt.yaw, gt.pitch)[keep],
        "error": metrics.angular_error(path, gt.yaw, gt.pitch)[keep],
        "speed": metrics.angular_speed(path),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description="pan360 acceptance check on held-out generated scenes")
    ap.add_argument("--n", type=int, default=5, help="number of scenes (default %(default)s)")
    ap.add_argument("--first-seed", type=int, default=SEED_BASE, help="seed of the first scene")
    ap.add_argument("--size", default="1280x640", help="equirect size WxH (default %(default)s)")
    ap.add_argument("--duration", type=float, nargs=2, default=(8.0, 12.0), metavar=("MIN", "MAX"),
                    help="scene duration range in seconds")
    ap.add_argument("--analysis-only", action="store_true", help="skip the NFoV rendering (maps -> trajectory only)")
    ap.add_argument("--preset", default="veryfast", help="x264 preset of the rendered output (default %(default)s)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON ('-' = stdout)")
    ap.add_argument("--keep", type=Path, metavar="DIR", help="keep scenes, truths and outputs in DIR")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    use_pipeline = not args.analysis_only
    log = sys.stderr if args.json == "-" else sys.stdout

    tmp = tempfile.TemporaryDirectory(prefix="pan360-eval-")
    work = args.keep or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    rows, pooled = [], {"inside": [], "error": [], "speed": []}
    print(f"mode: {'pan360.pipeline.render' if use_pipeline else 'analysis only (maps -> trajectory)'}", file=log)
    head = f"{'seed':>7} {'dur':>5} {'obj':>3} {'sw':>3} {'snr':>5} {'rev':>3} {'in-view':>8} {'err°':>6} " \
           f"{'med°/s':>7} {'p99°/s':>7} {'max°/s':>7} {'time':>6}"
    print(head, file=log)
    for i in range(args.n):
        seed = args.first_seed + i
        rng = np.random.default_rng([seed, 99])
        noise_db = float(rng.uniform(-6.0, 0.0))
        scene = random_scene(seed, width=width, height=height, duration=float(rng.uniform(*args.duration)),
                             diffuse_noise_db=noise_db, reverb=bool(i % 2))
        video = work / f"scene_{seed}.mp4"
        gt = write_scene(scene, video, crf=23, preset="veryfast")
        write_ground_truth(gt, work / f"scene_{seed}_truth.json")
        t0 = time.perf_counter()
        path = run_pipeline(video, work, args.preset) if use_pipeline else analyse(video)
        elapsed = time.perf_counter() - t0
        s = score(path, gt)
        for k in pooled:
            pooled[k].append(s[k])
        r = s["report"]
        row = {"seed": seed, "duration": scene.duration, "objects": len(scene.objects),
               "switches": len(gt.switch_times), "snr_db": -noise_db, "reverb": scene.reverb,
               "seconds": elapsed, **r}
        rows.append(row)
        print(f"{seed:>7} {scene.duration:5.1f} {row['objects']:>3} {row['switches']:>3} {-noise_db:5.1f} "
              f"{'y' if scene.reverb else 'n':>3} {100 * r['in_view']:7.1f}% {r['mean_angular_error']:6.1f} "
              f"{r['median_speed']:7.1f} {r['p99_speed']:7.1f} {r['max_speed']:7.1f} {elapsed:5.1f}s", file=log)
    inside = np.concatenate(pooled["inside"])
    speed = np.concatenate(pooled["speed"])
    overall = {
        "in_view": float(inside.mean()), "frames_scored": int(inside.size),
        "mean_angular_error": float(np.concatenate(pooled["error"]).mean()),
        "median_speed": float(np.median(speed)), "p99_speed": float(np.percentile(speed, 99)),
        "max_speed": float(speed.max()), "worst_scene_in_view": float(min(r["in_view"] for r in rows)),
    }
    ok = overall["in_view"] >= TARGET_IN_VIEW and overall["p99_speed"] <= TARGET_P99
    overall["pass"] = ok
    print(f"{'all':>7} {'':>5} {'':>3} {'':>3} {'':>5} {'':>3} {100 * overall['in_view']:7.1f}% "
          f"{overall['mean_angular_error']:6.1f} {overall['median_speed']:7.1f} {overall['p99_speed']:7.1f} "
          f"{overall['max_speed']:7.1f}", file=log)
    print(f"targets: in-view >= {100 * TARGET_IN_VIEW:.0f}% (frames > 0.5 s from a switch), p99 speed <= "
          f"{TARGET_P99:.0f} °/s -> {'PASS' if ok else 'FAIL'}", file=log)
    if args.json:
        doc = json.dumps({"mode": "pipeline" if use_pipeline else "analysis", "scenes": rows, "overall": overall},
                         indent=1)
        if args.json == "-":
            print(doc)
        else:
            Path(args.json).write_text(doc)
    tmp.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
