"""The sound-attention network of Senocak et al. (TPAMI 2019, §3): a two-stream model that localizes
the sound source in a frame from the mono sound alone.

- visual stream: VGG16 conv1_1…conv5_3 + ReLU (torchvision layout, pool5 dropped), a grid of 512-d
  vectors at H/16 × W/16, fully convolutional;
- sound stream: SoundNet-8 1-D convolutions on the raw waveform at 22,050 Hz, conv8 with 1000 filters,
  average pooling over the conv8 time steps → f_s (1000-d), then two {ReLU, FC} → h (512-d);
- localization: cosine of h with every grid vector, softmax (mechanism 1) or ReLU + softmax
  (mechanism 2) → attention α; z = Σ α_i v_i; two {ReLU, FC} → f_v (1000-d).

``arch="vgg16"`` is the paper-size reference; ``arch="small"`` keeps the same structure with narrow
layers and a 4 s sound window so that it trains on a CPU (see :data:`PRESETS`).

Input preprocessing (frames, sound windows) is :mod:`pan360.nn.inputs`; checkpoints are :mod:`pan360.nn.weights`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pan360.errors import Pan360Error

# SoundNet-8 kernels, strides and paddings for conv1..conv8 (the SoundNet paper, Aytar et al. 2016); only widths and pools vary.
_SOUND_KERNELS = (64, 32, 16, 8, 4, 4, 4, 8)
_SOUND_STRIDES = (2, 2, 2, 2, 2, 2, 2, 2)
_SOUND_PADS = (32, 16, 8, 4, 2, 2, 2, 0)
_POOL_AFTER = (0, 1, 4)  # max-pools follow conv1, conv2 and conv5


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a :class:`SoundLocalizer`; stored as JSON beside the weights."""

    arch: str = "vgg16"  # "vgg16": the paper (torchvision VGG16, SoundNet-8 widths); "small": narrow CPU variant
    mechanism: int = 2  # 1: softmax over cosine (eq. 2); 2: ReLU then softmax (eq. 3)
    sample_rate: int = 22050  # waveform rate the sound stream expects (Hz)
    window: float = 20.0  # seconds of audio centred on the frame (paper: 20 s → 4 conv8 steps)
    image_height: int = 320  # training/eval input size; any size works at inference (fully convolutional)
    image_width: int = 320
    visual_channels: tuple[int, ...] = (64, 128, 256, 512, 512)  # conv widths of the 5 VGG blocks
    visual_convs: tuple[int, ...] = (2, 2, 3, 3, 3)  # 3x3 convs per block (VGG16: 2,2,3,3,3)
    sound_channels: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024)  # conv1..conv7 widths
    sound_pools: tuple[int, ...] = (8, 8, 4)  # max-pool sizes after conv1, conv2, conv5 (SoundNet: 8, 8, 4)
    sound_dim: int = 1000  # conv8 filters = f_s size (paper: 1000; SoundNet's 401-d places head dropped)
    embed_dim: int = 512  # h and grid-vector size (paper: 512)
    input_scale: float = 256.0  # waveform in [-1, 1] is multiplied by this (SoundNet's ±256 convention)
    logit_scale: float = 1.0  # cosine multiplier before the softmax; 1.0 = paper (no temperature)
    learn_logit_scale: bool = False  # deviation from the paper when True: the multiplier is learned
    visual_pad: int = 0  # "lite0": columns wrapped around each side of an equirect frame (seam-free features)
    window_fill: str = "zeros"  # past the clip: "zeros" (marked invalid) or "clip" (window kept inside the clip)
    prior_topk: int = 20  # "lite0": sound classes that make the audio-visual prior (pan360.nn.agreement)
    prior_gain: float = 3.0  # "lite0": weight of the cosine agreement against the objectness in the prior
    prior_sharpness: float = 2.0  # "lite0": softmax contrast of the standardised prior

    def __post_init__(self) -> None:
        object.__setattr__(self, "visual_channels", tuple(int(c) for c in self.visual_channels))
        object.__setattr__(self, "visual_convs", tuple(int(c) for c in self.visual_convs))
        object.__setattr__(self, "sound_channels", tuple(int(c) for c in self.sound_channels))
        object.__setattr__(self, "sound_pools", tuple(int(c) for c in self.sound_pools))
        if self.arch not in PRESETS:
            raise Pan360Error(f"unknown model arch {self.arch!r} (choose from {', '.join(PRESETS)})")
        if self.mechanism not in (1, 2):
            raise Pan360Error(f"attention mechanism must be 1 or 2, not {self.mechanism}")
        if len(self.visual_channels) != 5 or len(self.visual_convs) != 5:
            raise Pan360Error("visual_channels and visual_convs need 5 entries (one per VGG block)")
        if len(self.sound_channels) != 7 or len(self.sound_pools) != 3:
            raise Pan360Error("sound_channels needs 7 widths (conv1..conv7) and sound_pools 3 sizes")
        if self.image_height < 16 or self.image_width < 16:
            raise Pan360Error("image size must be at least 16x16 (the grid is H/16 x W/16)")
        if self.logit_scale <= 0:
            raise Pan360Error("logit_scale must be positive")
        if self.window_fill not in ("zeros", "clip"):
            raise Pan360Error(f"window_fill must be 'zeros' or 'clip', not {self.window_fill!r}")
        if self.visual_pad < 0 or self.visual_pad % 32:
            raise Pan360Error("visual_pad must be a non-negative multiple of 32")
        if self.arch == "lite0" and (self.sound_channels != (16, 32, 64, 128, 256, 512, 1024)
                                     or self.sound_pools != (8, 8, 4) or self.sound_dim != 1000):
            raise Pan360Error("arch 'lite0' uses SoundNet-8 as it is (its widths and 1000 classes)")
        if conv8_steps(self.window_samples, self) < 1:
            raise Pan360Error(
                f"a {self.window:g} s window gives no conv8 step; this sound stream needs at least "
                f"{min_window_samples(self) / self.sample_rate:.2f} s"
            )

    @property
    def window_samples(self) -> int:
        """Length of the sound window in samples at :attr:`sample_rate`."""
        return int(round(self.window * self.sample_rate))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing keys take the arch preset."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise Pan360Error(f"unknown model config keys: {', '.join(sorted(unknown))}")
        data = dict(data)
        return cls.for_arch(data.pop("arch", "vgg16"), **data)

    @classmethod
    def for_arch(cls, arch: str = "vgg16", **overrides: Any) -> ModelConfig:
        """The preset for ``arch`` with ``overrides`` applied."""
        if arch not in PRESETS:
            raise Pan360Error(f"unknown model arch {arch!r} (choose from {', '.join(PRESETS)})")
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise Pan360Error(f"unknown model config keys: {', '.join(sorted(unknown))}")
        return cls(**{**PRESETS[arch], **overrides, "arch": arch})


