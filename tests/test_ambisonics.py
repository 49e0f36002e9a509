"""FOA formats, encoding, rotation and camera-following stereo (pan360.spatial.ambisonics)."""

from __future__ import annotations

import numpy as np
import pytest

from pan360.errors import Pan360Error
from pan360.spatial import ambix_to_fuma, camera_stereo, encode_foa, fuma_to_ambix, n3d_to_sn3d, rotate_foa

SR = 48000
RNG = np.random.default_rng(7)
NOISE = RNG.standard_normal(SR // 4).astype(np.float32) * 0.1


def _db(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(a.astype(np.float64) ** 2) / np.mean(b.astype(np.float64) ** 2)))


def test_encode_known_gains() -> None:
    s = np.ones(3, dtype=np.float32)
    left = encode_foa(s, -90.0, 0.0)  # yaw -90 = azimuth +90 = left: Y = +s
    np.testing.assert_allclose(left[:, 0], [1, 1, 0, 0], atol=1e-7)
    up = encode_foa(s, 10.0, 90.0)
    np.testing.assert_allclose(up[:, 0], [1, 0, 1, 0], atol=1e-7)
    right30 = encode_foa(s, 30.0, 0.0)  # to the right: Y negative
    np.testing.assert_allclose(right30[:, 0], [1, -0.5, 0, np.cos(np.radians(30))], atol=1e-6)


def test_encode_per_sample_matches_scalar() -> None:
    yaw = np.linspace(-180, 180, NOISE.size)
    moving = encode_foa(NOISE, yaw, 20.0)
    k = NOISE.size // 3
    np.testing.assert_allclose(moving[:, k], encode_foa(NOISE[k:k + 1], yaw[k], 20.0)[:, 0], rtol=1e-5)


def test_fuma_ambix_round_trip_and_values() -> None:
    foa = encode_foa(NOISE, 37.0, -21.0)
    fuma = ambix_to_fuma(foa)
    np.testing.assert_allclose(fuma[0], foa[0] / np.sqrt(2), rtol=1e-6)  # W at -3 dB
    np.testing.assert_allclose(fuma[1:], foa[[3, 1, 2]], rtol=1e-6)  # X, Y, Z
    np.testing.assert_allclose(fuma_to_ambix(fuma), foa, atol=1e-7)
    # FuMa plane wave: X^2 + Y^2 + Z^2 = 2 W^2
    np.testing.assert_allclose((fuma[1:] ** 2).sum(0), 2 * fuma[0] ** 2, rtol=1e-4, atol=1e-9)


def test_n3d_to_sn3d() -> None:
    foa = encode_foa(NOISE, 10.0, 5.0)
    n3d = foa.copy()
    n3d[1:] *= np.sqrt(3)
    np.testing.assert_allclose(n3d_to_sn3d(n3d), foa, rtol=1e-5, atol=1e-7)


def test_bad_shape_is_user_error() -> None:
    with pytest.raises(Pan360Error):
        fuma_to_ambix(np.zeros((2, 10)))


@pytest.mark.parametrize("yaw,pitch", [(30, 0), (-150, 0), (179, 40), (-90, -60), (45, 89)])
def test_rotation_brings_camera_direction_to_front(yaw: float, pitch: float) -> None:
    foa = encode_foa(NOISE, yaw, pitch)
    rot = rotate_foa(foa, yaw, pitch)
    np.testing.assert_allclose(rot[0], foa[0])  # W untouched
    np.testing.assert_allclose(rot[3], rot[0], atol=1e-5)  # X = W: at the front
    np.testing.assert_allclose(rot[1:3], 0.0, atol=1e-5)


def test_rotation_relative_directions() -> None:
    # A source 40° to the right of a camera at yaw 100 (pitch 0) is heard at camera yaw +40.
    rot = rotate_foa(encode_foa(NOISE, 140.0, 0.0), 100.0)
    np.testing.assert_allclose(rot, encode_foa(NOISE, 40.0, 0.0), atol=1e-5)
    # Camera pitched up 30°: a source on the horizon straight ahead is heard 30° below the view centre.
    rot = rotate_foa(encode_foa(NOISE, 0.0, 0.0), 0.0, 30.0)
    np.testing.assert_allclose(rot, encode_foa(NOISE, 0.0, -30.0), atol=1e-5)
    # Positive roll dips the camera's right side: a source straight below is heard on the right.
    rot = rotate_foa(encode_foa(NOISE, 0.0, -90.0), 0.0, 0.0, 90.0)
    np.testing.assert_allclose(rot, encode_foa(NOISE, 90.0, 0.0), atol=1e-5)


