"""Directions on the sphere: the one place that defines pan360's angle conventions.

Conventions (docs/CONVENTIONS.md, identical to ffmpeg ``v360``):

- angles are degrees;
- **yaw** in (-180, 180]: 0 is the centre column of the equirectangular frame, positive turns to the
  viewer's right; **pitch** in [-90, 90]: positive looks up;
- unit vectors use the ambisonic axes: **x forward** (yaw 0, pitch 0), **y left**, **z up**, so an
  ambisonic source at azimuth ``a`` (counter-clockwise, positive to the left) has ``yaw = -a`` and the
  same vector;
- pixel centres of a W x H equirect frame (width spans 360°, height 180°, any aspect):
  ``yaw = ((x + 0.5) / W - 0.5) * 360``, ``pitch = (0.5 - (y + 0.5) / H) * 180``.

Every function is pure NumPy and broadcasts over leading dimensions.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.floating]


def wrap_yaw(yaw: ArrayLike) -> FloatArray:
    """Wrap yaw (degrees) into (-180, 180]."""
    y = np.asarray(yaw, dtype=np.float64)
    w = np.mod(y + 180.0, 360.0) - 180.0
    return np.where(w == -180.0, 180.0, w)


def dir_to_vec(yaw: ArrayLike, pitch: ArrayLike) -> FloatArray:
    """Unit vectors (..., 3) in (x forward, y left, z up) for yaw/pitch in degrees."""
    ya = np.radians(np.asarray(yaw, dtype=np.float64))
    pa = np.radians(np.asarray(pitch, dtype=np.float64))
    cp = np.cos(pa)
    return np.stack(np.broadcast_arrays(cp * np.cos(ya), -cp * np.sin(ya), np.sin(pa)), axis=-1)


def vec_to_dir(vec: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(yaw, pitch) in degrees of vectors (..., 3); vectors need not be unit length."""
    v = np.asarray(vec, dtype=np.float64)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    yaw = wrap_yaw(np.degrees(np.arctan2(-y, x)))
    pitch = np.degrees(np.arctan2(z, np.hypot(x, y)))
    return yaw, pitch


def equirect_angles(width: int, height: int) -> tuple[FloatArray, FloatArray]:
    """Yaw of each pixel column (W,) and pitch of each pixel row (H,), at pixel centres."""
    yaw = ((np.arange(width) + 0.5) / width - 0.5) * 360.0
    pitch = (0.5 - (np.arange(height) + 0.5) / height) * 180.0
    return yaw, pitch


def equirect_vectors(width: int, height: int) -> FloatArray:
    """Unit vector of every pixel centre, shape (H, W, 3)."""
    yaw, pitch = equirect_angles(width, height)
    return dir_to_vec(yaw[None, :], pitch[:, None])


def equirect_solid_angle(width: int, height: int) -> FloatArray:
    """Solid angle (steradians) of each pixel row, shape (H, 1); sums to 4π over the frame."""
    edges = np.radians(90.0 - np.arange(height + 1) * 180.0 / height)
    band = np.sin(edges[:-1]) - np.sin(edges[1:])  # exact area of the latitude band
    return (band * 2.0 * np.pi / width)[:, None]


def dir_to_pixel(yaw: ArrayLike, pitch: ArrayLike, width: int, height: int) -> tuple[FloatArray, FloatArray]:
    """Continuous pixel coordinates (x, y) of a direction; x in [0, W), pixel centres at +0.5."""
    x = np.mod((wrap_yaw(yaw) / 360.0 + 0.5) * width - 0.5, width)
    y = (0.5 - np.asarray(pitch, dtype=np.float64) / 180.0) * height - 0.5
    return x, y


def weighted_mean_direction(weights: ArrayLike) -> tuple[float, float, float]:
    """Saliency-weighted mean direction of equirect map(s) on the sphere.

    ``weights`` is (..., H, W), non-negative. Each pixel contributes its unit vector times its weight
    times its solid angle, so neither the ±180° seam nor the poles bias the result. Returns
    ``(yaw, pitch, concentration)`` where concentration = |mean vector| / mean weight is in [0, 1]
    (1: all weight at one point, 0: spread evenly). For a stack of maps the returned values are arrays.
    """
    m = np.asarray(weights, dtype=np.float64)
    h, w = m.shape[-2:]
    area = equirect_solid_angle(w, h)
    vec = equirect_vectors(w, h)
    mass = m * area
    total = mass.sum(axis=(-2, -1))
    s = np.einsum("...hw,hwk->...k", mass, vec)
    norm = np.linalg.norm(s, axis=-1)
    yaw, pitch = vec_to_dir(s)
    conc = np.divide(norm, total, out=np.zeros_like(norm), where=total > 0)
    return yaw, pitch, conc  # type: ignore[return-value]


def angular_distance(yaw1: ArrayLike, pitch1: ArrayLike, yaw2: ArrayLike, pitch2: ArrayLike) -> FloatArray:
    """Great-circle angle in degrees between two directions (numerically stable at 0 and 180)."""
    a = dir_to_vec(yaw1, pitch1)
    b = dir_to_vec(yaw2, pitch2)
    return vec_angle(a, b)


def vec_angle(a: ArrayLike, b: ArrayLike) -> FloatArray:
    """Angle in degrees between vectors (..., 3)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    cross = np.linalg.norm(np.cross(a, b), axis=-1)
    dot = np.sum(a * b, axis=-1)
    return np.degrees(np.arctan2(cross, dot))


def slerp(v0: ArrayLike, v1: ArrayLike, t: ArrayLike) -> FloatArray:
    """Spherical linear interpolation between unit vectors v0 and v1 (..., 3) at fraction t."""
    v0 = np.asarray(v0, dtype=np.float64)
    v1 = np.asarray(v1, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)[..., None]
    omega = np.radians(vec_angle(v0, v1))[..., None]
    so = np.sin(omega)
    small = so < 1e-9
    safe = np.where(small, 1.0, so)
    out = np.where(
        small,
        (1.0 - t) * v0 + t * v1,
        (np.sin((1.0 - t) * omega) * v0 + np.sin(t * omega) * v1) / safe,
    )
    return out / np.linalg.norm(out, axis=-1, keepdims=True)
