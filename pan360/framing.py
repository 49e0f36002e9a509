"""Framing people: keep a face near the view in frame, with headroom, without losing the sound source.

A planned camera centres the saliency: on a guitarist playing close to the camera that is the guitar,
and the head is cut off. After planning, faces are looked for (:func:`face_detector`: MTCNN from the
``facenet-pytorch`` package, whose weights ship in its wheel; loaded with ``torch.load``'s default
``weights_only``) a few times a second in a view around the planned one, larger than it, so a face
cut off by the frame is still seen. For a face within the view's width of its centre, the pitch
offset that brings its top (plus :data:`HEADROOM` of its height) inside the frame is found; it is
bounded so the planned centre (where the source is) stays inside the frame's lower part
(:data:`KEEP_CENTRE`), then smoothed over time and added to the path's pitch. Yaw is untouched, so the
source stays in view as before.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import lru_cache
from typing import Any, Callable

import numpy as np

from pan360 import geometry
from pan360.geometry import View
from pan360.paths import CameraPath
from pan360.signal import gaussian_smooth

#: Faces are looked for this many times a second (the offset is smoothed in between).
RATE = 2.0
#: Share of a face's height kept free above it.
HEADROOM = 0.35
#: Margin (share of the vertical FOV) between the face's top and the frame's top edge.
MARGIN = 0.04
#: The planned centre may move at most this share of half the vertical FOV from the middle.
KEEP_CENTRE = 0.6
#: The detection view: the planned view's FOV times this, at DETECT_WIDTH pixels.
WIDEN = 1.6
DETECT_WIDTH = 640
MIN_PROB = 0.9
SMOOTH_S = 0.4

Detector = Callable[[np.ndarray], list[tuple[float, float, float, float, float]]]


@lru_cache(maxsize=2)
def face_detector(device: str = "cpu") -> Detector | None:
    """A face detector ``rgb -> [(x0, y0, x1, y1, prob), ...]``, or None when ``facenet-pytorch`` is not
    installed (made once per device)."""
    try:
        from facenet_pytorch import MTCNN
    except ImportError:
        return None
    mtcnn = MTCNN(keep_all=True, device=device, post_process=False)

    def detect(rgb: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        boxes, probs = mtcnn.detect(rgb)
        if boxes is None:
            return []
        return [(*map(float, b), float(p)) for b, p in zip(boxes, probs) if p is not None]

    return detect


def detection_view(view: View) -> tuple[View, tuple[int, int]]:
    """The view faces are looked for in around ``view`` (:data:`WIDEN` its FOV, same aspect) and its size
    in pixels (:data:`DETECT_WIDTH` wide)."""
    h = min(150.0, view.h_fov * WIDEN)
    v = math.degrees(2 * math.atan(math.tan(math.radians(view.v_fov) / 2) * math.tan(math.radians(h) / 2)
                                   / math.tan(math.radians(view.h_fov) / 2)))
    big = replace(view, h_fov=h, v_fov=min(v, 150.0))
    rows = DETECT_WIDTH * math.tan(math.radians(big.v_fov) / 2) / math.tan(math.radians(big.h_fov) / 2)
    return big, (DETECT_WIDTH, max(2, int(round(rows / 2)) * 2))


def _offset_for(faces, big: View, size: tuple[int, int], view: View) -> float:
    """Pitch offset (degrees, up positive) that puts the faces near the centre in frame with headroom."""
    w, h = size
    best = 0.0
    half_v = view.v_fov / 2
    for x0, y0, x1, y1, prob in faces:
        if prob < MIN_PROB or (y1 - y0) < 10:
            continue
        xc = 0.5 * (x0 + x1)
        top = y0 - HEADROOM * (y1 - y0)
        # angles in the (unrolled) view: horizontal of the face centre, vertical of the wanted top
        ax, _ = geometry.image_plane_coords(xc, 0.0, w, h, big.h_fov, big.v_fov)
        _, bt = geometry.image_plane_coords(0.0, top, w, h, big.h_fov, big.v_fov)
        _, bb = geometry.image_plane_coords(0.0, y1, w, h, big.h_fov, big.v_fov)
        if abs(math.degrees(math.atan(float(ax)))) > view.h_fov / 2:
            continue  # not within the view's width of the source
        up = math.degrees(math.atan(float(bt)))  # elevation of the wanted top above the view centre
        need = up - (half_v * (1 - 2 * MARGIN))
        chin = math.degrees(math.atan(float(bb)))
        # never push the face's bottom out of the frame's bottom either
        need = min(need, chin + half_v) if need > 0 else need
        best = max(best, need)
    return min(best, KEEP_CENTRE * half_v)


def frame_faces(info: Any, path: CameraPath, detector: Detector, *, stabilization: Any = None,
                notify: Callable[[str], None] | None = None) -> tuple[CameraPath, dict[str, float]]:
    """``path`` with its pitch raised where a face near the view would be cut (module docstring); and a
    summary: frames looked at, with a face near, moved, and the largest offset (degrees)."""
    from pan360.media import iter_frames
    from pan360.reproject import Renderer

    n = len(path)
    t = np.asarray(info.frame_times)
    step = max(1, int(round(float(info.fps) / RATE)))
    picks = set(range(0, n, step))
    renderer = None  # one per detection-view size (the path's FOV may change)
    idx, offs, near = [], [], 0
    for i, (_, rgb) in enumerate(iter_frames(info, fmt="rgb24")):
        if i not in picks or i >= n:
            continue
        view = path.view(i)
        big, big_size = detection_view(view)
        shown = stabilization.camera_view(i, big) if stabilization is not None and stabilization.active else big
        if renderer is None or big_size != renderer.out_size:
            renderer = Renderer(info.eye_width, info.eye_height, *big_size, device="cpu", projection=info.layout)
        faces = detector(renderer.render_rgb(rgb, shown))
        off = _offset_for(faces, big, big_size, view)
        near += bool(faces)
        idx.append(i)
        offs.append(off)
    if not idx:
        return path, {"looked": 0, "faces": 0, "moved": 0, "max_offset": 0.0}
    offs_a = np.array(offs)
    # hold an offset a little before and after it is needed, then smooth
    held = np.maximum.reduce([np.roll(offs_a, k) for k in (-1, 0, 1)]) if len(offs_a) > 2 else offs_a
    held[0], held[-1] = max(offs_a[:2]), max(offs_a[-2:])
    sigma = SMOOTH_S * RATE
    smooth = gaussian_smooth(held, sigma) if len(held) > 2 else held
    per_frame = np.interp(t[:n], t[idx], smooth)
    new = replace(path, pitch=np.clip(path.pitch + per_frame, -90.0, 90.0))
    summary = {"looked": len(idx), "faces": near, "moved": int(np.sum(offs_a > 0.5)),
               "max_offset": float(per_frame.max())}
    if notify is not None and summary["moved"]:
        notify(f"framing: a face near the view was cut in {summary['moved']} of {len(idx)} looks; the camera "
               f"tilts up to {summary['max_offset']:.0f}° to keep it in frame")
    return new, summary
