"""Directional energy maps from FOA (pan360.spatial.foa_map)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from scipy.signal import fftconvolve

from pan360.sphere import angular_distance, equirect_solid_angle
from pan360.spatial import (
    ambix_to_fuma,
    encode_foa,
    foa_direction_track,
    foa_energy_maps,
    fuma_to_ambix,
    map_peaks,
    n3d_to_sn3d,
)

SR = 48000
MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
needs_media = pytest.mark.skipif(not MEDIA.is_dir(), reason="../shared/media absent")


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    spec[1:] /= np.sqrt(np.arange(1, spec.size))
    x = np.fft.irfft(spec, n)
    return (x / x.std()).astype(np.float32)


def _diffuse(rng: np.random.Generator, n: int, power: float) -> np.ndarray:
    """Ideal diffuse field in SN3D: uncorrelated channels, X, Y, Z each at 1/3 of W's power."""
    d = rng.standard_normal((4, n)).astype(np.float32)
    d[1:] /= np.sqrt(3.0)
    return d * np.float32(np.sqrt(power))


DIRECTIONS = [(0, 0), (30, 0), (-179, 0), (180, 10), (90, 60), (-120, -60), (45, -30), (-60, 85)]


@pytest.mark.parametrize("fmt", ["ambix", "fuma"])
def test_known_directions_found_within_5_degrees(fmt: str) -> None:
    rng = np.random.default_rng(1)
    sig = _pink(rng, SR // 2) * 0.1
    times = np.array([0.15, 0.25, 0.35])
    for yaw, pitch in DIRECTIONS:
        foa = encode_foa(sig, yaw, pitch)
        if fmt == "fuma":
            foa = fuma_to_ambix(ambix_to_fuma(foa))  # as read from a FuMa file, converted on load
        maps = foa_energy_maps(foa, SR, times)
        y, p, _ = map_peaks(maps)
        assert angular_distance(y, p, yaw, pitch).max() < 5.0, (yaw, pitch, y, p)
        # the raw argmax cell too (no refinement): within a cell of the truth
        h, w = maps.shape[1:]
        r, c = np.unravel_index(np.argmax(maps[1]), (h, w))
        cy, cp = ((c + 0.5) / w - 0.5) * 360, (0.5 - (r + 0.5) / h) * 180
        assert angular_distance(cy, cp, yaw, pitch) < 5.0


def test_fuma_file_order_input() -> None:
    """FuMa W, X, Y, Z built by hand (W at -3 dB) converts to the right direction."""
    rng = np.random.default_rng(2)
    s = _pink(rng, SR // 2) * 0.1
    a, e = np.radians(-40.0), np.radians(20.0)  # azimuth -40 (right) = yaw +40
    fuma = np.stack([s / np.sqrt(2), s * np.cos(a) * np.cos(e), s * np.sin(a) * np.cos(e), s * np.sin(e)])
    tr = foa_direction_track(fuma_to_ambix(fuma), SR, [0.25])
    assert angular_distance(tr.yaw, tr.pitch, 40.0, 20.0)[0] < 5.0


def test_yaw_offset_rotates_map() -> None:
    rng = np.random.default_rng(3)
    foa = encode_foa(_pink(rng, SR // 2) * 0.1, 170.0, 0.0)
    tr = foa_direction_track(foa, SR, [0.25], yaw_offset=30.0)
    assert angular_distance(tr.yaw, tr.pitch, -160.0, 0.0)[0] < 5.0  # 170 + 30 wraps to -160


def test_scale_silence_and_diffuse_noise() -> None:
    rng = np.random.default_rng(4)
    n = SR
    times = np.array([0.3, 0.5, 0.7])
    area = equirect_solid_angle(128, 64)
    white = rng.standard_normal(n).astype(np.float32) * 0.1
    src = foa_energy_maps(encode_foa(white, -30.0, 10.0), SR, times)
    # The map integrates to the window's in-band direct power: white noise of power 0.01 has
    # (8000 - 100) / 24000 of it between 100 Hz and 8 kHz.
    integral = (src * area).sum(axis=(1, 2))
    np.testing.assert_allclose(integral, 0.01 * 7900 / 24000, rtol=0.1)
    silent = foa_energy_maps(np.zeros((4, n), np.float32), SR, times)
    assert silent.shape == (3, 64, 128) and silent.max() == 0.0
    diffuse = foa_energy_maps(_diffuse(rng, n, 0.01), SR, times)
    assert diffuse.min() >= 0.0
    assert diffuse.max() < src.max() / 20  # same power, no direction: low and flat
    assert diffuse.max() < 5 * diffuse.mean()
    d_tr = foa_direction_track(_diffuse(rng, n, 0.01), SR, times)
    s_tr = foa_direction_track(encode_foa(white, -30.0, 10.0), SR, times)
    assert np.all(d_tr.directness < 0.35) and np.all(s_tr.directness > 0.95)


def test_diffuse_noise_0db_snr() -> None:
    rng = np.random.default_rng(1)
    times = np.arange(0.1, 2.0, 1 / 30)
    errs = []
    for yaw, pitch in [(40, 0), (-170, 20), (100, -50), (0, 70)]:
        foa = encode_foa(_pink(rng, 2 * SR) * 0.1, yaw, pitch) + _diffuse(rng, 2 * SR, 0.01)
        tr = foa_direction_track(foa, SR, times)
        errs.append(angular_distance(tr.yaw, tr.pitch, yaw, pitch))
    e = np.concatenate(errs)
    assert np.median(e) < 2.5 and np.percentile(e, 95) < 5.0, (np.median(e), np.percentile(e, 95), e.max())


def test_switching_source_lag_and_no_flicker() -> None:
    rng = np.random.default_rng(3)
    n, switch = 3 * SR, 1.5
    a, b = _pink(rng, n) * 0.1, _pink(rng, n) * 0.1
    a[int(switch * SR):] = 0
    b[: int(switch * SR)] = 0
    foa = encode_foa(a, -60, 0) + encode_foa(b, 70, 10) + _diffuse(rng, n, 0.0025)
    times = np.arange(0.2, 2.9, 1 / 30)
    tr = foa_direction_track(foa, SR, times)
    on_a = angular_distance(tr.yaw, tr.pitch, -60, 0) < 10
    on_b = angular_distance(tr.yaw, tr.pitch, 70, 10) < 10
    assert np.all(on_a[times < switch - 0.1])
    first_b = times[np.argmax(on_b & (times > switch - 0.2))]
    assert abs(first_b - switch) <= 0.1  # centred windows: the map switches within ~a frame
    assert np.all(on_b[times >= first_b])  # and stays there: no flicker back


def test_vfr_times_order_and_chunk_invariance() -> None:
    rng = np.random.default_rng(5)
    foa = encode_foa(_pink(rng, 10 * SR) * 0.1, np.linspace(-90, 90, 10 * SR), 0.0)
    times = np.sort(rng.uniform(0, 10, 300))  # irregular (VFR), more frames than one chunk (256)
    all_maps = foa_energy_maps(foa, SR, times)
    pick = np.array([290, 3, 257])  # unsorted subset, alone
    np.testing.assert_allclose(foa_energy_maps(foa, SR, times[pick]), all_maps[pick], rtol=1e-4,
                               atol=1e-7 * all_maps.max())
    done = []
    foa_energy_maps(foa, SR, times[:50], progress=lambda d, t: done.append((d, t)))
    assert done[-1] == (50, 50)


def test_low_frame_rate_memory_bounded_and_chunk_invariant() -> None:
    """At 1 fps a chunk of 256 frames would span minutes of audio: the chunks are bounded in time too,
    so the working memory does not grow with the duration, and each map is the one computed alone."""
    import tracemalloc

    rng = np.random.default_rng(6)
    sr, seconds = 16000, 200
    foa = encode_foa(_pink(rng, seconds * sr) * 0.1, np.linspace(-180, 180, seconds * sr), 10.0)
    times = np.arange(seconds, dtype=np.float64)  # 1 fps
    tracemalloc.start()
    try:
        maps = foa_energy_maps(foa, sr, times)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # unbounded chunks: one STFT over all 200 s (~12,500 frames x 254 bins, several arrays) ≈ 0.6 GB
    assert peak < 150e6, f"{peak / 1e6:.0f} MB"
    pick = np.array([0, 17, 120, 199])
    np.testing.assert_allclose(foa_energy_maps(foa, sr, times[pick]), maps[pick], rtol=1e-4,
                               atol=1e-7 * maps.max())


def _decode(path: Path) -> tuple[np.ndarray, int]:
    try:
        from pan360.media.audio import read_audio
    except ImportError:  # media layer not there: decode with PyAV in file order
        with av.open(str(path)) as c:
            s = c.streams.audio[0]
            parts = []
            for f in c.decode(s):
                x = f.to_ndarray()
                parts.append(x if f.format.is_planar else x.reshape(-1, s.channels).T)
            return np.concatenate(parts, axis=1).astype(np.float32), int(s.rate)
    tr = read_audio(path)
    return tr.samples, tr.sample_rate


@needs_media
def test_real_room_response_reverb() -> None:
    ir_path = MEDIA / "foa_audio" / "spaudiopy_IR_Gewandhaus_SH1.wav"
    if not ir_path.exists():
        pytest.skip("Gewandhaus IR absent")
    ir, sr = _decode(ir_path)
    # ACN/N3D, verified: at the direct-sound peak |(X, Y, Z)| / |W| = sqrt(3).
    k = int(np.argmax(np.abs(ir[0])))
    seg = ir[:, k - 10:k + 10]
    assert np.sqrt((seg[1:] ** 2).sum() / (seg[0] ** 2).sum()) == pytest.approx(np.sqrt(3), rel=0.02)
    ir = n3d_to_sn3d(ir)
    true_yaw, true_pitch = 0.0, -10.0  # direct sound of this response (intensity of its first 0.5 ms)
    rng = np.random.default_rng(5)
    n = 6 * sr
    env = np.zeros(n, np.float32)
    for start in range(0, n - sr // 4, int(0.3 * sr)):  # speech-like bursts, 80-200 ms
        length = int(rng.uniform(0.08, 0.2) * sr)
        env[start:start + length] = np.hanning(length)
    dry = _pink(rng, n) * env
    wet = np.stack([fftconvolve(dry, ir[c])[:n] for c in range(4)]).astype(np.float32)
    times = np.arange(0.2, 6.0, 1 / 30)
    maps = foa_energy_maps(wet / np.abs(wet).max(), sr, times)
    y, p, _ = map_peaks(maps)
    err = angular_distance(y, p, true_yaw, true_pitch)
    assert np.median(err) < 10.0 and np.percentile(err, 90) < 15.0
    y, p, _ = map_peaks(maps.mean(axis=0))
    assert angular_distance(y, p, true_yaw, true_pitch)[0] < 10.0


@needs_media
def test_chapman_fuma_position_announcements() -> None:
    path = MEDIA / "foa_audio" / "chapman_4ch_B_FuMaNorm_FuMaOrd_speech.mp4"
    if not path.exists():
        pytest.skip("Chapman FuMa test file absent")
    x, sr = _decode(path)
    # FFmpeg decodes this 4-channel AAC file as W, X, Y, Z already: channel 0 is the only one that
    # obeys the FuMa relation X^2 + Y^2 + Z^2 = 2 W^2.
    e = (x.astype(np.float64) ** 2).mean(axis=1)
    assert (e.sum() - e[0]) / (2 * e[0]) == pytest.approx(1.0, abs=0.05)
    foa = fuma_to_ambix(x)
    times = np.arange(0.25, x.shape[1] / sr, 0.5)
    tr = foa_direction_track(foa, sr, times, window=0.5)
    active = (tr.total_power > np.percentile(tr.total_power, 40)) & (tr.directness > 0.8)
    az, el = -tr.yaw[active], tr.pitch[active]
    # Announced positions lie on a grid: azimuth multiples of 45°, elevation 0 or ±35.3° (cube
    # corners) or the poles.
    grid_az = np.abs(((az + 22.5) % 45.0) - 22.5)
    grid_el = np.min(np.abs(el[:, None] - np.array([-90, -35.26, 0, 35.26, 90])[None, :]), axis=1)
    on_grid = ((grid_az < 5) | (np.abs(el) > 80)) & (grid_el < 5)
    assert on_grid.mean() > 0.9
    # First announcements: front-left-up (45, 35), front-up (0, 35), front-right-up (-45, 35).
    first = [(int(round(a / 45.0)) * 45, int(round(e_ / 35.26)) * 35) for a, e_ in zip(az[:8], el[:8])]
    distinct = [d for i, d in enumerate(first) if i == 0 or d != first[i - 1]]
    assert distinct[:3] == [(45, 35), (0, 35), (-45, 35)]


REAL360 = {  # clip: (expected yaw range over the clip's seconds, from ../shared/media/README.md)
    "sphere360gt_0FB9jMXMP8A_19.webm": (-20.0, 0.0),  # guitarist, audio az 6..10
    "sphere360gt_NdE7uYVaynQl_0.webm": (-25.0, 5.0),  # handpan, audio az 3..17
}


@needs_media
@pytest.mark.parametrize("name", sorted(REAL360))
def test_real360_dominant_direction(name: str) -> None:
    path = MEDIA / "real360_foa" / name
    if not path.exists():
        pytest.skip(f"{name} absent")
    x, sr = _decode(path)
    x = x[:, : 4 * sr]  # 4 s keep the test fast
    times = np.arange(0.0, 4.0, 1 / 30)
    maps = foa_energy_maps(x, sr, times)
    lo, hi = REAL360[name]
    for s in range(4):
        y, _, _ = map_peaks(maps[(times >= s) & (times < s + 1)].mean(axis=0))
        assert lo <= y[0] <= hi, (s, y)


@needs_media
def test_real360_moving_tractor_sweeps() -> None:
    path = MEDIA / "real360_foa" / "sphere360gt_tAiVUt5vE34l_30.webm"
    if not path.exists():
        pytest.skip("tractor clip absent")
    x, sr = _decode(path)
    times = np.arange(0.5, 9.0, 0.5)
    tr = foa_direction_track(x, sr, times)
    # README: audio azimuth sweeps smoothly -79 -> +32 deg, i.e. yaw from about +79 down to -32.
    assert tr.yaw[0] > 60 and tr.yaw[-1] < -10
    assert np.all(np.diff(tr.yaw) < 5)  # monotone (small tolerance)