def test_rotation_round_trip_and_norm() -> None:
    foa = encode_foa(NOISE, -70.0, 25.0)
    yaw = np.linspace(-200, 200, NOISE.size)
    rot = rotate_foa(foa, yaw, 15.0, -10.0)
    np.testing.assert_allclose((rot[1:] ** 2).sum(0), (foa[1:] ** 2).sum(0), rtol=1e-4, atol=1e-9)
    # Undo: the inverse of C = Rz(-y)Ry(-p)Rx(r) is three rotations in reverse order.
    back = rotate_foa(rotate_foa(rotate_foa(rot, 0.0, 0.0, 10.0), 0.0, -15.0), -yaw)
    np.testing.assert_allclose(back, foa, atol=1e-5)


def _static_path(yaw: float, pitch: float = 0.0, n: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.arange(n) / 30.0, np.full(n, yaw), np.full(n, pitch)


def test_camera_stereo_centre_is_centred_at_omni_level() -> None:
    for yaw, pitch in [(0.0, 0.0), (120.0, 30.0), (-179.0, -20.0)]:
        st = camera_stereo(encode_foa(NOISE, yaw, pitch), SR, *_static_path(yaw, pitch))
        assert st.shape == (2, NOISE.size) and st.dtype == np.float32
        np.testing.assert_allclose(st[0], st[1], atol=1e-5)
        np.testing.assert_allclose(st[0], NOISE, atol=1e-5)  # unity gain at the view centre


def test_camera_stereo_left_right_and_back() -> None:
    cam = 40.0
    right_edge = camera_stereo(encode_foa(NOISE, cam + 45.0, 0.0), SR, *_static_path(cam))
    left_edge = camera_stereo(encode_foa(NOISE, cam - 45.0, 0.0), SR, *_static_path(cam))
    assert _db(right_edge[1], right_edge[0]) > 6.0  # edge of a 90° view: clearly to one side
    assert _db(left_edge[0], left_edge[1]) > 6.0
    behind = camera_stereo(encode_foa(NOISE, cam + 180.0, 0.0), SR, *_static_path(cam))
    front = camera_stereo(encode_foa(NOISE, cam, 0.0), SR, *_static_path(cam))
    assert _db(front[0], behind[0]) > 6.0
    np.testing.assert_allclose(behind[0], behind[1], atol=1e-5)


def test_camera_stereo_peak_guard() -> None:
    loud = encode_foa(np.sign(NOISE) * 1.0, 60.0, 0.0)  # full scale, off centre: gain 1.3 in R
    st = camera_stereo(loud, SR, *_static_path(0.0))
    assert np.abs(st).max() <= 0.99 + 1e-6
    assert _db(st[1], st[0]) > 6.0


def _max_step(x: np.ndarray) -> float:
    return float(np.abs(np.diff(x.astype(np.float64), axis=-1)).max())


@pytest.mark.parametrize("kind", ["seam", "cut"])
def test_camera_stereo_moving_camera_is_continuous(kind: str) -> None:
    n = SR  # 1 s of a 200 Hz tone from yaw 180 (the seam)
    tone = (0.5 * np.sin(2 * np.pi * 200 * np.arange(n) / SR)).astype(np.float32)
    foa = encode_foa(tone, 180.0, 0.0)
    times = np.arange(30) / 30.0
    if kind == "seam":  # 150 → 180 → -150 (wrapped), crossing the seam mid-way
        yaw = ((np.linspace(150, 210, 30) + 180) % 360) - 180
    else:  # hard cut from looking at the source to 120° away
        yaw = np.where(times < 0.5, 180.0, -60.0)
    st = camera_stereo(foa, SR, times, yaw, np.zeros(30))
    tone_step = 0.5 * 2 * np.pi * 200 / SR
    assert _max_step(st) < 1.5 * tone_step  # gains change smoothly: no sample jump (click)
    if kind == "seam":  # crossed the short way: the source stays within 30° of the view centre, where
        # the mid signal keeps ≥ 0.95 of its level (the long way round would pass it behind, at 0.33)
        mid = (st[0] + st[1]) / 2
        blocks = np.sqrt((mid[: n // 1600 * 1600].reshape(-1, 1600) ** 2).mean(1))
        assert blocks.min() > 0.9 * 0.5 / np.sqrt(2)
    else:  # after the cut the source is far to the left of the view: L dominates
        tail = slice(int(0.6 * SR), n)
        assert _db(st[0, tail], st[1, tail]) > 10.0


def test_camera_stereo_matches_static_rotation() -> None:
    foa = encode_foa(NOISE, 25.0, 10.0) + encode_foa(NOISE[::-1].copy(), -100.0, -5.0)
    st = camera_stereo(foa, SR, *_static_path(30.0, 5.0), mic_angle=90.0, pattern=0.5, peak_limit=10.0)
    rot = rotate_foa(foa, 30.0, 5.0)
    # cardioids at ±90°, (W ± Y)/2, normalised to unity gain at the view centre: W ± Y
    np.testing.assert_allclose(st[0], rot[0] + rot[1], atol=1e-5)
    np.testing.assert_allclose(st[1], rot[0] - rot[1], atol=1e-5)
