"""Trajectory metrics (docs/CONVENTIONS.md "Metrics"): in-view, angular error, angular speed, a
camera path file scored against a ground-truth direction file (:func:`trajectory_metrics`), and
hand-annotated source points checked against a camera path (:func:`points_in_view`).

Directions are degrees (yaw positive right, pitch up). A true direction of NaN means "no source at this
frame": such frames are never in view and are left out of the averages of :func:`trajectory_report`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike

from . import sphere
from .errors import Pan360Error
from .geometry import rotation_matrix
from .paths import CameraPath, load_path


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


# --------------------------------------------------------------------- ground-truth files
def _truth_arrays(doc: dict, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]:
    try:
        frames = doc["frames"]
        t = np.array([float(f["time"]) for f in frames])
        yaw = np.array([math.nan if f.get("yaw") is None else float(f["yaw"]) for f in frames])
        pitch = np.array([math.nan if f.get("pitch") is None else float(f["pitch"]) for f in frames])
        switches = [float(s) for s in doc.get("switch_times", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise Pan360Error(f"{where}: not a ground-truth direction file ({exc.__class__.__name__}: {exc})") from None
    if t.size == 0:
        raise Pan360Error(f"{where}: no frames")
    return t, yaw, pitch, switches


def trajectory_metrics(trajectory_json: str | Path, truth_json: str | Path, *, margin: float = 0.5,
                       max_time_gap: float | None = None) -> dict[str, float | int]:
    """Score a camera path file (trajectory JSON v1) against a ground-truth direction file.

    The truth file is what :func:`pan360.synthetic.write_ground_truth` writes: ``frames`` with ``time``
    (s), ``yaw``/``pitch`` (degrees, null when nothing sounds) and ``switch_times``. Each camera frame
    takes the truth of the truth frame nearest in time (no interpolation: a switch is a jump); a camera
    frame farther than ``max_time_gap`` (default: one truth frame interval) from every truth frame is an
    error. Frames within ``margin`` seconds of a switch, and frames where nothing sounds, are not scored
    for in-view / angular error (:func:`trajectory_report`); speeds use every frame.

    Returns the report's numbers (in_view, frames_scored, mean/median_angular_error, median/p99/max_speed)
    and ``frames`` (camera frames).
    """
    path = load_path(trajectory_json)
    _camera_frame(path, str(trajectory_json))
    try:
        doc = json.loads(Path(truth_json).read_text())
    except (OSError, ValueError) as exc:
        raise Pan360Error(f"cannot read ground truth {truth_json}: {exc.__class__.__name__}") from None
    t, yaw, pitch, switches = _truth_arrays(doc, str(truth_json))
    order = np.argsort(t, kind="stable")
    t, yaw, pitch = t[order], yaw[order], pitch[order]
    gap = max_time_gap if max_time_gap is not None else (float(np.median(np.diff(t))) if t.size > 1 else 0.5)
    j = np.clip(np.searchsorted(t, path.times), 1, max(t.size - 1, 1))
    left = np.clip(j - 1, 0, t.size - 1)
    right = np.clip(j, 0, t.size - 1)
    near = np.where(np.abs(path.times - t[left]) <= np.abs(t[right] - path.times), left, right)
    worst = float(np.max(np.abs(path.times - t[near])))
    if worst > gap + 1e-6:
        raise Pan360Error(f"the trajectory and the ground truth do not cover the same times "
                          f"(a camera frame is {worst:.3f} s from every truth frame)")
    rep = trajectory_report(path, yaw[near], pitch[near], switches, margin=margin)
    return {**rep.as_dict(), "frames": len(path)}


# ------------------------------------------------------------------------- annotated points
@dataclass(frozen=True)
class PointCheck:
    """One annotated point scored against the camera of the path frame nearest to its time."""

    time: float           # seconds, as annotated
    yaw: float            # degrees, the annotated yaw after ``rotate`` (what is scored)
    pitch: float          # degrees
    frame: int            # index of the nearest path frame
    camera_yaw: float     # that frame's view centre and roll, degrees
    camera_pitch: float
    camera_roll: float
    angular_error: float  # degrees, great circle from the view centre to the point
    in_view: bool         # the point projects inside that frame (:func:`in_view`)


@dataclass(frozen=True)
class PointsReport:
    """Annotated points against a camera path (:func:`points_in_view`)."""

    points: tuple[PointCheck, ...]
    rotate: float  # degrees added to every annotated yaw

    @property
    def in_view(self) -> int:
        return sum(p.in_view for p in self.points)

    @property
    def total(self) -> int:
        return len(self.points)

    @property
    def share(self) -> float:
        return self.in_view / self.total if self.points else math.nan

    def as_dict(self) -> dict[str, object]:
        return {"in_view": self.in_view, "total": self.total, "share": self.share, "rotate": self.rotate,
                "points": [asdict(p) for p in self.points]}


def nearest_frames(path: CameraPath, times: ArrayLike) -> np.ndarray:
    """(N,) index of the path frame nearest to each time (the earlier one on a tie).

    Raises :class:`Pan360Error` for a time more than one frame duration (1 / fps) before the first
    frame or after the last.
    """
    t = np.atleast_1d(np.asarray(times, dtype=np.float64))
    frame = 1.0 / path.fps
    lo, hi = float(path.times[0]), float(path.times[-1])
    outside = (t < lo - frame - 1e-6) | (t > hi + frame + 1e-6)
    if np.any(outside):
        bad = float(t[np.argmax(outside)])
        raise Pan360Error(f"a point at {bad:g} s is outside the trajectory's time span {lo:.3f}-{hi:.3f} s "
                          f"(by more than one frame, {frame:.3f} s)")
    right = np.clip(np.searchsorted(path.times, t), 0, len(path) - 1)
    left = np.clip(right - 1, 0, len(path) - 1)
    return np.where(np.abs(t - path.times[left]) <= np.abs(path.times[right] - t), left, right)


def _camera_frame(path: CameraPath, where: str = "the camera path") -> None:
    """Truth is in the picture's own axes: a level or world path cannot be scored against it."""
    if path.frame != "camera":
        raise Pan360Error(f"{where} is in the {path.frame} frame; annotations are in the picture's own axes: "
                          "score a path rendered with --stabilize off")


