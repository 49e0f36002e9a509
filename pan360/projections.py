"""Input picture layouts of 360° video: equirect and the cubemaps that ffmpeg's ``v360`` names.

Maps between unit direction vectors and continuous source pixel coordinates of a whole frame, and
resamples any layout to an equirect frame for the saliency analysis (:func:`to_equirect`).

Conventions (docs/CONVENTIONS.md, :mod:`pan360.sphere`):

- direction vectors use the ambisonic axes: **x forward** (yaw 0, pitch 0), **y left**, **z up**;
- pixel coordinates follow OpenCV's ``remap`` convention: pixel ``(i, j)`` (column ``i``, row ``j``)
  has its centre at ``(x, y) = (i, j)`` and covers ``[i - 0.5, i + 0.5) x [j - 0.5, j + 0.5)``;
  the frame covers ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``;
- ``equirect`` is exactly the project's own grid (:func:`pan360.geometry.angles_to_source`, grid
  ``"centre"``): ``x = (yaw/360 + 0.5) * W - 0.5``, ``y = (0.5 - pitch/180) * H - 0.5``.

The cube layouts are the ones ``v360`` reads and writes with its default options
(``in_forder=rludfb``, ``in_frot=000000``, no ``in_pad``/``fin_pad``), as its source describes them
(libavfilter/vf_v360.c) and as measured with coordinate-ramp pictures through ffmpeg 9's v360, both
ways (tests/test_projections.py: v360 and these functions agree to its float32 precision):

- every face is the gnomonic view of a 90° square seen from the cube's centre, upright as a camera
  turned towards it would see it: the side faces (front, right, back, left) with up at the top; the
  up face with the back at its top and the right at its right; the down face with the front at its top
  and the right at its right;
- ``c3x2``: 3 x 2 faces, top row right, left, up; bottom row down, front, back;
- ``c6x1``: 6 x 1 faces: right, left, up, down, front, back;
- ``eac`` (YouTube's equi-angular cubemap): top row left, front, right (upright); bottom row down,
  back, up, each turned by a quarter turn so that the row is one continuous strip across the back
  (world left at the bottom of the whole row): down and up a quarter turn counter-clockwise on
  screen, back a quarter turn clockwise. Face coordinates are warped by ``t = (2/π) atan(u) + 1/2``
  so equal angles get equal pixels. As in v360, the frame has a 2-pixel pad at its left and right
  edges and at the top and bottom of each row (none between the faces of a row); pad pixels continue
  the face plane with an unwarped (linear) coordinate.

Face pixel bounds are those of v360, so any frame size works: in ``c3x2``/``c6x1`` face column ``c``
of ``n`` holds the pixels ``ceil(c W / n) <= i < ceil((c + 1) W / n)`` (rows alike) and covers their
footprints ``[x0 - 0.5, x1 - 0.5)``; an EAC face spans ``(W - 4) / 3`` pixels (not rounded) and a row
``H / 2``. :func:`pixel_to_dir` gives a position the face of its nearest pixel centre.

Everything is pure NumPy (float64) except :func:`to_equirect`, which calls ``cv2.remap``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import geometry as geo
from . import sphere
from .errors import Pan360Error

FloatArray = NDArray[np.float64]

#: Input layouts, by their ``v360`` names.
PROJECTIONS = ("equirect", "eac", "c3x2", "c6x1")

#: Cube faces by v360's letters: right, left, up, down, front, back.
FACES = "rludfb"

#: Pad (pixels) v360 puts around the faces of an EAC frame (libavfilter/vf_v360.c, ``pixel_pad``).
EAC_PAD = 2.0

# How far (in face coordinates, which span 2) a direction on a right or bottom face edge is moved
# into its face (see _cube_to_pixel).
_EDGE_NUDGE = 1e-9

# Each face as (outward normal, picture right, picture down) in pan360's axes (x fwd, y left, z up).
# A direction v on the face has face coordinates u = (v·right)/(v·normal), w = (v·down)/(v·normal) in
# [-1, 1], so v ∝ normal + u·right + w·down. These are v360's orientations (see the module docstring).
_FACE_AXES: dict[str, tuple[tuple[float, float, float], ...]] = {
    "r": ((0, -1, 0), (-1, 0, 0), (0, 0, -1)),
    "l": ((0, 1, 0), (1, 0, 0), (0, 0, -1)),
    "u": ((0, 0, 1), (0, -1, 0), (1, 0, 0)),
    "d": ((0, 0, -1), (0, -1, 0), (-1, 0, 0)),
    "f": ((1, 0, 0), (0, -1, 0), (0, 0, -1)),
    "b": ((-1, 0, 0), (0, 1, 0), (0, 0, -1)),
}
_NORMALS = np.array([_FACE_AXES[f][0] for f in FACES], dtype=np.float64)  # (6, 3)
_RIGHTS = np.array([_FACE_AXES[f][1] for f in FACES], dtype=np.float64)
_DOWNS = np.array([_FACE_AXES[f][2] for f in FACES], dtype=np.float64)


@dataclass(frozen=True)
class CubeLayout:
    """Where the six faces sit in a frame.

    ``order[k]`` is the face (a letter of :data:`FACES`) in layout slot ``k`` (slots numbered row by
    row, left to right); ``rotations[k]`` is v360's ``frot`` digit of that slot: quarter turns of the
    upright face picture, clockwise on screen (``1``: the face's up points to the picture's right;
    ``3``: to its left); ``equiangular`` selects the EAC warp and pad.
    """

    cols: int
    rows: int
    order: str
    rotations: str
    equiangular: bool = False


#: The cube layouts with v360's default options.
LAYOUTS: dict[str, CubeLayout] = {
    "c3x2": CubeLayout(3, 2, "rludfb", "000000"),
    "c6x1": CubeLayout(6, 1, "rludfb", "000000"),
    "eac": CubeLayout(3, 2, "lfrdbu", "000313", equiangular=True),
}


def _check(projection: str, width: int, height: int) -> None:
    if projection not in PROJECTIONS:
        raise Pan360Error(f"unknown input projection {projection!r}; use one of {', '.join(PROJECTIONS)}")
    if width < 1 or height < 1:
        raise Pan360Error(f"frame size must be positive, got {width}x{height}")


def _ceil_div(a: NDArray[np.int64] | int, b: int) -> NDArray[np.int64] | int:
    """``ceil(a / b)`` in exact integer arithmetic (v360's ``ceilf(ew * face)`` without float error)."""
    return -(-a // b)


# -- face coordinates ------------------------------------------------------------------------------

def _rotate(u: FloatArray, w: FloatArray, rot: NDArray[np.int64]) -> tuple[FloatArray, FloatArray]:
    """Face coordinates -> coordinates in the (turned) face picture: v360's ``rotate_cube_face``."""
    ru = np.select([rot == 1, rot == 2, rot == 3], [-w, -u, w], u)
    rw = np.select([rot == 1, rot == 2, rot == 3], [u, -w, -u], w)
    return ru, rw


def _unrotate(u: FloatArray, w: FloatArray, rot: NDArray[np.int64]) -> tuple[FloatArray, FloatArray]:
    """Inverse of :func:`_rotate`."""
    ru = np.select([rot == 1, rot == 2, rot == 3], [w, -u, -w], u)
    rw = np.select([rot == 1, rot == 2, rot == 3], [-u, -w, u], w)
    return ru, rw


def vec_to_face(vec: ArrayLike) -> tuple[NDArray[np.int64], FloatArray, FloatArray]:
    """Cube face (index into :data:`FACES`) and face coordinates ``(u, w)`` in [-1, 1] of vectors.

    ``u`` grows to the right of the face picture, ``w`` downwards (orientations in the module
    docstring). The face is the one whose normal is closest to the vector; on an edge or corner
    (a tie) the first of ``r l u d f b`` wins, which gives the same direction as any other choice.
    """
    v = np.asarray(vec, dtype=np.float64)
    dots = v @ _NORMALS.T  # (..., 6)
    face = np.argmax(dots, axis=-1)
    depth = np.take_along_axis(dots, face[..., None], axis=-1)[..., 0]
    depth = np.where(depth > 0.0, depth, 1.0)  # only a zero vector has no positive depth
    u = np.einsum("...k,...k->...", v, _RIGHTS[face]) / depth
    w = np.einsum("...k,...k->...", v, _DOWNS[face]) / depth
    return face, u, w


def face_to_vec(face: ArrayLike, u: ArrayLike, w: ArrayLike) -> FloatArray:
    """Unit vectors (..., 3) of face coordinates ``(u, w)`` on cube faces (indices into :data:`FACES`).

    ``u``/``w`` may lie beyond [-1, 1]: the face plane is extended (what v360 does for EAC pads).
    """
    f = np.asarray(face, dtype=np.int64)
    u = np.asarray(u, dtype=np.float64)[..., None]
    w = np.asarray(w, dtype=np.float64)[..., None]
    v = _NORMALS[f] + u * _RIGHTS[f] + w * _DOWNS[f]
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


# -- layout slots and pixels -----------------------------------------------------------------------

def _slot_tables(layout: CubeLayout) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(slot of each face, rotation of each slot) as arrays indexed by face / slot."""
    slot_of_face = np.array([layout.order.index(f) for f in FACES], dtype=np.int64)
    rotation = np.array([int(c) for c in layout.rotations], dtype=np.int64)
    return slot_of_face, rotation


def _slot_bounds(
    layout: CubeLayout, slot: NDArray[np.int64] | int, width: int, height: int
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Pixel bounds ``(x0, x1, y0, y1)`` (half-open) of layout slots, v360's ceil-based face grid."""
    col = np.asarray(slot) % layout.cols
    row = np.asarray(slot) // layout.cols
    x0, x1 = _ceil_div(col * width, layout.cols), _ceil_div((col + 1) * width, layout.cols)
    y0, y1 = _ceil_div(row * height, layout.rows), _ceil_div((row + 1) * height, layout.rows)
    return x0, x1, y0, y1  # type: ignore[return-value]


def face_bounds(projection: str, face: str, width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel bounds ``(x0, x1, y0, y1)`` (half-open: ``x0 <= i < x1``) of a cube face in a frame.

    For ``eac`` the bounds are those of the face's share of the frame, pads included (the left and
    right pads belong to the outer columns; each row's top and bottom pads to its faces).
    """
    _check(projection, width, height)
    if projection not in LAYOUTS or face not in FACES:
        raise Pan360Error(f"{projection!r} has no cube face {face!r}")
    layout = LAYOUTS[projection]
    slot = layout.order.index(face)
    if layout.equiangular:
        # The pixels whose centres pixel_to_dir gives to this face (v360's eac_to_xyz).
        col, row = slot % layout.cols, slot // layout.cols
        span_x = (width - 2.0 * EAC_PAD) / layout.cols
        row_h = height / layout.rows
        xs = [0] + [math.ceil(EAC_PAD + c * span_x - 0.5) for c in range(1, layout.cols)] + [width]
        ys = [0] + [math.ceil(r * row_h - 0.5) for r in range(1, layout.rows)] + [height]
        return xs[col], xs[col + 1], ys[row], ys[row + 1]
    x0, x1, y0, y1 = _slot_bounds(layout, slot, width, height)
    return int(x0), int(x1), int(y0), int(y1)


def _eac_warp(u: FloatArray) -> FloatArray:
    """Cube coordinate in [-1, 1] -> equi-angular fraction in [0, 1] of the face."""
    return (2.0 / math.pi) * np.arctan(u) + 0.5


def _eac_unwarp(t: FloatArray) -> FloatArray:
    """Inverse of :func:`_eac_warp`; beyond the face (pads) v360 continues linearly: ``u = 2 (t - 1/2)``."""
    a = np.asarray(t, dtype=np.float64) - 0.5
    inside = np.abs(a) <= 0.5
    return np.where(inside, np.tan(np.pi / 2.0 * np.clip(a, -0.5, 0.5)), 2.0 * a)


def _cube_to_pixel(
    vec: ArrayLike, layout: CubeLayout, width: int, height: int
) -> tuple[FloatArray, FloatArray, NDArray[np.int64]]:
    """Pixel coordinates and layout slot of directions in a cube layout."""
    face, u, w = vec_to_face(vec)
    slot_of_face, rotation = _slot_tables(layout)
    slot = slot_of_face[face]
    pu, pw = _rotate(u, w, rotation[slot])
    col, row = slot % layout.cols, slot // layout.cols
    if layout.equiangular:
        # v360: the face strip is the frame less a pad at each side; each row is H/rows less two pads.
        span_x = (width - 2.0 * EAC_PAD) / layout.cols
        span_y = height / layout.rows - 2.0 * EAC_PAD
        x = EAC_PAD + (_eac_warp(pu) + col) * span_x - 0.5
        y = EAC_PAD + _eac_warp(pw) * span_y + row * (height / layout.rows) - 0.5
        return x, y, slot
    # A direction on a face's right or bottom edge would sit on the next slot's footprint, which is
    # usually another part of the sphere: keep it a hair (~1e-7 px) inside its own face.
    pu, pw = np.minimum(pu, 1.0 - _EDGE_NUDGE), np.minimum(pw, 1.0 - _EDGE_NUDGE)
    x0, x1, y0, y1 = _slot_bounds(layout, slot, width, height)
    x = x0 + 0.5 * (x1 - x0) * (pu + 1.0) - 0.5
    y = y0 + 0.5 * (y1 - y0) * (pw + 1.0) - 0.5
    return x, y, slot


def _pixel_to_cube(x: FloatArray, y: FloatArray, layout: CubeLayout, width: int, height: int) -> FloatArray:
    """Directions of pixel coordinates in a cube layout (the face is the one of the nearest pixel)."""
    _, rotation = _slot_tables(layout)
    if layout.equiangular:
        span_x = (width - 2.0 * EAC_PAD) / layout.cols
        row_h = height / layout.rows
        s = (x + 0.5 - EAC_PAD) / span_x
        col = np.clip(np.floor(s), 0, layout.cols - 1).astype(np.int64)
        row = np.clip(np.floor((y + 0.5) / row_h), 0, layout.rows - 1).astype(np.int64)
        pu = _eac_unwarp(s - col)
        pw = _eac_unwarp((y + 0.5 - row * row_h - EAC_PAD) / (row_h - 2.0 * EAC_PAD))
        slot = row * layout.cols + col
    else:
        i = np.clip(np.floor(x + 0.5), 0, width - 1).astype(np.int64)
        j = np.clip(np.floor(y + 0.5), 0, height - 1).astype(np.int64)
        slot = (j * layout.rows // height) * layout.cols + i * layout.cols // width
        x0, x1, y0, y1 = _slot_bounds(layout, slot, width, height)
        pu = 2.0 * (x - x0 + 0.5) / (x1 - x0) - 1.0
        pw = 2.0 * (y - y0 + 0.5) / (y1 - y0) - 1.0
    u, w = _unrotate(pu, pw, rotation[slot])
    faces = np.array([FACES.index(f) for f in layout.order], dtype=np.int64)
    return face_to_vec(faces[slot], u, w)


# -- public mappings -------------------------------------------------------------------------------

def dir_to_pixel(vec: ArrayLike, projection: str, width: int, height: int) -> tuple[FloatArray, FloatArray]:
    """Continuous source pixel coordinates ``(x, y)`` (OpenCV convention) of directions.

    ``vec`` is (..., 3) in pan360's axes (x forward, y left, z up); it need not be unit length. Every
    direction lands in the frame ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``: for ``equirect`` yaw 180 is
    at ``x = W - 0.5`` (the ±180° seam, where ``cv2.BORDER_WRAP`` joins the last and first columns),
    for the cube layouts on the face of the direction, for ``eac`` inside the pads. Use these with
    ``cv2.remap`` as they are: ``map_x = x``, ``map_y = y``.
    """
    _check(projection, width, height)
    v = np.asarray(vec, dtype=np.float64)
    if projection == "equirect":
        yaw, pitch = sphere.vec_to_dir(v)
        return geo.angles_to_source(np.radians(yaw), np.radians(pitch), width, height)
    x, y, _ = _cube_to_pixel(v, LAYOUTS[projection], width, height)
    return x, y


def pixel_to_dir(x: ArrayLike, y: ArrayLike, projection: str, width: int, height: int) -> FloatArray:
    """Unit directions (..., 3) seen at pixel coordinates ``(x, y)`` (OpenCV convention, any shape).

    The inverse of :func:`dir_to_pixel`. Pixel centres are integers; for a cube layout a fractional
    position belongs to the face of its nearest pixel centre. EAC pad pixels see the neighbouring
    face's directions, as v360 writes them.
    """
    _check(projection, width, height)
    xs, ys = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    if projection == "equirect":
        ax, bx, ay, by = geo.source_affine(width, height)
        lon, lat = (xs - bx) / ax, (ys - by) / ay
        return sphere.dir_to_vec(np.degrees(lon), np.degrees(lat))
    return _pixel_to_cube(xs, ys, LAYOUTS[projection], width, height)


def pixel_grid_dirs(projection: str, width: int, height: int) -> FloatArray:
    """Unit direction of every pixel centre of a frame, shape (H, W, 3)."""
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    return pixel_to_dir(xs, ys, projection, width, height)


@lru_cache(maxsize=8)
def equirect_tables(
    projection: str, in_w: int, in_h: int, out_w: int, out_h: int
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """``cv2.remap`` tables (map_x, map_y), float32 (out_h, out_w), from a frame to an equirect frame.

    The output grid is pan360's equirect pixel-centre grid. Sample positions are kept where bilinear
    sampling stays correct: for ``equirect``, rows clamped to ``[0, H - 1]`` and columns wrapping
    (sample with ``cv2.BORDER_WRAP``); for ``c3x2``/``c6x1`` clamped to the pixel centres of the
    direction's own face, since the layout's neighbour of a face edge is usually another part of the
    sphere (the outermost half pixel of a face repeats its edge pixels); for ``eac`` clamped to the
    frame, as v360 does: its faces in a row are continuous and the pads separate the rest. Cached
    (read-only arrays): the saliency analysis calls it every frame with the same sizes.
    """
    _check(projection, in_w, in_h)
    vec = sphere.equirect_vectors(out_w, out_h)
    if projection == "equirect":
        x, y = dir_to_pixel(vec, projection, in_w, in_h)
        y = np.clip(y, 0.0, in_h - 1.0)
    elif LAYOUTS[projection].equiangular:
        x, y = dir_to_pixel(vec, projection, in_w, in_h)
        x, y = np.clip(x, 0.0, in_w - 1.0), np.clip(y, 0.0, in_h - 1.0)
    else:
        layout = LAYOUTS[projection]
        x, y, slot = _cube_to_pixel(vec, layout, in_w, in_h)
        x0, x1, y0, y1 = _slot_bounds(layout, slot, in_w, in_h)
        x, y = np.clip(x, x0, x1 - 1), np.clip(y, y0, y1 - 1)
    map_x, map_y = x.astype(np.float32), y.astype(np.float32)
    map_x.flags.writeable = False
    map_y.flags.writeable = False
    return map_x, map_y


def to_equirect(image: NDArray, projection: str, out_w: int, out_h: int) -> NDArray:
    """Resample a whole frame of any layout (H, W) or (H, W, C) to an ``out_w x out_h`` equirect frame.

    One bilinear ``cv2.remap`` with :func:`equirect_tables`; dtype and channels are kept (any dtype and
    channel count ``cv2.remap`` accepts: uint8, uint16, float32...).
    """
    img = np.asarray(image)
    if img.ndim not in (2, 3):
        raise Pan360Error(f"expected an (H, W) or (H, W, C) picture, got shape {img.shape}")
    in_h, in_w = img.shape[:2]
    map_x, map_y = equirect_tables(projection, in_w, in_h, out_w, out_h)
    border = cv2.BORDER_WRAP if projection == "equirect" else cv2.BORDER_REPLICATE
    return cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=border)


# -- helpers for direct rendering from a layout (pan360.reproject) ----------------------------------

def equirect_width(projection: str, width: int, height: int) -> float:
    """Width of the equirect frame with about the same angular resolution as a ``width x height`` frame.

    ``width`` itself for ``equirect``; for a cube layout four face widths (a face spans 90°): ``W / 3``
    per face for ``c3x2``, ``(W - 4) / 3`` for ``eac`` (its 2-pixel side pads), ``W / 6`` for ``c6x1``.
    What the anti-aliasing prefilter of :mod:`pan360.reproject` compares with the output's resolution.
    """
    _check(projection, width, height)
    if projection == "equirect":
        return float(width)
    layout = LAYOUTS[projection]
    face = (width - 2.0 * EAC_PAD) / layout.cols if layout.equiangular else width / layout.cols
    return 4.0 * face


@dataclass(frozen=True)
class FacePlacement:
    """Where the six faces of a cube layout lie in a frame, in **normalised frame coordinates**.

    Normalised coordinates are ``(X, Y) = ((x + 0.5) / W, (y + 0.5) / H)``: [0, 1] over the whole frame,
    so one placement serves every plane size of the frame (a half-size chroma plane, a box-downscaled
    frame: ``x_p = X W_p - 0.5``). Arrays are indexed by face (:data:`FACES` order):

    - ``normal``, ``right``, ``down`` (6, 3): the face's outward normal and the world directions of its
      picture's right and down *as it lies in the frame* (the slot's quarter turns applied). A direction
      ``v`` on face ``k`` has picture coordinates ``q = v·right/v·normal`` and ``r = v·down/v·normal``
      in [-1, 1];
    - ``x0``, ``sx``, ``y0``, ``sy`` (6,): ``X = x0 + sx t(q)`` and ``Y = y0 + sy t(r)`` with the face
      fraction ``t(q) = (q + 1) / 2``, or ``2/π atan(q) + 1/2`` when ``equiangular`` (eac);
    - ``lo_x``, ``hi_x``, ``lo_y``, ``hi_y`` (6,): the face's pixel footprint ``[x0 - 0.5, x1 - 0.5)``
      normalised (for eac the face itself, without pads: ``x0, x0 + sx``).

    :func:`dir_to_layout` applies it; ``X W - 0.5`` is :func:`dir_to_pixel`'s ``x`` (to rounding).
    """

    projection: str
    width: int
    height: int
    equiangular: bool
    normal: FloatArray
    right: FloatArray
    down: FloatArray
    x0: FloatArray
    sx: FloatArray
    y0: FloatArray
    sy: FloatArray
    lo_x: FloatArray
    hi_x: FloatArray
    lo_y: FloatArray
    hi_y: FloatArray


@lru_cache(maxsize=16)
def face_placement(projection: str, width: int, height: int) -> FacePlacement:
    """The :class:`FacePlacement` of a cube layout in a ``width x height`` frame (cached, read-only)."""
    _check(projection, width, height)
    if projection not in LAYOUTS:
        raise Pan360Error(f"{projection!r} is not a cube layout")
    layout = LAYOUTS[projection]
    slot_of_face, rotation = _slot_tables(layout)
    right, down = np.empty((6, 3)), np.empty((6, 3))
    x0, sx, y0, sy = (np.empty(6) for _ in range(4))
    for k in range(6):
        slot = int(slot_of_face[k])
        rot = int(rotation[slot])
        r, d = _RIGHTS[k], _DOWNS[k]
        # _rotate: the picture's coordinates of face coordinates (u, w) = (v·r, v·d) / depth.
        right[k], down[k] = {0: (r, d), 1: (-d, r), 2: (-r, -d), 3: (d, -r)}[rot]
        col, row = slot % layout.cols, slot // layout.cols
        if layout.equiangular:
            span_x = (width - 2.0 * EAC_PAD) / layout.cols
            row_h = height / layout.rows
            x0[k], sx[k] = (EAC_PAD + col * span_x) / width, span_x / width
            y0[k], sy[k] = (EAC_PAD + row * row_h) / height, (row_h - 2.0 * EAC_PAD) / height
        else:
            bx0, bx1, by0, by1 = (int(b) for b in _slot_bounds(layout, slot, width, height))
            x0[k], sx[k] = bx0 / width, (bx1 - bx0) / width
            y0[k], sy[k] = by0 / height, (by1 - by0) / height
    arrays = dict(normal=_NORMALS.copy(), right=right, down=down, x0=x0, sx=sx, y0=y0, sy=sy,
                  lo_x=x0.copy(), hi_x=x0 + sx, lo_y=y0.copy(), hi_y=y0 + sy)
    for a in arrays.values():
        a.flags.writeable = False
    return FacePlacement(projection, width, height, layout.equiangular, **arrays)


def dir_to_layout(vec: ArrayLike, placement: FacePlacement) -> tuple[NDArray[np.int64], FloatArray, FloatArray]:
    """Face (index into :data:`FACES`) and normalised frame coordinates ``(X, Y)`` of directions.

    The reference (float64) for the per-frame tables of :mod:`pan360.reproject`; ``X W - 0.5`` and
    ``Y H - 0.5`` are :func:`dir_to_pixel`'s coordinates.
    """
    v = np.asarray(vec, dtype=np.float64)
    face, _, _ = vec_to_face(v)
    depth = np.einsum("...k,...k->...", v, placement.normal[face])
    q = np.einsum("...k,...k->...", v, placement.right[face]) / depth
    r = np.einsum("...k,...k->...", v, placement.down[face]) / depth
    if placement.equiangular:
        tq, tr = _eac_warp(q), _eac_warp(r)
    else:
        tq, tr = 0.5 * (q + 1.0), 0.5 * (r + 1.0)
    return face, placement.x0[face] + placement.sx[face] * tq, placement.y0[face] + placement.sy[face] * tr
