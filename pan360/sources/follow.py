"""Follow a chosen subject: track it through the video and make it the saliency the planner follows.

The user points at the subject once (``--follow TIME,YAW,PITCH``, repeatable to switch subjects). The
tracker works on the sphere, seam- and pole-safe: every frame it renders a small gnomonic view
(:class:`pan360.reproject.Renderer`, grey) centred on where the subject is predicted (constant
velocity), and finds the subject's template there by normalised cross-correlation (OpenCV's
``matchTemplate``), weighted towards the prediction so a look-alike elsewhere in the view does not
take over. The template adapts slowly while the match is good. When the best match drops below
:data:`LOST_BELOW` the subject is lost: the search widens, also around the loudest sound direction,
until a match above :data:`FOUND_ABOVE` re-finds it. Tracking runs forward from the pointed frame and
backward over up to :data:`BACK_SECONDS` before it (those frames are kept, grey at :data:`TRACK_WIDTH`);
earlier frames count as lost (the sound leads there).

The maps: a vMF blob at the subject's direction, at the clip's loudest sound level, plus the sound maps
at :data:`SOUND_SHARE` (so sound breaks ties between near views and carries the camera while the subject
is lost).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from pan360 import geometry, sphere
from pan360.errors import Pan360Error
from pan360.geometry import View
from pan360.reproject import Renderer

#: Search view: pixels and field of view (degrees) while the subject is held, and when it is lost.
VIEW_PX = 160
VIEW_FOV = 50.0
LOST_FOV = 110.0
#: Subject template: angular size (degrees).
SUBJECT_DEG = 14.0
#: Normalised correlation below which the subject counts as lost, and above which it is found again.
LOST_BELOW = 0.45
FOUND_ABOVE = 0.6
#: Width (degrees) of the preference for the predicted position.
PRIOR_DEG = 12.0
#: Frames a lost subject keeps moving as it did (then it stays where it was last seen).
OCCLUSION_FRAMES = 20
#: Share of the sound maps kept under the subject's blob.
SOUND_SHARE = 0.15
#: Width of the (grey, equirect) frames the tracker works on (~2.8 px a degree, about the search view's).
TRACK_WIDTH = 1024
#: Seconds tracked backward from a --follow time (the frames are kept for it: ~0.5 MB each at 1024 wide).
BACK_SECONDS = 20.0


@dataclass(frozen=True)
class Track:
    """The subject per video frame: ``yaw``/``pitch`` (degrees, the picture's own axes), ``score`` (the
    match, 0..1) and ``lost`` (bool: no good match; the direction is then the last good one)."""

    yaw: NDArray[np.float64]
    pitch: NDArray[np.float64]
    score: NDArray[np.float64]
    lost: NDArray[np.bool_]


def parse_follow(spec: str) -> tuple[float, float, float]:
    """``"TIME,YAW,PITCH"`` → floats (seconds, degrees); a bad one raises :class:`Pan360Error`."""
    try:
        t, y, p = (float(v) for v in spec.split(","))
    except ValueError:
        raise Pan360Error(f"--follow takes TIME,YAW,PITCH (seconds, degrees), got {spec!r}") from None
    if not (np.isfinite([t, y, p]).all() and t >= 0 and -90 <= p <= 90):
        raise Pan360Error(f"--follow {spec!r}: time must be >= 0 and pitch within [-90, 90]")
    return t, y, p


class _Matcher:
    def __init__(self, width: int, height: int) -> None:
        self.size = (width, height)
        self.views: dict[int, Renderer] = {}  # grey gnomonic views, one renderer per view size
        self.tpl_px = max(9, int(round(SUBJECT_DEG / VIEW_FOV * VIEW_PX)) | 1)
        self.template: NDArray[np.float32] | None = None

    def view(self, grey: NDArray[np.uint8], yaw: float, pitch: float, fov: float) -> tuple[NDArray[np.float32], View]:
        """A view of ``fov`` at the held view's focal length (so the template keeps its scale)."""
        px = int(round(VIEW_PX * np.tan(np.radians(fov) / 2) / np.tan(np.radians(VIEW_FOV) / 2)))
        if px not in self.views:
            self.views[px] = Renderer(*self.size, px, px, device="cpu", backend="opencv")
        v = View(float(yaw), float(np.clip(pitch, -89.9, 89.9)), 0.0, fov, fov)
        return self.views[px].render_rgb(grey, v).astype(np.float32), v

    def start(self, grey: NDArray[np.uint8], yaw: float, pitch: float) -> None:
        img, _ = self.view(grey, yaw, pitch, VIEW_FOV)
        c, r = img.shape[0] // 2, self.tpl_px // 2
        self.template = img[c - r:c + r + 1, c - r:c + r + 1].copy()

    def match(self, grey: NDArray[np.uint8], yaw: float, pitch: float, fov: float,
              prior: bool) -> tuple[float, float, float, NDArray[np.float32]]:
        """(score, yaw, pitch, patch) of the best match in a view centred on (yaw, pitch)."""
        img, v = self.view(grey, yaw, pitch, fov)
        assert self.template is not None
        res = cv2.matchTemplate(img, self.template, cv2.TM_CCOEFF_NORMED)
        if prior:  # prefer the prediction (the centre): a look-alike further off loses
            n = res.shape[0]
            ax = (np.arange(n) - (n - 1) / 2) * VIEW_FOV / VIEW_PX
            g = np.exp(-0.5 * (ax[:, None] ** 2 + ax[None, :] ** 2) / PRIOR_DEG**2)
            weighted = res * (0.5 + 0.5 * g)
        else:
            weighted = res
        iy, ix = np.unravel_index(int(np.argmax(weighted)), weighted.shape)
        r = self.tpl_px // 2
        yaw2, pitch2 = geometry.view_pixel_to_dir(ix + r, iy + r, img.shape[1], img.shape[0], v)
        patch = img[iy:iy + self.tpl_px, ix:ix + self.tpl_px]
        return float(res[iy, ix]), float(yaw2), float(pitch2), patch

    def adapt(self, patch: NDArray[np.float32]) -> None:
        assert self.template is not None
        self.template = 0.9 * self.template + 0.1 * patch


