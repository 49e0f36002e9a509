"""Generate the synthetic training / held-out data of the bundled sound-localisation weights.

Writes, from :mod:`pan360.synthetic`, a pair set in the Flickr-SoundNet layout that
``pan360 train`` (and ``pan360 eval``) read::

    OUT/frames/<stem>.jpg          whole equirect frame at the model's input size (e.g. 320x160)
    OUT/audio/<stem>.wav           mono (the W channel of the FOA scene), one window centred on the frame
    OUT/annotations/<stem>.npy     exact binary disc of the sounding object at frame resolution (uint8)
    OUT/annotations.json           {stem: [[x0, y0, x1, y1], ...]} boxes in frame pixels (split at the seam)
    OUT/scenes.jsonl               per sample: seed, classes, sounding class and direction, SNR, reverb
    OUT/dataset.json               how it was made (equirect flag, sizes, window, split, arguments)

Every frame shows 3-5 objects of different classes drawn at the same level (``highlight_sounding``
off: no halo, no brightening), exactly one of them sounding, so only the sound says which one it is;
``--ambient-fraction`` of the samples have no sounding object (diffuse noise only, no annotation).
Only ``--supervised-fraction`` of the training samples get annotations (semi-supervised training);
the test split is annotated whenever something sounds. Train and test seeds are disjoint, and
everything is deterministic from (split, index).

``--clips N`` also writes N short equirect clips with FOA audio to OUT/clips/ (and their truth JSON),
for the unsupervised video-folder path.

Usage::

    python train/make_dataset.py data/synth_train --split train --n 6000
    python train/make_dataset.py data/synth_test --split test --n 500
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import wave
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pan360 import synthetic  # noqa: E402

# Disjoint seed ranges: no held-out scene can ever coincide with a training scene.
_SPLIT_BASE = {"train": 0, "test": 1_000_000_000}
_VERSION = 1


def _default_model_geometry(arch: str) -> tuple[int, int, int, float]:
    """(image_height, image_width, sample_rate, window_s) of the model's default config for ``arch``."""
    from pan360.nn.model import ModelConfig  # training-time only

    cfg = ModelConfig.for_arch(arch)
    return int(cfg.image_height), int(cfg.image_width), int(cfg.sample_rate), float(cfg.window)


def seam_boxes(mask: np.ndarray) -> list[list[int]]:
    """Pixel boxes [x0, y0, x1, y1] (x1, y1 exclusive) of a mask on an equirect frame.

    A region crossing the ±180° seam appears at both image edges: it gets one box per side, so no box
    spans the whole width.
    """
    if not mask.any():
        return []
    cols = mask.any(axis=0)
    rows = np.nonzero(mask.any(axis=1))[0]
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    # runs of occupied columns
    edges = np.diff(np.concatenate([[0], cols.astype(np.int8), [0]]))
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    boxes = []
    for a, b in zip(starts, ends):
        r = np.nonzero(mask[:, a:b].any(axis=1))[0]
        boxes.append([int(a), int(r[0]), int(b), int(r[-1]) + 1])
    return boxes if boxes else [[0, y0, mask.shape[1], y1]]


