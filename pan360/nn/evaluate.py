"""Evaluation of sound localisation: cIoU / AUC and Oya et al.'s concat-and-localize.

**cIoU and AUC** follow the LVS / EZ-VSL evaluation code (``test.py`` and ``utils.py`` of
hche11/Localizing-Visual-Sounds-the-Hard-Way and stoneMo/EZ-VSL), which is what "cIoU" and "AUC"
mean in the Senocak et al. line of papers:

- the prediction (any size) is resized bilinearly (OpenCV ``INTER_LINEAR``, as LVS) to the ground
  truth's size, min-max normalised to [0, 1] and binarised at its median: B = [P >= t] with t the
  value at index N//2 of the sorted map (LVS), i.e. the top half of the pixels is 1 (a fixed
  threshold is available for small objects, see :data:`SMALL_OBJECT_THRESHOLD`);
- cIoU = Σ(B·G) / (ΣG + Σ B·[G = 0]) with G the consensus map (values in [0, 1]);
- "cIoU" in tables is the *success rate*: the share of samples with cIoU >= 0.5; AUC is the area under
  the success rate as a function of the cIoU threshold over 0, 0.05, ..., 1 (trapezoids, as
  ``sklearn.metrics.auc``).

**Concat-and-localize** (Oya et al., ACCV 2020, §5): two annotated samples' images are put side by side
(at double width: see :func:`concat_frames`); only one sample's sound is given; the new ground truth
is that sample's ground truth, rescaled into its half. Each concatenation is scored with both sounds
(two samples). Scores: cIoU success / AUC on the concatenated samples (as Oya's Table 5) and the
*half accuracy*: the share of samples where more than half of the attention mass falls in the half that
holds the sounding sample's image (a sound-blind map scores exactly 50 % on it, since each image pair
is scored with both of its sounds). The same model with the sound withheld is the baseline (see
:func:`concat_and_localize` for how the sound is withheld).

Camera paths are scored against ground-truth directions by :func:`pan360.metrics.trajectory_metrics`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

from pan360.errors import Pan360Error
from pan360.progress import Progress

#: cIoU thresholds of the AUC (LVS: 21 points, 0 to 1 in steps of 0.05).
AUC_THRESHOLDS = np.linspace(0.0, 1.0, 21)
#: size of the evaluation grid (LVS / EZ-VSL draw the consensus map at 224 x 224).
EVAL_SIZE = 224
#: Binarisation threshold for sets of small objects (Senocak et al.'s A(τ) = {i | α_i > τ} on the
#: normalised map). The median threshold switches half of the image on, so a sample's cIoU can never
#: exceed 2 x (object area / image area): on equirect frames, where a source covers ~1-3 % of the
#: sphere, cIoU success at 0.5 is then impossible by construction. Report which threshold was used.
SMALL_OBJECT_THRESHOLD = 0.5


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


def half_share(attention: ArrayLike) -> float:
    """Share of a map's (non-negative) mass in its left half (the middle column, for an odd width,
    counts half to each side)."""
    a = np.maximum(np.asarray(attention, dtype=np.float64), 0.0)
    w = a.shape[-1]
    col = a.sum(axis=tuple(range(a.ndim - 1)))
    left = col[: w // 2].sum() + (col[w // 2] / 2.0 if w % 2 else 0.0)
    total = col.sum()
    return float(left / total) if total > 0 else 0.5


# ---------------------------------------------------------------------------------- pair sets
def _open_pairs(pairs: Any, model: Any) -> Any:
    """A folder (Flickr-SoundNet layout, see :class:`pan360.nn.pairs.PairFolderDataset`) or any
    indexable of sample dicts with ``frame`` (3, H, W) normalised, ``waveform`` (L,), ``valid`` (L,)
    and ``gt_full`` ((H, W) map in [0, 1] or None)."""
    if isinstance(pairs, (str, Path)):
        from pan360.nn.pairs import PairFolderDataset

        return PairFolderDataset(pairs, model.config, full_gt=True)
    return pairs


def _device(device: Any) -> Any:
    """A ``torch.device`` as given, or the one a device name resolves to (:func:`pan360.device.resolve_device`)."""
    import torch

    from pan360.device import resolve_device

    if isinstance(device, torch.device):
        return device
    return torch.device(resolve_device(device, allow_index=True))


def _visual(model: Any, frames: Any) -> tuple[Any, Any]:
    """The model's grid for ``frames`` and a function f_s → its audio-visual prior (None for models
    without one: any object with ``visual_grid`` / ``localize`` can be evaluated)."""
    if not hasattr(model, "visual_features"):
        return model.visual_grid(frames), lambda f_s: None
    visual = model.visual_features(frames)
    return visual.grid, lambda f_s: model.sound_prior(f_s, visual)


def _localize(model: Any, grid: Any, h: Any, prior: Any) -> Any:
    """The attention of ``h`` over ``grid``, with the prior when the model has one."""
    return (model.localize(grid, h) if prior is None else model.localize(grid, h, prior))[0]


def _gt_of(sample: dict) -> NDArray[np.float64] | None:
    g = sample.get("gt_full")
    return None if g is None else np.asarray(g, dtype=np.float64)


def annotated_indices(data: Any) -> list[int]:
    """Indices of the annotated samples. A data set with an ``annotated()`` method (pair and video
    folders), alone or in a torch ConcatDataset, answers without loading its samples."""
    if hasattr(data, "annotated"):
        return list(data.annotated())
    if hasattr(data, "datasets") and hasattr(data, "cumulative_sizes"):  # torch ConcatDataset
        out: list[int] = []
        for part, end in zip(data.datasets, data.cumulative_sizes):
            out += [end - len(part) + i for i in annotated_indices(part)]
        return out
    return [i for i in range(len(data)) if _gt_of(data[i]) is not None]


def _batches(n: int, size: int) -> Iterable[range]:
    for a in range(0, n, size):
        yield range(a, min(n, a + size))


def evaluate_pairs(model: Any, pairs: Any, *, threshold: float | None = None, batch_size: int = 16,
                   device: Any = "auto", max_samples: int | None = None, autocast: Any = None,
                   progress: Progress | None = None) -> dict[str, float | int | str]:
    """cIoU success rate, AUC and mean cIoU of ``model`` on an annotated pair set.

    ``pairs``: a folder in the Flickr-SoundNet layout (frames/, audio/, annotations) or an indexable of
    sample dicts (see :func:`_open_pairs`). Pairs without annotation (ambient sound) are not scored
    and are counted in ``unannotated``. Each prediction is the attention map (H/16 x W/16) against the
    pair's full-resolution ground truth, as :func:`ciou` with ``threshold`` (None: the median; see
    :data:`SMALL_OBJECT_THRESHOLD` for sets of small objects). ``max_samples`` scores only the first
    annotated pairs (a fixed subset: training evaluates that way); ``autocast`` is a context manager
    for the forward pass (mixed precision). The model's train/eval mode is restored afterwards.

    Returns {"n", "unannotated", "ciou_success", "auc", "mean_ciou", "hit_rate", "threshold"};
    ``hit_rate`` is the share of pairs whose attention maximum (the centre of its grid cell) falls
    inside the ground truth.
    """
    from contextlib import nullcontext

    import torch

    data = _open_pairs(pairs, model)
    dev = _device(device)
    was_training = model.training
    model = model.to(dev).eval()
    scored = annotated_indices(data)
    n_annotated = len(scored)
    scored = scored[:max_samples] if max_samples is not None else scored
    cious: list[float] = []
    hits: list[float] = []
    try:
        for rows in _batches(len(scored), batch_size):
            samples = [data[scored[r]] for r in rows]
            with torch.inference_mode(), autocast or nullcontext():
                # the forward pass's attention, without the f_v head it does not need
                f_s, h = model.encode_sound(torch.stack([s["waveform"] for s in samples]).to(dev),
                                            torch.stack([s["valid"] for s in samples]).to(dev))
                grid, prior_of = _visual(model, torch.stack([s["frame"] for s in samples]).to(dev))
                attention = _localize(model, grid, h, prior_of(f_s))
            for a, s in zip(attention.float().cpu().numpy(), samples):
                g = _gt_of(s)
                cious.append(ciou(a, g, threshold))
                hits.append(_peak_inside(a, g))
            if progress is not None:
                progress(len(cious), len(scored))
    finally:
        model.train(was_training)
    if not cious:
        raise Pan360Error("no annotated pair to evaluate (cIoU needs ground-truth maps)")
    success, auc = success_and_auc(cious)
    return {"n": len(cious), "unannotated": len(data) - n_annotated, "ciou_success": success, "auc": auc,
            "mean_ciou": float(np.mean(cious)), "hit_rate": float(np.mean(hits)),
            "threshold": "median" if threshold is None else threshold}


def _peak_inside(attention: NDArray, gt: NDArray[np.float64]) -> float:
    """1.0 when the centre of the attention's highest cell, on the ground truth's grid, is inside it."""
    r, c = np.unravel_index(int(np.argmax(attention)), attention.shape)
    y = min(int((r + 0.5) * gt.shape[0] / attention.shape[0]), gt.shape[0] - 1)
    x = min(int((c + 0.5) * gt.shape[1] / attention.shape[1]), gt.shape[1] - 1)
    return float(gt[y, x] > 0)


@dataclass(frozen=True)
class ConcatSample:
    """One concat-and-localize sample: pairs ``left`` and ``right`` side by side, the sound of
    ``sounding`` (== left or right)."""

    left: int
    right: int
    sounding: int


def concat_plan(n_pairs: int, n_concat: int | None = None, seed: int = 0) -> list[ConcatSample]:
    """The samples of the protocol: ``n_concat`` image pairs (default ``n_pairs``: each pair is the
    first member once), each with a random partner and a random left/right order, each scored with both
    sounds (2 samples per image pair)."""
    if n_pairs < 2:
        raise Pan360Error("concat-and-localize needs at least 2 annotated pairs")
    rng = np.random.default_rng(seed)
    out = []
    for c in range(n_pairs if n_concat is None else n_concat):
        a = c % n_pairs
        b = int(rng.integers(n_pairs - 1))
        b += b >= a  # any other pair
        left, right = (a, b) if rng.random() < 0.5 else (b, a)
        out += [ConcatSample(left, right, left), ConcatSample(left, right, right)]
    return out


def concat_frames(left: Any, right: Any) -> Any:
    """Two normalised frames (3, H, W) side by side: (3, H, 2W).

    Oya et al. rescale the pair to one frame's size because their networks take a fixed size; ours is
    fully convolutional, so the pair is fed at double width and every object keeps the shape the
    network saw in training (a 2:1 squeeze would test shape invariance, not the use of sound).
    """
    import torch

    return torch.cat([left, right], dim=-1)


def concat_gt(gt: NDArray[np.float64], on_left: bool) -> NDArray[np.float64]:
    """The sounding pair's ground truth in its half of the side-by-side image (h, 2w)."""
    h, w = gt.shape
    canvas = np.zeros((h, 2 * w), np.float64)
    if on_left:
        canvas[:, :w] = gt
    else:
        canvas[:, w:] = gt
    return canvas