def _track_run(frames, matcher: _Matcher, yaw: float, pitch: float, sound_peak) -> list[tuple[float, float, float, bool]]:
    """Track over ``frames`` (an iterable of (index, grey)) from (yaw, pitch); one row per frame."""
    out = []
    vel = np.zeros(3)
    cur = sphere.dir_to_vec(yaw, pitch)
    lost, lost_for = False, 0
    for idx, grey in frames:
        pred = cur + vel
        pred /= np.linalg.norm(pred)
        py, pp = sphere.vec_to_dir(pred)
        if lost:  # through a short occlusion the subject keeps its motion, then stays where it was last
            cur = pred
            lost_for += 1
            if lost_for > OCCLUSION_FRAMES:
                vel = np.zeros(3)
        tries = [(float(py), float(pp), LOST_FOV if lost else VIEW_FOV, not lost)]
        if lost and sound_peak is not None:
            sy, sp = sound_peak(idx)
            tries.append((sy, sp, LOST_FOV, False))
        best = max((matcher.match(grey, y, p, f, prior) for y, p, f, prior in tries), key=lambda m: m[0])
        score, ny, np_, patch = best
        if (not lost and score >= LOST_BELOW) or (lost and score >= FOUND_ABOVE):
            new = sphere.dir_to_vec(ny, np_)
            vel = 0.5 * vel + 0.5 * (new - cur) if not lost else np.zeros(3)
            cur, lost, lost_for = new, False, 0
            if score > 0.7:
                matcher.adapt(patch)
        else:
            lost = True
        y, p = sphere.vec_to_dir(cur)
        out.append((float(y), float(p), score, lost))
    return out


def track_subject(info, time: float, yaw: float, pitch: float, *, sound_peak=None, progress=None) -> Track:
    """Track the subject seen at ``(yaw, pitch)`` (the picture's own axes) at ``time`` through ``info``'s
    video (a :class:`pan360.media.MediaInfo`); ``sound_peak(i)`` (the loudest sound direction at frame
    ``i``, picture axes) helps re-find it when lost."""
    from pan360.media import equirect_picture, iter_frames

    if info.layout != "equirect":
        w0, h0 = info.equirect_size
    else:
        w0, h0 = info.eye_width, info.eye_height
    scale = min(1.0, TRACK_WIDTH / w0)
    w, h = max(16, int(round(w0 * scale))), max(8, int(round(h0 * scale)))
    n = info.n_frames
    start = int(np.argmin(np.abs(info.frame_times - time)))
    peaks = sound_peak

    def grey_frames():
        for i, (_, rgb) in enumerate(iter_frames(info, fmt="rgb24")):
            g = cv2.cvtColor(equirect_picture(rgb, info.layout, (w, h)), cv2.COLOR_RGB2GRAY)
            yield i, g
            if progress is not None:
                progress(i + 1, n)

    # the frames just before the pointed one, for the backward run (bounded: BACK_SECONDS of them)
    keep = max(1, int(round(BACK_SECONDS * float(info.fps))))
    before: deque[tuple[int, NDArray[np.uint8]]] = deque(maxlen=keep)
    matcher = _Matcher(w, h)
    rows: dict[int, tuple[float, float, float, bool]] = {}
    frames = grey_frames()
    g_start = None
    for i, g in frames:
        if i < start:
            before.append((i, g))
            continue
        g_start = g
        matcher.start(g, yaw, pitch)
        rows[i] = (float(yaw), float(pitch), 1.0, False)
        forward = _track_run(frames, matcher, yaw, pitch, peaks)
        for k, row in enumerate(forward, start=i + 1):
            rows[k] = row
        break
    if before and g_start is not None:  # the template from the pointed frame, tracked back to frame 0
        back = _Matcher(w, h)
        back.start(g_start, yaw, pitch)
        backward = _track_run(reversed(before), back, yaw, pitch, peaks)
        for (k, _), row in zip(reversed(before), backward):
            rows[k] = row
    if not rows:
        raise Pan360Error(f"--follow at {time:g} s: the video has no frame there")
    first, last = rows[min(rows)], rows[max(rows)]
    early = (first[0], first[1], 0.0, True)  # before the backward window: not tracked
    arr = np.array([rows.get(k, early if k < min(rows) else last) for k in range(n)], dtype=object)
    return Track(arr[:, 0].astype(np.float64), arr[:, 1].astype(np.float64), arr[:, 2].astype(np.float64),
                 arr[:, 3].astype(bool))


