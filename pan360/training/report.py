"""Evaluation during training (cIoU success / AUC on annotated held-out pairs) and the loss plot."""

from __future__ import annotations

import csv
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from pan360.nn.evaluate import ciou, success_and_auc
from pan360.training.data import PairFolderDataset, collate


def _annotated_indices(dataset: Dataset) -> list[int] | None:
    """Indices of annotated samples when knowable without decoding (pair folders), else None."""
    if isinstance(dataset, PairFolderDataset):
        return [i for i, s in enumerate(dataset.stems) if dataset.has_annotation(s)]
    if isinstance(dataset, ConcatDataset):
        out, base = [], 0
        for part, end in zip(dataset.datasets, dataset.cumulative_sizes):
            sub = _annotated_indices(part)
            if sub is not None:
                out += [base + i for i in sub]
            base = end
        return out
    return None


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: Dataset, device: torch.device,
             autocast: AbstractContextManager | None = None, max_samples: int = 500,
             batch_size: int = 32, threshold: float | None = 0.5) -> dict[str, float]:
    """Localisation scores of ``model`` on the annotated samples of ``dataset`` (built with ``full_gt=True``).

    Returns ``ciou_success`` (share with cIoU >= 0.5, the papers' "cIoU"), ``auc``, ``mean_ciou``
    (:func:`pan360.nn.evaluate.ciou`: attention resized bilinearly to the annotation's size, min-max
    normalised, binarised at ``threshold``, or at its median as LVS when None), ``hit_rate`` (share
    whose attention maximum falls inside the annotation) and
    ``samples``. The first ``max_samples`` annotated samples are used, in order (a fixed subset).
    """
    known = _annotated_indices(dataset)
    idx = list(range(len(dataset))) if known is None else known[:max_samples]
    loader = DataLoader(Subset(dataset, idx),
                        batch_size=batch_size, shuffle=False, num_workers=0, collate_fn=collate)
    was_training = model.training
    model.eval()
    cious, hits = [], []
    for batch in loader:
        if len(cious) >= max_samples:
            break
        with autocast or nullcontext():
            out = model(batch["frame"].to(device), batch["waveform"].to(device), batch["valid"].to(device))
        att = out.attention.float().cpu().numpy()
        for a, g in zip(att, batch["gt_full"]):
            if g is None or float(g.sum()) <= 0 or len(cious) >= max_samples:
                continue
            g = g.numpy()
            cious.append(ciou(a, g, threshold))
            # the centre pixel of the best grid cell, on the annotation's grid
            r, c = np.unravel_index(int(a.argmax()), a.shape)
            y = min(int((r + 0.5) * g.shape[0] / a.shape[0]), g.shape[0] - 1)
            x = min(int((c + 0.5) * g.shape[1] / a.shape[1]), g.shape[1] - 1)
            hits.append(float(g[y, x] > 0))
    model.train(was_training)
    if not cious:
        return {"ciou_success": float("nan"), "auc": float("nan"), "mean_ciou": float("nan"),
                "hit_rate": float("nan"), "samples": 0}
    success, auc = success_and_auc(cious)
    return {"ciou_success": round(success, 4), "auc": round(auc, 4), "mean_ciou": round(float(np.mean(cious)), 4),
            "hit_rate": round(float(np.mean(hits)), 4), "samples": len(cious)}


def _read(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) if r[k] not in ("", None) else np.nan for r in rows]) for k in rows[0]}


def plot_losses(log_csv: Path, eval_csv: Path, png: Path) -> None:
    """PNG of the losses (total, unsupervised, supervised) against the step, and the eval cIoU success."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log, ev = _read(Path(log_csv)), _read(Path(eval_csv))
    if not log:
        return
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for key, style in (("loss", "-"), ("unsup", "--"), ("sup", ":")):
        ax.plot(log["step"], log[key], style, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if ev:
        ax2 = ax.twinx()
        ax2.plot(ev["step"], ev["ciou_success"], "o-", color="tab:red", label="eval cIoU success")
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("held-out cIoU success")
        ax2.legend(loc="upper right")
    ax.legend(loc="upper left")
    fig.tight_layout()
    tmp = Path(png).with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(png)
