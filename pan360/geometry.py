"""Geometry of the virtual camera: gnomonic rays, v360 rotations and equirect remap tables.

Conventions (docs/CONVENTIONS.md, identical to ffmpeg ``v360``):

- vectors use :mod:`pan360.sphere`'s axes: **x forward** (yaw 0, pitch 0), **y left**, **z up**;
- **yaw** positive turns the camera to the viewer's right, **pitch** positive looks up, **roll** as
  v360: positive roll turns the picture content counter-clockwise on screen (the camera rolls
  clockwise), i.e. ``v360=e:flat:roll=20`` and :func:`rotation_matrix` with ``roll=20`` agree;
- the rotation order string ``rorder`` is v360's (default ``"ypr"``): the camera ray is rotated by the
  *last* letter first, about fixed world axes, so ``"ypr"`` means roll about the view axis, then pitch,
  then yaw about the vertical;
- output pixel ``(i, j)`` of a ``w x h`` view has its centre at ``a = tan(h_fov/2) * ((2i + 1)/w - 1)``
  to the right and ``b = tan(v_fov/2) * (1 - (2j + 1)/h)`` up on the image plane at distance 1;
- source pixel coordinates follow OpenCV's ``remap`` convention: pixel ``(x, y)`` has its centre at
  integer ``(x, y)``; for a ``W x H`` equirect frame (any aspect) ``x = (yaw/360 + 0.5) * W - 0.5`` and
  ``y = (0.5 - pitch/180) * H - 0.5`` (:func:`pan360.sphere.dir_to_pixel`): grid ``"centre"``.

ffmpeg 9's v360 differs in one detail, measured with coordinate-ramp images: it spreads the 360° x 180°
over the pixel *centres* ``0..W-1`` and ``0..H-1`` (``x = (yaw/360 + 0.5) * (W - 1)``), a stretch of
1/W that moves a sample by at most half a source pixel (none at the frame centre). Its rotations,
``rorder`` and the output pixel grid are exactly the ones here. ``grid="v360"`` reproduces v360's
sampling positions (to its float32 precision); the default ``"centre"`` follows docs/CONVENTIONS.md.

Everything here is pure NumPy (float64 unless stated).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import Pan360Error

FloatArray = NDArray[np.floating]

#: Default output aspect (width / height) when the user gives no size.
DEFAULT_ASPECT = 16.0 / 9.0
#: Default cap on the output width when the user gives no size (1080p-class output).
DEFAULT_MAX_WIDTH = 1920
#: Default horizontal field of view (degrees): wide enough to keep a source in view while the camera pans.
DEFAULT_FOV = 90.0
#: Horizontal fields of view pan360 renders (degrees): a gnomonic view stretches its edges beyond use
#: well before 180°, and below 1° it shows a few source pixels. The vertical FOV follows from the
#: output aspect (square pixels) and only needs to be a gnomonic one, in (0, 180).
H_FOV_RANGE = (1.0, 160.0)


def check_fov(h_fov: ArrayLike, v_fov: ArrayLike | None = None, where: str = "field of view") -> None:
    """Raise :class:`Pan360Error` unless every ``h_fov`` is in :data:`H_FOV_RANGE` and every ``v_fov``
    (when given) in (0, 180) degrees; ``where`` names the value in the message."""
    lo, hi = H_FOV_RANGE
    h = np.asarray(h_fov, dtype=np.float64)
    if not np.all((h >= lo) & (h <= hi)):
        bad = h.ravel()[np.flatnonzero(~((h >= lo) & (h <= hi)).ravel())[0]]
        raise Pan360Error(f"{where}: the horizontal field of view must be between {lo:g} and {hi:g} degrees, "
                          f"got {bad:g}")
    if v_fov is not None:
        v = np.asarray(v_fov, dtype=np.float64)
        if not np.all((v > 0.0) & (v < 180.0)):
            bad = v.ravel()[np.flatnonzero(~((v > 0.0) & (v < 180.0)).ravel())[0]]
            raise Pan360Error(f"{where}: the vertical field of view must be within (0, 180) degrees, got {bad:g}")


@dataclass(frozen=True)
class View:
    """One camera pose: degrees, v360 conventions (see module docstring)."""

    yaw: float
    pitch: float
    roll: float
    h_fov: float
    v_fov: float


def v_fov_for(h_fov: ArrayLike, width: float, height: float) -> float | FloatArray:
    """Vertical FOV (degrees) of a gnomonic view with square pixels: tan(v/2) = tan(h/2) * h / w.

    Scalar in, float out; arrays broadcast.
    """
    check_fov(h_fov)
    h = np.asarray(h_fov, dtype=np.float64)
    v = np.degrees(2.0 * np.arctan(np.tan(np.radians(h) / 2.0) * height / width))
    return float(v) if v.ndim == 0 else v


def native_output_width(in_width: int, h_fov: float) -> int:
    """Output width (even) whose centre pixel density matches the equirect source's.

    The equirect source has ``W / (2π)`` pixels per radian everywhere along the equator; a gnomonic view
    ``w`` pixels wide has ``w / (2 tan(h_fov/2))`` pixels per radian at its centre. Equating them gives
    ``w = 2 tan(h_fov/2) W / (2π)``, rounded to an even number (yuv420p needs even sizes).
    """
    w = 2.0 * math.tan(math.radians(h_fov) / 2.0) * in_width / (2.0 * math.pi)
    return max(2, 2 * int(round(w / 2.0)))


def default_output_size(
    in_width: int, h_fov: float, aspect: float = DEFAULT_ASPECT, max_width: int = DEFAULT_MAX_WIDTH
) -> tuple[int, int]:
    """Default output size: ``aspect`` (16:9), no wider than native at ``h_fov`` nor than ``max_width``.

    Both sides are even (yuv420p); the width is at least 16 pixels.
    """
    w = max(16, min(native_output_width(in_width, h_fov), max_width))
    w -= w % 2
    h = max(2, 2 * int(round(w / aspect / 2.0)))
    return w, h


def _axis_rotation(axis: int, angle_deg: float) -> FloatArray:
    """Right-handed rotation matrix by ``angle_deg`` about world axis 0 (x), 1 (y) or 2 (z)."""
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def rotation_matrix(yaw: float, pitch: float, roll: float, rorder: str = "ypr") -> FloatArray:
    """Matrix (3, 3) taking camera-frame vectors to world vectors, exactly as v360 rotates.

    In the camera frame the view axis is +x, screen-right is -y and screen-up is +z. Yaw is a rotation
    about the world vertical (+yaw turns right, i.e. clockwise seen from above: about z by -yaw); pitch
    about the y axis (+pitch raises the view axis: about y by -pitch); roll about the x axis (+roll
    rolls the camera clockwise as seen by the viewer: about x by +roll, so the content turns
    counter-clockwise on screen). ``rorder`` lists the letters y, p, r; the matrix is their product in
    that order, so the last letter acts first on a camera ray (v360's quaternion product).
    """
    order = rorder.lower()
    if sorted(order) != ["p", "r", "y"]:
        raise Pan360Error(f"rotation order must be a permutation of 'ypr', got {rorder!r}")
    mats = {
        "y": _axis_rotation(2, -yaw),
        "p": _axis_rotation(1, -pitch),
        "r": _axis_rotation(0, roll),
    }
    return mats[order[0]] @ mats[order[1]] @ mats[order[2]]


def matrix_to_ypr(m: ArrayLike) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees whose :func:`rotation_matrix` (order ``ypr``) is the rotation ``m``.

    Pitch is in [-90, 90], yaw and roll in (-180, 180]; looking straight up or down (gimbal lock) the
    roll is 0 and the yaw carries the whole turn. Used to express a view composed with the camera's
    own rotation as one v360 view, so the renderer needs nothing else.
    """
    r = np.asarray(m, dtype=np.float64)
    cb = math.hypot(float(r[0, 0]), float(r[1, 0]))  # cos(beta) >= 0, exact near the poles too
    beta = math.atan2(-float(r[2, 0]), cb)  # about y
    if cb > 1e-9:
        alpha = math.atan2(float(r[1, 0]), float(r[0, 0]))  # about z
        gamma = math.atan2(float(r[2, 1]), float(r[2, 2]))  # about x
    else:  # looking straight up or down: yaw and roll turn about the same axis
        alpha, gamma = math.atan2(-float(r[0, 1]), float(r[1, 1])), 0.0
    yaw, pitch, roll = -math.degrees(alpha), -math.degrees(beta), math.degrees(gamma)
    return (yaw + 360.0 if yaw <= -180.0 else yaw), pitch, (roll + 360.0 if roll <= -180.0 else roll)


def image_plane_coords(
    xs: ArrayLike, ys: ArrayLike, out_w: int, out_h: int, h_fov: float, v_fov: float
) -> tuple[FloatArray, FloatArray]:
    """Image-plane coordinates (right, up) at distance 1 of output pixel positions (any shape).

    ``xs``/``ys`` are pixel coordinates with pixel centres at integers (fractional values allowed).
    """
    tx = math.tan(math.radians(h_fov) / 2.0)
    ty = math.tan(math.radians(v_fov) / 2.0)
    a = tx * ((2.0 * np.asarray(xs, dtype=np.float64) + 1.0) / out_w - 1.0)
    b = ty * (1.0 - (2.0 * np.asarray(ys, dtype=np.float64) + 1.0) / out_h)
    return a, b


def camera_rays(
    out_w: int, out_h: int, h_fov: float, v_fov: float, xs: ArrayLike | None = None, ys: ArrayLike | None = None
) -> FloatArray:
    """Unit camera-frame rays (h, w, 3) of every output pixel centre (or of the grid ``ys x xs``).

    ``xs`` (columns) and ``ys`` (rows) default to the pixel centres ``0..w-1`` and ``0..h-1``.
    """
    xs = np.arange(out_w) if xs is None else np.asarray(xs, dtype=np.float64)
    ys = np.arange(out_h) if ys is None else np.asarray(ys, dtype=np.float64)
    a, b = image_plane_coords(xs[None, :], ys[:, None], out_w, out_h, h_fov, v_fov)
    a, b = np.broadcast_arrays(a, b)
    rays = np.stack([np.ones_like(a), -a, b], axis=-1)
    return rays / np.linalg.norm(rays, axis=-1, keepdims=True)


def world_angles(rays: FloatArray, rot: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Longitude (yaw, positive right) and latitude (pitch) in **radians** of rotated rays (..., 3).

    Longitude is in (-π, π]; latitude in [-π/2, π/2]. The rays need not be unit length.
    """
    # Explicit products rather than a matmul: BLAS threads would spin for a tiny product every frame.
    r = rot.astype(rays.dtype)
    rx, ry, rz = rays[..., 0], rays[..., 1], rays[..., 2]
    x = r[0, 0] * rx + r[0, 1] * ry + r[0, 2] * rz
    y = r[1, 0] * rx + r[1, 1] * ry + r[1, 2] * rz
    z = r[2, 0] * rx + r[2, 1] * ry + r[2, 2] * rz
    lon = np.arctan2(-y, x)
    lat = np.arctan2(z, np.hypot(x, y))
    return lon, lat


GRIDS = ("centre", "v360")


def source_affine(in_w: int, in_h: int, grid: str = "centre") -> tuple[float, float, float, float]:
    """Coefficients ``(ax, bx, ay, by)`` with ``x = ax*lon + bx`` and ``y = ay*lat + by`` (radians).

    ``grid`` is ``"centre"`` (pixel centres, the pan360 convention) or ``"v360"`` (see module docstring).
    """
    if grid == "centre":
        sw, sh, off = float(in_w), float(in_h), -0.5
    elif grid == "v360":
        sw, sh, off = in_w - 1.0, in_h - 1.0, 0.0
    else:
        raise Pan360Error(f"unknown source grid {grid!r}; use one of {', '.join(GRIDS)}")
    return sw / (2.0 * math.pi), 0.5 * sw + off, -sh / math.pi, 0.5 * sh + off


def angles_to_source(
    lon: ArrayLike, lat: ArrayLike, in_w: int, in_h: int, grid: str = "centre"
) -> tuple[FloatArray, FloatArray]:
    """Source pixel coordinates (OpenCV convention) of longitude/latitude in radians.

    Linear in the angles, so it also maps an *unwrapped* longitude (beyond ±π) to columns beyond the
    frame, which ``cv2.BORDER_WRAP`` (or a wrap pad) brings back.
    """
    ax, bx, ay, by = source_affine(in_w, in_h, grid)
    return np.asarray(lon) * ax + bx, np.asarray(lat) * ay + by


def remap_tables(
    in_w: int,
    in_h: int,
    out_w: int,
    out_h: int,
    view: View,
    rorder: str = "ypr",
    grid: str = "centre",
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Exact per-pixel remap tables (map_x, map_y), float32 (out_h, out_w), for an equirect source.

    The reference implementation (float64 per pixel). ``map_x`` is in [-0.5, in_w - 0.5): sample it
    with horizontal wrap-around; ``map_y`` is clamped to [0, in_h - 1] (what v360 does at the poles).
    """
    rays = camera_rays(out_w, out_h, view.h_fov, view.v_fov)
    lon, lat = world_angles(rays, rotation_matrix(view.yaw, view.pitch, view.roll, rorder))
    x, y = angles_to_source(lon, lat, in_w, in_h, grid)
    return x.astype(np.float32), np.clip(y, 0.0, in_h - 1.0).astype(np.float32)


def view_pixel_to_dir(
    xs: ArrayLike, ys: ArrayLike, out_w: int, out_h: int, view: View, rorder: str = "ypr"
) -> tuple[FloatArray, FloatArray]:
    """World (yaw, pitch) in degrees seen at output pixel coordinates (xs, ys) of a view."""
    a, b = image_plane_coords(xs, ys, out_w, out_h, view.h_fov, view.v_fov)
    a, b = np.broadcast_arrays(a, b)
    rays = np.stack([np.ones_like(a), -a, b], axis=-1)
    lon, lat = world_angles(rays, rotation_matrix(view.yaw, view.pitch, view.roll, rorder))
    return np.degrees(lon), np.degrees(lat)


def dir_to_view_pixel(
    yaw: ArrayLike, pitch: ArrayLike, out_w: int, out_h: int, view: View, rorder: str = "ypr"
) -> tuple[FloatArray, FloatArray, NDArray[np.bool_]]:
    """Project world directions (degrees) into a view: pixel coordinates (x, y) and ``visible``.

    ``visible`` is True where the direction is in front of the camera and its pixel centre lies in the
    frame, i.e. ``-0.5 <= x < w - 0.5`` and ``-0.5 <= y < h - 0.5``. Behind the camera x, y are NaN.
    """
    ya = np.radians(np.asarray(yaw, dtype=np.float64))
    pa = np.radians(np.asarray(pitch, dtype=np.float64))
    world = np.stack(np.broadcast_arrays(np.cos(pa) * np.cos(ya), -np.cos(pa) * np.sin(ya), np.sin(pa)), axis=-1)
    cam = world @ rotation_matrix(view.yaw, view.pitch, view.roll, rorder)  # R^T v for each v
    fwd = cam[..., 0]
    front = fwd > 1e-12
    safe = np.where(front, fwd, 1.0)
    a = np.where(front, -cam[..., 1] / safe, np.nan)
    b = np.where(front, cam[..., 2] / safe, np.nan)
    tx = math.tan(math.radians(view.h_fov) / 2.0)
    ty = math.tan(math.radians(view.v_fov) / 2.0)
    x = ((a / tx + 1.0) * out_w - 1.0) / 2.0
    y = ((1.0 - b / ty) * out_h - 1.0) / 2.0
    with np.errstate(invalid="ignore"):
        visible = front & (x >= -0.5) & (x < out_w - 0.5) & (y >= -0.5) & (y < out_h - 0.5)
    return x, y, visible


def source_scale(in_w: int, out_w: int, h_fov: float) -> float:
    """Source pixels per output pixel at the view centre (> 1: the view minifies the source)."""
    return in_w * math.tan(math.radians(h_fov) / 2.0) / (math.pi * out_w)