# "small": the same structure, narrow: VGG blocks 8/16/32/64/128 wide with 1, 1, 2, 2, 2 convs and
# a 1x1 projection (+ReLU) to the 512-d grid; SoundNet widths halved through conv5, then 128 and 256,
# so that a batch of 8 at 160x320 with 4 s of audio trains in about a second on 2 CPU cores.
# Its pools (8, 4, 2) make the total stride 16,384 samples (0.74 s per conv8 step) and the receptive
# field 82,718 samples (3.75 s), so a 4 s window gives 3 conv8 steps (the paper's 20 s window gives 4
# steps of a 14.5 s field). 4 s also keeps the sound local in time, which matters for a camera that
# follows moving sources. Images default to 2:1 (equirect) 160x320 → a 10x20 grid (18° cells).
# Its softmax multiplier of 10 is a deviation: without a temperature, cosines in [0, 1] (mechanism 2)
# cannot make one cell more than e times as likely as another, which leaves the supervised loss of
# eq. 8 nearly flat for a model trained from scratch.
# "lite0": pretrained streams. Sound: SoundNet-8 with its own weights (pan360.nn.soundnet), f_s = its
# conv8 ImageNet-object distribution averaged over a 20 s window kept inside the clip (a shorter clip
# is looped: SoundNet needs 9.5 s for one conv8 step, and zero padding makes its edge steps
# degenerate). Picture: ImageNet EfficientNet-Lite0 (pan360.nn.efficientnet) on a 512x1024 equirect
# frame wrapped 32 columns around the seam; the grid is a 1x1 projection of its stride-16 features
# and its upsampled stride-32 head. The attention adds the training-free audio-visual prior
# (pan360.nn.agreement) to the paper's cosine term, whose learned weight starts at 0.
PRESETS: dict[str, dict[str, Any]] = {
    "vgg16": {},
    "lite0": {
        "window": 20.0,
        "image_height": 512,
        "image_width": 1024,
        "prior_sharpness": 6.0,
        "embed_dim": 128,  # the learned cosine term starts at 0 weight: a narrow one keeps the file small
        "visual_pad": 32,
        "window_fill": "clip",
        "logit_scale": 10.0,
    },
    "small": {
        "window": 4.0,
        "image_height": 160,
        "image_width": 320,
        "visual_channels": (8, 16, 32, 64, 128),
        "visual_convs": (1, 1, 2, 2, 2),
        "sound_channels": (8, 16, 32, 64, 128, 128, 256),
        "sound_pools": (8, 4, 2),
        "logit_scale": 10.0,
    },
}


