"""Losses of Senocak et al. (TPAMI 2019, §4): the unsupervised distance-ratio triplet loss (eqs. 5–6),
the supervised cross-entropy on the attention map (eq. 8) and their per-sample weighted sum (eq. 7),
extended by a soft teacher term: the same cross-entropy against a soft target map (the FOA energy
map of 360° video with ambisonic audio, made by the training data sets), with its own weight.

Every loss is computed per sample, then averaged over the batch (``reduction="mean"``) or returned
per sample (``reduction="none"``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from pan360.errors import Pan360Error

_LOG_EPS = 1e-12  # keeps log(α) finite where the softmax underflows to 0


def _reduce(per_sample: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return per_sample
    if reduction == "mean":
        return per_sample.mean()
    raise Pan360Error(f"reduction must be 'mean' or 'none', not {reduction!r}")


def _distance(a: Tensor, b: Tensor) -> Tensor:
    # Euclidean distance with a finite gradient at a == b (plain sqrt has an infinite slope at 0).
    return torch.sqrt(((a - b) ** 2).sum(dim=-1) + 1e-12)


def triplet_ratio_loss(
    f_v: Tensor, f_s_pos: Tensor, f_s_neg: Tensor, reduction: str = "mean"
) -> Tensor:
    """Distance-ratio triplet loss, eqs. 5–6.

    d± = ‖f_v − f_s±‖₂ (eq. 5); D± = softmax(d+, d−); L_U = ‖(D+, D−) − (0, 1)‖² = 2·D+² (eq. 6).
    It is 0 when the positive sound is much closer to the frame than the negative, 0.5 when both are
    equally far, 2 at worst.

    Parameters
    ----------
    f_v : (B, D) visual embeddings of the frames (queries).
    f_s_pos : (B, D) sound embeddings of the frames' own audio windows.
    f_s_neg : (B, D) sound embeddings of other videos' audio.
    """
    if not (f_v.shape == f_s_pos.shape == f_s_neg.shape) or f_v.ndim != 2:
        raise Pan360Error(
            f"triplet loss needs three (B, D) tensors, got {tuple(f_v.shape)}, "
            f"{tuple(f_s_pos.shape)}, {tuple(f_s_neg.shape)}"
        )
    d = torch.stack([_distance(f_v, f_s_pos), _distance(f_v, f_s_neg)], dim=1).float()
    soft = torch.softmax(d, dim=1)
    target = torch.tensor([0.0, 1.0], device=d.device)
    per_sample = ((soft - target) ** 2).sum(dim=1)
    return _reduce(per_sample, reduction)


def _annotated(gt_map: Tensor, mask: Tensor | None) -> Tensor:
    """(B,) bool: which samples carry an annotation (given, or a non-empty ground-truth map)."""
    if mask is not None:
        return mask.to(device=gt_map.device, dtype=torch.bool).reshape(-1)
    return gt_map.flatten(1).sum(dim=1) > 0


def _check_maps(attention: Tensor, gt_map: Tensor) -> None:
    if attention.shape != gt_map.shape or attention.ndim != 3:
        raise Pan360Error(
            f"attention and ground-truth maps must both be (B, h, w) on the same grid, got "
            f"{tuple(attention.shape)} and {tuple(gt_map.shape)}"
        )


def attention_ce_loss(
    attention: Tensor, gt_map: Tensor, mask: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """Supervised loss of eq. 8: L_S = −Σ_i α_GT,i · log α_i, per annotated sample.

    The same formula is the cross-entropy against a soft target: with ``gt_map`` a distribution
    over the cells (summing to 1, e.g. an FOA teacher map) it is −Σ_i p_i · log α_i = H(p) + KL(p‖α),
    minimal where the attention equals the target.

    Parameters
    ----------
    attention : (B, h, w) attention maps α (each sums to 1).
    gt_map : (B, h, w) ground truth on the same grid: binary (1 inside the annotated source), a
        consensus share in [0, 1], or a soft target map summing to 1.
    mask : optional (B,) bool, True where the sample is annotated; by default a sample is annotated
        when its map is not all zero.
    reduction : "mean" averages over the annotated samples only (0 when there are none);
        "none" returns (B,) with 0 for samples without annotation.

    As in the paper the map is binary and not normalised, so a larger annotated region weighs more.
    """
    _check_maps(attention, gt_map)
    has = _annotated(gt_map, mask)
    per_sample = -(gt_map.float() * torch.log(attention.float().clamp_min(_LOG_EPS))).flatten(1).sum(1)
    per_sample = torch.where(has, per_sample, torch.zeros_like(per_sample))
    if reduction == "mean":
        return per_sample.sum() / has.sum().clamp_min(1)
    return _reduce(per_sample, reduction)


class LossParts(NamedTuple):
    """The loss and its parts (what :func:`semi_supervised_loss` returns with ``return_parts``).

    ``unsup``, ``sup`` and ``teacher`` are unweighted means over the samples they apply to (0 when
    none does); ``n_*`` count those samples, so that means over several batches can be weighted.
    """

    total: Tensor
    unsup: Tensor  # mean L_U over samples with a triplet
    sup: Tensor  # mean L_S over hand-annotated samples
    teacher: Tensor  # mean soft cross-entropy over samples with a teacher map
    n_unsup: Tensor
    n_sup: Tensor
    n_teacher: Tensor


def semi_supervised_loss(
    f_v: Tensor,
    f_s_pos: Tensor,
    f_s_neg: Tensor,
    attention: Tensor,
    gt_map: Tensor | None = None,
    mask: Tensor | None = None,
    w_unsup: float = 0.5,
    w_sup: float = 0.5,
    reduction: str = "mean",
    return_parts: bool = False,
    *,
    teacher: Tensor | None = None,
    w_teacher: float = 1.0,
    triplet_mask: Tensor | None = None,
) -> Tensor | LossParts:
    """Eq. 7 with weights, plus a soft teacher term, per sample, then the mean over the batch:

    L = w_unsup · τ · L_U + w_sup · λ · L_S(α, gt) + w_teacher · λ_T · L_S(α, gt)

    λ = 1 for a hand-annotated sample (its map in ``gt_map``; 0 when ``gt_map`` is None, ``mask`` is
    False or the map is all zero), λ_T = 1 instead where ``teacher`` marks the map as a soft teacher
    map (then λ = 0): both are the cross-entropy of :func:`attention_ce_loss`. τ = 0 where
    ``triplet_mask`` is False (no negative from another video in the batch), else 1. The default
    weights 0.5 / 0.5 are the best row of the paper's Table V.

    Parameters
    ----------
    teacher : optional (B,) bool, True where ``gt_map`` holds a soft teacher map (e.g. FOA energy).
    w_teacher : weight of the teacher term.
    triplet_mask : optional (B,) bool, False where the sample has no valid triplet.
    return_parts : also return the unweighted per-kind means and counts (:class:`LossParts`).
    """
    unsup = triplet_ratio_loss(f_v, f_s_pos, f_s_neg, reduction="none")
    has_triplet = (torch.ones_like(unsup, dtype=torch.bool) if triplet_mask is None
                   else triplet_mask.to(device=unsup.device, dtype=torch.bool).reshape(-1))
    unsup = torch.where(has_triplet, unsup, torch.zeros_like(unsup))
    if gt_map is None:
        ce = torch.zeros_like(unsup)
        has = torch.zeros_like(unsup, dtype=torch.bool)
    else:
        ce = attention_ce_loss(attention, gt_map, mask, reduction="none")  # 0 where nothing is given
        has = _annotated(gt_map, mask)
    soft = (torch.zeros_like(has) if teacher is None
            else teacher.to(device=has.device, dtype=torch.bool).reshape(-1))
    is_sup, is_teacher = has & ~soft, has & soft
    zero = torch.zeros_like(ce)
    sup, teach = torch.where(is_sup, ce, zero), torch.where(is_teacher, ce, zero)
    total = _reduce(w_unsup * unsup + w_sup * sup + w_teacher * teach, reduction)
    if not return_parts:
        return total
    n_u, n_s, n_t = has_triplet.sum(), is_sup.sum(), is_teacher.sum()
    return LossParts(total, unsup.sum() / n_u.clamp_min(1), sup.sum() / n_s.clamp_min(1),
                     teach.sum() / n_t.clamp_min(1), n_u, n_s, n_t)
