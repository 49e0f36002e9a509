"""Audio as a signal read by sample ranges, with one interface whether it is in memory or streamed.

Every consumer of sound (the FOA maps, the network's sound windows, the camera-following stereo, the
encoder) reads ``(channels, stop - start)`` float32 ranges through :meth:`Signal.read`, zeros outside
``[0, length)``. Read in non-decreasing order of ``start``, a streamed signal
(:class:`pan360.media.audio.AudioStream`) decodes once per pass and holds only the range in hand, so
no stage keeps a whole long recording in memory; an array (:class:`ArraySignal`) is simply sliced.
Derived signals (:meth:`Signal.map`, :class:`Resampled`) compute their ranges from their parent's on
demand, so they stream too.

The module also holds numpy versions of the scipy filters pan360 needs, each equal to scipy's
output bit for bit and tested against it. With them a render loads no ``scipy.signal`` or
``scipy.ndimage``:
- :func:`resample_poly` resamples audio for the network
- :func:`gaussian_smooth` smooths camera paths
- :func:`box_smooth` smooths the FOA maps' time-frequency planes
"""

from __future__ import annotations

import math
from fractions import Fraction
from collections.abc import Sequence
from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import as_strided
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
    """``parent`` at ``sample_rate`` through :func:`resample_poly`, computed range by range.

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
        n_in, margin = self.parent.length, 64 * down
        lo, hi = max(start, 0), min(stop, self.length)
        if hi <= lo:
            return np.zeros((self.channels, max(stop - start, 0)), np.float32)
        a = max(0, (lo * down // up - margin) // down * down)
        b = min(n_in, int(math.ceil(hi * down / up)) + margin)
        seg = resample_poly(self.parent.read(a, b), up, down)
        return slice_padded(seg, a * up // down, start, stop)


#: Kaiser window of :func:`resample_poly`'s filter (scipy's default ``("kaiser", 5.0)``).
KAISER_BETA = 5.0


def kaiser_lowpass(up: int, down: int) -> tuple[NDArray[np.float64], int]:
    """The anti-aliasing filter ``scipy.signal.resample_poly`` designs for ``up / down`` (in lowest
    terms): ``firwin(2 * half + 1, 1 / max(up, down), window=("kaiser", 5))`` with ``half = 10 max(up,
    down)``, in scipy's order of operations (unit gain at DC). Returns (taps, half)."""
    rate = max(up, down)
    half = 10 * rate
    n_taps = 2 * half + 1
    cutoff = 1.0 / rate
    centre = 0.5 * (n_taps - 1)
    m = np.arange(n_taps, dtype=np.float64) - centre
    h = cutoff * np.sinc(cutoff * m)
    h *= np.i0(KAISER_BETA * np.sqrt(1 - (m / centre) ** 2.0)) / np.i0(KAISER_BETA)
    return h / np.sum(h), half


