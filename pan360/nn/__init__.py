"""The sound-attention network (Senocak et al., TPAMI 2019): model, losses and checkpoints.

Importing this package pulls in torch; the rest of pan360 imports it only when the network is used.
"""

from __future__ import annotations

from pan360.nn.losses import attention_ce_loss, semi_supervised_loss, triplet_ratio_loss
from pan360.nn.model import (
    PRESETS,
    LocalizerOutput,
    ModelConfig,
    SoundLocalizer,
    conv8_steps,
    load_imagenet_vgg16,
    min_window_samples,
    preprocess_frames,
    resample_audio,
    safe_torch_load,
    sound_window,
)
from pan360.nn.weights import (
    load_model,
    load_training_state,
    read_checkpoint_meta,
    save_checkpoint,
    save_training_state,
)

__all__ = [
    "PRESETS",
    "LocalizerOutput",
    "ModelConfig",
    "SoundLocalizer",
    "attention_ce_loss",
    "conv8_steps",
    "load_imagenet_vgg16",
    "load_model",
    "load_training_state",
    "min_window_samples",
    "read_checkpoint_meta",
    "preprocess_frames",
    "resample_audio",
    "safe_torch_load",
    "save_checkpoint",
    "save_training_state",
    "semi_supervised_loss",
    "sound_window",
    "triplet_ratio_loss",
]
