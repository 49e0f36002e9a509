"""Trajectory metrics (../shared/CONVENTIONS.md "Metrics"): in-view, angular error, angular speed.

Directions are degrees (yaw positive right, pitch up). A true direction of NaN means "no source at this
frame": such frames are never in view and are left out of the averages of :func:`trajectory_report`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike

from . import sphere
from .geometry import rotation_matrix
from .paths import CameraPath


def _truth(path: CameraPath, true_yaw: ArrayLike, true_pitch: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    n = len(path)
    y = np.broadcast_to(np.asarray(true_yaw, dtype=np.float64), (n,))
    p = np.broadcast_to(np.asarray(true_pitch, dtype=np.float64), (n,))
    return y, p


def camera_coordinates(path: CameraPath, true_yaw: ArrayLike, true_pitch: ArrayLike) -> np.ndarray:
    """Directions (T, 3) in each frame's camera frame: x view axis, y screen-left, z screen-up.

    The camera's rotation is v360's (yaw, then pitch, then roll; :func:`pan360.geometry.rotation_matrix`).
    """
    y, p = _truth(path, true_yaw, true_pitch)
    world = sphere.dir_to_vec(y, p)
    out = np.empty_like(world)
    for i in range(len(path)):  # one 3x3 rotation per frame: cheap, and exactly the renderer's
        rot = rotation_matrix(float(path.yaw[i]), float(path.pitch[i]), float(path.roll[i]))
        out[i] = world[i] @ rot  # R^T v: world to camera
    return out


def in_view(path: CameraPath, true_yaw: ArrayLike, true_pitch: ArrayLike) -> np.ndarray:
    """(T,) bool: the true direction projects inside the rendered frame (gnomonic, v360 geometry).

    Inside means in front of the camera with ``|right| < tan(h_fov/2)`` and ``|up| < tan(v_fov/2)`` on
    the image plane at distance 1, i.e. within the outer edges of the edge pixels.
    """
    cam = camera_coordinates(path, true_yaw, true_pitch)
    fwd = cam[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        right = -cam[:, 1] / fwd
        up = cam[:, 2] / fwd
        tx = np.tan(np.radians(path.h_fov) / 2)
        ty = np.tan(np.radians(path.v_fov) / 2)
        ok = (fwd > 1e-12) & (np.abs(right) < tx) & (np.abs(up) < ty)
    return ok & np.isfinite(cam).all(axis=1)


def angular_error(path: CameraPath, true_yaw: ArrayLike, true_pitch: ArrayLike) -> np.ndarray:
    """(T,) great-circle angle in degrees between the view centre and the true direction (NaN if none)."""
    y, p = _truth(path, true_yaw, true_pitch)
    return sphere.angular_distance(path.yaw, path.pitch, y, p)


def angular_speed(path: CameraPath) -> np.ndarray:
    """(T-1,) angular speed of the view centre in °/s over each frame step (inf for a turn in 0 s)."""
    vec = path.directions()
    ang = sphere.vec_angle(vec[:-1], vec[1:])
    dt = np.diff(path.times)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(dt > 0, ang / np.where(dt > 0, dt, 1.0), np.where(ang > 0, np.inf, 0.0))


@dataclass(frozen=True)
class TrajectoryReport:
    """Summary numbers of a camera path against the true source directions."""

    in_view: float             # share of scored frames whose source is in view, in [0, 1]
    frames_scored: int         # frames with a source and farther than the margin from every switch
    mean_angular_error: float  # degrees, over the scored frames
    median_angular_error: float
    median_speed: float        # °/s over all frame steps
    p99_speed: float           # 99th percentile °/s
    max_speed: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def scored_frames(times: ArrayLike, switch_times: Sequence[float] | None = None, margin: float = 0.5) -> np.ndarray:
    """(T,) bool: frames farther than ``margin`` seconds from every switch time."""
    t = np.asarray(times, dtype=np.float64)
    if not switch_times:
        return np.ones(len(t), bool)
    s = np.asarray(list(switch_times), dtype=np.float64)
    return np.min(np.abs(t[:, None] - s[None, :]), axis=1) > margin


def trajectory_report(path: CameraPath, true_yaw: ArrayLike, true_pitch: ArrayLike,
                      switch_times: Sequence[float] | None = None, margin: float = 0.5) -> TrajectoryReport:
    """In-view share, angular errors (frames with a source, farther than ``margin`` s from a switch)
    and camera speed statistics (all frame steps)."""
    y, p = _truth(path, true_yaw, true_pitch)
    keep = scored_frames(path.times, switch_times, margin) & np.isfinite(y) & np.isfinite(p)
    inside = in_view(path, y, p)[keep]
    err = angular_error(path, y, p)[keep]
    speed = angular_speed(path)
    nan = math.nan
    return TrajectoryReport(
        in_view=float(inside.mean()) if inside.size else nan,
        frames_scored=int(keep.sum()),
        mean_angular_error=float(err.mean()) if err.size else nan,
        median_angular_error=float(np.median(err)) if err.size else nan,
        median_speed=float(np.median(speed)) if speed.size else 0.0,
        p99_speed=float(np.percentile(speed, 99)) if speed.size else 0.0,
        max_speed=float(speed.max()) if speed.size else 0.0,
    )
