"""The sound-attention network (Senocak et al., TPAMI 2019): model, inputs, losses and checkpoints.

The names below are imported on first use (PEP 562), so ``import pan360.nn.weights`` (finding the
bundled weights) does not pull in torch; the modules that define them do.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name → the module of this package that defines it.
_EXPORTS = {
    "PRESETS": "model",
    "LocalizerOutput": "model",
    "ModelConfig": "model",
    "SoundLocalizer": "model",
    "conv8_steps": "model",
    "min_window_samples": "model",
    "preprocess_frames": "inputs",
    "resample_audio": "inputs",
    "sound_window": "inputs",
    "attention_ce_loss": "losses",
    "semi_supervised_loss": "losses",
    "triplet_ratio_loss": "losses",
    "bundled_weights": "weights",
    "has_weights": "weights",
    "load_imagenet_vgg16": "weights",
    "load_model": "weights",
    "load_network": "weights",
    "load_training_state": "weights",
    "read_checkpoint_meta": "weights",
    "safe_torch_load": "weights",
    "save_checkpoint": "weights",
    "save_training_state": "weights",
}

__all__ = [
    "PRESETS",
    "LocalizerOutput",
    "ModelConfig",
    "SoundLocalizer",
    "attention_ce_loss",
    "bundled_weights",
    "conv8_steps",
    "has_weights",
    "load_imagenet_vgg16",
    "load_model",
    "load_network",
    "load_training_state",
    "min_window_samples",
    "preprocess_frames",
    "read_checkpoint_meta",
    "resample_audio",
    "safe_torch_load",
    "save_checkpoint",
    "save_training_state",
    "semi_supervised_loss",
    "sound_window",
    "triplet_ratio_loss",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