def points_in_view(path: CameraPath, points: ArrayLike, rotate: float = 0.0) -> PointsReport:
    """Score annotated ``points`` (N, 3) of ``[time s, yaw deg, pitch deg]`` against a camera path.

    ``rotate``: the clip was turned by this many degrees (content moving right for > 0), so each
    point's yaw becomes ``yaw + rotate`` (wrapped into (-180, 180]). Each point takes the camera of the
    path frame nearest to its time (:func:`nearest_frames`); it is in view when it projects inside
    that frame's frustum (:func:`in_view`: h_fov, v_fov, yaw, pitch, roll) and its angular error is the
    great-circle angle to the view centre (:func:`angular_error`).
    """
    _camera_frame(path)
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise Pan360Error(f"points must be [time, yaw, pitch] rows, got shape {pts.shape}")
    if len(pts) == 0:
        raise Pan360Error("no points to score")
    if not np.all(np.isfinite(pts)):
        raise Pan360Error("points contain a non-finite value")
    if np.any(np.abs(pts[:, 2]) > 90.0):
        raise Pan360Error("point pitch must be within [-90, 90] degrees")
    if not math.isfinite(float(rotate)):
        raise Pan360Error(f"rotate must be a finite number of degrees, got {rotate!r}")
    yaw = sphere.wrap_yaw(pts[:, 1] + float(rotate))
    idx = nearest_frames(path, pts[:, 0])
    rows = []
    for k, i in enumerate(idx):
        i = int(i)
        one = CameraPath(path.times[i:i + 1], path.yaw[i:i + 1], path.pitch[i:i + 1], path.roll[i:i + 1],
                         path.h_fov[i:i + 1], path.v_fov[i:i + 1], path.width, path.height, path.fps, path.frame)
        y, p = float(yaw[k]), float(pts[k, 2])
        rows.append(PointCheck(time=float(pts[k, 0]), yaw=y, pitch=p, frame=i, camera_yaw=float(path.yaw[i]),
                               camera_pitch=float(path.pitch[i]), camera_roll=float(path.roll[i]),
                               angular_error=float(angular_error(one, y, p)[0]),
                               in_view=bool(in_view(one, y, p)[0])))
    return PointsReport(points=tuple(rows), rotate=float(rotate))


def load_annotated_points(file: str | Path, clip: str) -> np.ndarray:
    """The ``points`` (N, 3) of ``clip`` in an annotation JSON.

    Format: ``{"_about": ..., "clips": {NAME: {"file": ..., "points": [[time_s, yaw_deg, pitch_deg], ...],
    "what": ...}}}``, angles in the v360 convention (docs/CONVENTIONS.md). Problems (unreadable
    file, bad JSON, unknown clip: the known ones are listed, malformed points) raise :class:`Pan360Error`.
    """
    from pan360.paths import read_json

    name = str(file)
    doc = read_json(file, "annotations")
    clips = doc.get("clips") if isinstance(doc, dict) else None
    if not isinstance(clips, dict):
        raise Pan360Error(f"{name}: expected an object with a 'clips' object")
    if clip not in clips:
        known = ", ".join(sorted(clips)) or "none"
        raise Pan360Error(f"{name}: no clip {clip!r} (known: {known})")
    entry = clips[clip]
    raw = entry.get("points") if isinstance(entry, dict) else None
    if not isinstance(raw, list) or not raw:
        raise Pan360Error(f"{name}: clip {clip!r} has no 'points' list")
    for j, row in enumerate(raw):
        if (not isinstance(row, list) or len(row) != 3
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in row)):
            raise Pan360Error(f"{name}: clip {clip!r} point {j} must be [time, yaw, pitch] numbers, got {row!r}")
        if abs(row[2]) > 90:
            raise Pan360Error(f"{name}: clip {clip!r} point {j}: pitch must be in [-90, 90], got {row[2]:g}")
    return np.array(raw, dtype=np.float64)
