"""AUTOCAM-style camera planning on the sphere from per-frame saliency maps.

Input: saliency maps ``(T, H, W)`` on an equirect grid (pixel centres per :func:`sphere.equirect_angles`),
one per video frame, with the frame times ``(T,)`` in seconds (any spacing). Maps carry an absolute
scale: a near-zero map means nothing is sounding, so the camera holds. Output: a camera direction per
frame (yaw, pitch in degrees, v360 convention; see docs/CONVENTIONS.md).

Steps (Su et al., AUTOCAM, with the saliency computed on the sphere):

1. **Centre of interest** of every frame: the saliency-weighted mean direction on the sphere
   (:func:`sphere.weighted_mean_direction`) and its resultant (concentration x mass).
2. **Dynamic programming** over candidate view directions (a yaw x pitch grid) at steps of ~0.1 s. A
   view earns the saliency its frustum captures (solid-angle weighted, soft-edged so that sources are
   kept toward the middle) plus a bonus for centring the centre of interest. Each step is normalised by
   its contrast, so every sounding step counts alike while silent or noise-only steps count for little;
   faint priors prefer a level camera. Moving costs a little per degree, so the camera holds when
   nothing changes; moves are limited to ``max_speed·dt`` (yaw wraps round). The plan is offline: it sees every map, so it starts a long pan *before* a
   switch of sources when that captures more in total. With ``cuts`` the camera may also jump anywhere
   for a penalty, which pays only for a real switch.
3. **Smoothing**: Gaussian on unit vectors at the step rate, a cubic spline to the frame times, then a
   measured speed clamp, so the speed bound holds on the final path. Nothing is smoothed across a cut:
   the camera cuts between two frames.

Defaults: h_fov 90° at 16:9 (v_fov 58.7°) and max speed 110°/s: a 180° switch then takes 1.6 s,
so with the pan centred on the switch both sources are in view until 0.4 s from it.
Same input, same output (bit-identical): no randomness and fixed tie-breaking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike

from . import sphere
from .errors import Pan360Error
from pan360.progress import Progress
from .geometry import DEFAULT_FOV, H_FOV_RANGE, check_fov, rotation_matrix, v_fov_for
from .paths import CameraPath
from .signal import gaussian_smooth



@dataclass(frozen=True)
class TrajectoryOptions:
    """Planner settings; angles in degrees, times in seconds, costs in seconds of fully captured saliency."""

    h_fov: float = DEFAULT_FOV     # horizontal field of view of the output camera
    v_fov: float | None = None     # vertical field of view; None: from h_fov and aspect (square pixels)
    aspect: float = 16.0 / 9.0     # output width / height, only used to derive v_fov
    max_speed: float = 110.0       # bound on the camera's angular speed, °/s (the p99 target is 120)
    cuts: bool = False             # allow hard cuts for far jumps between sources
    cut_penalty: float = 0.6       # cost of one cut: a cut must save more than 0.6 s of lost capture
    step: float = 0.1              # target planning step; adjusted so one step moves a whole grid multiple
    grid: float = 5.0              # spacing of the candidate directions in yaw and pitch
    pitch_limit: float = 60.0      # candidates span pitch [-pitch_limit, pitch_limit]
    edge: float = 0.5              # inner share of each half-width at full weight; outside it tapers
    edge_weight: float = 0.5       # weight left at the frame edge (0 beyond): in view first, centred second
    proximity: float = 0.1         # weight of a cardioid around the view axis added to the frustum's
    centre_weight: float = 0.25    # bonus (relative to the mass) for centring the centre of interest
    motion_cost: float = 0.001     # cost per degree moved: the camera holds unless moving pays
    dynamic_range: float = 0.03    # steps above this share of the clip's loud contrast count alike
    home_weight: float = 0.02      # faint pull toward the initial direction, while something sounds
    level_weight: float = 0.2      # pull toward a level camera (robust to map pitch errors), while sounding
    contrast_floor: float = 0.5    # maps whose contrast is below this share of their mean level count as noise
    smooth: float = 0.25           # Gaussian smoothing sigma of the camera path
    initial_yaw: float = 0.0       # where the camera starts when nothing decides (e.g. all-silent maps)
    initial_pitch: float = 0.0

    def resolved_v_fov(self) -> float:
        if self.v_fov is not None:
            return float(self.v_fov)
        return float(v_fov_for(self.h_fov, self.aspect, 1.0))

    def check(self) -> None:
        check_fov(self.h_fov, self.resolved_v_fov(), "trajectory options")
        if self.max_speed <= 0 or self.step <= 0 or self.grid <= 0 or self.smooth < 0:
            raise Pan360Error("max_speed, step and grid must be positive and smooth non-negative")
        if not 0 <= self.pitch_limit <= 90:
            raise Pan360Error(f"pitch_limit must be in [0, 90], got {self.pitch_limit:g}")


@dataclass
class TrajectoryPlan:
    """Result of :func:`plan`: per-frame camera and centres of interest, and the coarse DP path."""

    yaw: np.ndarray          # (T,) camera yaw per frame, degrees
    pitch: np.ndarray        # (T,) camera pitch per frame, degrees
    cuts: np.ndarray         # frame indices i where the camera cuts between frame i-1 and i
    coi_yaw: np.ndarray      # (T,) centre of interest per frame, degrees
    coi_pitch: np.ndarray    # (T,)
    coi_concentration: np.ndarray  # (T,) in [0, 1]
    step_times: np.ndarray   # (S,) DP step times, seconds
    step_yaw: np.ndarray     # (S,) DP path before smoothing, degrees
    step_pitch: np.ndarray   # (S,)
    options: TrajectoryOptions


# ---------------------------------------------------------------------------------- candidates
@lru_cache(maxsize=4)
def _candidates(grid: float, pitch_limit: float) -> np.ndarray:
    """(C, 2) yaw, pitch of the candidate views: yaw from -180+grid to 180, pitch symmetric about 0."""
    n_yaw = max(1, int(round(360.0 / grid)))
    yaws = 180.0 - 360.0 / n_yaw * np.arange(n_yaw)[::-1]
    n_p = int(math.floor(pitch_limit / grid + 1e-9))
    pitches = grid * np.arange(-n_p, n_p + 1)
    p, y = np.meshgrid(pitches, yaws, indexing="ij")
    return np.stack([y.ravel(), p.ravel()], axis=1)


@lru_cache(maxsize=4)
def _neighbours(grid: float, pitch_limit: float, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """Candidates within ``reach`` of each candidate: indices (C, K) padded with the candidate itself,
    and their distances (C, K).

    The distance is measured in (yaw, pitch) degrees, yaw wrapping round: sqrt(Δyaw² + Δpitch²). It
    is never less than the angle on the sphere, so the speed bound holds, and its shortest routes are
    level pans (the great circle between two sources at the same pitch tilts toward a pole, which
    looks at the ground and loses the sources through the narrow vertical FOV).
    """
    cand = _candidates(grid, pitch_limit)
    # Candidates run pitch-major over one yaw row and one pitch column: the (C, C) distances are
    # those of the (yaw, yaw) and (pitch, pitch) differences, wrapped once per pair of rows rather
    # than once per pair of candidates (the same values, 4x faster).
    n_yaw = int(np.count_nonzero(cand[:, 1] == cand[0, 1]))
    yaws, pitches = cand[:n_yaw, 0], cand[::n_yaw, 1]
    dyaw = sphere.wrap_yaw(yaws[:, None] - yaws[None, :])
    dpitch = pitches[:, None] - pitches[None, :]
    ang = np.hypot(dyaw[None, :, None, :], dpitch[:, None, :, None]).reshape(len(cand), len(cand))
    near = ang <= reach + 1e-6
    k = int(near.sum(axis=1).max())
    idx = np.tile(np.arange(len(cand))[:, None], (1, k))
    dist = np.zeros((len(cand), k))
    for c in range(len(cand)):
        js = np.flatnonzero(near[c])
        idx[c, : len(js)] = js
        dist[c, : len(js)] = ang[c, js]
    return idx, dist


def _overlap(n_src: int, n_dst: int) -> np.ndarray:
    """(n_dst, n_src) share of each source cell inside each destination cell of the same span."""
    s0, s1 = np.arange(n_src) / n_src, (np.arange(n_src) + 1) / n_src
    d0, d1 = np.arange(n_dst) / n_dst, (np.arange(n_dst) + 1) / n_dst
    inter = np.minimum(d1[:, None], s1[None, :]) - np.maximum(d0[:, None], s0[None, :])
    return np.clip(inter, 0.0, None) * n_src


def _taper(x: np.ndarray, edge: float, floor: float) -> np.ndarray:
    """1 for |x| <= edge, raised-cosine down to ``floor`` at |x| = 1, 0 beyond (outside the frame)."""
    x = np.abs(x)
    if edge >= 1.0:
        return (x < 1.0).astype(np.float64)
    out = (x <= edge).astype(np.float64)
    on_ramp = (x > edge) & (x < 1.0)  # the cosine only where it is used (few cells of a view)
    r = x[on_ramp]
    out[on_ramp] = floor + (1.0 - floor) * 0.5 * (1.0 + np.cos(np.pi * np.clip((r - edge) / (1.0 - edge), 0.0, 1.0)))
    return out


@lru_cache(maxsize=4)
def _inclusion(grid: float, pitch_limit: float, h_fov: float, v_fov: float, edge: float,
               edge_weight: float, proximity: float, rows: int, cols: int) -> np.ndarray:
    """(C, rows*cols) float32 weight in [0, 1 + proximity] of every cell for every candidate view.

    Multiplied with the cells' saliency *mass* (value x solid angle), it gives the captured saliency.
    """
    cand = _candidates(grid, pitch_limit)
    cells = sphere.equirect_vectors(cols, rows).reshape(-1, 3)
    tx, ty = math.tan(math.radians(h_fov) / 2), math.tan(math.radians(v_fov) / 2)
    out = np.empty((len(cand), len(cells)), np.float32)
    rot = np.stack([rotation_matrix(float(yaw), float(pitch), 0.0) for yaw, pitch in cand])
    for c in range(0, len(cand), 64):  # 64 views at a time: whole-array work, ~1 MB temporaries
        cam = np.matmul(cells, rot[c:c + 64])  # (views, cells, 3) camera frame: x view axis, y left, z up
        fwd = cam[..., 0]
        safe = np.where(fwd > 1e-9, fwd, 1.0)
        w = _taper(-cam[..., 1] / safe / tx, edge, edge_weight) * _taper(cam[..., 2] / safe / ty, edge, edge_weight)
        # Outside the frame a faint cardioid still ranks views by how near they are to the saliency,
        # so a pan between two sources is timed on the switch instead of anywhere it costs the same.
        out[c:c + 64] = np.where(fwd > 1e-9, w, 0.0) + proximity * 0.5 * (1.0 + fwd)
    return out


# ------------------------------------------------------------------------------------- helpers
def _pool_size(shape: tuple[int, int], opts: TrajectoryOptions) -> tuple[int, int]:
    """Planning grid: about 10 cells across the narrower FOV, 16..48 rows, never finer than the maps."""
    h, w = shape
    rows = int(np.clip(math.ceil(1800.0 / min(opts.h_fov, opts.resolved_v_fov())), 16, 48))
    return min(h, rows), min(w, 2 * min(h, rows))


def _check_inputs(maps: ArrayLike, times: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(maps)
    t = np.asarray(times, dtype=np.float64).ravel()
    if m.ndim != 3 or m.shape[0] == 0 or m.shape[1] < 1 or m.shape[2] < 1:
        raise Pan360Error(f"saliency maps must have shape (T, H, W) with T >= 1, got {m.shape}")
    if len(t) != m.shape[0]:
        raise Pan360Error(f"{m.shape[0]} saliency maps but {len(t)} frame times")
    if not np.all(np.isfinite(t)) or np.any(np.diff(t) < 0):
        raise Pan360Error("frame times must be finite and non-decreasing")
    return m, t


def _smooth_segment(vec: np.ndarray, sigma_steps: float) -> np.ndarray:
    if sigma_steps > 0 and len(vec) > 1:
        vec = gaussian_smooth(vec, sigma_steps, axis=0)
    n = np.linalg.norm(vec, axis=1, keepdims=True)
    return vec / np.where(n > 1e-12, n, 1.0)


def _spline_not_a_knot(x: np.ndarray, y: np.ndarray, xq: np.ndarray) -> np.ndarray:
    """The cubic spline through ``(x, y)`` (``y``: (n, d), ``x`` increasing, n >= 2) with not-a-knot ends,
    at ``xq`` within ``[x[0], x[-1]]``: scipy's ``CubicSpline(x, y, axis=0)(xq)`` without importing
    scipy.interpolate (~0.3 CPU s, a twentieth of a whole ``--saliency foa`` render). The same
    equations, coefficients and evaluation order as scipy's; only the tridiagonal solve differs
    (elimination here, LAPACK's banded LU there), so the two agree to rounding (tests/test_trajectory.py).
    """
    x, y, xq = np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(xq, np.float64)
    n = len(x)
    dx = np.diff(x)
    dxr = dx[:, None]
    slope = np.diff(y, axis=0) / dxr
    if n == 2:  # not-a-knot on two points: the straight line
        s = np.stack([slope[0], slope[0]])
    else:
        # Derivatives s at the knots: lower[i] s[i-1] + diag[i] s[i] + upper[i] s[i+1] = b[i].
        lower, diag, upper = np.zeros(n), np.zeros(n), np.zeros(n)
        b = np.empty_like(y)
        diag[1:-1] = 2 * (dx[:-1] + dx[1:])
        upper[1:-1] = dx[:-1]
        lower[1:-1] = dx[1:]
        b[1:-1] = 3 * (dxr[1:] * slope[:-1] + dxr[:-1] * slope[1:])
        if n == 3:  # both ends' conditions coincide: the parabola through the three points
            diag[0], upper[0], b[0] = 1.0, 1.0, 2 * slope[0]
            lower[-1], diag[-1], b[-1] = 1.0, 1.0, 2 * slope[1]
        else:
            d0, d1 = x[2] - x[0], x[-1] - x[-3]
            diag[0], upper[0] = dx[1], d0
            b[0] = ((dxr[0] + 2 * d0) * dxr[1] * slope[0] + dxr[0] ** 2 * slope[1]) / d0
            diag[-1], lower[-1] = dx[-2], d1
            b[-1] = (dxr[-1] ** 2 * slope[-2] + (2 * d1 + dxr[-1]) * dxr[-2] * slope[-1]) / d1
        # Elimination down the band (its pivots stay positive for increasing x), then back substitution,
        # on Python floats: the recurrence is sequential, and numpy's per-row overhead made it 3x slower
        # (72000 steps, two hours of video: ~0.1 CPU s; scipy's banded solve 0.02 s after a 0.3 s import).
        lo, di, up = lower.tolist(), diag.tolist(), upper.tolist()
        w = [0.0] * n
        for i in range(1, n):
            w[i] = lo[i] / di[i - 1]
            di[i] -= w[i] * up[i - 1]
        ss = []
        for col in b.T.tolist():  # each coordinate alone: the same operations as on the rows
            for i in range(1, n):
                col[i] -= w[i] * col[i - 1]
            col[-1] /= di[-1]
            for i in range(n - 2, -1, -1):
                col[i] = (col[i] - up[i] * col[i + 1]) / di[i]
            ss.append(col)
        s = np.array(ss, np.float64).T.reshape(y.shape)
    # Hermite coefficients per interval, then sum_k c[3-k] z^k accumulated from the constant term up.
    t = (s[:-1] + s[1:] - 2 * slope) / dxr
    c0, c1, c2, c3 = t / dxr, (slope - s[:-1]) / dxr - t, s[:-1], y[:-1]
    i = np.clip(np.searchsorted(x, xq, side="right") - 1, 0, n - 2)
    z = (xq - x[i])[:, None]
    return c3[i] + c2[i] * z + c1[i] * (z * z) + c0[i] * (z * z * z)


def _clamp_speed(vec: np.ndarray, times: np.ndarray, max_speed: float) -> np.ndarray:
    """Limit each frame-to-frame turn to max_speed·dt (forward pass); only runs where it is exceeded."""
    ang = sphere.vec_angle(vec[:-1], vec[1:])
    allowed = max_speed * np.diff(times)
    if not np.any(ang > allowed * (1 + 1e-9) + 1e-9):
        return vec
    out = vec.copy()
    for i in range(1, len(out)):
        a = float(sphere.vec_angle(out[i - 1], vec[i]))
        lim = float(allowed[i - 1])
        out[i] = vec[i] if a <= lim else sphere.slerp(out[i - 1], vec[i], lim / a)
    return out


# ---------------------------------------------------------------------------------------- plan
#: Seconds on each side of a keyframe's DP step that hold its view (about the path smoothing's reach).
ANCHOR_HOLD = 0.3


def plan(maps: ArrayLike, times: ArrayLike, options: TrajectoryOptions | None = None, *,
         anchors: ArrayLike | None = None, progress: Progress | None = None) -> TrajectoryPlan:
    """Plan the camera for saliency ``maps`` (T, H, W) at frame ``times`` (T,); see the module doc.

    ``options`` default to :class:`TrajectoryOptions` (change fields with ``dataclasses.replace``).
    ``anchors`` (K, 3) rows ``(frame index, yaw, pitch)``: directions the plan must pass through (a
    user's keyframes): the DP steps within :data:`ANCHOR_HOLD` of each keep only the candidate nearest
    it (the plan reaches it within the speed bound when it can start early enough); then
    :func:`plan_camera_path` meets them exactly. Non-finite or negative map values
    count as 0. ``progress(done, total)`` is called as the work advances.
    """
    opts = options or TrajectoryOptions()
    opts.check()
    m, t = _check_inputs(maps, times)
    n_frames, h, w = m.shape
    v_fov = opts.resolved_v_fov()
    rows, cols = _pool_size((h, w), opts)
    # Steps: a whole number of grid moves per step at full speed, so the bound is met exactly.
    moves = max(1, int(round(opts.step * opts.max_speed / opts.grid)))
    reach = moves * opts.grid
    dt = reach / opts.max_speed
    n_steps = int(round((t[-1] - t[0]) / dt)) + 1
    step_times = t[0] + dt * np.arange(n_steps)
    step_of = np.clip(np.round((t - t[0]) / dt).astype(np.int64), 0, n_steps - 1)

    # 1. Per-frame centres of interest and the captured mass of every candidate view per step, in chunks
    # of frames. Only steps that hold frames get a row (at 1 fps most steps hold none), and a step's
    # pooled mass lives only until its last frame is in, so what is kept grows with the frames (one
    # row of candidates each, less than the maps themselves), not with the steps or the pooling grid.
    cand = _candidates(opts.grid, opts.pitch_limit)
    cvec = sphere.dir_to_vec(cand[:, 0], cand[:, 1])
    incl = _inclusion(opts.grid, opts.pitch_limit, float(opts.h_fov), v_fov, opts.edge, opts.edge_weight,
                      opts.proximity, rows, cols)
    area = sphere.equirect_solid_angle(w, h)
    pool_h, pool_w = _overlap(h, rows), _overlap(w, cols)
    counts = np.bincount(step_of, minlength=n_steps).astype(np.float64)
    have = counts > 0
    filled = np.flatnonzero(have)  # the steps that hold frames, in order
    slot = np.cumsum(have) - 1  # filled step -> its row among the filled ones
    captured = np.empty((len(filled), len(cand)))
    step_res = np.zeros((len(filled), 3))
    coi_yaw, coi_pitch, coi_conc = (np.zeros(n_frames) for _ in range(3))
    chunk = 256
    n_chunks = -(-n_frames // chunk)
    total_work = n_chunks + n_steps
    carry: tuple[int, np.ndarray] | None = None  # (slot, partial pooled sum) of a step still open
    ready: list[np.ndarray] = []  # mean pooled rows of complete steps, from slot `done` on
    done = 0

    def close(sums: np.ndarray, final: bool = False) -> None:
        """Complete steps' pooled sums (the slots after those closed so far) → their captured rows."""
        nonlocal done
        first = done + len(ready)
        ready.extend(sums / counts[filled[first:first + len(sums)], None])
        if len(ready) < 2 and not final:
            return  # BLAS gives one row (gemv) other last bits than a matrix (gemm): never one alone
        rows = np.stack(ready).astype(np.float32)
        if len(rows) == 1 and n_steps > 1:  # as a row of the all-steps matrix it always was
            rows = np.concatenate([rows, rows])
        captured[done:done + len(ready)] = (rows @ incl.T).astype(np.float64)[:len(ready)]
        done += len(ready)
        ready.clear()

    for ci, a in enumerate(range(0, n_frames, chunk)):
        blk = np.nan_to_num(np.asarray(m[a:a + chunk], dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        blk = np.maximum(blk, 0.0)
        yaw_f, pitch_f, conc_f = sphere.weighted_mean_direction(blk)
        coi_yaw[a:a + chunk], coi_pitch[a:a + chunk], coi_conc[a:a + chunk] = yaw_f, pitch_f, conc_f
        mass = blk * area
        res = (conc_f * mass.sum(axis=(1, 2)))[:, None] * sphere.dir_to_vec(yaw_f, pitch_f)
        pooled = np.einsum("rh,thw,cw->trc", pool_h, mass, pool_w, optimize=True).reshape(len(blk), -1)
        s = slot[step_of[a:a + chunk]]  # non-decreasing: frames are in time order
        lo, hi = int(s[0]), int(s[-1])
        sums = np.zeros((hi - lo + 1, rows * cols))
        if carry is not None:
            if carry[0] == lo:
                sums[0] = carry[1]  # the same additions, in the same order, as one array for all steps
            else:
                close(carry[1][None])
        np.add.at(sums, s - lo, pooled)
        np.add.at(step_res, s, res)
        last = a + chunk >= n_frames
        close(sums if last else sums[:-1], final=last)
        carry = None if last else (hi, sums[-1])
        if progress is not None:
            progress(ci + 1, total_work)
    step_res /= counts[filled, None]
    # Steps between sparse frames take the nearest frame's step: step k reads filled row pick[k].
    pos = np.searchsorted(filled, np.arange(n_steps))
    near = np.clip(pos, 0, len(filled) - 1)
    prev = np.clip(pos - 1, 0, len(filled) - 1)
    pick = np.where(np.abs(filled[prev] - np.arange(n_steps)) <= np.abs(filled[near] - np.arange(n_steps)), prev, near)

    # 2. Scores: captured mass + centring bonus, normalised by a clip-level reference. Every step's
    # score row is its filled step's, rescaled: rows are kept per filled step and read through pick.
    level = captured.mean(axis=1)[pick]
    res_norm = np.linalg.norm(step_res, axis=1)
    res_dir = step_res / np.where(res_norm > 0, res_norm, 1.0)[:, None]
    cos0 = math.cos(math.radians(opts.h_fov / 2))
    base = captured  # becomes the score rows in place, a block at a time (no second (filled, C) array)
    bounds = list(range(0, len(base), 4096)) + [len(base)]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        del bounds[-2]  # no block of one row (see close)
    for r0, r1 in zip(bounds[:-1], bounds[1:]):
        d = res_dir[r0:r1] if r1 - r0 > 1 or n_steps == 1 else np.concatenate([res_dir[r0:r1]] * 2)
        bell = np.clip((d @ cvec.T - cos0) / (1.0 - cos0), 0.0, 1.0)[:r1 - r0]
        base[r0:r1] += opts.centre_weight * res_norm[r0:r1, None] * bell
    contrast = (base.max(axis=1) - base.min(axis=1))[pick]
    ref = max(float(np.percentile(contrast, 95)), opts.contrast_floor * float(np.percentile(level, 95)))
    if ref <= 0:
        ref = float(contrast.max())
    if ref > 0:
        # Every step with a clear source weighs alike (a quiet talker matters as much as a drum);
        # steps quieter than dynamic_range x the clip's loud level, or dominated by their own diffuse
        # floor, weigh proportionally less: silence and noise leave the camera where it is.
        div = np.maximum.reduce([contrast, np.full_like(contrast, opts.dynamic_range * ref),
                                 opts.contrast_floor * level])
        scale = dt / div
        active = contrast / div  # 1 where something sounds, -> 0 in silence
    else:
        scale, active = np.zeros(n_steps), np.zeros(n_steps)
    # Framing priors, only while something sounds (in silence the camera simply holds).
    home = sphere.dir_to_vec(opts.initial_yaw, opts.initial_pitch)
    prior = opts.home_weight * 0.5 * (1.0 + cvec @ home) + opts.level_weight * np.cos(np.radians(cand[:, 1]))

    # Anchored steps: every candidate but the one nearest the anchor loses far more than a clip could
    # earn, so the best path goes through it whenever the speed bound lets it.
    # The anchor is held over the smoothing's reach (±ANCHOR_HOLD s) so the smoothed path meets it
    # closely and what is left to ease in is small.
    forced: dict[int, int] = {}
    if anchors is not None:
        hold = int(round(ANCHOR_HOLD / dt))
        for f, a_yaw, a_pitch in np.asarray(anchors, dtype=np.float64).reshape(-1, 3):
            k = int(step_of[int(np.clip(f, 0, n_frames - 1))])
            c = int(np.argmax(cvec @ sphere.dir_to_vec(a_yaw, a_pitch)))
            for kk in range(max(0, k - hold), min(n_steps, k + hold + 1)):
                forced.setdefault(kk, c) if kk != k else forced.__setitem__(kk, c)
    penalty = 1e3 * max(1.0, n_steps * dt)

    def score(k: int) -> np.ndarray:
        row = base[pick[k]] * scale[k] + (active[k] * dt) * prior
        if k in forced:
            row = row - penalty
            row[forced[k]] += penalty
        return row

    # 3. Dynamic programming (maximise), bounded moves; ties go to the lowest index (deterministic).
    nbr, dist = _neighbours(opts.grid, opts.pitch_limit, reach)
    move_cost = opts.motion_cost * dist
    init = sphere.vec_angle(cvec, sphere.dir_to_vec(opts.initial_yaw, opts.initial_pitch))
    value = score(0) - 1e-6 * init  # tiny: only breaks ties, e.g. for silent maps
    # Back pointers as the chosen neighbour's column in nbr: one byte per candidate and step (two for a
    # camera so fast, ~450°/s and up, that it has 255 neighbours or more), the top code marking a cut
    # whose origin is that step's single best candidate: hours of steps stay small.
    back = np.empty((n_steps, len(cand)), np.uint8 if nbr.shape[1] < 255 else np.uint16)
    jump_code = np.iinfo(back.dtype).max
    jumps = np.zeros(n_steps, np.int64)
    cut_at = np.zeros(n_steps, bool)
    rows_c = np.arange(len(cand))
    report_every = max(1, n_steps // 50)
    for k in range(1, n_steps):
        options_k = value[nbr] - move_cost
        j = np.argmax(options_k, axis=1)
        best = options_k[rows_c, j]
        back[k] = j
        if opts.cuts:
            jump = int(np.argmax(value))
            jump_value = value[jump] - opts.cut_penalty
            take = jump_value > best
            best = np.where(take, jump_value, best)
            back[k, take] = jump_code
            jumps[k] = jump
        value = score(k) + best
        if progress is not None and (k % report_every == 0 or k == n_steps - 1):
            progress(n_chunks + k + 1, total_work)
    idx = np.empty(n_steps, np.int64)
    idx[-1] = int(np.argmax(value))
    for k in range(n_steps - 1, 0, -1):
        code = int(back[k, idx[k]])
        cut_at[k] = code == jump_code
        idx[k - 1] = jumps[k] if cut_at[k] else nbr[idx[k], code]
    if progress is not None:
        progress(total_work, total_work)

    # 4. Smoothing per segment between cuts; cut frames refined on the per-frame maps.
    step_vec = cvec[idx]
    seg_starts = [0] + [int(k) for k in np.flatnonzero(cut_at)]
    seg_ends = seg_starts[1:] + [n_steps]
    frame_seg = np.zeros(n_frames, np.int64)
    cut_frames = []
    for g, k in enumerate(seg_starts[1:], start=1):
        f = _cut_frame(m, t, step_of, k, incl[idx[k - 1]], incl[idx[k]], area, pool_h, pool_w, step_times)
        frame_seg[f:] = g
        cut_frames.append(f)
    out = np.empty((n_frames, 3))
    sigma = opts.smooth / dt
    for g, (s0, s1) in enumerate(zip(seg_starts, seg_ends)):
        sv = _smooth_segment(step_vec[s0:s1], sigma)
        sel = frame_seg == g
        if not np.any(sel):
            continue
        tt = np.clip(t[sel], step_times[s0], step_times[s1 - 1])
        v = _spline_not_a_knot(step_times[s0:s1], sv, tt) if s1 - s0 > 1 else np.repeat(sv, len(tt), axis=0)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        out[sel] = _clamp_speed(v, t[sel], opts.max_speed) if len(v) > 1 else v
    yaw, pitch = sphere.vec_to_dir(out)
    syaw, spitch = sphere.vec_to_dir(step_vec)
    return TrajectoryPlan(yaw, pitch, np.asarray(cut_frames, np.int64), coi_yaw, coi_pitch, coi_conc,
                          step_times, syaw, spitch, opts)


def _cut_frame(m: np.ndarray, t: np.ndarray, step_of: np.ndarray, k: int, w_a: np.ndarray, w_b: np.ndarray,
               area: np.ndarray, pool_h: np.ndarray, pool_w: np.ndarray, step_times: np.ndarray) -> int:
    """First frame shown from view B for a cut planned between steps k-1 (view A) and k (view B).

    Among the frames of both steps, the split maximising A's capture before it and B's after it.
    """
    frames = np.flatnonzero((step_of == k - 1) | (step_of == k))
    if len(frames) == 0:  # no frame in either step: cut at the mid time
        return int(np.searchsorted(t, 0.5 * (step_times[k - 1] + step_times[k])))
    blk = np.maximum(np.nan_to_num(np.asarray(m[frames], dtype=np.float64)), 0.0) * area
    pooled = np.einsum("rh,thw,cw->trc", pool_h, blk, pool_w, optimize=True).reshape(len(frames), -1)
    a, b = pooled @ w_a, pooled @ w_b
    gain = np.concatenate([[0.0], np.cumsum(a)]) + np.concatenate([np.cumsum(b[::-1])[::-1], [0.0]])
    split = int(np.argmax(gain))
    return int(frames[0] + split) if split < len(frames) else int(frames[-1] + 1)


def plan_camera_path(maps: ArrayLike, times: ArrayLike, width: int, height: int, fps: float,
                     options: TrajectoryOptions | None = None, *, keyframes: CameraPath | None = None,
                     progress: Progress | None = None) -> CameraPath:
    """A :class:`CameraPath` for an output of ``width`` x ``height`` at ``fps`` (``options.aspect`` is
    replaced by the size's).

    ``keyframes`` (a user's, e.g. from ``pan360 preview``) are constraints the plan keeps, the automatic
    camera filling the stretches between them: each is met exactly at the frame nearest its time (the
    plan passes through it, and the last small offset is eased in and out over up to a second around
    it); a ``cut`` keyframe starts a new plan there, from that view; the field of view and roll follow
    the keyframes' own interpolation (:func:`pan360.paths.resample_path`).
    """
    from .paths import resample_path

    opts = replace(options or TrajectoryOptions(), aspect=width / height)
    t = np.asarray(times, dtype=np.float64).ravel()
    ones = np.ones(len(t))
    if keyframes is None:
        p = plan(maps, times, opts, progress=progress)
        return CameraPath(t, p.yaw, p.pitch, 0.0 * ones, opts.h_fov * ones, opts.resolved_v_fov() * ones,
                          width, height, fps)
    m = np.asarray(maps)
    fov = resample_path(keyframes, t)  # the keyframes' own interpolation: FOV, roll, and the ends
    kt = keyframes.times
    tol = 0.5 * (float(np.median(np.diff(t))) if len(t) > 1 else 1.0)
    # keyframes on the clip's frames (the last one wins a frame); beyond either end, the keyframes'
    # interpolated view at that end stands in for them
    by_frame: dict[int, tuple[float, float, str]] = {}
    how = keyframes.interp or ("linear",) * len(keyframes)
    for j in range(len(keyframes)):
        if kt[j] < t[0] - tol or kt[j] > t[-1] + tol:
            continue
        f = int(np.argmin(np.abs(t - kt[j])))
        by_frame[f] = (float(keyframes.yaw[j]), float(keyframes.pitch[j]), how[j])
    for f, outside in ((0, kt[0] < t[0] - tol), (len(t) - 1, kt[-1] > t[-1] + tol)):
        if outside and f not in by_frame:
            by_frame[f] = (float(fov.yaw[f]), float(fov.pitch[f]), "linear")
    frames = np.array(sorted(by_frame), dtype=np.int64)
    k_yaw = np.array([by_frame[f][0] for f in frames])
    k_pitch = np.array([by_frame[f][1] for f in frames])
    starts = sorted({0, *(int(f) for f in frames if by_frame[int(f)][2] == "cut")})
    bounds = list(starts)
    yaw, pitch = np.empty(len(t)), np.empty(len(t))
    for a, b in zip(starts, starts[1:] + [len(t)]):
        inside = (frames >= a) & (frames < b)
        anchors = np.stack([frames[inside] - a, k_yaw[inside], k_pitch[inside]], axis=1)
        seg_opts = opts
        if inside.any() and frames[inside][0] == a:  # a segment opened by a keyframe starts from its view
            seg_opts = replace(opts, initial_yaw=float(k_yaw[inside][0]), initial_pitch=float(k_pitch[inside][0]))
        if b - a == 1:
            yaw[a:b], pitch[a:b] = (k_yaw[inside][:1], k_pitch[inside][:1]) if inside.any() \
                else (np.array([seg_opts.initial_yaw]), np.array([seg_opts.initial_pitch]))
            continue
        p = plan(m[a:b], t[a:b], seg_opts, anchors=anchors)
        yaw[a:b], pitch[a:b] = p.yaw, p.pitch
        bounds += [a + int(c) for c in p.cuts]  # the planner's own cuts: nothing is eased across them
    vec = _meet_keyframes(sphere.dir_to_vec(yaw, pitch), t, frames, sphere.dir_to_vec(k_yaw, k_pitch), bounds)
    yaw, pitch = sphere.vec_to_dir(vec)
    v_fov = v_fov_for(fov.h_fov, width, height)
    return CameraPath(t, yaw, pitch, fov.roll, fov.h_fov, v_fov, width, height, fps, keyframes.frame)


def _meet_keyframes(vec: np.ndarray, t: np.ndarray, frames: np.ndarray, targets: np.ndarray,
                    cuts: list[int], window: float = 1.0) -> np.ndarray:
    """Turn a planned path (T, 3) so it passes exactly through ``targets`` at ``frames``: each offset
    rotation is eased in and out (smoothstep) over ``window`` seconds on each side, or half the way to
    the next keyframe or cut, never across a cut."""
    out = vec.copy()
    order = np.argsort(frames, kind="stable")
    fs = frames[order]
    bounds = sorted(set(cuts))
    for n, i in enumerate(order):
        f = int(frames[i])
        d, g = out[f], targets[i]
        axis = np.cross(d, g)
        s, c = np.linalg.norm(axis), float(np.dot(d, g))
        if s < 1e-12:
            out[f] = g
            if c > 0:
                continue  # already there
            axis = np.cross(d, [0.0, 0.0, 1.0]) if abs(d[2]) < 0.9 else np.cross(d, [1.0, 0.0, 0.0])
            s = np.linalg.norm(axis)  # opposite: turn about a level axis across the top
        angle = math.atan2(s, c) if s > 1e-12 else math.pi
        axis /= np.linalg.norm(axis)
        lo_t, hi_t = t[f] - window, t[f] + window
        if n > 0:
            lo_t = max(lo_t, 0.5 * (t[fs[n - 1]] + t[f]))
        if n + 1 < len(fs):
            hi_t = min(hi_t, 0.5 * (t[f] + t[fs[n + 1]]))
        seg_lo = max([b for b in bounds if b <= f], default=0)
        seg_hi = min([b for b in bounds if b > f], default=len(t))
        sel = np.arange(seg_lo, seg_hi)
        sel = sel[(t[sel] > lo_t) & (t[sel] < hi_t)] if len(sel) else sel
        for j in sel:
            span = (t[f] - lo_t) if t[j] <= t[f] else (hi_t - t[f])
            x = 1.0 - abs(t[j] - t[f]) / span if span > 0 else 1.0
            a = angle * x * x * (3.0 - 2.0 * x)
            v = out[j]
            # Rodrigues: rotate v about axis by a
            out[j] = v * math.cos(a) + np.cross(axis, v) * math.sin(a) + axis * np.dot(axis, v) * (1 - math.cos(a))
        out[f] = g
    return out


def zoom_path(path: CameraPath, maps: ArrayLike, *, zoom_in: float = 0.75, zoom_out: float = 1.25,
              max_rate: float = 20.0, smooth: float = 0.5) -> CameraPath:
    """``--zoom``: the path's field of view narrowed on one steady source and widened for a spread-out
    scene or a fast pan.

    Per frame: the saliency's concentration (:func:`sphere.weighted_mean_direction`: 1 for one point
    source, 0 for an even spread) and the camera's speed. One compact source (concentration > 0.6) while
    the camera is nearly still (< 10°/s) gives ``zoom_in`` x the FOV; a pan faster than 40°/s or a
    spread scene (concentration < 0.25) gives ``zoom_out``; else the FOV stays. The factor is smoothed
    (Gaussian, ``smooth`` s) and its change bounded to ``max_rate`` degrees of h_fov per second; the
    vertical FOV follows the output's aspect. Off by default: see bench/README.md for the measurement.
    """
    m = np.asarray(maps)
    t = path.times
    conc = np.empty(len(t))
    for a in range(0, len(t), 256):
        blk = np.maximum(np.nan_to_num(np.asarray(m[a:a + 256], dtype=np.float64)), 0.0)
        conc[a:a + 256] = sphere.weighted_mean_direction(blk)[2]
    vec = path.directions()
    step = sphere.vec_angle(vec[:-1], vec[1:]) / np.maximum(np.diff(t), 1e-9)
    speed = np.concatenate([[step[0] if len(step) else 0.0], step]) if len(t) > 1 else np.zeros(1)
    factor = np.where((speed > 40.0) | (conc < 0.25), zoom_out, np.where((conc > 0.6) & (speed < 10.0), zoom_in, 1.0))
    dt = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
    factor = gaussian_smooth(factor, smooth / dt) if len(t) > 2 else factor
    h = np.clip(path.h_fov * factor, *H_FOV_RANGE)
    out = h.copy()
    for i in range(1, len(h)):  # bounded zoom speed
        lim = max_rate * (t[i] - t[i - 1])
        out[i] = out[i - 1] + np.clip(h[i] - out[i - 1], -lim, lim)
    return replace(path, h_fov=out, v_fov=v_fov_for(out, path.width, path.height))
