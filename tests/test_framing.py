"""Framing people (pan360.framing): the pitch offset rule on given face boxes, and the whole step on a
real clip where the default view cuts the player's head off."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pan360.framing import KEEP_CENTRE, _offset_for, detection_view
from pan360.geometry import View

VIEW = View(0.0, -15.0, 0.0, 90.0, 58.7)
BIG, SIZE = detection_view(VIEW)


def box_at(yaw_off: float, top: float, bottom: float) -> tuple[float, float, float, float, float]:
    """A face box in the detection view: horizontal offset (degrees) and top/bottom elevations (degrees)."""
    w, h = SIZE
    tx, ty = math.tan(math.radians(BIG.h_fov) / 2), math.tan(math.radians(BIG.v_fov) / 2)

    def row(elev: float) -> float:
        return ((1 - math.tan(math.radians(elev)) / ty) * h - 1) / 2

    xc = ((math.tan(math.radians(yaw_off)) / tx + 1) * w - 1) / 2
    return (xc - 20, row(top), xc + 20, row(bottom), 0.99)


def test_offset_rule():
    half = VIEW.v_fov / 2
    assert _offset_for([box_at(0, 10, -5)], BIG, SIZE, VIEW) == 0.0  # well inside with headroom
    cut = _offset_for([box_at(0, half + 2, half - 8)], BIG, SIZE, VIEW)  # its top above the frame
    assert 3.0 < cut <= KEEP_CENTRE * half
    assert _offset_for([box_at(60, half + 2, half - 8)], BIG, SIZE, VIEW) == 0.0  # not near the source
    far = _offset_for([box_at(0, half + 40, half + 25)], BIG, SIZE, VIEW)
    assert far == pytest.approx(KEEP_CENTRE * half)  # the source's side of the frame is kept
    assert _offset_for([(*box_at(0, half + 2, half - 8)[:4], 0.5)], BIG, SIZE, VIEW) == 0.0  # unsure: ignored


def test_real_clip_keeps_the_head_in_frame(shared_media):
    clip = shared_media / "real360_foa" / "sphere360gt_0FB9jMXMP8A_19.webm"
    if not clip.is_file():
        pytest.skip("guitar clip not available")
    from pan360 import pipeline
    from pan360.framing import face_detector, frame_faces

    detector = face_detector()
    if detector is None:
        pytest.skip("facenet-pytorch not installed")
    a = pipeline.analyse(clip, saliency="foa", framing=False)
    framed, summary = frame_faces(a.info, a.path, detector)
    assert summary["moved"] >= summary["looked"] // 2 and 5.0 < summary["max_offset"] < 20.0
    assert np.all(framed.yaw == a.path.yaw)  # only the pitch moves
    assert np.median(framed.pitch - a.path.pitch) > 5.0