def concat_and_localize(model: Any, pairs: Any, *, n_concat: int | None = None, seed: int = 0,
                        withheld: str = "mean", threshold: float | None = None, batch_size: int = 16,
                        device: str = "auto",
                        progress: Progress | None = None) -> dict[str, dict[str, float | int]]:
    """Oya et al.'s concat-and-localize protocol, with the sound and with the sound withheld.

    Each sample puts two annotated pairs' frames side by side (at double width, :func:`concat_frames`)
    and gives the sound of one of them; its ground truth is that pair's map in its half.
    Scores per condition: ``ciou_success``, ``auc``, ``mean_ciou`` (Oya's Table 5) and
    ``half_accuracy`` = share of samples with more than half of the attention mass in the sounding
    pair's half (:func:`half_share`); ``half_accuracy_peak`` uses the attention's highest cell instead.

    The sound is withheld by giving every sample the same sound embedding, so the map can depend on
    the picture only — the analogue, for this model (which has no vision-only branch), of Oya's
    "potential localization map":

    - ``withheld="mean"`` (default): h = the mean of the sound embeddings h of all scored pairs. It
      stays inside the distribution of embeddings the attention was trained on, so the picture is
      read as usual, only *which* sound is unknown;
    - ``withheld="zero"``: h of an all-zero waveform (silence), which the network may never have heard
      paired with an object and can be out of distribution.

    Because each image pair is scored with both of its sounds and a sound-blind map is the same for
    both, the withheld condition's half accuracy is 50 % up to ties; the with-sound condition is
    well above it only when the model uses the sound.

    ``threshold`` binarises the maps for cIoU as in :func:`ciou` (None: the median).

    Returns {"with_sound": {...}, "without_sound": {...}, "n": samples, "withheld": ..., "threshold": ...}.
    """
    import torch

    if withheld not in ("mean", "zero"):
        raise Pan360Error(f"withheld must be 'mean' or 'zero', not {withheld!r}")
    data = _open_pairs(pairs, model)
    dev = _device(device)
    model = model.to(dev).eval()
    idx = annotated_indices(data)
    # One pass over the set: keep each pair's frame and ground truth, and only the embedding of its sound.
    samples: list[dict] = []
    hs, fss = [], []
    n_wave = 0
    for rows in _batches(len(idx), batch_size):
        batch = [data[idx[r]] for r in rows]
        with torch.inference_mode():
            f_s, h = model.encode_sound(torch.stack([s["waveform"] for s in batch]).to(dev),
                                        torch.stack([s["valid"] for s in batch]).to(dev))
        hs.append(h.float())
        fss.append(f_s.float())
        n_wave = batch[0]["waveform"].shape[-1]
        samples += [{"frame": s["frame"], "gt_full": s["gt_full"]} for s in batch]
    plan = concat_plan(len(samples), n_concat, seed)
    h_all, fs_all = torch.cat(hs), torch.cat(fss)
    with torch.inference_mode():
        if withheld == "mean":
            h_blind, fs_blind = h_all.mean(dim=0, keepdim=True), fs_all.mean(dim=0, keepdim=True)
        else:
            silence = torch.zeros(1, n_wave, device=dev)
            fs_blind, h_blind = model.encode_sound(silence, torch.ones(1, n_wave, dtype=torch.bool, device=dev))
            h_blind, fs_blind = h_blind.float(), fs_blind.float()
    results: dict[str, list] = {"with_sound": [], "without_sound": []}
    for rows in _batches(len(plan), batch_size):
        cs = [plan[r] for r in rows]
        frames = torch.stack([concat_frames(samples[c.left]["frame"], samples[c.right]["frame"])
                              for c in cs]).to(dev)
        with torch.inference_mode():
            grid, prior_of = _visual(model, frames)
            sounding = [c.sounding for c in cs]
            att_s = _localize(model, grid, h_all[sounding].to(grid.dtype), prior_of(fs_all[sounding]))
            att_b = _localize(model, grid, h_blind.expand(len(cs), -1).to(grid.dtype),
                              prior_of(fs_blind.expand(len(cs), -1)))
        for key, att in (("with_sound", att_s), ("without_sound", att_b)):
            for a, c in zip(att.float().cpu().numpy(), cs):
                on_left = c.sounding == c.left
                g = concat_gt(_gt_of(samples[c.sounding]), on_left)
                share = half_share(a)
                centre = int(np.argmax(a)) % a.shape[-1] + 0.5  # the middle column of an odd width is neither
                peak_ok = centre < a.shape[-1] / 2 if on_left else centre > a.shape[-1] / 2
                results[key].append((ciou(a, g, threshold), share > 0.5 if on_left else share < 0.5, peak_ok))
        if progress is not None:
            progress(min(rows.stop, len(plan)), len(plan))
    report: dict[str, dict[str, float | int] | int | str | float] = {
        "n": len(plan), "withheld": withheld, "threshold": "median" if threshold is None else threshold}
    for key, rows_ in results.items():
        cious = [r[0] for r in rows_]
        success, auc = success_and_auc(cious)
        report[key] = {"ciou_success": success, "auc": auc, "mean_ciou": float(np.mean(cious)),
                       "half_accuracy": float(np.mean([r[1] for r in rows_])),
                       "half_accuracy_peak": float(np.mean([r[2] for r in rows_]))}
    return report
