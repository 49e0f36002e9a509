"""Input preprocessing of the sound-attention network (:mod:`pan360.nn.model`): frames to ImageNet-normalised
tensors, and mono audio to the model's sound window at its sample rate.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pan360.errors import Pan360Error
from pan360.signal import Resampled, Signal, as_signal, resample_poly

if TYPE_CHECKING:
    from pan360.nn.model import ModelConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocess_frames(rgb: np.ndarray | Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """uint8 RGB frames (B, H, W, 3) or (H, W, 3) → float (B, 3, h, w), ImageNet mean/std normalised.

    ``size`` = (h, w) resizes (bilinear, antialiased); None keeps the input size.
    """
    x = torch.as_tensor(rgb)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise Pan360Error(f"frames must be (B, H, W, 3) RGB, got {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).float() / 255.0
    if size is not None and tuple(size) != tuple(x.shape[-2:]):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def resample_audio(samples: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    """Mono float32 samples resampled with a polyphase filter (:func:`pan360.signal.resample_poly`,
    scipy's values)."""
    x = np.asarray(samples, dtype=np.float32)
    if sample_rate == target_rate:
        return x
    ratio = Fraction(target_rate, sample_rate)
    return resample_poly(x, ratio.numerator, ratio.denominator)


def _mono_signal(samples: np.ndarray | Signal, sample_rate: int) -> Signal:
    if sample_rate <= 0:
        raise Pan360Error(f"invalid sample rate {sample_rate}")
    if not isinstance(samples, Signal) and np.ndim(samples) != 1:
        raise Pan360Error(f"sound_window needs mono samples (N,), got shape {np.shape(samples)}")
    x = as_signal(samples, sample_rate)
    if x.channels != 1:
        raise Pan360Error(f"sound_window needs a mono signal, got {x.channels} channels")
    return x


def _clip_window(x: Signal, centre_time: float, cfg: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """``window_fill="clip"``: the window slides to stay inside the clip (centred on ``centre_time``
    where it can be); a clip shorter than the window is looped to fill it. All samples are valid."""
    sample_rate, length, n = x.sample_rate, cfg.window_samples, x.length
    src_len = int(math.ceil(cfg.window * sample_rate))
    if n == 0:
        return np.zeros(length, np.float32), np.zeros(length, bool)
    if n <= src_len:
        whole = x.array()[0]
        seg = np.tile(whole, src_len // n + 1)[:src_len]
    else:
        a = int(np.clip(round((centre_time - cfg.window / 2) * sample_rate), 0, n - src_len))
        seg = x.read(a, a + src_len)[0]
    wave = resample_audio(seg, sample_rate, cfg.sample_rate)
    wave = np.pad(wave, (0, max(0, length - len(wave))))[:length].astype(np.float32)
    return wave, np.ones(length, bool)


def sound_window(
    samples: np.ndarray | Signal, sample_rate: int, centre_time: float, cfg: ModelConfig
) -> tuple[np.ndarray, np.ndarray]:
    """The ``cfg.window`` seconds of mono audio centred on ``centre_time`` (s), at ``cfg.sample_rate``.

    ``samples``: (N,) float32, or a one-channel :class:`~pan360.signal.Signal` (read window by window,
    so a streamed track is never held whole). Parts of the window outside the clip (its start and end,
    or all around a clip shorter than the window) are zeros and marked invalid: audio is never looped or
    mirrored, which would invent sound. Pass the mask to :meth:`pan360.nn.model.SoundLocalizer.encode_sound`
    so that only conv8 steps that hear real audio enter the average. Only the needed stretch is
    resampled (:class:`~pan360.signal.Resampled`); for many windows of one clip, pass the signal at the
    target rate (``Resampled(signal, cfg.sample_rate)``, bit-identical to resampling it whole).

    Returns
    -------
    waveform : float32 (L,), L = ``cfg.window_samples``.
    valid : bool (L,), True where the sample is real audio.
    """
    x = _mono_signal(samples, sample_rate)
    if cfg.window_fill == "clip":
        return _clip_window(x, centre_time, cfg)
    tsr, length = cfg.sample_rate, cfg.window_samples
    m0 = int(round((centre_time - cfg.window / 2) * tsr))  # first window sample on the target grid
    y = Resampled(x, tsr)
    wave = np.array(y.read(m0, m0 + length)[0], dtype=np.float32)  # zeros outside the clip
    at = m0 + np.arange(length)
    return wave, (at >= 0) & (at < y.length)
