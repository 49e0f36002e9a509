"""Evaluation of sound localisation: cIoU / AUC, Oya et al.'s concat-and-localize, trajectory metrics.

**cIoU and AUC** follow the LVS / EZ-VSL evaluation code (../shared/research/ANCHORS.md §2.3), which is
what "cIoU" and "AUC" mean in the Senocak et al. line of papers:

- the prediction (any size) is resized bilinearly (OpenCV ``INTER_LINEAR``, as LVS) to the ground
  truth's size, min-max normalised to [0, 1] and binarised at its median: B = [P >= t] with t the
  value at index N//2 of the sorted map (LVS), i.e. the top half of the pixels is 1;
- cIoU = Σ(B·G) / (ΣG + Σ B·[G = 0]) with G the consensus map (values in [0, 1]);
- "cIoU" in tables is the *success rate*: the share of samples with cIoU >= 0.5; AUC is the area under
  the success rate as a function of the cIoU threshold over 0, 0.05, ..., 1 (trapezoids, as
  ``sklearn.metrics.auc``).

**Concat-and-localize** (Oya et al., ACCV 2020, §5): two annotated samples' images are put side by side
and rescaled to one image of the original size; only one sample's sound is given; the new ground truth
is that sample's ground truth, rescaled into its half. Each concatenation is scored with both sounds
(two samples). Scores: cIoU success / AUC on the concatenated samples (as Oya's Table 5) and the
*half accuracy*: the share of samples where more than half of the attention mass falls in the half that
holds the sounding sample's image (a sound-blind map scores exactly 50 % on it, since each image pair
is scored with both of its sounds). The same model with the sound withheld is the baseline (see
:func:`concat_and_localize` for how the sound is withheld).

**Trajectory metrics** score a camera path file against a ground-truth direction file
(:func:`pan360.synthetic.write_ground_truth`) with :mod:`pan360.metrics`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

from pan360.errors import Pan360Error

Progress = Callable[[int, int], None]
#: cIoU thresholds of the AUC (LVS: 21 points, 0 to 1 in steps of 0.05).
AUC_THRESHOLDS = np.linspace(0.0, 1.0, 21)
#: size of the evaluation grid (LVS / EZ-VSL draw the consensus map at 224 x 224).
EVAL_SIZE = 224


# ------------------------------------------------------------------------------------------- metrics
def normalise_map(pred: ArrayLike, size: tuple[int, int]) -> NDArray[np.float64]:
    """``pred`` resized bilinearly to ``size`` = (height, width) and min-max normalised to [0, 1].

    A constant map becomes all zeros (LVS would divide by zero).
    """
    p = np.asarray(pred, dtype=np.float32)
    if p.ndim != 2 or min(p.shape) < 1:
        raise Pan360Error(f"a prediction map must be 2-D, got shape {p.shape}")
    h, w = size
    if p.shape != (h, w):
        p = cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR)
    p = p.astype(np.float64)
    lo, hi = float(p.min()), float(p.max())
    return (p - lo) / (hi - lo) if hi > lo else np.zeros_like(p)


def ciou(pred_map: ArrayLike, gt_map: ArrayLike, threshold: float | None = None) -> float:
    """Consensus IoU of one prediction against one ground-truth map.

    Parameters
    ----------
    pred_map : (h, w) any non-constant score map (attention, heatmap), any size: resized bilinearly to
        the ground truth's size and min-max normalised.
    gt_map : (H, W) consensus map in [0, 1] (e.g. 0, 0.5, 1 for Flickr's annotators, or binary).
    threshold : binarisation threshold on the normalised prediction (B = P >= threshold); None: the
        median, exactly as LVS (the value at index N//2 of the sorted map).

    Returns
    -------
    Σ(B·G) / (ΣG + Σ B·[G = 0]); 0 when both the ground truth and the prediction are empty.
    """
    g = np.asarray(gt_map, dtype=np.float64)
    if g.ndim != 2:
        raise Pan360Error(f"a ground-truth map must be 2-D, got shape {g.shape}")
    p = normalise_map(pred_map, g.shape)
    t = float(np.sort(p, axis=None)[p.size // 2]) if threshold is None else float(threshold)
    b = (p >= t).astype(np.float64)
    den = g.sum() + (b * (g == 0)).sum()
    return float((b * g).sum() / den) if den > 0 else 0.0


def _trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def success_and_auc(cious: ArrayLike, success_at: float = 0.5) -> tuple[float, float]:
    """(success rate, AUC) of a set of per-sample cIoUs.

    success rate = share of samples with cIoU >= ``success_at`` (0.5: the "cIoU" of the papers'
    tables); AUC = trapezoidal area under the success rate at thresholds 0, 0.05, ..., 1 (in [0, 1]).
    """
    c = np.asarray(cious, dtype=np.float64).ravel()
    if c.size == 0:
        raise Pan360Error("no samples to score")
    rates = np.array([(c >= t).mean() for t in AUC_THRESHOLDS])
    return float((c >= success_at).mean()), _trapezoid(AUC_THRESHOLDS, rates)


def consensus_map(boxes: Iterable[Sequence[float]], size: int = EVAL_SIZE, box_scale: float = 256.0,
                  annotators: float = 2.0) -> NDArray[np.float64]:
    """LVS consensus ground truth: boxes (xmin, ymin, xmax, ymax) on a ``box_scale`` frame drawn into a
    ``size`` x ``size`` map, summed, divided by ``annotators`` and clipped at 1.

    Coordinates are scaled by size / box_scale and truncated to integers, as LVS does.
    """
    g = np.zeros((size, size), np.float64)
    for box in boxes:
        x0, y0, x1, y1 = (int(size * float(v) / box_scale) for v in box)
        g[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] += 1.0
    return np.minimum(g / annotators, 1.0)


def half_share(attention: ArrayLike) -> float:
    """Share of a map's (non-negative) mass in its left half (the middle column, for an odd width,
    counts half to each side)."""
    a = np.maximum(np.asarray(attention, dtype=np.float64), 0.0)
    w = a.shape[-1]
    col = a.sum(axis=tuple(range(a.ndim - 1)))
    left = col[: w // 2].sum() + (col[w // 2] / 2.0 if w % 2 else 0.0)
    total = col.sum()
    return float(left / total) if total > 0 else 0.5


# ----------------------------------------------------------------------------------- trajectories
def _truth_arrays(doc: dict, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]:
    try:
        frames = doc["frames"]
        t = np.array([float(f["time"]) for f in frames])
        yaw = np.array([math.nan if f.get("yaw") is None else float(f["yaw"]) for f in frames])
        pitch = np.array([math.nan if f.get("pitch") is None else float(f["pitch"]) for f in frames])
        switches = [float(s) for s in doc.get("switch_times", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise Pan360Error(f"{where}: not a ground-truth direction file ({exc.__class__.__name__}: {exc})") from None
    if t.size == 0:
        raise Pan360Error(f"{where}: no frames")
    return t, yaw, pitch, switches


def trajectory_metrics(trajectory_json: str | Path, truth_json: str | Path, *, margin: float = 0.5,
                       max_time_gap: float | None = None) -> dict[str, float | int]:
    """Score a camera path file (trajectory JSON v1) against a ground-truth direction file.

    The truth file is what :func:`pan360.synthetic.write_ground_truth` writes: ``frames`` with ``time``
    (s), ``yaw``/``pitch`` (degrees, null when nothing sounds) and ``switch_times``. Each camera frame
    takes the truth of the truth frame nearest in time (no interpolation: a switch is a jump); a camera
    frame farther than ``max_time_gap`` (default: one truth frame interval) from every truth frame is an
    error. Frames within ``margin`` seconds of a switch, and frames where nothing sounds, are not scored
    for in-view / angular error (:func:`pan360.metrics.trajectory_report`); speeds use every frame.

    Returns the report's numbers (in_view, frames_scored, mean/median_angular_error, median/p99/max_speed)
    and ``frames`` (camera frames).
    """
    from pan360 import metrics
    from pan360.paths import load_path

    path = load_path(trajectory_json)
    try:
        doc = json.loads(Path(truth_json).read_text())
    except (OSError, ValueError) as exc:
        raise Pan360Error(f"cannot read ground truth {truth_json}: {exc.__class__.__name__}") from None
    t, yaw, pitch, switches = _truth_arrays(doc, str(truth_json))
    order = np.argsort(t, kind="stable")
    t, yaw, pitch = t[order], yaw[order], pitch[order]
    gap = max_time_gap if max_time_gap is not None else (float(np.median(np.diff(t))) if t.size > 1 else 0.5)
    j = np.clip(np.searchsorted(t, path.times), 1, max(t.size - 1, 1))
    left = np.clip(j - 1, 0, t.size - 1)
    right = np.clip(j, 0, t.size - 1)
    near = np.where(np.abs(path.times - t[left]) <= np.abs(t[right] - path.times), left, right)
    worst = float(np.max(np.abs(path.times - t[near])))
    if worst > gap + 1e-6:
        raise Pan360Error(f"the trajectory and the ground truth do not cover the same times "
                          f"(a camera frame is {worst:.3f} s from every truth frame)")
    rep = metrics.trajectory_report(path, yaw[near], pitch[near], switches, margin=margin)
    return {**rep.as_dict(), "frames": len(path)}
