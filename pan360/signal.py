"""Audio as a signal read by sample ranges, with one interface whether it is in memory or streamed.

Every consumer of sound (the FOA maps, the network's sound windows, the camera-following stereo, the
encoder) reads ``(channels, stop - start)`` float32 ranges through :meth:`Signal.read`, zeros outside
``[0, length)``. Read in non-decreasing order of ``start``, a streamed signal
(:class:`pan360.media.audio.AudioStream`) decodes once per pass and holds only the range in hand, so
no stage keeps a whole long recording in memory; an array (:class:`ArraySignal`) is simply sliced.
Derived signals (:meth:`Signal.map`, :class:`Resampled`) compute their ranges from their parent's on
demand, so they stream too.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pan360.errors import Pan360Error

F32 = NDArray[np.float32]

#: Samples per block where a long stretch is made in pieces (a gap's zeros): ~1.4 s at 48 kHz.
BLOCK = 1 << 16


class Signal:
    """A (channels, length) float32 signal at ``sample_rate``, read by ranges (see the module docstring)."""

    sample_rate: int
    channels: int

    @property
    def length(self) -> int:
        """Number of samples."""
        raise NotImplementedError

    def read(self, start: int, stop: int) -> F32:
        """Samples ``start`` to ``stop - 1``, (channels, stop - start), zeros outside the signal. The
        result may be a view: do not write into it."""
        raise NotImplementedError

    def array(self) -> F32:
        """The whole signal as one array (for short signals)."""
        return self.read(0, self.length)

    def map(self, fn: Callable[[F32], F32], channels: int) -> Signal:
        """The signal whose every range is ``fn`` of this one's (a per-sample channel transform)."""
        return Mapped(self, fn, channels)


class ArraySignal(Signal):
    """A signal held in memory: ``samples`` (C, N), or (N,) for one channel."""

    def __init__(self, samples: ArrayLike, sample_rate: float) -> None:
        a = np.asarray(samples, dtype=np.float32)
        if a.ndim == 1:
            a = a[None]
        if a.ndim != 2:
            raise Pan360Error(f"audio must be shaped (channels, samples), got shape {a.shape}")
        if not sample_rate > 0:
            raise Pan360Error(f"invalid audio sample rate {sample_rate}")
        self.samples = a
        self.sample_rate = int(sample_rate)
        self.channels = int(a.shape[0])

    @property
    def length(self) -> int:
        return int(self.samples.shape[1])

    def read(self, start: int, stop: int) -> F32:
        return slice_padded(self.samples, 0, start, stop)


class Mapped(Signal):
    """``fn`` applied to each range of ``parent`` (see :meth:`Signal.map`)."""

    def __init__(self, parent: Signal, fn: Callable[[F32], F32], channels: int) -> None:
        self.parent, self.fn = parent, fn
        self.sample_rate, self.channels = parent.sample_rate, int(channels)

    @property
    def length(self) -> int:
        return self.parent.length

    def read(self, start: int, stop: int) -> F32:
        return self.fn(self.parent.read(start, stop))


class Resampled(Signal):
    """``parent`` at ``sample_rate`` through ``scipy.signal.resample_poly``, computed range by range.

    Each range is resampled from a stretch of the parent that starts on a multiple of the decimation
    factor (so its samples sit on the whole signal's output grid) with 64 filter lengths of margin
    each side: the values are bit-identical to resampling the whole signal at once, and sample ``i``
    is at time ``i / sample_rate`` as in the parent.
    """

    def __init__(self, parent: Signal, sample_rate: int) -> None:
        if not sample_rate > 0:
            raise Pan360Error(f"invalid target sample rate {sample_rate}")
        self.parent, self.sample_rate, self.channels = parent, int(sample_rate), parent.channels
        ratio = Fraction(self.sample_rate, parent.sample_rate)
        self._up, self._down = ratio.numerator, ratio.denominator

    @property
    def length(self) -> int:
        return int(math.ceil(self.parent.length * self._up / self._down))  # resample_poly's output length

    def read(self, start: int, stop: int) -> F32:
        up, down = self._up, self._down
        if up == down:
            return self.parent.read(start, stop)
        from scipy.signal import resample_poly  # ~0.3 CPU s to import: only where used

        n_in, margin = self.parent.length, 64 * down
        lo, hi = max(start, 0), min(stop, self.length)
        if hi <= lo:
            return np.zeros((self.channels, max(stop - start, 0)), np.float32)
        a = max(0, (lo * down // up - margin) // down * down)
        b = min(n_in, int(math.ceil(hi * down / up)) + margin)
        seg = resample_poly(self.parent.read(a, b), up, down, axis=1).astype(np.float32)
        return slice_padded(seg, a * up // down, start, stop)


def slice_padded(samples: F32, first: int, start: int, stop: int) -> F32:
    """Samples ``start`` to ``stop - 1`` of a signal whose array ``samples`` (C, M) begins at sample
    ``first``; zeros where it has none (a view when it lies inside)."""
    m = samples.shape[1]
    if first <= start and stop <= first + m:
        return samples[:, start - first:stop - first]
    out = np.zeros((samples.shape[0], max(stop - start, 0)), np.float32)
    lo, hi = max(start, first), min(stop, first + m)
    if hi > lo:
        out[:, lo - start:hi - start] = samples[:, lo - first:hi - first]
    return out


def as_signal(audio: Signal | ArrayLike, sample_rate: float) -> Signal:
    """``audio`` as a :class:`Signal`: a signal as it is, an array wrapped (:class:`ArraySignal`)."""
    if isinstance(audio, Signal):
        if audio.sample_rate != int(sample_rate):
            raise Pan360Error(f"signal at {audio.sample_rate} Hz given where {sample_rate:g} Hz was expected")
        return audio
    return ArraySignal(audio, sample_rate)
