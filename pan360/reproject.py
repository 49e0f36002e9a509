"""Per-frame reprojection of 360° frames to the virtual camera (:class:`Renderer`).

The source is an equirect frame or, read directly (one resampling from the source pixels to the
view), a cubemap in one of ffmpeg v360's layouts: ``eac``, ``c3x2``, ``c6x1``
(:mod:`pan360.projections`). Two backends give the same picture (bilinear; equirect: horizontal
wrap-around, rows clamped at the poles; cube layouts: positions clamped to the direction's own face):

- ``opencv`` (CPU): the remap table of each view is computed exactly on a coarse grid of nodes every
  8 output pixels and interpolated bilinearly (``cv2.resize`` on float32, exact weights). Equirect:
  with an unwrapped longitude so the ±180° seam is continuous and ``cv2.BORDER_WRAP`` brings columns
  back; the interpolation error is checked every frame at the cell centres; near a pole, where
  longitude is singular, the table is computed per pixel instead. Measured for 1280x720 (Y + chroma
  tables from a 4K source, an idle 2-core machine): 4-5.5 ms coarse against ~47 ms per pixel; ffmpeg's
  v360 rebuilds its whole table whenever the view changes (4-5x slower overall than a fixed view),
  pan360 does not need to. Cube layouts (:class:`_CubeTables`): face edges are straight lines in the
  view and each face's region there is convex, so a cell whose corners lie on one face is interpolated
  like the equirect cells (error checked likewise); the cells a face edge crosses are computed per
  pixel. About as fast as equirect (bench/projection_speed.py).
- ``torch``: the table is computed per pixel on the device with torch operations and sampled with
  ``grid_sample`` (CUDA when available; also runs on the CPU, which the tests use to compare the two
  backends).

yuv420p frames are remapped plane by plane (Y at full size, U/V at half size with their own table from
the same view), so a 4K frame is never converted to RGB; a cube layout's chroma planes are taken to
hold the frame scaled to their size (as a box-downscaled frame does). When the view minifies the
source (an output pixel spans more than 1.5 source pixels at the view centre; for a cube layout
measured on its equirect-equivalent width, :func:`pan360.projections.equirect_width`) the source is
first box-averaged by an integer factor, against aliasing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from . import geometry as geo
from . import projections as pj
from .device import check_device, resolve_device
from .errors import Pan360Error
from .geometry import View

Plane = NDArray[np.uint8]

#: Output pixels between coarse-table nodes, tried in order (multiples of 4, so chroma nodes fall on
#: the same grid); a view too close to a pole for all of them gets a per-pixel table.
NODE_STEPS = (8, 4)
#: Largest interpolation error accepted for a coarse table, in source pixels (scaled by cos(latitude)
#: horizontally: the equirect source is stretched by 1/cos(latitude), so that is the angular error).
MAX_TABLE_ERROR = 0.1
#: Minification (source pixels per output pixel at the view centre) above which the source is prefiltered.
PREFILTER_ABOVE = 1.5
#: Cube layouts (c3x2, c6x1): an interpolated cell's corners lie at least this many pixels (of the smallest
#: plane) inside their face's footprint, i.e. at or inside its outermost pixel centres: then so do all
#: the cell's positions, and no bilinear tap reaches past the face's edge.
CUBE_EDGE_MARGIN = 0.5


def prefilter_factor(in_w: float, out_w: int, h_fov: float) -> int:
    """Integer box-filter factor applied to the source before remapping (1: none).

    ``in_w`` is an equirect width; for a cube layout its equirect equivalent
    (:func:`pan360.projections.equirect_width`).
    """
    r = geo.source_scale(in_w, out_w, h_fov)
    return 1 if r <= PREFILTER_ABOVE else int(round(r))


def _downscaled(size: tuple[int, int], factor: int) -> tuple[int, int]:
    w, h = size
    return (max(1, round(w / factor)), max(1, round(h / factor))) if factor > 1 else (w, h)


class _CoarseTables:
    """Remap tables for one output size, computed on a coarse node grid and interpolated (CPU)."""

    def __init__(self, out_w: int, out_h: int, step: int) -> None:
        self.out_w, self.out_h, self.step = out_w, out_h, step
        self.off = step // 2  # first node half a step before pixel 0, so resize never extrapolates
        self.gw = math.ceil((self.off + out_w - 0.5) / step + 0.5)
        self.gh = math.ceil((self.off + out_h - 0.5) / step + 0.5)
        # Output-pixel coordinates of the nodes (the centres of cv2.resize's source pixels).
        self.node_x = (np.arange(self.gw) + 0.5) * step - 0.5 - self.off
        self.node_y = (np.arange(self.gh) + 0.5) * step - 0.5 - self.off
        # Cells whose centre is checked against the exact mapping every frame: the outer ring (the
        # error grows towards the frame edges and towards a pole, which is outside the frame here) and
        # every 4th cell inside.
        ci, cj = np.meshgrid(np.arange(self.gh - 1), np.arange(self.gw - 1), indexing="ij")
        ring = (ci == 0) | (cj == 0) | (ci == self.gh - 2) | (cj == self.gw - 2)
        keep = ring | ((ci % 4 == 2) & (cj % 4 == 2))
        self.cell_i, self.cell_j = ci[keep], cj[keep]
        self._rays: dict[tuple[float, float], tuple[NDArray, NDArray]] = {}
        self._exact_rays: dict[tuple[int, int, float, float], NDArray[np.float32]] = {}
        self.last_error_rad = math.nan  # interpolation error estimate of the last view (radians)

    def _node_rays(self, h_fov: float, v_fov: float) -> tuple[NDArray, NDArray]:
        key = (h_fov, v_fov)
        if key not in self._rays:
            if len(self._rays) > 8:
                self._rays.clear()
            nodes = geo.camera_rays(self.out_w, self.out_h, h_fov, v_fov, self.node_x, self.node_y)
            a, b = geo.image_plane_coords(
                self.node_x[self.cell_j] + self.step / 2, self.node_y[self.cell_i] + self.step / 2,
                self.out_w, self.out_h, h_fov, v_fov,
            )
            mid = np.stack([np.ones_like(a), -a, b], axis=-1)
            self._rays[key] = (nodes, mid)
        return self._rays[key]

    def angles(self, view: View, rorder: str, tolerance: float) -> tuple[NDArray, NDArray] | None:
        """Unwrapped longitude and latitude (radians) at the nodes, or None if interpolation is too coarse."""
        nodes, mid = self._node_rays(view.h_fov, view.v_fov)
        rot = geo.rotation_matrix(view.yaw, view.pitch, view.roll, rorder)
        lon, lat = geo.world_angles(nodes, rot)
        # Unwrap along the first column, then along every row: continuous unless a pole is in view.
        lon[:, 0] = np.unwrap(lon[:, 0])
        lon = np.unwrap(lon, axis=1)
        mlon, mlat = geo.world_angles(mid, rot)
        i, j = self.cell_i, self.cell_j
        ilon = 0.25 * (lon[i, j] + lon[i + 1, j] + lon[i, j + 1] + lon[i + 1, j + 1])
        ilat = 0.25 * (lat[i, j] + lat[i + 1, j] + lat[i, j + 1] + lat[i + 1, j + 1])
        dlon = np.abs(np.mod(ilon - mlon + np.pi, 2.0 * np.pi) - np.pi) * np.cos(mlat)
        self.last_error_rad = max(float(dlon.max()), float(np.abs(ilat - mlat).max()))
        return (lon, lat) if self.last_error_rad < tolerance else None

    def interpolate(self, lon: NDArray, lat: NDArray, src: tuple[int, int], grid: str, half: bool) -> NDArray[np.float32]:
        """Interleaved (h, w, 2) float32 table for a source of size ``src`` (full or half output size)."""
        ax, bx, ay, by = geo.source_affine(src[0], src[1], grid)
        xy = np.empty(lon.shape + (2,), np.float32)
        xy[..., 0] = lon * ax + bx
        xy[..., 1] = np.clip(lat * ay + by, 0.0, src[1] - 1.0)  # a convex combination stays clamped
        f, off = (self.step // 2, self.off // 2) if half else (self.step, self.off)
        w, h = (self.out_w // 2, self.out_h // 2) if half else (self.out_w, self.out_h)
        big = cv2.resize(xy, (self.gw * f, self.gh * f), interpolation=cv2.INTER_LINEAR)
        table = big[off : off + h, off : off + w]
        if grid == "v360":  # v360 spans 360° over W - 1 pixels, so wrap with that period, not W
            table = np.ascontiguousarray(table)
            table[..., 0] = np.mod(table[..., 0], src[0] - 1.0)
        return table

    def exact(self, view: View, rorder: str, src: tuple[int, int], grid: str, half: bool) -> NDArray[np.float32]:
        """Per-pixel (h, w, 2) float32 table (views near a pole)."""
        w, h = (self.out_w // 2, self.out_h // 2) if half else (self.out_w, self.out_h)
        key = (w, h, view.h_fov, view.v_fov)
        if key not in self._exact_rays:
            if len(self._exact_rays) > 4:
                self._exact_rays.clear()
            self._exact_rays[key] = geo.camera_rays(w, h, view.h_fov, view.v_fov).astype(np.float32)
        rot = geo.rotation_matrix(view.yaw, view.pitch, view.roll, rorder).astype(np.float32)
        v = self._exact_rays[key] @ rot.T
        ax, bx, ay, by = geo.source_affine(src[0], src[1], grid)
        xy = np.empty((h, w, 2), np.float32)
        xy[..., 0] = np.arctan2(-v[..., 1], v[..., 0]) * np.float32(ax) + np.float32(bx)
        xy[..., 1] = np.arcsin(np.clip(v[..., 2], -1.0, 1.0)) * np.float32(ay) + np.float32(by)
        np.clip(xy[..., 1], 0.0, src[1] - 1.0, out=xy[..., 1])
        return xy


# -- cube layouts (eac, c3x2, c6x1) -----------------------------------------------------------------
#
# The world ray (not unit) of output pixel (x, y) is an affine function of it: v = P + x Qx + y Qy
# (:func:`_camera_affine`). On cube face k the source position is a function of ratios (c·v) / (n_k·v)
# of two such functions: a homography of the output pixel grid (through an atan for eac). Face
# boundaries are great circles, i.e. straight lines in the output view, and a face's region there is
# convex (the intersection of the half-planes n_k·v >= n_j·v), so a coarse cell whose four corners lie
# on one face lies wholly on it.


def _camera_affine(view: View, rorder: str, out_w: int, out_h: int) -> tuple[NDArray, NDArray, NDArray]:
    """(P, Qx, Qy), float64 (3,): the world ray (not unit) of output pixel (x, y) is P + x Qx + y Qy."""
    rot = geo.rotation_matrix(view.yaw, view.pitch, view.roll, rorder)
    tx = math.tan(math.radians(view.h_fov) / 2.0)
    ty = math.tan(math.radians(view.v_fov) / 2.0)
    # camera ray (1, -a, b) with a = tx ((2x + 1)/w - 1), b = ty (1 - (2y + 1)/h): geometry.image_plane_coords
    p = rot[:, 0] + tx * (1.0 - 1.0 / out_w) * rot[:, 1] + ty * (1.0 - 1.0 / out_h) * rot[:, 2]
    return p, -(2.0 * tx / out_w) * rot[:, 1], -(2.0 * ty / out_h) * rot[:, 2]


def _faces(vx: NDArray, vy: NDArray, vz: NDArray) -> tuple[NDArray, NDArray, NDArray, NDArray, NDArray]:
    """Cube face of vectors (uint8 index into ``projections.FACES``: r l u d f b), 1 / depth (n_face·v),
    and the two other components ``(p1, p2)`` in axis order (x-faces: y, z; y-faces: x, z; z-faces: x, y).

    The face of the largest dot with the face normals; ties go to the first of ``r l u d f b``, as in
    :func:`pan360.projections.vec_to_face`.
    """
    ax, ay, az = np.abs(vx), np.abs(vy), np.abs(vz)
    is_y = (ay >= ax) & (ay >= az)
    is_z = (az >= ax) & ~is_y
    is_x = ~(is_y | is_z)
    face = ((is_y & (vy > 0)).view(np.uint8) + is_z.view(np.uint8) * (2 + (vz <= 0).view(np.uint8))
            + is_x.view(np.uint8) * (4 + (vx <= 0).view(np.uint8)))
    inv = 1.0 / np.maximum(np.maximum(ax, ay), az)
    return face, inv, np.where(is_x, vy, vx), np.where(is_z, vy, vz)


#: World axis (0 x, 1 y, 2 z) and sign of each face's normal, faces r l u d f b.
_FACE_AXIS = np.array([1, 1, 2, 2, 0, 0], np.intp)
_FACE_SIGN = np.array([-1.0, 1.0, 1.0, -1.0, 1.0, -1.0], np.float32)


def _other_axes(vectors: NDArray) -> tuple[NDArray, NDArray]:
    """Coefficients (A, B) (6,) with ``vectors[k]·v = A[k] p1 + B[k] p2`` for ``v`` on face ``k`` (see
    :func:`_faces`): the picture directions of a face are along its two other axes."""
    dom = np.argmax(np.abs(pj._NORMALS), axis=1)
    others = [[i for i in range(3) if i != d] for d in dom]
    a = np.array([vectors[k, others[k][0]] for k in range(6)], np.float64)
    b = np.array([vectors[k, others[k][1]] for k in range(6)], np.float64)
    return a, b


class _PlaneCoef:
    """Per-face coefficients giving source positions in one plane (size ``(wp, hp)``) of a cube layout.

    The frame's :class:`~pan360.projections.FacePlacement` scaled to the plane (normalised coordinates,
    ``x_p = X wp - 0.5``), so a half-size chroma plane or a box-downscaled frame holds the same picture.
    (ffmpeg's v360 lays out each plane of a yuv420p EAC frame with its own 2-pixel pads, i.e. chroma pads
    of 4 luma pixels: up to one chroma pixel from this near the pads, ~47 dB or better in the chroma of
    a view; c3x2/c6x1 planes of even sizes are the same either way.)
    c3x2/c6x1: ``x_p = (kx·v) / (n·v)`` (the face's affine map folded into the numerator), clamped to
    the pixel centres ``[lo, hi]`` of the direction's own face, since the layout's neighbour across a
    face edge is usually another part of the sphere. eac: ``x_p = ax + bx atan((kx·v) / (n·v))``,
    clamped to the plane only (as v360 and :func:`pan360.projections.equirect_tables` do: its faces in
    a row are continuous and its pads separate the rest).
    """

    def __init__(self, pl: pj.FacePlacement, wp: int, hp: int) -> None:
        self.equiangular = pl.equiangular
        self.normal = np.asarray(pl.normal, np.float64)
        self.ax = (pl.x0 + 0.5 * pl.sx) * wp - 0.5
        self.ay = (pl.y0 + 0.5 * pl.sy) * hp - 0.5
        if pl.equiangular:
            self.bx, self.by = pl.sx * wp * (2.0 / math.pi), pl.sy * hp * (2.0 / math.pi)
            self.kx, self.ky = np.array(pl.right), np.array(pl.down)
            self.lo_x, self.hi_x = np.zeros(6), np.full(6, wp - 1.0)
            self.lo_y, self.hi_y = np.zeros(6), np.full(6, hp - 1.0)
        else:
            self.bx, self.by = 0.5 * pl.sx * wp, 0.5 * pl.sy * hp
            self.kx = self.ax[:, None] * self.normal + self.bx[:, None] * pl.right
            self.ky = self.ay[:, None] * self.normal + self.by[:, None] * pl.down
            self.lo_x, self.hi_x = pl.lo_x * wp, pl.hi_x * wp - 1.0
            self.lo_y, self.hi_y = pl.lo_y * hp, pl.hi_y * hp - 1.0
        # (6 faces, 3 functions: depth, x numerator, y numerator, 3 components)
        self.funcs = np.stack([self.normal, self.kx, self.ky], axis=1)

    def positions(self, vx: NDArray, vy: NDArray, vz: NDArray) -> tuple[NDArray, NDArray]:
        """Clamped source positions (x, y) of world vectors (any shape, not unit), per element."""
        face, inv, _, _ = _faces(vx, vy, vz)
        dt = vx.dtype
        out = []
        for k, a, b, lo, hi in ((self.kx, self.ax, self.bx, self.lo_x, self.hi_x),
                                (self.ky, self.ay, self.by, self.lo_y, self.hi_y)):
            kk = k.astype(dt)
            c = (kk[:, 0].take(face) * vx + kk[:, 1].take(face) * vy + kk[:, 2].take(face) * vz) * inv
            if self.equiangular:
                c = a.astype(dt).take(face) + b.astype(dt).take(face) * np.arctan(c)
            out.append(np.minimum(np.maximum(c, lo.astype(dt).take(face)), hi.astype(dt).take(face)))
        return out[0], out[1]


class _CubeTables:
    """Remap tables from a cube layout for one output size: coarse per face, exact cells at face edges.

    Nodes every ``step`` output pixels (the grid of :class:`_CoarseTables`) get their exact position in
    normalised layout coordinates. A cell whose four corners lie on one face lies wholly on it; when the
    corners are also at or inside the outermost pixel centres of the face (c3x2/c6x1:
    :data:`CUBE_EDGE_MARGIN` pixels of the smallest plane inside its footprint) so are all the cell's
    interpolated positions, and no bilinear tap reaches past the face's edge. Those cells are the
    bilinear interpolation of their corners (``cv2.resize``), checked at cell centres against
    :data:`MAX_TABLE_ERROR` like the equirect tables (the ring, every 4th cell, and every cell next to
    a per-pixel one, since the maps curve most near face edges; a finer node step, or a per-pixel table,
    when that fails). All other cells are computed per pixel:

    - corners on one face (near its edge): that face's mapping, clamped;
    - corners on two faces, when at every corner every other face's dot with the ray is below one of
      theirs (the differences are affine in the pixel position, so then on the whole cell): both faces'
      mappings, each pixel taking the face of the larger dot;
    - the rest (a cube corner at the cell): the generic per-pixel mapping (:meth:`_PlaneCoef.positions`).

    Per-pixel values are ratios of affine functions of the pixel position: one small float32 matrix
    product per kind of cell evaluates them.
    """

    def __init__(self, projection: str, in_w: int, in_h: int, out_w: int, out_h: int, step: int) -> None:
        g = _CoarseTables(out_w, out_h, step)
        self.out_w, self.out_h, self.step, self.off = out_w, out_h, step, g.off
        self.gw, self.gh, self.node_x, self.node_y = g.gw, g.gh, g.node_x, g.node_y
        self.cell_i, self.cell_j = g.cell_i, g.cell_j  # the cells whose centre is checked (ring, every 4th)
        pl = self.placement = pj.face_placement(projection, in_w, in_h)
        self.qa, self.qb = _other_axes(np.asarray(pl.right))
        self.ra, self.rb = _other_axes(np.asarray(pl.down))
        self.qa, self.qb, self.ra, self.rb = (a.astype(np.float32) for a in (self.qa, self.qb, self.ra, self.rb))
        half = 0.5 * np.asarray(pl.sx), 0.5 * np.asarray(pl.sy)
        # Normalised X = x0 + sx t(q): c3x2 X = (x0 + sx/2) + sx/2 q; eac X = (x0 + sx/2) + sx/π · 2 atan(q).
        gx = np.asarray(pl.sx) * (2.0 / math.pi) if pl.equiangular else half[0]
        gy = np.asarray(pl.sy) * (2.0 / math.pi) if pl.equiangular else half[1]
        self.gx, self.gy = gx.astype(np.float32), gy.astype(np.float32)
        self.mid_x = (np.asarray(pl.x0) + half[0]).astype(np.float32)
        self.mid_y = (np.asarray(pl.y0) + half[1]).astype(np.float32)
        # Output positions of the nodes (row by row), then of the checked cells' centres.
        gx, gy = np.meshgrid(self.node_x, self.node_y)
        self._pts_x = np.concatenate([gx.ravel(), self.node_x[self.cell_j] + step / 2]).astype(np.float32)
        self._pts_y = np.concatenate([gy.ravel(), self.node_y[self.cell_i] + step / 2]).astype(np.float32)
        self._checked = self.cell_i * (self.gw - 1) + self.cell_j
        self._checked_corners = self._corners(self.cell_i, self.cell_j)
        self._centre_x = (self.node_x[:-1] + step / 2).astype(np.float32)
        self._centre_y = (self.node_y[:-1] + step / 2).astype(np.float32)
        self._coef: dict[tuple[int, int], _PlaneCoef] = {}
        self._offsets: dict[bool, NDArray[np.float32]] = {}
        self.last_error_px = math.nan  # largest interpolation error at the checked cell centres (source px)
        self.last_exact_cells = 0  # cells of the last view computed per pixel

    def _corners(self, ci: NDArray, cj: NDArray) -> NDArray:
        """Flat node indices (4, n) of the corners of cells (row ci, column cj)."""
        k = ci * self.gw + cj
        return np.stack([k, k + 1, k + self.gw, k + self.gw + 1])

    def coef(self, size: tuple[int, int]) -> _PlaneCoef:
        if size not in self._coef:
            if len(self._coef) > 8:
                self._coef.clear()
            self._coef[size] = _PlaneCoef(self.placement, *size)
        return self._coef[size]

    def _locate(self, vx: NDArray, vy: NDArray, vz: NDArray) -> tuple[NDArray, NDArray, NDArray, NDArray, NDArray]:
        """Face, picture coordinates (q, r) in [-1, 1] and normalised layout position (X, Y) of vectors."""
        face, inv, p1, p2 = _faces(vx, vy, vz)
        q = (self.qa.take(face) * p1 + self.qb.take(face) * p2) * inv
        r = (self.ra.take(face) * p1 + self.rb.take(face) * p2) * inv
        gq, gr = (np.arctan(q), np.arctan(r)) if self.placement.equiangular else (q, r)
        return face, q, r, self.mid_x.take(face) + self.gx.take(face) * gq, self.mid_y.take(face) + self.gy.take(face) * gr

    def prepare(self, view: View, rorder: str, sizes: Sequence[tuple[int, int]]) -> dict | None:
        """Node positions and the cells to compute per pixel, or None if interpolation is too coarse."""
        pl = self.placement
        p, qx, qy = _camera_affine(view, rorder, self.out_w, self.out_h)
        # Nodes, then the centres of the checked cells, in one float32 pass.
        n_nodes = self.gh * self.gw
        p32, qx32, qy32 = p.astype(np.float32), qx.astype(np.float32), qy.astype(np.float32)
        pts = np.empty((3, self._pts_x.size), np.float32)
        for k in range(3):
            np.add(qx32[k] * self._pts_x, qy32[k] * self._pts_y, out=pts[k])
            pts[k] += p32[k]
        face, q, r, X, Y = self._locate(pts[0], pts[1], pts[2])
        shape = (self.gh, self.gw)
        face_n = face[:n_nodes].reshape(shape)
        f00, f01, f10, f11 = face_n[:-1, :-1], face_n[:-1, 1:], face_n[1:, :-1], face_n[1:, 1:]
        one = (f00 == f01) & (f00 == f10) & (f00 == f11)
        if pl.equiangular:  # positions on a face never reach the frame's clamp: no margin
            good = one
        else:
            # At or inside the outermost pixel centres of the face in every plane: |q| <= 1 - 2 m / (face px).
            wmin, hmin = min(s[0] for s in sizes), min(s[1] for s in sizes)
            qmax_x = 1.0 - 2.0 * CUBE_EDGE_MARGIN / (float(np.min(pl.sx)) * wmin)
            qmax_y = 1.0 - 2.0 * CUBE_EDGE_MARGIN / (float(np.min(pl.sy)) * hmin)
            inner = ((np.abs(q[:n_nodes]) <= qmax_x) & (np.abs(r[:n_nodes]) <= qmax_y)).reshape(shape)
            good = one & inner[:-1, :-1] & inner[:-1, 1:] & inner[1:, :-1] & inner[1:, 1:]
        Xn, Yn = X[:n_nodes].reshape(shape), Y[:n_nodes].reshape(shape)
        # Interpolation error at the centres of the checked cells that are interpolated (the ring and
        # every 4th, and the cells next to per-pixel ones: the maps curve most near face edges).
        def error(corners: NDArray, cx: NDArray, cy: NDArray) -> float:
            """Largest error at cell centres (cx, cy) of the mean of the cells' corners (4, n) (flat node indices)."""
            ex = cx - 0.25 * X.take(corners).sum(axis=0)
            ey = cy - 0.25 * Y.take(corners).sum(axis=0)
            return max(float(np.abs(ex).max()) * sizes[0][0], float(np.abs(ey).max()) * sizes[0][1])

        sel = good.ravel().take(self._checked)
        err = error(self._checked_corners[:, sel], X[n_nodes:][sel], Y[n_nodes:][sel]) if sel.any() else 0.0
        exact = ~good
        near = np.zeros_like(good)
        near[1:] |= exact[:-1]
        near[:-1] |= exact[1:]
        near[:, 1:] |= exact[:, :-1]
        near[:, :-1] |= exact[:, 1:]
        near &= good
        near[self.cell_i, self.cell_j] = False
        near_cells = np.flatnonzero(near)
        if near_cells.size and err < MAX_TABLE_ERROR:
            ni, nj = np.divmod(near_cells, self.gw - 1)
            cx = self._centre_x.take(nj)
            cy = self._centre_y.take(ni)
            _, _, _, mx, my = self._locate(*(p32[k] + qx32[k] * cx + qy32[k] * cy for k in range(3)))
            err = max(err, error(self._corners(ni, nj), mx, my))
        self.last_error_px = err
        if err >= MAX_TABLE_ERROR:
            return None
        # The cells computed per pixel, by kind.
        bad = np.flatnonzero(~good)
        bi, bj = np.divmod(bad, self.gw - 1)
        self.last_exact_cells = int(bad.size)
        c00, c01, c10, c11 = f00[bi, bj], f01[bi, bj], f10[bi, bj], f11[bi, bj]
        fa = np.minimum(np.minimum(c00, c01), np.minimum(c10, c11))
        fb = np.maximum(np.maximum(c00, c01), np.maximum(c10, c11))
        single = one[bi, bj]
        pair = ~single & (_FACE_AXIS[fa] != _FACE_AXIS[fb])
        for c in (c00, c01, c10, c11):
            pair &= (c == fa) | (c == fb)
        if pair.any():
            # Only the two faces along the edge's own axis (c) can reach into the cell (their opposites
            # have negative dots when a's and b's are positive): their dot must be below a's or b's at all
            # four corners (differences of affine functions), then it is on the whole cell.
            idx = np.flatnonzero(pair)
            corner = self._corners(bi[idx], bj[idx])  # (4, n)
            a, b = fa[idx], fb[idx]
            axa, axb = _FACE_AXIS[a], _FACE_AXIS[b]
            da = pts.take(axa * pts.shape[1] + corner) * _FACE_SIGN[a]
            db = pts.take(axb * pts.shape[1] + corner) * _FACE_SIGN[b]
            vc = pts.take((3 - axa - axb) * pts.shape[1] + corner)
            ok = (da.min(axis=0) > 0.0) & (db.min(axis=0) > 0.0)
            for sign in (1.0, -1.0):
                ok &= ((sign * vc - da).max(axis=0) <= 0.0) | ((sign * vc - db).max(axis=0) <= 0.0)
            pair[idx[~ok]] = False
        generic = ~single & ~pair
        return {
            "X": Xn, "Y": Yn, "P": (p, qx, qy),
            "single": (bi[single], bj[single], fa[single]),
            "pair": (bi[pair], bj[pair], fa[pair], fb[pair]),
            "generic": (bi[generic], bj[generic]),
        }

    def table(self, state: dict, size: tuple[int, int], half: bool) -> NDArray[np.float32]:
        """The (h, w, 2) float32 table of a plane of size ``size`` (full or half output size)."""
        coef = self.coef(size)
        xy = np.empty(state["X"].shape + (2,), np.float32)
        xy[..., 0] = state["X"] * size[0] - 0.5
        xy[..., 1] = state["Y"] * size[1] - 0.5
        f, off = (self.step // 2, self.off // 2) if half else (self.step, self.off)
        w, h = (self.out_w // 2, self.out_h // 2) if half else (self.out_w, self.out_h)
        big = cv2.resize(xy, (self.gw * f, self.gh * f), interpolation=cv2.INTER_LINEAR)
        cw, ch = self.gw - 1, self.gh - 1
        blocks = big[off : off + ch * f, off : off + cw * f].reshape(ch, f, cw, f, 2)
        # Pixel (x, y) of this plane is at full-output position (s x + t, s y + t).
        s, t = (2.0, 0.5) if half else (1.0, 0.0)
        p, qx, qy = state["P"]
        # Each face's functions (depth, x and y numerators) as (value at pixel (0, 0), step in x, step in y).
        cam = np.stack([p + t * (qx + qy), s * qx, s * qy], axis=-1)  # (3 components, 3 terms)
        lin = coef.funcs @ cam
        if half not in self._offsets:
            dx, dy = np.meshgrid(np.arange(f), np.arange(f))  # pixel offsets in a cell, row by row
            self._offsets[half] = np.stack([np.ones(f * f), dx.ravel(), dy.ravel()]).astype(np.float32)
        offsets = self._offsets[half]

        def evaluate(ci: NDArray, cj: NDArray, rows: NDArray) -> NDArray[np.float32]:
            """(n, F, f*f) values over the cells' pixels of per-cell linear functions (n, F, 3)."""
            rows = rows.copy()
            rows[..., 0] += rows[..., 1] * (f * cj)[:, None] + rows[..., 2] * (f * ci)[:, None]
            n, nf = rows.shape[:2]
            return (rows.reshape(n * nf, 3).astype(np.float32) @ offsets).reshape(n, nf, f * f)

        def store(ci: NDArray, cj: NDArray, x: NDArray, y: NDArray) -> None:
            blocks[ci, :, cj, :, 0] = x.reshape(-1, f, f)
            blocks[ci, :, cj, :, 1] = y.reshape(-1, f, f)

        lo_x, hi_x = coef.lo_x.astype(np.float32), coef.hi_x.astype(np.float32)
        lo_y, hi_y = coef.lo_y.astype(np.float32), coef.hi_y.astype(np.float32)
        ax, ay = coef.ax.astype(np.float32), coef.ay.astype(np.float32)
        bx, by = np.float32(coef.bx[0]), np.float32(coef.by[0])  # eac: the same for all faces
        ci, cj, fa = state["single"]
        if ci.size:
            vals = evaluate(ci, cj, lin[fa])
            inv = 1.0 / vals[:, 0]
            x, y = vals[:, 1] * inv, vals[:, 2] * inv
            if coef.equiangular:
                x, y = ax[fa, None] + bx * np.arctan(x), ay[fa, None] + by * np.arctan(y)
            store(ci, cj, np.minimum(np.maximum(x, lo_x[fa, None]), hi_x[fa, None]),
                  np.minimum(np.maximum(y, lo_y[fa, None]), hi_y[fa, None]))
        ci, cj, fa, fb = state["pair"]
        if ci.size:
            la, lb = lin[fa], lin[fb]
            vals = evaluate(ci, cj, np.concatenate([la[:, :1], lb[:, :1], la[:, 1:2], lb[:, 1:2], la[:, 2:], lb[:, 2:]], 1))
            on_a = vals[:, 0] >= vals[:, 1]  # the pixel's face: the larger dot
            if coef.equiangular:
                inv = 1.0 / np.where(on_a, vals[:, 0], vals[:, 1])
                w_a = on_a.astype(np.float32)
                x = (ax[fb, None] + w_a * (ax[fa] - ax[fb])[:, None]) + bx * np.arctan(np.where(on_a, vals[:, 2], vals[:, 3]) * inv)
                y = (ay[fb, None] + w_a * (ay[fa] - ay[fb])[:, None]) + by * np.arctan(np.where(on_a, vals[:, 4], vals[:, 5]) * inv)
                store(ci, cj, np.minimum(np.maximum(x, 0.0), hi_x[0]), np.minimum(np.maximum(y, 0.0), hi_y[0]))
            else:  # each face's position clamped to its own pixel centres, then the pixel's face picked
                ia, ib = 1.0 / vals[:, 0], 1.0 / vals[:, 1]
                out = []
                for k, lo, hi in ((2, lo_x, hi_x), (4, lo_y, hi_y)):
                    pa = np.minimum(np.maximum(vals[:, k] * ia, lo[fa, None]), hi[fa, None])
                    pb = np.minimum(np.maximum(vals[:, k + 1] * ib, lo[fb, None]), hi[fb, None])
                    out.append(np.where(on_a, pa, pb))
                store(ci, cj, out[0], out[1])
        ci, cj = state["generic"]
        if ci.size:  # all six faces' functions; each pixel takes the face of the largest dot
            vals = evaluate(ci, cj, np.broadcast_to(lin.reshape(18, 3), (ci.size, 18, 3))).reshape(ci.size, 6, 3, -1)
            face = vals[:, :, 0].argmax(axis=1)  # (n, f*f)
            d, nx, ny = (np.take_along_axis(vals[:, :, k], face[:, None], axis=1)[:, 0] for k in range(3))
            x, y = nx / d, ny / d
            if coef.equiangular:
                x, y = ax.take(face) + bx * np.arctan(x), ay.take(face) + by * np.arctan(y)
            store(ci, cj, np.minimum(np.maximum(x, lo_x.take(face)), hi_x.take(face)),
                  np.minimum(np.maximum(y, lo_y.take(face)), hi_y.take(face)))
        return big[off : off + h, off : off + w]

    def exact(self, view: View, rorder: str, size: tuple[int, int], half: bool) -> NDArray[np.float32]:
        """Per-pixel (h, w, 2) float32 table, float64 throughout (the reference, and the fallback for
        views the coarse tables cannot interpolate)."""
        w, h = (self.out_w // 2, self.out_h // 2) if half else (self.out_w, self.out_h)
        s, t = (2.0, 0.5) if half else (1.0, 0.0)
        p, qx, qy = _camera_affine(view, rorder, self.out_w, self.out_h)
        xs, ys = np.arange(w) * s + t, np.arange(h) * s + t
        vx, vy, vz = ((p[k] + qx[k] * xs[None, :]) + qy[k] * ys[:, None] for k in range(3))
        x, y = self.coef(size).positions(vx, vy, vz)
        return np.stack([x, y], axis=-1).astype(np.float32)


class Renderer:
    """Reprojects 360° frames (equirect or a cube layout) of one size to gnomonic views of one output size.

    Parameters
    ----------
    in_width, in_height : source frame size (equirect: full sphere, any aspect; a cube layout: the
        whole frame).
    out_width, out_height : view size; even for :meth:`render_yuv420`.
    device : "auto" (CUDA when ``torch.cuda.is_available()``, else CPU), "cpu" or "cuda".
    backend : None (OpenCV on the CPU, torch on CUDA), "opencv" or "torch" (torch also runs on the CPU).
    grid : source pixel grid, "centre" (pan360's convention) or "v360" (ffmpeg's; see :mod:`pan360.geometry`).
    rorder : rotation order, as v360's ``rorder``.
    prefilter : box-average the source first when the view minifies it (anti-aliasing).
    projection : the source layout, one of :data:`pan360.projections.PROJECTIONS` ("equirect", or the
        cubemaps "eac", "c3x2", "c6x1" as ffmpeg's v360 lays them out); ``in_width x in_height`` is the
        whole frame. ``grid`` only concerns equirect (the cube layouts have one grid, v360's).
    """

    def __init__(
        self,
        in_width: int,
        in_height: int,
        out_width: int,
        out_height: int,
        *,
        device: str = "auto",
        backend: str | None = None,
        grid: str = "centre",
        rorder: str = "ypr",
        prefilter: bool = True,
        projection: str = "equirect",
    ) -> None:
        if min(in_width, in_height, out_width, out_height) <= 0:
            raise Pan360Error("frame sizes must be positive")
        geo.source_affine(in_width, in_height, grid)  # validates grid
        geo.rotation_matrix(0.0, 0.0, 0.0, rorder)  # validates rorder
        pj.equirect_width(projection, in_width, in_height)  # validates projection
        self.in_size = (int(in_width), int(in_height))
        self.out_size = (int(out_width), int(out_height))
        self.grid, self.rorder, self.prefilter = grid, rorder, prefilter
        self.projection = projection
        self.device, self.backend = _resolve(device, backend)
        cube = projection != "equirect"
        opencv = self.backend == "opencv"
        self._coarse = [_CoarseTables(out_width, out_height, s) for s in NODE_STEPS] if opencv and not cube else []
        self._cube = [_CubeTables(projection, in_width, in_height, out_width, out_height, s) for s in NODE_STEPS
                      ] if opencv and cube else []
        self._torch = _TorchSampler(self.device, out_width, out_height, projection, self.in_size
                                    ) if self.backend == "torch" else None
        self._cache_key: Any = None
        self._cache_tables: Any = None
        self.exact_tables = 0  # frames whose table was computed per pixel (equirect: views near a pole)

    # -- public ------------------------------------------------------------------------------------
    def render_yuv420(self, y: Plane, u: Plane, v: Plane, view: View) -> tuple[Plane, Plane, Plane]:
        """Render yuv420p planes (Y (H, W), U/V (ceil(H/2), ceil(W/2))) to the view's Y, U, V planes."""
        w, h = self.out_size
        if w % 2 or h % 2:
            raise Pan360Error(f"yuv420p output needs an even size, got {w}x{h}")
        self._check_input(y)
        out = self._render([y, u, v], [False, True, True], view)
        return out[0], out[1], out[2]

    def render_rgb(self, rgb: NDArray[np.uint8], view: View) -> NDArray[np.uint8]:
        """Render an (H, W, 3) uint8 frame (any channel order) to an (h, w, 3) view."""
        self._check_input(rgb)
        return self._render([rgb], [False], view)[0]

    def tables(self, view: View, src: tuple[int, int] | None = None, half: bool = False) -> NDArray[np.float32]:
        """The (h, w, 2) float32 remap table (source x, y per output pixel) the backend uses for ``view``."""
        src = src or self.in_size
        if self._torch is not None:
            return self._torch.table(view, self.rorder, src, self.grid, half).cpu().numpy()
        return self._cpu_tables(view, [src], [half])[0]

    # -- internals ---------------------------------------------------------------------------------
    def _check_input(self, frame: NDArray) -> None:
        if (frame.shape[1], frame.shape[0]) != self.in_size or frame.dtype != np.uint8:
            raise Pan360Error(
                f"frame is {frame.shape[1]}x{frame.shape[0]} {frame.dtype}, the renderer expects "
                f"{self.in_size[0]}x{self.in_size[1]} uint8"
            )

    def _render(self, planes: list[NDArray[np.uint8]], halves: list[bool], view: View) -> list[NDArray[np.uint8]]:
        eq_w = pj.equirect_width(self.projection, *self.in_size)  # the width itself for equirect
        factor = prefilter_factor(eq_w, self.out_size[0], view.h_fov) if self.prefilter else 1
        sizes = [_downscaled((p.shape[1], p.shape[0]), factor) for p in planes]
        if self._torch is not None:
            return self._torch.render(planes, sizes, halves, view, self.rorder, self.grid)
        if factor > 1:
            planes = [cv2.resize(p, s, interpolation=cv2.INTER_AREA) for p, s in zip(planes, sizes)]
        tables = self._cpu_tables(view, sizes, halves)
        border = cv2.BORDER_WRAP if self.projection == "equirect" else cv2.BORDER_REPLICATE
        return [
            cv2.remap(p, t, None, cv2.INTER_LINEAR, borderMode=border)
            for p, t in zip(planes, tables)
        ]

    def _cpu_tables(self, view: View, sizes: Sequence[tuple[int, int]], halves: Sequence[bool]) -> list[NDArray]:
        key = (view, tuple(sizes), tuple(halves))
        if key == self._cache_key:  # the view did not move: reuse the tables
            return self._cache_tables
        if self._cube:
            tables = self._cube_tables(view, sizes, halves)
            self._cache_key, self._cache_tables = key, tables
            return tables
        tolerance = MAX_TABLE_ERROR * 2.0 * math.pi / sizes[0][0]
        coarse, angles = None, None
        if not _pole_in_frame(view, self.out_size, self.rorder):
            for coarse in self._coarse:
                angles = coarse.angles(view, self.rorder, tolerance)
                if angles is not None:
                    break
        if angles is None:
            self.exact_tables += 1
            exact = self._coarse[0]
            tables = [exact.exact(view, self.rorder, s, self.grid, hf) for s, hf in zip(sizes, halves)]
        else:
            assert coarse is not None
            done: dict[tuple[tuple[int, int], bool], NDArray] = {}
            tables = []
            for s, hf in zip(sizes, halves):
                if (s, hf) not in done:  # U and V share one table
                    done[(s, hf)] = coarse.interpolate(angles[0], angles[1], s, self.grid, hf)
                tables.append(done[(s, hf)])
        self._cache_key, self._cache_tables = key, tables
        return tables


    def _cube_tables(self, view: View, sizes: Sequence[tuple[int, int]], halves: Sequence[bool]) -> list[NDArray]:
        cube, state = self._cube[0], None
        for cube in self._cube:
            state = cube.prepare(view, self.rorder, sizes)
            if state is not None:
                break
        done: dict[tuple[tuple[int, int], bool], NDArray] = {}
        tables = []
        for s, hf in zip(sizes, halves):
            if (s, hf) not in done:  # U and V share one table
                if state is None:
                    done[(s, hf)] = cube.exact(view, self.rorder, s, hf)
                else:
                    done[(s, hf)] = cube.table(state, s, hf)
            tables.append(done[(s, hf)])
        if state is None:
            self.exact_tables += 1
        return tables


def _pole_in_frame(view: View, out_size: tuple[int, int], rorder: str) -> bool:
    """Whether a pole projects into the frame (or within 16 pixels of it): longitude is singular there."""
    w, h = out_size
    x, y, _ = geo.dir_to_view_pixel([0.0, 0.0], [90.0, -90.0], w, h, view, rorder)
    with np.errstate(invalid="ignore"):
        near = (x > -16.5) & (x < w + 15.5) & (y > -16.5) & (y < h + 15.5)
    return bool(np.any(near))


def _resolve(device: str, backend: str | None) -> tuple[str, str]:
    """(device, backend): torch on CUDA when it is there (or when asked for), else OpenCV on the CPU."""
    check_device(device)
    if backend not in (None, "opencv", "torch"):
        raise Pan360Error(f"unknown render backend {backend!r}; use opencv or torch")
    if backend == "opencv":
        if device == "cuda":
            raise Pan360Error("the opencv backend runs on the CPU only; use device cpu or the torch backend")
        return "cpu", "opencv"
    resolved = resolve_device(device, quick=backend is None)
    return resolved, backend or ("torch" if resolved == "cuda" else "opencv")


class _TorchSampler:
    """Per-pixel tables and ``grid_sample`` on a torch device.

    The tables are computed with torch operations on the device (per pixel, float32), for equirect and
    for the cube layouts alike (the same per-face coefficients as the OpenCV backend: :class:`_PlaneCoef`).
    """

    def __init__(
        self, device: str, out_w: int, out_h: int, projection: str = "equirect", in_size: tuple[int, int] = (0, 0)
    ) -> None:
        import torch

        self.torch = torch
        self.dev = torch.device(device)
        self.out_w, self.out_h = out_w, out_h
        self.cube = projection != "equirect"
        self.placement = pj.face_placement(projection, *in_size) if self.cube else None
        self._coef: dict[tuple[int, int], dict[str, Any]] = {}
        self._rays: dict[tuple[int, int, float, float], Any] = {}
        self._cache_key: Any = None
        self._cache_grids: Any = None

    def table(self, view: View, rorder: str, src: tuple[int, int], grid: str, half: bool):
        """(h, w, 2) float32 tensor of source pixel coordinates, x in [-0.5, W - 0.5) or the v360 range."""
        torch = self.torch
        w, h = (self.out_w // 2, self.out_h // 2) if half else (self.out_w, self.out_h)
        key = (w, h, view.h_fov, view.v_fov)
        if key not in self._rays:
            if len(self._rays) > 4:
                self._rays.clear()
            rays = geo.camera_rays(w, h, view.h_fov, view.v_fov).astype(np.float32)
            self._rays[key] = torch.from_numpy(rays).to(self.dev)
        rot = geo.rotation_matrix(view.yaw, view.pitch, view.roll, rorder).astype(np.float32)
        v = self._rays[key] @ torch.from_numpy(np.ascontiguousarray(rot.T)).to(self.dev)
        if self.cube:
            return self._cube_table(v, src)
        ax, bx, ay, by = geo.source_affine(src[0], src[1], grid)
        x = torch.atan2(-v[..., 1], v[..., 0]) * ax + bx
        y = torch.asin(v[..., 2].clamp(-1.0, 1.0)) * ay + by
        return torch.stack([x, y.clamp(0.0, src[1] - 1.0)], dim=-1)

    def _cube_table(self, v, src: tuple[int, int]):
        """Source positions of world rays ``v`` (h, w, 3) in a cube layout plane of size ``src``."""
        torch = self.torch
        if src not in self._coef:
            assert self.placement is not None
            c = _PlaneCoef(self.placement, *src)
            self._coef[src] = {k: torch.as_tensor(np.array(getattr(c, k), np.float32), device=self.dev)
                               for k in ("normal", "kx", "ky", "ax", "bx", "ay", "by", "lo_x", "hi_x", "lo_y", "hi_y")}
        c = self._coef[src]
        dots = v @ c["normal"].T  # (h, w, 6)
        face = dots.argmax(dim=-1)  # the first of equal maxima, as projections.vec_to_face
        depth = dots.gather(-1, face[..., None])[..., 0]
        out = []
        for k, a, b, lo, hi in (("kx", "ax", "bx", "lo_x", "hi_x"), ("ky", "ay", "by", "lo_y", "hi_y")):
            q = (v * c[k][face]).sum(dim=-1) / depth
            if self.placement is not None and self.placement.equiangular:
                q = c[a][face] + c[b][face] * torch.atan(q)
            out.append(torch.maximum(torch.minimum(q, c[hi][face]), c[lo][face]))
        return torch.stack(out, dim=-1)

    def _grid(self, view: View, rorder: str, src: tuple[int, int], grid: str, half: bool):
        t = self.table(view, rorder, src, grid, half)
        w, h = src
        if self.cube:  # no wrap: positions are clamped inside the plane, border padding is never reached
            gx = (2.0 * t[..., 0] + 1.0) / w - 1.0
            gy = (2.0 * t[..., 1] + 1.0) / h - 1.0
            return self.torch.stack([gx, gy], dim=-1)[None]
        # grid_sample has no wrap padding: the source gets one wrapped column on each side, and x is
        # reduced to [-0.5, W - 0.5) so every bilinear tap lands in the padded frame.
        x = self.torch.remainder(t[..., 0] + 0.5, w) - 0.5 + 1.0
        gx = (2.0 * x + 1.0) / (w + 2) - 1.0
        gy = (2.0 * t[..., 1] + 1.0) / h - 1.0
        return self.torch.stack([gx, gy], dim=-1)[None]

    def render(self, planes, sizes, halves, view: View, rorder: str, grid: str) -> list[NDArray[np.uint8]]:
        torch = self.torch
        fn = torch.nn.functional
        key = (view, tuple(sizes), tuple(halves))
        if key != self._cache_key:
            self._cache_grids = {}
            self._cache_key = key
        grids = self._cache_grids
        out: list[NDArray[np.uint8]] = []
        # Planes of one size (U and V) are sampled together as channels of one tensor.
        groups: dict[tuple[tuple[int, int], bool], list[int]] = {}
        for i, (s, hf) in enumerate(zip(sizes, halves)):
            groups.setdefault((s, hf), []).append(i)
        results: dict[int, NDArray[np.uint8]] = {}
        with torch.no_grad():
            for (size, half), idx in groups.items():
                chans = []
                for i in idx:
                    t = torch.from_numpy(np.ascontiguousarray(planes[i])).to(self.dev)
                    chans.append(t[None] if t.ndim == 2 else t.permute(2, 0, 1))
                img = torch.cat(chans, 0)[None].float()
                if (img.shape[-1], img.shape[-2]) != size:  # minifying: box prefilter
                    img = fn.interpolate(img, size=(size[1], size[0]), mode="area")
                if not self.cube:
                    img = torch.cat([img[..., -1:], img, img[..., :1]], dim=-1)
                if (size, half) not in grids:
                    grids[(size, half)] = self._grid(view, rorder, size, grid, half)
                res = fn.grid_sample(img, grids[(size, half)], mode="bilinear", padding_mode="border", align_corners=False)
                res = res[0].add_(0.5).floor_().clamp_(0, 255).to(torch.uint8).cpu().numpy()
                c = 0
                for i in idx:
                    n = 1 if planes[i].ndim == 2 else planes[i].shape[2]
                    results[i] = res[c] if planes[i].ndim == 2 else np.ascontiguousarray(res[c : c + n].transpose(1, 2, 0))
                    c += n
        out = [results[i] for i in range(len(planes))]
        return out
