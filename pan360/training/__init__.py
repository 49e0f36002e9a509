"""Training of the sound-localisation network (``pan360 train``). Beside the package: inference never imports it.

``train(config)`` (:mod:`pan360.training.loop`) reads frame / sound pairs from video folders and
Flickr-SoundNet-style pair folders (:mod:`pan360.training.data`, :mod:`pan360.nn.pairs`), with the settings of a
:class:`TrainConfig` (:mod:`pan360.training.config`).
"""

from __future__ import annotations

from pan360.training.config import TrainConfig, load_config
from pan360.training.data import (
    VideoFolderDataset,
    augment,
    collate,
    negative_indices,
    open_datasets,
)
from pan360.training.loop import train
from pan360.training.report import plot_losses

__all__ = [
    "TrainConfig",
    "VideoFolderDataset",
    "augment",
    "collate",
    "load_config",
    "negative_indices",
    "open_datasets",
    "plot_losses",
    "train",
]
