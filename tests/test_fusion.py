"""Fusion of FOA and network maps: the network may sharpen, never pull away from the sound."""

from __future__ import annotations

import numpy as np
import pytest

from pan360 import sphere
from pan360.errors import Pan360Error
from pan360.sources.fusion import BETA, CONE, fuse_maps, net_contrast

H, W = 64, 128
VEC = sphere.equirect_vectors(W, H)
AREA = sphere.equirect_solid_angle(W, H)


def lobe(yaw: float, pitch: float, kappa: float = 40.0) -> np.ndarray:
    """A von Mises-Fisher lobe on the grid (peak 1)."""
    return np.exp(kappa * (VEC @ sphere.dir_to_vec(yaw, pitch) - 1.0))


def peak_dir(m: np.ndarray) -> tuple[float, float]:
    i = int(np.argmax(m))
    yaw, pitch = sphere.equirect_angles(W, H)
    return float(yaw[i % W]), float(pitch[i // W])


def test_zero_foa_gives_zero_and_zeros_stay_zero() -> None:
    foa = np.zeros((3, H, W), np.float32)
    foa[1] = lobe(30, 0) * (lobe(30, 0) > 0.2)  # a lobe with an exactly-zero outside
    net = np.zeros_like(foa)
    net[:, 10:20, 90:100] = 5.0  # the network sees something everywhere
    fused = fuse_maps(foa, net)
    assert np.all(fused[0] == 0) and np.all(fused[2] == 0)
    assert np.all(fused[1][foa[1] == 0] == 0)


def test_net_shifts_peak_onto_object_within_the_lobe() -> None:
    foa = lobe(0.0, 0.0)[None].astype(np.float32)  # FOA: the sound comes from straight ahead
    net = lobe(12.0, 4.0, kappa=300.0)[None]       # the network: the object is 12° right, 4° up
    fused = fuse_maps(foa, net)
    yaw, pitch = peak_dir(fused[0])
    assert sphere.angular_distance(yaw, pitch, 12.0, 4.0) < 4.0  # the peak moved onto the object
    assert sphere.angular_distance(*peak_dir(foa[0]), 12.0, 4.0) > 10.0
    # the whole map's centre of interest moves toward the object too, and the mass is kept
    y0, p0, _ = sphere.weighted_mean_direction(foa[0])
    y1, p1, _ = sphere.weighted_mean_direction(fused[0])
    assert sphere.angular_distance(y1, p1, 12.0, 4.0) < sphere.angular_distance(y0, p0, 12.0, 4.0) - 1.0
    assert (fused[0] * AREA).sum() == pytest.approx((foa[0] * AREA).sum(), rel=1e-5)


def test_net_far_from_the_sound_changes_nothing() -> None:
    foa = (lobe(-40.0, 5.0) + 0.01).astype(np.float32)[None]
    for far in (lobe(120.0, 0.0, kappa=300.0), lobe(-40.0 + 180.0, -5.0, kappa=100.0)):
        fused = fuse_maps(foa, far[None])
        assert np.allclose(fused, foa, rtol=1e-5, atol=0)
    flat = np.full((1, H, W), 3.0)
    assert np.allclose(fuse_maps(foa, flat), foa, rtol=1e-6)
    assert np.all(net_contrast(flat) == 0) and np.all(net_contrast(np.zeros((1, H, W))) == 0)


def test_fused_peak_never_leaves_the_foa_lobe() -> None:
    rng = np.random.default_rng(7)
    n = 60
    foa = np.zeros((n, H, W))
    net = np.zeros((n, H, W))
    for i in range(n):
        for _ in range(rng.integers(1, 4)):  # 1-3 sources of different strength, some diffuse floor
            foa[i] += rng.uniform(0.2, 1.0) * lobe(rng.uniform(-180, 180), rng.uniform(-60, 60), rng.uniform(10, 80))
        foa[i] += rng.uniform(0, 0.05)
        foa[i] *= rng.random((H, W)) > 0.1  # holes: cells with exactly no FOA energy
        for _ in range(rng.integers(1, 5)):  # adversarial network maps: sharp blobs anywhere
            net[i] += rng.uniform(0, 10) * lobe(rng.uniform(-180, 180), rng.uniform(-80, 80), 500.0)
        net[i] += rng.random((H, W))
    fused = fuse_maps(foa, net).astype(np.float64)
    yaw, pitch = sphere.equirect_angles(W, H)
    for i in range(n):
        j, k = np.unravel_index(np.argmax(fused[i]), (H, W))
        fj, fk = np.unravel_index(np.argmax(foa[i]), (H, W))
        assert foa[i, j, k] >= foa[i].max() / (1.0 + BETA) - 1e-9  # inside the FOA lobe
        assert sphere.angular_distance(yaw[k], pitch[j], yaw[fk], pitch[fj]) <= CONE + 1e-6
        assert np.all(fused[i][foa[i] == 0] == 0)
        assert np.all(fused[i] <= foa[i] * (1 + BETA) * fused[i].sum() / max(foa[i].sum(), 1e-30) * (1 + 1e-5) + 1e-12)
        assert (fused[i] * AREA).sum() == pytest.approx((foa[i] * AREA).sum(), rel=1e-5)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(Pan360Error):
        fuse_maps(np.zeros((2, H, W)), np.zeros((3, H, W)))
    with pytest.raises(Pan360Error):
        fuse_maps(np.zeros((1, H, W)), np.zeros((1, H, W)), beta=-1)


def test_foa_weight_follows_directness() -> None:
    from pan360.sources.fusion import D_HIGH, D_LOW, foa_weight

    d = np.array([0.0, D_LOW, (D_LOW + D_HIGH) / 2, D_HIGH, 0.95, np.nan])
    np.testing.assert_allclose(foa_weight(d), [0.0, 0.0, 0.5, 1.0, 1.0, 1.0])


def test_diffuse_foa_lets_the_network_lead_sharp_foa_decides() -> None:
    foa = np.stack([lobe(0.0, 0.0, kappa=5.0)] * 3).astype(np.float32)  # a broad (diffuse) lobe ahead
    net = np.stack([lobe(120.0, -10.0, kappa=300.0)] * 3).astype(np.float32)  # a clear object far away
    fused = fuse_maps(foa, net, directness=[0.1, 0.45, 0.9])
    base = fuse_maps(foa, net)
    # diffuse: the camera may go where the network sees the source, 120° from the FOA peak
    assert abs(peak_dir(fused[0])[0] - 120.0) < 3
    # sharp: exactly the FOA rule (the network cannot pull away)
    np.testing.assert_allclose(fused[2], base[2], rtol=1e-6)
    assert abs(peak_dir(fused[2])[0]) < 3
    # the mixture in between keeps both and, like every frame, the FOA map's mass
    mass = lambda m: float((m * AREA).sum())  # noqa: E731
    for i in range(3):
        assert mass(fused[i]) == pytest.approx(mass(foa[i]), rel=1e-5)
    assert fused[1].max() > 0 and 0.0 < fused[1][32, 64] < fused[2][32, 64]


def test_diffuse_frame_with_empty_network_map_keeps_the_foa_rule() -> None:
    foa = lobe(40.0, 0.0, kappa=5.0)[None].astype(np.float32)
    net = np.zeros_like(foa)
    np.testing.assert_allclose(fuse_maps(foa, net, directness=[0.0]), fuse_maps(foa, net), rtol=1e-6)
    with pytest.raises(Pan360Error):
        fuse_maps(foa, net, directness=[0.1, 0.2])
