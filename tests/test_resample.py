"""pan360.signal's stand-ins for scipy, bit for bit: resample_poly gives scipy.signal.resample_poly's
values for float32 audio at the rates a camera's audio meets the network's 22.05 kHz (and others), on
every length down to one sample, with scipy's firwin design as the filter; gaussian_smooth gives
scipy.ndimage.gaussian_filter1d's values (mode "nearest"), used to smooth camera paths; box_smooth
gives scipy.ndimage.uniform_filter's (mode "nearest"), used on the FOA maps' time-frequency planes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as scipy_ndimage
from scipy import signal as scipy_signal

from pan360.errors import Pan360Error
from pan360.signal import box_smooth, gaussian_smooth, kaiser_lowpass, resample_poly

RATIOS = [(147, 320), (1, 2), (147, 160), (441, 640), (160, 147), (2, 3), (3, 1), (441, 480), (4, 6)]


@pytest.mark.parametrize("up,down", RATIOS)
def test_equals_scipy_bit_for_bit(up: int, down: int) -> None:
    rng = np.random.default_rng(up * 1000 + down)
    x = rng.standard_normal((2, 48000 * 2 + 17)).astype(np.float32)
    x[1] = np.sin(np.arange(x.shape[1]) * 0.01).astype(np.float32)  # a tone as well as noise
    ours = resample_poly(x, up, down)
    theirs = scipy_signal.resample_poly(x, up, down, axis=1)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)
    assert np.array_equal(resample_poly(x[0], up, down), theirs[0])  # (N,) as well


def test_short_and_chunked() -> None:
    for n in (1, 2, 5, 319, 321, 1000):
        x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
        for up, down in ((147, 320), (1, 2), (3, 1)):
            assert np.array_equal(resample_poly(x, up, down), scipy_signal.resample_poly(x, up, down))
    x = np.random.default_rng(0).standard_normal(30000).astype(np.float32)
    assert np.array_equal(resample_poly(x, 147, 320, chunk=7), resample_poly(x, 147, 320))
    assert np.array_equal(resample_poly(x, 5, 5), x)
    assert resample_poly(np.zeros(0, np.float32), 147, 320).shape == (0,)
    assert resample_poly(np.zeros((2, 0), np.float32), 1, 2).shape == (2, 0)
    for bad in ((0, 2), (2, -1), (1.5, 2)):
        with pytest.raises(Pan360Error, match="positive integers"):
            resample_poly(x, *bad)


@pytest.mark.parametrize("up,down", RATIOS[:5])
def test_filter_is_scipys(up: int, down: int) -> None:
    h, half = kaiser_lowpass(up, down)
    rate = max(up, down)
    assert half == 10 * rate
    ref = scipy_signal.firwin(2 * half + 1, 1.0 / rate, window=("kaiser", 5.0))
    np.testing.assert_allclose(h, ref, rtol=0, atol=1e-16)  # np.i0 against scipy.special.i0: ~1e-18
    assert np.array_equal(h.astype(np.float32), ref.astype(np.float32))  # the taps resample_poly uses


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gaussian_smooth_equals_scipy_bit_for_bit(dtype) -> None:
    rng = np.random.default_rng(7)
    for trial in range(60):
        n = int(rng.integers(1, 200))  # down to one sample, and shorter than the kernel
        sigma = float(rng.uniform(0.2, 15.0))
        shape, axis = [((n,), 0), ((n, 3), 0), ((4, n), 1)][trial % 3]
        x = rng.standard_normal(shape).astype(dtype)
        ours = gaussian_smooth(x, sigma, axis=axis)
        theirs = scipy_ndimage.gaussian_filter1d(x, sigma, axis=axis, mode="nearest")
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs), (n, sigma, shape)
    step = np.r_[np.zeros(20), np.ones(20)]
    smooth = gaussian_smooth(step, 3.0)
    assert smooth[0] == 0.0 and smooth[-1] == 1.0 and np.all(np.diff(smooth) >= 0)  # ends held, monotone
    with pytest.raises(Pan360Error, match="sigma"):
        gaussian_smooth(step, 0.0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_box_smooth_equals_scipy_bit_for_bit(dtype) -> None:
    rng = np.random.default_rng(11)
    for trial in range(60):
        shape = (int(rng.integers(1, 120)), int(rng.integers(1, 60)))
        if trial % 3 == 0:
            shape = (4, *shape)  # the FOA maps' stack: energy and three intensities
        x = (rng.random(shape) * 10.0 ** rng.integers(-6, 3)).astype(dtype)
        size = tuple(int(rng.integers(1, 12)) for _ in shape)  # odd, even and 1
        ours = box_smooth(x, size)
        theirs = scipy_ndimage.uniform_filter(x, size=size, mode="nearest")
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs), (shape, size)
    ramp = np.arange(10.0)
    assert np.array_equal(box_smooth(ramp, (3,))[1:-1], ramp[1:-1]) and box_smooth(ramp, (3,))[0] == 1 / 3
    with pytest.raises(Pan360Error, match="box sizes"):
        box_smooth(ramp, (3, 3))
