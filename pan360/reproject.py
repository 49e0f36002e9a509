"""Per-frame reprojection of equirect frames to the virtual camera (:class:`Renderer`).

Two backends give the same picture (bilinear, horizontal wrap-around, rows clamped at the poles):

- ``opencv`` (CPU): the remap table of each view is computed exactly on a coarse grid of nodes every
  8 output pixels and interpolated bilinearly (``cv2.resize`` on float32, exact weights), with an
  unwrapped longitude so the ±180° seam is continuous and ``cv2.BORDER_WRAP`` brings columns back.
  The interpolation error is checked every frame at the cell centres; near a pole, where longitude is
  singular, the table is computed per pixel instead. Measured for 1280x720 (Y + chroma tables from a
  4K source, an idle 2-core machine): 4-5.5 ms coarse against ~47 ms per pixel; ffmpeg's v360 rebuilds its whole
  table whenever the view changes (4-5x slower overall than a fixed view), pan360 does not need to.
- ``torch``: the table is computed per pixel on the device and sampled with ``grid_sample`` (CUDA
  when available; also runs on the CPU, which the tests use to compare the two backends).

yuv420p frames are remapped plane by plane (Y at full size, U/V at half size with their own table from
the same view), so a 4K frame is never converted to RGB. When the view minifies the source (an output
pixel spans more than 1.5 source pixels at the view centre) the source is first box-averaged by an
integer factor, against aliasing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from . import geometry as geo
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


def prefilter_factor(in_w: int, out_w: int, h_fov: float) -> int:
    """Integer box-filter factor applied to the source before remapping (1: none)."""
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


class Renderer:
    """Reprojects equirect frames of one size to gnomonic views of one output size.

    Parameters
    ----------
    in_width, in_height : equirect frame size (full sphere, any aspect).
    out_width, out_height : view size; even for :meth:`render_yuv420`.
    device : "auto" (CUDA when ``torch.cuda.is_available()``, else CPU), "cpu" or "cuda".
    backend : None (OpenCV on the CPU, torch on CUDA), "opencv" or "torch" (torch also runs on the CPU).
    grid : source pixel grid, "centre" (pan360's convention) or "v360" (ffmpeg's; see :mod:`pan360.geometry`).
    rorder : rotation order, as v360's ``rorder``.
    prefilter : box-average the source first when the view minifies it (anti-aliasing).
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
    ) -> None:
        if min(in_width, in_height, out_width, out_height) <= 0:
            raise Pan360Error("frame sizes must be positive")
        geo.source_affine(in_width, in_height, grid)  # validates grid
        geo.rotation_matrix(0.0, 0.0, 0.0, rorder)  # validates rorder
        self.in_size = (int(in_width), int(in_height))
        self.out_size = (int(out_width), int(out_height))
        self.grid, self.rorder, self.prefilter = grid, rorder, prefilter
        self.device, self.backend = _resolve(device, backend)
        self._coarse = [_CoarseTables(out_width, out_height, s) for s in NODE_STEPS] if self.backend == "opencv" else []
        self._torch = _TorchSampler(self.device, out_width, out_height) if self.backend == "torch" else None
        self._cache_key: Any = None
        self._cache_tables: Any = None
        self.exact_tables = 0  # frames whose table was computed per pixel (views near a pole)

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
        factor = prefilter_factor(self.in_size[0], self.out_size[0], view.h_fov) if self.prefilter else 1
        sizes = [_downscaled((p.shape[1], p.shape[0]), factor) for p in planes]
        if self._torch is not None:
            return self._torch.render(planes, sizes, halves, view, self.rorder, self.grid)
        if factor > 1:
            planes = [cv2.resize(p, s, interpolation=cv2.INTER_AREA) for p, s in zip(planes, sizes)]
        tables = self._cpu_tables(view, sizes, halves)
        return [
            cv2.remap(p, t, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
            for p, t in zip(planes, tables)
        ]

    def _cpu_tables(self, view: View, sizes: Sequence[tuple[int, int]], halves: Sequence[bool]) -> list[NDArray]:
        key = (view, tuple(sizes), tuple(halves))
        if key == self._cache_key:  # the view did not move: reuse the tables
            return self._cache_tables
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
    """Per-pixel tables and ``grid_sample`` on a torch device."""

    def __init__(self, device: str, out_w: int, out_h: int) -> None:
        import torch

        self.torch = torch
        self.dev = torch.device(device)
        self.out_w, self.out_h = out_w, out_h
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
        ax, bx, ay, by = geo.source_affine(src[0], src[1], grid)
        x = torch.atan2(-v[..., 1], v[..., 0]) * ax + bx
        y = torch.asin(v[..., 2].clamp(-1.0, 1.0)) * ay + by
        return torch.stack([x, y.clamp(0.0, src[1] - 1.0)], dim=-1)

    def _grid(self, view: View, rorder: str, src: tuple[int, int], grid: str, half: bool):
        # grid_sample has no wrap padding: the source gets one wrapped column on each side, and x is
        # reduced to [-0.5, W - 0.5) so every bilinear tap lands in the padded frame.
        t = self.table(view, rorder, src, grid, half)
        w, h = src
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
