"""Trajectory metrics: in-view (v360 gnomonic geometry), angular error, speed, report, truth files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pan360 import sphere
from pan360.errors import Pan360Error
from pan360.geometry import View, dir_to_view_pixel
from pan360.metrics import (
    angular_error,
    angular_speed,
    in_view,
    scored_frames,
    trajectory_metrics,
    trajectory_report,
)
from pan360.paths import CameraPath, save_path
from pan360.synthetic import Scene, SceneObject, ground_truth, write_ground_truth


def fixed(yaw=0.0, pitch=0.0, roll=0.0, h=90.0, v=58.7155, n=1, fps=30.0) -> CameraPath:
    t = np.arange(n) / fps
    return CameraPath(t, np.full(n, yaw), np.full(n, pitch), np.full(n, roll), np.full(n, h), np.full(n, v),
                      1280, 720, fps)


def test_in_view_edges():
    p = fixed()
    assert in_view(p, 44.0, 0.0)[0] and not in_view(p, 46.0, 0.0)[0]
    assert in_view(p, -44.0, 0.0)[0] and not in_view(p, -46.0, 0.0)[0]
    assert in_view(p, 0.0, 29.0)[0] and not in_view(p, 0.0, 30.0)[0]
    assert not in_view(p, 180.0, 0.0)[0]
    # Corners are beyond both half-FOVs in angle but inside the rectangle of the image plane.
    corner_yaw = 40.0
    corner_pitch = np.degrees(np.arctan(0.95 * np.tan(np.radians(29.3577)) * np.cos(np.radians(corner_yaw))))
    assert in_view(p, corner_yaw, corner_pitch)[0]
    # Across the seam.
    assert in_view(fixed(yaw=170.0), -150.0, 0.0)[0] and not in_view(fixed(yaw=170.0), -120.0, 0.0)[0]


def test_in_view_roll_swaps_axes_and_matches_geometry():
    rolled = fixed(roll=90.0)
    assert not in_view(rolled, 40.0, 0.0)[0] and in_view(rolled, 0.0, 40.0)[0]
    rng = np.random.default_rng(0)
    n = 400
    yaw, pitch, roll = rng.uniform(-180, 180, n), rng.uniform(-70, 70, n), rng.uniform(-60, 60, n)
    path = CameraPath(np.arange(n) / 30, yaw, pitch, roll, np.full(n, 75.0), np.full(n, 46.4), 1920, 1080, 30)
    ty = sphere.wrap_yaw(yaw + rng.normal(0, 40, n))
    tp = np.clip(pitch + rng.normal(0, 30, n), -90, 90)
    ours = in_view(path, ty, tp)
    ref = np.array([dir_to_view_pixel(ty[i], tp[i], 1920, 1080, View(yaw[i], pitch[i], roll[i], 75.0, 46.4))[2]
                    for i in range(n)])
    assert 0.2 < ours.mean() < 0.8
    assert np.array_equal(ours, ref)


def test_angular_error_and_nan_truth():
    p = fixed(yaw=170.0, n=3)
    err = angular_error(p, np.array([-170.0, 170.0, np.nan]), np.array([0.0, 30.0, np.nan]))
    assert np.allclose(err[:2], [20.0, 30.0]) and np.isnan(err[2])
    assert not in_view(p, np.array([170.0, 170.0, np.nan]), np.array([0.0, 0.0, np.nan]))[2]


def test_angular_speed():
    t = np.arange(31) / 30.0
    p = CameraPath(t, sphere.wrap_yaw(170 + 30 * t), np.zeros(31), np.zeros(31), np.full(31, 90.0),
                   np.full(31, 60.0), 640, 360, 30)
    s = angular_speed(p)
    assert s.shape == (30,) and np.allclose(s, 30.0)
    assert angular_speed(fixed()).shape == (0,)


def test_report_excludes_switch_windows():
    n = 90
    t = np.arange(n) / 30.0
    p = fixed(n=n)
    true_yaw = np.where(t < 1.5, 0.0, 120.0)  # switch at 1.5 s to a source out of view
    rep = trajectory_report(p, true_yaw, np.zeros(n), switch_times=[1.5])
    keep = scored_frames(t, [1.5])
    assert rep.frames_scored == keep.sum() == (np.abs(t - 1.5) > 0.5).sum()
    assert rep.in_view == pytest.approx((t[keep] < 1.5).mean())
    assert rep.median_speed == 0.0 and rep.p99_speed == 0.0
    assert rep.mean_angular_error == pytest.approx(120.0 * (t[keep] >= 1.5).mean())
    full = trajectory_report(p, true_yaw, np.zeros(n))
    assert full.frames_scored == n and full.as_dict()["in_view"] == pytest.approx(0.5)


def test_trajectory_metrics_against_truth_file(tmp_path: Path) -> None:
    scene = Scene(width=256, height=128, fps=10.0, duration=4.0,
                  objects=(SceneObject("drum", 60.0, 0.0), SceneObject("bell", -120.0, 10.0)),
                  schedule=((0, 0.0, 2.0), (1, 2.0, 3.0), (0, 3.5, 4.0)))
    gt = ground_truth(scene)
    truth = tmp_path / "truth.json"
    write_ground_truth(gt, truth)
    t = gt.times
    follow = np.where(t < 2.0, 60.0, -120.0)
    exact = CameraPath(t, follow, np.where(t < 2.0, 0.0, 10.0), 0 * t, 90 + 0 * t, 60 + 0 * t, 640, 360, 10.0)
    save_path(exact, tmp_path / "exact.json")
    rep = trajectory_metrics(tmp_path / "exact.json", truth)
    # switches at 2, 3 and 3.5 s (silence 3-3.5); scored: frames farther than 0.5 s from them with a
    # source: 0-1.4 s (15 frames) only
    assert rep["frames_scored"] == 15 and rep["frames"] == 40
    assert rep["in_view"] == 1.0 and rep["mean_angular_error"] == pytest.approx(0.0, abs=1e-3)
    assert rep["max_speed"] == pytest.approx(10 * float(sphere.angular_distance(60, 0, -120, 10)), rel=1e-3)
    rep = trajectory_metrics(tmp_path / "exact.json", truth, margin=0.05)  # 0-1.9, 2.1-2.9, 3.6-3.9 (follow: drum)
    assert rep["frames_scored"] == 20 + 9 + 4 and rep["in_view"] == pytest.approx(29 / 33)
    away = CameraPath(t, 0 * t - 120.0, 0 * t, 0 * t, 90 + 0 * t, 60 + 0 * t, 640, 360, 10.0)
    save_path(away, tmp_path / "away.json")
    rep = trajectory_metrics(tmp_path / "away.json", truth)
    assert rep["in_view"] == 0.0 and rep["max_speed"] == 0.0
    rep = trajectory_metrics(tmp_path / "away.json", truth, margin=0.05)
    assert rep["in_view"] == pytest.approx(9 / 33)  # the bell at (-120, 10) is in view: 2.1-2.9 s
    late = CameraPath(t + 5.0, follow, 0 * t, 0 * t, 90 + 0 * t, 60 + 0 * t, 640, 360, 10.0)
    save_path(late, tmp_path / "late.json")
    with pytest.raises(Pan360Error, match="same times"):
        trajectory_metrics(tmp_path / "late.json", truth)
    (tmp_path / "bad.json").write_text(json.dumps({"frames": [{"yaw": 1}]}))
    with pytest.raises(Pan360Error):
        trajectory_metrics(tmp_path / "exact.json", tmp_path / "bad.json")
