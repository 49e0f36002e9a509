"""The loss plot of a training run (its evaluation is :func:`pan360.nn.evaluate.evaluate_pairs`)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def _read(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) if r[k] not in ("", None) else np.nan for r in rows]) for k in rows[0]}


def plot_losses(log_csv: Path, eval_csv: Path, png: Path) -> None:
    """PNG of the losses (total, unsupervised, supervised, FOA teacher) against the step, and the eval cIoU
    success. A column that a log lacks (older runs) or that is empty throughout is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log, ev = _read(Path(log_csv)), _read(Path(eval_csv))
    if not log:
        return
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for key, style in (("loss", "-"), ("unsup", "--"), ("sup", ":"), ("teacher", "-.")):
        if key in log and np.isfinite(log[key]).any():
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
