"""Trajectory planning on synthetic saliency maps (von Mises-Fisher blobs + floor + noise, no audio)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pan360 import sphere
from pan360.errors import Pan360Error
from pan360.metrics import angular_speed, in_view, scored_frames, trajectory_report
from pan360.paths import CameraPath, resample_path
from pan360.trajectory import TrajectoryOptions, plan, plan_camera_path

W, H, FPS = 128, 64, 30.0
VECS = sphere.equirect_vectors(W, H)


def blob_maps(yaw, pitch, *, kappa: float = 20.0, level: float = 1.0, floor: float = 0.05,
              noise: float = 0.2, seed: int = 0) -> np.ndarray:
    """(T, H, W) maps: a vMF blob at (yaw[t], pitch[t]) (none where NaN) on a noisy uniform floor."""
    rng = np.random.default_rng(seed)
    yaw, pitch = np.asarray(yaw, float), np.asarray(pitch, float)
    out = np.empty((len(yaw), H, W), np.float32)
    for i, (y, p) in enumerate(zip(yaw, pitch)):
        m = np.full((H, W), floor)
        if np.isfinite(y):
            m = m + level * np.exp(kappa * (VECS @ sphere.dir_to_vec(y, p) - 1.0))
        out[i] = np.maximum(m * (1.0 + noise * rng.standard_normal((H, W))), 0.0)
    return out


def camera(times, yaw, pitch, opts: TrajectoryOptions = TrajectoryOptions()) -> CameraPath:
    n = len(times)
    return CameraPath(times, yaw, pitch, np.zeros(n), np.full(n, opts.h_fov),
                      np.full(n, opts.resolved_v_fov()), 1280, 720, FPS)


def switch_scene(duration: float, segments: list[tuple[float, float, float]]):
    """Truth per frame for segments (start_s, yaw, pitch), one source sounding at a time."""
    t = np.arange(int(duration * FPS)) / FPS
    starts = np.array([s[0] for s in segments])
    k = np.searchsorted(starts, t, side="right") - 1
    yaw = np.array([segments[i][1] for i in k])
    pitch = np.array([segments[i][2] for i in k])
    return t, yaw, pitch, list(starts[1:])


def test_defaults_documented():
    o = TrajectoryOptions()
    assert o.h_fov == 90.0 and abs(o.resolved_v_fov() - 58.7155) < 1e-3
    assert o.max_speed <= 120.0


def test_wraparound_followed_the_short_way():
    t = np.arange(int(4 * FPS)) / FPS
    true_yaw = sphere.wrap_yaw(150.0 + 20.0 * t)  # crosses ±180 at t = 1.5 s
    true_pitch = np.full_like(t, 5.0)
    p = plan(blob_maps(true_yaw, true_pitch), t)
    yaw, pitch = p.yaw, p.pitch
    path = camera(t, yaw, pitch)
    assert in_view(path, true_yaw, true_pitch).all()
    assert np.all(np.abs(yaw) > 100.0)  # never swings through the front (the long way round)
    travel = sphere.vec_angle(path.directions()[:-1], path.directions()[1:]).sum()
    assert travel < 1.5 * 80.0
    assert np.percentile(angular_speed(path), 99) < 60.0


def test_far_switch_is_planned_ahead_and_speed_bounded():
    t, ty, tp, switches = switch_scene(8.0, [(0.0, 0.0, 0.0), (4.0, 180.0, 0.0)])
    opts = TrajectoryOptions()
    p = plan(blob_maps(ty, tp), t, opts)
    yaw, pitch = p.yaw, p.pitch
    path = camera(t, yaw, pitch)
    rep = trajectory_report(path, ty, tp, switches)
    assert rep.in_view >= 0.95
    # The pan starts before the switch (the planner uses the future) and is centred on it.
    before = np.searchsorted(t, 3.7)
    assert sphere.angular_distance(yaw[before], pitch[before], 0.0, 0.0) > 10.0
    at = np.searchsorted(t, 4.0)
    assert 45.0 < abs(yaw[at]) < 135.0
    speed = angular_speed(path)
    assert rep.p99_speed <= 120.0 and speed.max() <= opts.max_speed * (1 + 1e-6)


def test_several_switches_in_view_and_p99():
    segs = [(0.0, -30.0, 10.0), (3.0, 150.0, -15.0), (6.5, 60.0, 20.0), (9.0, -120.0, 0.0), (12.0, -60.0, -10.0)]
    t, ty, tp, switches = switch_scene(15.0, segs)
    maps = blob_maps(ty, tp, kappa=10.0, floor=0.2, noise=0.5, seed=3)
    p = plan(maps, t)
    yaw, pitch = p.yaw, p.pitch
    rep = trajectory_report(camera(t, yaw, pitch), ty, tp, switches)
    assert rep.in_view >= 0.95, rep
    assert rep.p99_speed <= 120.0, rep


def test_deterministic_bit_identical():
    t, ty, tp, _ = switch_scene(5.0, [(0.0, 10.0, 0.0), (2.5, -100.0, 20.0)])
    maps = blob_maps(ty, tp, noise=0.5, seed=5)
    a = plan(maps, t, TrajectoryOptions(cuts=True))
    plan(maps[:, :, ::-1].copy(), t)  # other work in between (caches) must not matter
    b = plan(maps.copy(), t.copy(), TrajectoryOptions(cuts=True))
    assert np.array_equal(a.yaw, b.yaw) and np.array_equal(a.pitch, b.pitch)
    assert np.array_equal(a.cuts, b.cuts)


def test_cuts_mode_cuts_in_one_frame():
    t, ty, tp, switches = switch_scene(8.0, [(0.0, 0.0, 0.0), (4.0, 180.0, 0.0)])
    opts = TrajectoryOptions(cuts=True)
    p = plan(blob_maps(ty, tp), t, opts)
    assert len(p.cuts) == 1
    cut = int(p.cuts[0])
    assert abs(t[cut] - 4.0) <= 1.5 / FPS
    path = camera(t, p.yaw, p.pitch)
    speed = angular_speed(path)
    step = sphere.angular_distance(p.yaw[cut - 1], p.pitch[cut - 1], p.yaw[cut], p.pitch[cut])
    assert step > 150.0
    others = np.delete(speed, cut - 1)
    assert others.max() <= opts.max_speed * (1 + 1e-6)
    assert trajectory_report(path, ty, tp, switches).in_view >= 0.99
    # Without --cuts the same scene pans (no frame step beyond the bound).
    q = plan(blob_maps(ty, tp), t)
    assert len(q.cuts) == 0 and angular_speed(camera(t, q.yaw, q.pitch)).max() <= opts.max_speed * (1 + 1e-6)


def test_silence_holds_still():
    t = np.arange(int(6 * FPS)) / FPS
    ty = np.where(t < 2.0, 60.0, np.nan)
    tp = np.where(t < 2.0, 10.0, np.nan)
    maps = blob_maps(ty, tp, floor=0.0, noise=0.0)
    rng = np.random.default_rng(1)
    maps[t >= 2.0] = (1e-6 * rng.random((int((t >= 2.0).sum()), H, W))).astype(np.float32)
    p = plan(maps, t)
    yaw, pitch = p.yaw, p.pitch
    path = camera(t, yaw, pitch)
    late = t[1:] > 2.0
    assert angular_speed(path)[late].max() < 1.0
    assert sphere.angular_distance(yaw[-1], pitch[-1], 60.0, 10.0) < 15.0


def test_all_zero_maps_hold_initial_direction():
    t = np.arange(20) / FPS
    maps = np.zeros((20, H, W), np.float32)
    p = plan(maps, t)
    yaw, pitch = p.yaw, p.pitch
    assert np.all(yaw == 0.0) and np.all(pitch == 0.0)
    p = plan(maps, t, TrajectoryOptions(initial_yaw=30.0, initial_pitch=-10.0))
    yaw, pitch = p.yaw, p.pitch
    assert np.allclose(yaw, 30.0) and np.allclose(pitch, -10.0)


def test_single_frame_nan_and_irregular_times():
    m = blob_maps([45.0], [0.0])
    p = plan(m, [0.0])
    yaw, pitch = p.yaw, p.pitch
    assert yaw.shape == (1,) and sphere.angular_distance(yaw[0], pitch[0], 45.0, 0.0) < 10.0
    rng = np.random.default_rng(2)
    t = np.cumsum(rng.uniform(0.01, 0.09, 90))  # variable frame rate
    ty = sphere.wrap_yaw(-40.0 + 25.0 * (t - t[0]))
    maps = blob_maps(ty, np.zeros_like(t))
    maps[5, 3, 7] = np.nan
    maps[6] = np.inf
    p = plan(maps, t)
    yaw, pitch = p.yaw, p.pitch
    assert np.all(np.isfinite(yaw)) and np.all(np.isfinite(pitch))
    path = camera(t, yaw, pitch)
    assert angular_speed(path).max() <= TrajectoryOptions().max_speed * (1 + 1e-6)
    assert in_view(path, ty, np.zeros_like(t))[scored_frames(t, [t[6]], 0.3)].mean() >= 0.95


def test_centre_of_interest_on_seam_and_pole():
    t = np.arange(3) / FPS
    p = plan(blob_maps([180.0, 180.0, 0.0], [0.0, 0.0, 85.0], floor=0.0, noise=0.0), t)
    assert abs(abs(p.coi_yaw[0]) - 180.0) < 0.5 and abs(p.coi_pitch[0]) < 0.5
    assert abs(p.coi_pitch[2] - 85.0) < 1.0
    assert p.coi_concentration[0] > 0.9


def test_camera_path_and_errors():
    t = np.arange(10) / FPS
    path = plan_camera_path(blob_maps(np.full(10, -90.0), np.zeros(10)), t, 720, 720, FPS,
                            TrajectoryOptions(h_fov=75.0))
    assert path.width == 720 and np.allclose(path.v_fov, 75.0) and np.allclose(path.h_fov, 75.0)
    assert sphere.angular_distance(path.yaw[-1], path.pitch[-1], -90.0, 0.0) < 10.0
    with pytest.raises(Pan360Error):
        plan(np.zeros((3, H, W)), np.arange(4) / FPS)
    with pytest.raises(Pan360Error):
        plan(np.zeros((3, H, W)), [0.0, 0.2, 0.1])
    with pytest.raises(Pan360Error):
        plan(np.zeros((3, H, W)), np.arange(3) / FPS, TrajectoryOptions(h_fov=200.0))
    with pytest.raises(Pan360Error, match="between 1 and 160"):
        plan_camera_path(np.zeros((3, H, W)), np.arange(3) / FPS, 64, 64, FPS, TrajectoryOptions(h_fov=0.5))


def test_progress_and_speed():
    t = np.arange(int(30 * FPS)) / FPS
    ty = sphere.wrap_yaw(30.0 * np.floor(t / 3.0) * 3.0)
    maps = blob_maps(ty, np.zeros_like(t), noise=0.0)
    calls = []
    start = time.perf_counter()
    plan(maps, t, progress=lambda d, n: calls.append((d, n)))
    elapsed = time.perf_counter() - start
    assert calls and calls[-1][0] == calls[-1][1]
    assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))
    assert elapsed < 10.0  # ~0.5 s on one free core; generous for a loaded CI box


@pytest.mark.parametrize("cuts", [False, True])
def test_a_very_fast_camera_plans_and_keeps_its_bound(cuts: bool) -> None:
    """--max-speed 600: 317 neighbours per candidate, past one byte of back pointer (two are used)."""
    t, ty, tp, switches = switch_scene(6.0, [(0.0, 0.0, 0.0), (3.0, 170.0, 10.0)])
    opts = TrajectoryOptions(max_speed=600.0, cuts=cuts)
    p = plan(blob_maps(ty, tp), t, opts)
    path = camera(t, p.yaw, p.pitch)
    speed = np.delete(angular_speed(path), np.asarray(p.cuts, np.int64) - 1)
    assert speed.max() <= opts.max_speed * (1 + 1e-6)
    assert trajectory_report(path, ty, tp, switches).in_view >= 0.95


def test_keyframes_are_kept_and_the_plan_fills_between() -> None:
    """One source at yaw 60 for 8 s; the user keyframes yaw -60 at 3 s (eased) and a cut to yaw 150,
    pitch 20 at 6 s: the path meets both exactly, follows the source elsewhere, has no speed jump at
    the eased keyframe, and starts a new plan from the cut."""
    fps = int(FPS)
    t = np.arange(8 * fps) / FPS
    maps = blob_maps(np.full(len(t), 60.0), np.zeros(len(t)))
    auto = plan_camera_path(maps, t, 1280, 720, FPS)
    kf = CameraPath([3.0, 6.0], [-60.0, 150.0], [0.0, 20.0], [0.0, 0.0], [90.0, 70.0], [58.7, 45.0], 1280, 720, FPS,
                    interp=("ease", "cut"))
    p = plan_camera_path(maps, t, 1280, 720, FPS, keyframes=kf)
    f3, f6 = 3 * fps, 6 * fps
    assert abs(p.yaw[f3] + 60.0) < 1e-6 and abs(p.pitch[f3]) < 1e-6
    assert abs(p.yaw[f6] - 150.0) < 1e-6 and abs(p.pitch[f6] - 20.0) < 1e-6
    assert np.isclose(p.h_fov[f6], 70.0) and np.isclose(p.h_fov[0], 90.0)
    assert abs(p.yaw[0] - auto.yaw[0]) < 1.0  # on the source before the plan has to leave for the keyframe
    speed = angular_speed(p)
    assert abs(speed[f3] - speed[f3 - 1]) < 15.0  # continuous through the eased keyframe
    assert speed[f6 - 1] > 90.0  # the cut: one big step between two frames
    others = np.delete(speed, f6 - 1)
    assert others.max() <= 1.05 * 110.0, others.max()  # the speed bound holds around the keyframes too
    back = sphere.angular_distance(p.yaw[f6 - 2 * fps:f6 - 5], p.pitch[f6 - 2 * fps:f6 - 5], 60.0, 0.0)
    assert back.min() < 10.0  # between the keyframes the plan goes back to the source
    after = np.arange(f6 + fps, len(t))
    assert in_view(p, 60.0, 0.0)[after].mean() > 0.5  # after the cut the plan finds the source again


def test_zoom_narrows_on_a_steady_source_and_widens_for_a_pan() -> None:
    from pan360.trajectory import zoom_path

    fps = int(FPS)
    t = np.arange(8 * fps) / FPS
    yaw = np.where(t < 4.0, 0.0, 120.0)  # one source, then a far switch: a fast pan
    maps = blob_maps(yaw, np.zeros(len(t)), kappa=60.0, floor=0.0, noise=0.0)
    path = plan_camera_path(maps, t, 1280, 720, FPS)
    z = zoom_path(path, maps)
    assert z.h_fov[2 * fps] < 0.8 * 90.0 + 1.0  # zoomed in on the steady source
    speed = angular_speed(path)
    fast = np.flatnonzero(speed > 40.0)
    assert len(fast) and z.h_fov[fast].max() > 90.0  # out during the pan
    rate = np.abs(np.diff(z.h_fov)) * FPS
    assert rate.max() <= 20.0 + 1e-6  # bounded zoom speed
    assert np.allclose(z.v_fov, np.degrees(2 * np.arctan(np.tan(np.radians(z.h_fov) / 2) * 720 / 1280)))


def test_keyframes_beyond_the_clip_and_on_one_frame() -> None:
    fps = int(FPS)
    t = np.arange(8 * fps) / FPS
    maps = blob_maps(np.full(len(t), 60.0), np.zeros(len(t)))
    kf = CameraPath([-5.0, 3.0, 3.01, 12.0], [100.0, -60.0, -50.0, 90.0], [0.0] * 4, [0.0] * 4, [90.0] * 4,
                    [58.7] * 4, 1280, 720, FPS, interp=("ease",) * 4)
    p = plan_camera_path(maps, t, 1280, 720, FPS, keyframes=kf)
    ends = resample_path(kf, t[[0, -1]])
    assert np.allclose(p.yaw[[0, -1]], ends.yaw, atol=1e-6)  # the ends take the keyframes' interpolation
    assert abs(p.yaw[3 * fps] + 50.0) < 1e-6  # two keyframes on one frame: the later one
    assert angular_speed(p).max() <= 1.05 * 110.0


@pytest.mark.parametrize("n", [2, 3, 4, 5, 40])
@pytest.mark.parametrize("uniform", [True, False])
def test_spline_is_scipys_not_a_knot_spline(n: int, uniform: bool) -> None:
    """The planner's spline (no scipy.interpolate import at run time) against scipy's CubicSpline."""
    from scipy.interpolate import CubicSpline

    from pan360.trajectory import _spline_not_a_knot

    rng = np.random.default_rng(n)
    x = 0.1 * np.arange(n) + 3.0 if uniform else np.cumsum(rng.uniform(0.02, 0.3, n))
    y = rng.normal(size=(n, 3))
    xq = np.sort(np.concatenate([rng.uniform(x[0], x[-1], 500), x]))
    ours, theirs = _spline_not_a_knot(x, y, xq), CubicSpline(x, y, axis=0)(xq)
    assert np.allclose(ours, theirs, rtol=0, atol=1e-13 * np.abs(theirs).max())
    assert np.allclose(_spline_not_a_knot(x, y, x), y, rtol=0, atol=1e-13)  # through the knots
    if n >= 4:  # a cubic is reproduced exactly by a not-a-knot spline
        cubic = np.stack([x ** 3 - 2 * x, 0.5 * x ** 2, np.ones_like(x)], axis=1)
        want = np.stack([xq ** 3 - 2 * xq, 0.5 * xq ** 2, np.ones_like(xq)], axis=1)
        assert np.allclose(_spline_not_a_knot(x, cubic, xq), want, atol=1e-9 * np.abs(want).max())


@pytest.mark.parametrize("grid, pitch_limit, reach", [(5.0, 60.0, 10.0), (7.0, 30.0, 14.0), (360 / 7, 0.0, 360 / 7)])
def test_neighbours_and_view_weights_match_their_definitions(grid: float, pitch_limit: float, reach: float) -> None:
    """The planner's tables, built a row of candidates or a block of views at a time, equal the
    per-pair and per-view definitions written out here: the neighbours exactly, the view weights
    within float32 rounding (a batched matmul may sum in another order)."""
    from pan360.geometry import rotation_matrix
    from pan360.trajectory import _candidates, _inclusion, _neighbours

    cand = _candidates(grid, pitch_limit)
    ang = np.hypot(sphere.wrap_yaw(cand[:, None, 0] - cand[None, :, 0]), cand[:, None, 1] - cand[None, :, 1])
    idx, dist = _neighbours(grid, pitch_limit, reach)
    for c in range(len(cand)):
        js = np.flatnonzero(ang[c] <= reach + 1e-6)
        assert idx[c, :len(js)].tolist() == js.tolist() and np.all(idx[c, len(js):] == c)
        assert np.array_equal(dist[c, :len(js)], ang[c, js]) and np.all(dist[c, len(js):] == 0)

    h_fov, v_fov, edge, floor, proximity, rows, cols = 90.0, 58.7, 0.5, 0.5, 0.1, 16, 32
    weights = _inclusion(grid, pitch_limit, h_fov, v_fov, edge, floor, proximity, rows, cols)
    cells = sphere.equirect_vectors(cols, rows).reshape(-1, 3)
    tx, ty = np.tan(np.radians(h_fov) / 2), np.tan(np.radians(v_fov) / 2)

    def taper(x: np.ndarray) -> np.ndarray:
        x = np.abs(x)
        ramp = floor + (1 - floor) * 0.5 * (1 + np.cos(np.pi * np.clip((x - edge) / (1 - edge), 0, 1)))
        return np.where(x <= edge, 1.0, np.where(x < 1.0, ramp, 0.0))

    for c in range(0, len(cand), max(1, len(cand) // 40)):
        cam = cells @ rotation_matrix(float(cand[c, 0]), float(cand[c, 1]), 0.0)
        fwd = cam[:, 0]
        safe = np.where(fwd > 1e-9, fwd, 1.0)
        w = taper(-cam[:, 1] / safe / tx) * taper(cam[:, 2] / safe / ty)
        expected = (np.where(fwd > 1e-9, w, 0.0) + proximity * 0.5 * (1.0 + fwd)).astype(np.float32)
        np.testing.assert_allclose(weights[c], expected, rtol=0, atol=1e-6)  # matmul may round differently
        assert weights[c].max() > 1.0 and weights[c].min() >= 0.0  # in-frame cells and the cardioid