def follow_maps(track: Track, sound_maps: NDArray[np.float32] | None, shape: tuple[int, int],
                kappa: float = 60.0) -> NDArray[np.float32]:
    """Maps (T, H, W) in which the followed subject is the saliency: a vMF blob per frame (weak while it
    is lost) over the sound maps at :data:`SOUND_SHARE`."""
    h, w = shape
    vecs = sphere.equirect_vectors(w, h)
    level = 1.0
    if sound_maps is not None and sound_maps.size:
        level = max(float(np.percentile(sound_maps.max(axis=(1, 2)), 95)), 1e-6)
    out = np.empty((len(track.yaw), h, w), np.float32)
    for i in range(len(track.yaw)):
        blob = np.exp(kappa * (vecs @ sphere.dir_to_vec(track.yaw[i], track.pitch[i]) - 1.0))
        weight = 0.2 if track.lost[i] else 1.0
        out[i] = level * weight * blob
        if sound_maps is not None:
            out[i] += SOUND_SHARE * (1.0 if not track.lost[i] else 3.0) * sound_maps[i]
    return out


def lost_spans(track: Track, times: NDArray[np.float64]) -> list[tuple[float, float]]:
    """(start, end) seconds of each stretch where the subject was lost."""
    spans, start = [], None
    for i, lost in enumerate(track.lost):
        if lost and start is None:
            start = i
        if not lost and start is not None:
            spans.append((float(times[start]), float(times[i - 1])))
            start = None
    if start is not None:
        spans.append((float(times[start]), float(times[-1])))
    return spans


def follow_saliency(info, maps: NDArray[np.float32], follow: list[tuple[float, float, float]], stabilization=None,
                    notify=None) -> NDArray[np.float32]:
    """The maps the planner follows for ``--follow`` entries ``(time, yaw, pitch)`` (directions in the maps'
    frame, as the user sees the output): each subject is tracked from its time to the next entry's (the
    first one also back to the start) and becomes the saliency (:func:`follow_maps`); ``notify`` hears
    where a subject was lost."""
    from pan360.stabilize import Stabilization

    stab = stabilization or Stabilization("off")
    rot = stab.rotations  # camera -> maps' frame, per frame (None: the same)
    t = info.frame_times
    gy, gp = sphere.equirect_angles(maps.shape[2], maps.shape[1])

    def to_camera(i: int, y: float, p: float) -> tuple[float, float]:
        if rot is None:
            return y, p
        yy, pp = sphere.vec_to_dir(rot[i].T @ sphere.dir_to_vec(y, p))
        return float(yy), float(pp)

    def sound_peak(i: int) -> tuple[float, float]:
        r, c = np.unravel_index(int(np.argmax(maps[i])), maps.shape[1:])
        return to_camera(i, float(gy[c]), float(gp[r]))

    entries = sorted(follow)
    yaw, pitch = np.zeros(len(t)), np.zeros(len(t))
    score, lost = np.zeros(len(t)), np.zeros(len(t), bool)
    for k, (time, y, p) in enumerate(entries):
        if time > t[-1] + 1e-6:
            raise Pan360Error(f"--follow at {time:g} s is after the video's last frame ({t[-1]:.2f} s)")
        i = int(np.argmin(np.abs(t - time)))
        track = track_subject(info, time, *to_camera(i, y, p), sound_peak=sound_peak)
        lo = 0 if k == 0 else i
        hi = len(t) if k + 1 == len(entries) else int(np.argmin(np.abs(t - entries[k + 1][0])))
        sel = slice(lo, hi)
        vec = sphere.dir_to_vec(track.yaw[sel], track.pitch[sel])
        if rot is not None:  # the subject's direction in the maps' frame
            vec = np.einsum("tij,tj->ti", rot[sel], vec)
        yaw[sel], pitch[sel] = sphere.vec_to_dir(vec)
        score[sel], lost[sel] = track.score[sel], track.lost[sel]
    whole = Track(yaw, pitch, score, lost)
    if notify is not None:
        for a, b in lost_spans(whole, t):
            notify(f"--follow: the subject was lost from {a:.2f} s to {b:.2f} s (the sound leads there)")
    return follow_maps(whole, maps, maps.shape[1:])