def _write_wav(path: Path, x: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM mono wav (what Flickr-SoundNet-style tools expect)."""
    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def make_pair(index: int, split: str, width: int, height: int, sample_rate: int, window: float,
              ambient_fraction: float, render_scale: int, radius: tuple[float, float] = (9.0, 15.0),
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict]:
    """One sample: (rgb frame (height, width, 3) uint8, mono audio (N,) float32, disc mask or None, info).

    The frame is the centre of the window. Objects are static (a single frame and mono audio cannot
    tell motion); the audio is rendered from a scene holding only the sounding object, which is exactly
    what the full scene would give since silent objects contribute no sound.
    """
    seed = _SPLIT_BASE[split] + index
    rng = np.random.default_rng([seed, 77])
    ambient = bool(rng.random() < ambient_fraction)
    snr_db = float(rng.uniform(1.0, 9.0))
    reverb = bool(rng.random() < 0.3)
    big_w, big_h = width * render_scale, height * render_scale
    base = synthetic.random_scene(seed, width=big_w, height=big_h, fps=1.0, duration=1.0, n_moving=0,
                                  radius=radius, min_separation=40.0, sample_rate=sample_rate,
                                  diffuse_noise_db=None)  # only its picture is used: skip its noise
    k = -1 if ambient else int(rng.integers(len(base.objects)))
    visual = dataclasses.replace(base, schedule=((k, 0.0, 1.0),) if k >= 0 else (), highlight_sounding=False)
    frames, _, gt = synthetic.render_scene(visual)
    frame = next(iter(frames))
    if render_scale > 1:  # render large and area-downscale: anti-aliased like a downscaled real frame
        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    mask = synthetic.saliency_maps(gt, width, height)[0] > 0.5 if k >= 0 else None
    sound_objects = (dataclasses.replace(base.objects[k], yaw_rate=0.0, pitch_amp=0.0),) if k >= 0 else ()
    audio_scene = synthetic.Scene(width=16, height=8, fps=1.0, duration=window, sample_rate=sample_rate,
                                  objects=sound_objects, schedule=((0, 0.0, window),) if k >= 0 else (),
                                  diffuse_noise_db=-snr_db, reverb=reverb, seed=seed)
    _, foa, _ = synthetic.render_scene(audio_scene)
    info = {
        "seed": seed, "classes": [o.kind for o in base.objects],
        "objects": [[round(float(v), 3) for v in (o.yaw, o.pitch, o.radius)] for o in base.objects],
        "sounding": k, "sounding_class": base.objects[k].kind if k >= 0 else None,
        "snr_db": round(snr_db, 2), "reverb": reverb,
    }
    return frame, foa[0].copy(), mask, info


def _job(args: tuple) -> tuple[int, dict]:
    index, out, split, width, height, sample_rate, window, ambient_fraction, render_scale, supervised, radius = args
    frame, mono, mask, info = make_pair(index, split, width, height, sample_rate, window, ambient_fraction,
                                        render_scale, radius)
    stem = f"{split}_{index:06d}"
    cv2.imwrite(str(out / "frames" / f"{stem}.jpg"), frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
    _write_wav(out / "audio" / f"{stem}.wav", mono, sample_rate)
    info["stem"] = stem
    info["annotated"] = bool(supervised and mask is not None)
    if info["annotated"]:
        np.save(out / "annotations" / f"{stem}.npy", mask.astype(np.uint8))
        info["boxes"] = seam_boxes(mask)
    return index, info


def write_clips(out: Path, split: str, n: int, width: int, height: int, duration: float, fps: float,
                radius: tuple[float, float] = (9.0, 15.0)) -> None:
    """N short equirect clips (H.264 + 4-channel ambiX AAC) with their truth, no visual cue of the source."""
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        seed = _SPLIT_BASE[split] + 500_000_000 + i
        scene = synthetic.random_scene(seed, width=width, height=height, fps=fps, duration=duration,
                                       ambient_prob=0.15, radius=radius, min_separation=40.0)
        scene = dataclasses.replace(scene, highlight_sounding=False)
        gt = synthetic.write_scene(scene, out / f"clip_{i:05d}.mp4", preset="veryfast")
        synthetic.write_ground_truth(gt, out / f"clip_{i:05d}.json")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="output folder (created)")
    ap.add_argument("--split", choices=sorted(_SPLIT_BASE), default="train")
    ap.add_argument("--n", type=int, default=1000, help="number of frame/sound pairs")
    ap.add_argument("--start", type=int, default=0, help="first sample index (to extend a set)")
    ap.add_argument("--arch", default="small", help="take frame size, sample rate and window from this model")
    ap.add_argument("--width", type=int, help="frame width (default: the model's input width)")
    ap.add_argument("--height", type=int, help="frame height (default: the model's input height)")
    ap.add_argument("--sample-rate", type=int, help="audio rate (default: the model's, 22050)")
    ap.add_argument("--window", type=float, help="audio seconds per pair (default: the model's window)")
    ap.add_argument("--ambient-fraction", type=float, default=0.1, help="pairs with nothing sounding")
    ap.add_argument("--supervised-fraction", type=float, default=None,
                    help="annotated fraction of the sounding pairs (default 1 for test, 0.25 for train)")
    ap.add_argument("--radius", default="9,15", help="object angular radius range in degrees, MIN,MAX")
    ap.add_argument("--render-scale", type=int, default=2, help="render this many times larger, then downscale")
    ap.add_argument("--workers", type=int, default=1, help="processes")
    ap.add_argument("--clips", type=int, default=0, help="also write this many short clips to OUT/clips")
    ap.add_argument("--clip-size", default="640x320", help="clip WIDTHxHEIGHT")
    ap.add_argument("--clip-duration", type=float, default=10.0)
    args = ap.parse_args(argv)

    if None in (args.width, args.height, args.sample_rate, args.window):
        h, w, sr, win = _default_model_geometry(args.arch)
        args.height, args.width = args.height or h, args.width or w
        args.sample_rate, args.window = args.sample_rate or sr, args.window or win
    radius = tuple(float(v) for v in args.radius.split(","))
    sup = args.supervised_fraction if args.supervised_fraction is not None else (1.0 if args.split == "test" else 0.25)
    out: Path = args.out
    for sub in ("frames", "audio", "annotations"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    # Which pairs are annotated is decided from the index alone: reproducible and independent of --workers.
    sup_rng = np.random.default_rng([_SPLIT_BASE[args.split], 5])
    chosen = sup_rng.random(args.start + args.n)[args.start:] < sup
    jobs = [(args.start + j, out, args.split, args.width, args.height, args.sample_rate, args.window,
             args.ambient_fraction, args.render_scale, bool(chosen[j]), radius) for j in range(args.n)]
    t0 = time.perf_counter()
    infos: dict[int, dict] = {}
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            for i, info in pool.map(_job, jobs, chunksize=8):
                infos[i] = info
    else:
        for job in jobs:
            i, info = _job(job)
            infos[i] = info
            if (i - args.start + 1) % 100 == 0:
                print(f"{i - args.start + 1}/{args.n} pairs, {time.perf_counter() - t0:.0f} s", flush=True)

    ann_path, scenes_path = out / "annotations.json", out / "scenes.jsonl"
    boxes = json.loads(ann_path.read_text()) if ann_path.exists() and args.start else {}
    lines = scenes_path.read_text().splitlines() if scenes_path.exists() and args.start else []
    for i in sorted(infos):
        info = infos[i]
        if info.get("boxes"):
            boxes[info["stem"]] = info.pop("boxes")
        lines.append(json.dumps(info, separators=(",", ":")))
    ann_path.write_text(json.dumps(boxes, separators=(",", ":")))
    scenes_path.write_text("\n".join(lines) + "\n")
    meta = {"version": _VERSION, "generator": "train/make_dataset.py", "equirect": True, "split": args.split,
            "n": args.start + args.n, "width": args.width, "height": args.height, "sample_rate": args.sample_rate,
            "window": args.window, "ambient_fraction": args.ambient_fraction, "supervised_fraction": sup,
            "render_scale": args.render_scale, "radius": list(radius)}
    (out / "dataset.json").write_text(json.dumps(meta, indent=1))
    print(f"wrote {args.n} pairs to {out} in {time.perf_counter() - t0:.1f} s")
    if args.clips:
        cw, ch = (int(v) for v in args.clip_size.lower().split("x"))
        write_clips(out / "clips", args.split, args.clips, cw, ch, args.clip_duration, fps=10.0, radius=radius)
        print(f"wrote {args.clips} clips to {out / 'clips'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