def _sound_layers(cfg: ModelConfig) -> list[tuple[int, int, int]]:
    """(kernel, stride, padding) of every conv and pool of the sound stream, in order."""
    layers = []
    for i in range(8):
        layers.append((_SOUND_KERNELS[i], _SOUND_STRIDES[i], _SOUND_PADS[i]))
        if i in _POOL_AFTER:
            p = cfg.sound_pools[_POOL_AFTER.index(i)]
            if p > 1:
                layers.append((p, p, 0))
    return layers


def conv8_steps(n_samples: int, cfg: ModelConfig) -> int:
    """Number of conv8 time steps for an input of ``n_samples`` (≤ 0: too short for one step)."""
    n = n_samples
    for k, s, p in _sound_layers(cfg):
        n = (n + 2 * p - k) // s + 1
        if n < 1:
            return 0
    return n


def min_window_samples(cfg: ModelConfig) -> int:
    """Shortest input giving one conv8 step (SoundNet-8: 209,409 samples = 9.5 s at 22,050 Hz)."""
    n = 1
    for k, s, p in reversed(_sound_layers(cfg)):
        n = (n - 1) * s + k - 2 * p
    return n


def conv8_receptive_fields(n_steps: int, cfg: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """Input sample span [start, end) seen by each conv8 step (may reach into the zero padding).

    Returns
    -------
    starts, ends : int64 arrays (n_steps,), sample indices of the input waveform.
    """
    start, size, jump = 0, 1, 1
    for k, s, p in _sound_layers(cfg):
        # Output j of this layer covers inputs [j*s - p, j*s - p + k); compose back to the waveform.
        start, size, jump = start - p * jump, size + (k - 1) * jump, jump * s
    starts = start + jump * np.arange(n_steps, dtype=np.int64)
    return starts, starts + size


@dataclass
class LocalizerOutput:
    """What :meth:`SoundLocalizer.forward` returns (B = batch, h×w = H/16 × W/16 grid)."""

    attention: Tensor  # (B, h, w) α, each map sums to 1
    logits: Tensor  # (B, h, w) cosine of h and v_i (after the ReLU for mechanism 2), before scaling
    f_v: Tensor  # (B, 1000) visual embedding
    f_s: Tensor  # (B, 1000) sound embedding (pooled conv8)
    h: Tensor  # (B, 512) sound embedding that queries the grid
    z: Tensor  # (B, 512) attention-weighted visual feature


class VisualFeatures(NamedTuple):
    """The visual stream's output: the attention grid, and for "lite0" what the prior needs."""

    grid: Tensor | None  # (B, 512, H/16, W/16); None from an inference copy whose attention does not use it
    head: Tensor | None = None  # (B, 1280, H/32, W/32) EfficientNet-Lite0 head features
    class_logits: Tensor | None = None  # (B, 1000, H/32, W/32) ImageNet logits of every head cell
    grid_size: tuple[int, int] | None = None  # (H/16, W/16) when ``grid`` is None

    @property
    def rows_cols(self) -> tuple[int, int]:
        """(rows, columns) of the attention grid."""
        if self.grid is None:
            assert self.grid_size is not None
            return self.grid_size
        return (self.grid.shape[-2], self.grid.shape[-1])


def _vgg_blocks(cfg: ModelConfig) -> nn.Sequential:
    """VGG blocks with max-pools between them (4 pools → H/16); the last block ends with its ReLU.

    For the vgg16 preset the module indices equal torchvision's ``vgg16().features[:30]``, so its
    state dict keys match ``features.0 … features.28`` one to one.
    """
    layers: list[nn.Module] = []
    c_in = 3
    for b, (width, n_conv) in enumerate(zip(cfg.visual_channels, cfg.visual_convs)):
        for _ in range(n_conv):
            layers += [nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU(inplace=True)]
            c_in = width
        if b < 4:
            layers.append(nn.MaxPool2d(2, 2))
    if c_in != cfg.embed_dim:  # "small": a 1x1 projection (+ReLU, as conv5_3) to the 512-d grid
        layers += [nn.Conv2d(c_in, cfg.embed_dim, 1), nn.ReLU(inplace=True)]
    for m in layers:  # torchvision's VGG initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return nn.Sequential(*layers)


def soundnet_layers(cfg: ModelConfig) -> nn.Sequential:
    """SoundNet-8 conv1..conv7 (+BN, ReLU, pools) and conv8 (no BN/ReLU) with ``sound_dim`` filters."""
    layers: list[nn.Module] = []
    c_in = 1
    widths = (*cfg.sound_channels, cfg.sound_dim)
    for i in range(8):
        layers.append(nn.Conv1d(c_in, widths[i], _SOUND_KERNELS[i], _SOUND_STRIDES[i], _SOUND_PADS[i]))
        c_in = widths[i]
        if i < 7:
            layers += [nn.BatchNorm1d(c_in), nn.ReLU(inplace=True)]
        if i in _POOL_AFTER and cfg.sound_pools[_POOL_AFTER.index(i)] > 1:
            p = cfg.sound_pools[_POOL_AFTER.index(i)]
            layers.append(nn.MaxPool1d(p, p))
    return nn.Sequential(*layers)


class SoundLocalizer(nn.Module):
    """Senocak et al.'s sound-localization network.

    Parameters
    ----------
    arch : "vgg16" (paper) or "small" (CPU-trainable), see :data:`PRESETS`.
    mechanism : 1 (softmax of cosine) or 2 (ReLU then softmax).
    **config_overrides : any other :class:`ModelConfig` field.
    """

    def __init__(self, arch: str = "vgg16", mechanism: int = 2, **config_overrides: Any) -> None:
        super().__init__()
        cfg = ModelConfig.for_arch(arch, mechanism=mechanism, **config_overrides)
        self.config = cfg
        if cfg.arch == "lite0":
            from pan360.nn.efficientnet import LiteVisual

            self.visual: nn.Module = LiteVisual(cfg.embed_dim, cfg.visual_pad)
            # Mean SoundNet class distribution of real sound (set by the recipe): the prior divides it out.
            self.register_buffer("sound_class_prior", torch.full((cfg.sound_dim,), 1.0 / cfg.sound_dim))
            # Weight of the learned cosine term against the training-free prior (0: the prior alone).
            self.learned_gain = nn.Parameter(torch.zeros(()))
        else:
            self.visual = _vgg_blocks(cfg)
        self.sound = soundnet_layers(cfg)
        d, e = cfg.sound_dim, cfg.embed_dim
        # FC9, FC10 of §3.1 ("ReLU followed by FC", twice): f_s → 1000 → 512 = h.
        self.sound_head = nn.Sequential(nn.ReLU(), nn.Linear(d, d), nn.ReLU(), nn.Linear(d, e))
        # Two {ReLU, FC} blocks of §3.2: z → 512 → 1000 = f_v.
        self.visual_head = nn.Sequential(nn.ReLU(), nn.Linear(e, e), nn.ReLU(), nn.Linear(e, d))
        if cfg.learn_logit_scale:
            self.log_logit_scale = nn.Parameter(torch.tensor(math.log(cfg.logit_scale)))

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> SoundLocalizer:
        """Build an (untrained) model from a config."""
        data = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
        return cls(**data)

    def for_inference(self) -> SoundLocalizer:
        """The model for analysis, in eval mode: other archs this model itself; "lite0" a copy (this
        model is not changed), never to be trained:

        the BatchNorms are folded into the convolutions and the backbone runs channels-last
        (measured on 2 CPU cores, with :class:`~pan360.nn.efficientnet.SameConv`'s padding: 2.66 → 1.08
        CPU s for two 512x1024 pictures; the same maps to float rounding, ~1e-5 relative), and the attention grid is not computed while the learned
        cosine term weighs nothing (``learned_gain`` 0: the attention is the prior's softmax exactly,
        :meth:`localize`).
        """
        if self.config.arch != "lite0":
            return self.eval()
        from pan360.nn.efficientnet import fold_batchnorm

        model = copy.deepcopy(self).eval()
        visual = model.visual
        fold_batchnorm(visual.backbone)
        visual.to(memory_format=torch.channels_last)
        visual.channels_last = True
        visual.with_grid = float(model.learned_gain.detach()) != 0.0
        return model

    def visual_features(self, frames: Tensor) -> VisualFeatures:
        """(B, 3, H, W) ImageNet-normalised frames → the grid (B, 512, H/16, W/16), ≥ 0, and for "lite0"
        the stride-32 head features and per-cell ImageNet logits the audio-visual prior needs."""
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise Pan360Error(f"frames must be (B, 3, H, W), got {tuple(frames.shape)}")
        if frames.shape[2] < 16 or frames.shape[3] < 16:
            raise Pan360Error(f"frames must be at least 16x16, got {frames.shape[2]}x{frames.shape[3]}")
        if self.config.arch == "lite0":
            return self.visual(frames)
        return VisualFeatures(self.visual(frames))

    def visual_grid(self, frames: Tensor) -> Tensor:
        """(B, 3, H, W) ImageNet-normalised frames → (B, 512, ⌊H/16⌋, ⌊W/16⌋) grid (≥ 0)."""
        return self.visual_features(frames).grid

    def sound_prior(self, f_s: Tensor, visual: VisualFeatures) -> Tensor | None:
        """The training-free audio-visual prior (B, h, w) in logits on the grid, or None (no pretrained streams)."""
        if self.config.arch != "lite0" or visual.head is None:
            return None
        from pan360.nn.agreement import audio_visual_prior

        prior = audio_visual_prior(f_s.float(), visual.head.float(), visual.class_logits.float(),
                                   self.visual.backbone.fc.weight.float(), self.sound_class_prior,
                                   topk=self.config.prior_topk, gain=self.config.prior_gain,
                                   sharpness=self.config.prior_sharpness)
        return F.interpolate(prior[:, None], size=visual.rows_cols, mode="bilinear",
                             align_corners=False)[:, 0]

    def encode_sound(self, waveforms: Tensor, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Sound stream: (B, N) mono waveforms in [-1, 1] at ``config.sample_rate`` → (f_s, h).

        ``valid`` is a (B, N) mask of the samples that are real audio (zero padding beyond the clip's
        edges is not) or (B,) lengths of a valid prefix. The average over conv8 steps (the paper's
        global average pooling) weights each step by the share of its receptive field, within the
        input, that is real audio: a fully valid window is the plain average; steps that see only
        padding are ignored. A window with no real audio at all falls back to the plain average (the
        embedding of silence). Inputs too short for one conv8 step are zero-padded on the right,
        that padding marked invalid.
        """
        if waveforms.ndim != 2:
            raise Pan360Error(f"waveforms must be (B, N) mono, got {tuple(waveforms.shape)}")
        b, n = waveforms.shape
        if valid is None:
            mask = torch.ones(b, n, device=waveforms.device)
        elif valid.ndim == 1:
            mask = (torch.arange(n, device=waveforms.device)[None] < valid.to(waveforms.device)[:, None])
        elif tuple(valid.shape) == (b, n):
            mask = valid.to(waveforms.device)
        else:
            raise Pan360Error(f"valid must be (B, N) or (B,), got {tuple(valid.shape)}")
        mask = mask.float()
        short = min_window_samples(self.config) - n
        if short > 0:
            waveforms = F.pad(waveforms, (0, short))
            mask = F.pad(mask, (0, short))
            n += short
        feats = self.sound(waveforms[:, None, :] * self.config.input_scale)  # (B, 1000, T)
        t = feats.shape[-1]
        starts, ends = conv8_receptive_fields(t, self.config)
        starts, ends = np.clip(starts, 0, n), np.clip(ends, 0, n)
        csum = F.pad(torch.cumsum(mask, dim=1), (1, 0))  # csum[:, i] = valid samples before i
        s_idx = torch.as_tensor(starts, device=mask.device)
        e_idx = torch.as_tensor(ends, device=mask.device)
        span = (e_idx - s_idx).clamp(min=1).float()
        weight = (csum[:, e_idx] - csum[:, s_idx]) / span  # (B, T) share of real audio per step
        empty = weight.sum(dim=1, keepdim=True) <= 0
        weight = torch.where(empty, torch.ones_like(weight), weight)
        weight = weight / weight.sum(dim=1, keepdim=True)
        if self.config.arch == "lite0":
            # SoundNet's conv8 is a per-step class distribution (as the paper's precomputed f_s); the
            # first and last steps see the convolutions' zero padding and are dropped when inner ones exist.
            feats = torch.softmax(feats.float(), dim=1)
            if t >= 3:
                weight = weight.clone()
                weight[:, 0] = 0
                weight[:, -1] = 0
                weight = weight / weight.sum(dim=1, keepdim=True).clamp(min=1e-12)
        f_s = (feats * weight[:, None, :].to(feats.dtype)).sum(dim=-1)
        return f_s, self.sound_head(f_s)

    @property
    def current_logit_scale(self) -> Tensor | float:
        """The softmax multiplier (learned and clamped to [1, 100] when ``learn_logit_scale``)."""
        if self.config.learn_logit_scale:
            return self.log_logit_scale.exp().clamp(1.0, 100.0)
        return self.config.logit_scale

    def localize(self, visual_grid: Tensor, h: Tensor, prior: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Attention of sound embeddings ``h`` (B, 512) over a grid (B, 512, h, w).

        Returns (attention (B, h, w) summing to 1 per map, logits (B, h, w)); the logits are the
        cosines (eq. 2), after the ReLU for mechanism 2 (eq. 3), before the softmax multiplier.
        ``prior`` (B, h, w), from :meth:`sound_prior`, is added to the softmax's input ("lite0": the
        cosine term then weighs ``learned_gain``). ``visual_grid`` None (an inference copy's, see
        :meth:`for_inference`): the cosine term is left out, as it weighs nothing, and the logits are zeros.
        """
        if visual_grid is None:
            if prior is None or self.config.arch != "lite0" or float(self.learned_gain.detach()) != 0.0:
                raise Pan360Error("the attention needs the visual grid")
            b, gh, gw = prior.shape
            attention = torch.softmax(prior.flatten(1).float(), dim=1)
            return attention.view(b, gh, gw), torch.zeros(b, gh, gw, device=prior.device)
        b, c, gh, gw = visual_grid.shape
        v = F.normalize(visual_grid.flatten(2), dim=1, eps=1e-6)  # (B, 512, M)
        q = F.normalize(h, dim=1, eps=1e-6)
        logits = torch.einsum("bcm,bc->bm", v, q.to(v.dtype))
        if self.config.mechanism == 2:
            logits = F.relu(logits)
        scores = logits.float() * self.current_logit_scale
        if self.config.arch == "lite0":
            scores = scores * self.learned_gain
        if prior is not None:
            scores = scores + prior.flatten(1).float()
        attention = torch.softmax(scores, dim=1)
        return attention.view(b, gh, gw), logits.view(b, gh, gw)

    def forward(
        self, frames: Tensor, waveforms: Tensor, valid: Tensor | None = None
    ) -> LocalizerOutput:
        """Frames (B, 3, H, W) ImageNet-normalised and waveforms (B, N) → :class:`LocalizerOutput`."""
        if frames.shape[0] != waveforms.shape[0]:
            raise Pan360Error(f"batch mismatch: {frames.shape[0]} frames, {waveforms.shape[0]} sounds")
        visual = self.visual_features(frames)
        grid = visual.grid
        f_s, h = self.encode_sound(waveforms, valid)
        attention, logits = self.localize(grid, h, self.sound_prior(f_s, visual))
        # z = Σ α_i v_i over the un-normalised grid vectors (eq. 4, as the official code).
        z = torch.einsum("bm,bcm->bc", attention.flatten(1).to(grid.dtype), grid.flatten(2))
        f_v = self.visual_head(z)
        return LocalizerOutput(attention=attention, logits=logits, f_v=f_v, f_s=f_s, h=h, z=z)