def resample_poly(x: ArrayLike, up: int, down: int, chunk: int = 1 << 20) -> F32:
    """``x`` (N,) or (C, N) float32 resampled by ``up / down`` along its last axis: the values of
    ``scipy.signal.resample_poly(x, up, down, axis=-1)`` for float32 input, bit for bit (tested), without
    importing scipy.signal (~0.8 CPU s beside torch: a twentieth of a default render).

    scipy filters with :func:`kaiser_lowpass` cast to float32 and times ``up``, delayed so that output
    ``i`` sits at input time ``i down / up``, and sums each output's products in float32 from the
    oldest input sample to the newest (``upfirdn``); zeros outside the signal. Here the outputs are
    grouped by their filter phase: output ``j = up m + c`` reads input ``(c down) // up + m down - r``
    with tap ``(c down) % up + up r``, so for each tap index one vector operation serves every output,
    in scipy's order. The input rows of at most ``chunk`` samples at a time bound the memory.
    """
    a = np.asarray(x, dtype=np.float32)
    if a.ndim not in (1, 2):
        raise Pan360Error(f"resample_poly needs (N,) or (C, N) samples, got shape {a.shape}")
    if int(up) != up or int(down) != down or up < 1 or down < 1:
        raise Pan360Error(f"resampling factors must be positive integers, got {up}/{down}")
    rows = a[None] if a.ndim == 1 else a
    g = math.gcd(int(up), int(down))
    up, down = int(up) // g, int(down) // g
    if up == down == 1:
        return a.copy()
    n_in = rows.shape[1]
    n_out = -(-n_in * up // down)
    if n_out == 0:
        return np.zeros((*a.shape[:-1], 0), np.float32)
    h, half = kaiser_lowpass(up, down)
    taps = h.astype(np.float32)
    taps *= up
    pre = down - half % down  # scipy's leading zeros: output 0 falls on input 0
    first = (half + pre) // down  # outputs of upfirdn dropped before the first kept one
    n_phase = -(-(pre + len(taps)) // up)  # taps per phase
    padded = np.zeros(n_phase * up, np.float32)
    padded[pre:pre + len(taps)] = taps
    c = np.arange(up)
    # (up, n_phase): the taps of output class c, newest input last (scipy's flipped phases)
    phase_taps = padded.reshape(n_phase, up).T[(c * down) % up, ::-1]
    col = (c * down) // up  # input offset of class c within its row of the strided view
    width = int(col.max()) + n_phase
    m0, m1 = first // up, -(-(first + n_out) // up)
    out = np.empty((rows.shape[0], n_out), np.float32)
    for ch, row in enumerate(rows):
        # row shifted right by n_phase - 1 zeros, long enough for the last output's newest sample
        xz = np.zeros(max((m1 - 1) * down + width, n_phase - 1 + n_in) + 1, np.float32)
        xz[n_phase - 1:n_phase - 1 + n_in] = row
        parts = []
        step = max(1, chunk // width)
        for ma in range(m0, m1, step):
            mb = min(m1, ma + step)
            # view[m, q] = xz[(ma + m) down + q]; transposed so that each class's inputs are one row
            view = as_strided(xz[ma * down:], shape=(mb - ma, width), strides=(down * 4, 4))
            inputs = np.ascontiguousarray(view.T)
            acc = np.zeros((up, mb - ma), np.float32)
            for k in range(n_phase):
                acc += inputs[col + k] * phase_taps[:, k:k + 1]
            parts.append(acc.T.ravel())
        y = np.concatenate(parts)
        skip = first - up * m0
        out[ch] = y[skip:skip + n_out]
    return out[0] if a.ndim == 1 else out


def gaussian_smooth(x: ArrayLike, sigma: float, axis: int = 0, truncate: float = 4.0) -> NDArray[np.floating]:
    """``x`` smoothed along ``axis`` by a Gaussian of ``sigma`` samples, edges extended with their end
    values: ``scipy.ndimage.gaussian_filter1d(x, sigma, axis, mode="nearest")`` bit for bit (tested),
    without importing scipy.ndimage (~0.25 CPU s, which a render along a planned path otherwise pays
    only for this).

    scipy's kernel: ``exp(-x² / 2σ²)`` over ``|x| <= int(truncate σ + 0.5)``, normalised to sum 1;
    each output is the centre tap's product plus, from the outermost pair inwards, each symmetric
    pair of samples summed and then weighted, in float64. Float inputs keep their dtype.
    """
    a = np.asarray(x)
    if sigma <= 0 or not math.isfinite(sigma):
        raise Pan360Error(f"Gaussian sigma must be positive and finite, got {sigma}")
    out_dtype = a.dtype if np.issubdtype(a.dtype, np.floating) else np.float64
    v = np.moveaxis(a.astype(np.float64, copy=False), axis, 0)
    radius = int(truncate * float(sigma) + 0.5)
    offsets = np.arange(-radius, radius + 1)
    w = np.exp(-0.5 / (float(sigma) * float(sigma)) * offsets ** 2)
    w = w / w.sum()
    n = len(v)
    if n == 0:
        return a.astype(out_dtype, copy=True)
    p = v[np.clip(np.arange(-radius, n + radius), 0, n - 1)]  # "nearest": the end samples repeated
    acc = p[radius:radius + n] * w[radius]
    for j in range(radius, 0, -1):
        acc += (p[radius - j:radius - j + n] + p[radius + j:radius + j + n]) * w[radius + j]
    return np.moveaxis(acc, 0, axis).astype(out_dtype, copy=False)


def box_smooth(x: ArrayLike, size: Sequence[int]) -> NDArray[np.floating]:
    """``x`` averaged over a box of ``size[a]`` samples along each axis ``a`` (even sizes reach one
    sample further back than forward), edges extended with their end values:
    ``scipy.ndimage.uniform_filter(x, size, mode="nearest")`` bit for bit (tested), without importing
    scipy.ndimage.

    As scipy: one axis after the other, axes of size 1 left alone; along an axis a running sum in
    float64 (the first box summed in order, then the sample entering minus the sample leaving), each
    output the sum divided by the size, stored in the input's float dtype before the next axis.
    Besides the result it holds only a few float64 slices at a time (no padded or float64 copy of the
    whole array: the FOA maps smooth chunks of tens of MB, and large transients fragment the heap).
    """
    out = np.asarray(x)
    if not np.issubdtype(out.dtype, np.floating):
        out = out.astype(np.float64)
    if len(size) != out.ndim or any(int(s) < 1 for s in size):
        raise Pan360Error(f"box sizes {tuple(size)} do not fit an array of shape {out.shape}")
    for axis, k in enumerate(int(s) for s in size):
        n = out.shape[axis]
        if k == 1 or n == 0:
            continue
        back = k // 2
        v = np.moveaxis(out, axis, 0)

        def sample(i: int, v: NDArray = v, n: int = n) -> NDArray[np.float64]:
            return v[min(max(i, 0), n - 1)].astype(np.float64)  # "nearest": the end samples repeated

        run = sample(-back)
        for i in range(1 - back, k - back):
            run += sample(i)
        res = np.empty(v.shape, out.dtype)  # each quotient rounded to the input's dtype, as scipy stores it
        res[0] = run / k
        for i in range(1, n):
            run += sample(i + k - 1 - back) - sample(i - 1 - back)
            res[i] = run / k
        out = np.moveaxis(res, 0, axis)
    return out


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
