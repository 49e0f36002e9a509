"""Following a chosen subject (pan360.sources.follow) on generated clips: two identical drums, the
followed one moving and silent, the other one standing still and sounding."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from pan360 import pipeline, sphere
from pan360.errors import Pan360Error
from pan360.media import VideoWriter, probe
from pan360.metrics import in_view
from pan360.sources.follow import parse_follow, track_subject
from pan360.spatial import encode_foa
from pan360.synthetic.drawing import draw_background, draw_object
from pan360.synthetic.scene import SceneObject

FPS, SECONDS = 30, 4.0
SOUNDING = (0.0, -8.0)  # drum B: still, the only sound


def write_lookalikes(path: Path, *, start_yaw: float, hidden: tuple[float, float] | None = None,
                     width: int = 768, height: int = 384) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drum A (followed, silent) moves right at 40°/s at pitch 18 from ``start_yaw``; drum B, drawn the
    same, sounds at SOUNDING. ``hidden``: seconds during which A is not drawn (an occlusion)."""
    vecs = sphere.equirect_vectors(width, height).astype(np.float32)
    bg = draw_background(width, height, 3, vecs)
    n = int(SECONDS * FPS)
    t = np.arange(n) / FPS
    yaw, pitch = sphere.wrap_yaw(start_yaw + 40.0 * t), np.full(n, 18.0)
    sr = 48000
    noise = np.convolve(np.random.default_rng(0).standard_normal(int(SECONDS * sr)), np.ones(3) / 3, "same")
    foa = encode_foa(0.3 * noise, *SOUNDING)
    drum = SceneObject("drum", 0.0, 0.0, radius=12)
    with VideoWriter(path, width, height, fps=Fraction(FPS), duration=SECONDS, crf=18, preset="ultrafast",
                     audio=foa, sample_rate=sr) as writer:
        for i in range(n):
            img = bg.copy()
            draw_object(img, vecs, drum, *SOUNDING, 0.0)
            if hidden is None or not hidden[0] <= t[i] < hidden[1]:
                draw_object(img, vecs, drum, float(yaw[i]), float(pitch[i]), 0.0)
            writer.write(img, float(t[i]))
    return t, yaw, pitch


@pytest.mark.parametrize("start_yaw", [-80.0, 140.0], ids=["passes-the-look-alike", "across-the-seam"])
def test_followed_subject_stays_in_view(tmp_path, start_yaw):
    clip = tmp_path / "two.mp4"
    t, yaw, pitch = write_lookalikes(clip, start_yaw=start_yaw)
    track = track_subject(probe(clip), 1.0, float(yaw[FPS]), 18.0)  # forward from 1 s and back to 0
    err = sphere.angular_distance(track.yaw, track.pitch, yaw, pitch)
    assert err.max() < 3.0 and not track.lost.any(), err.max()
    a = pipeline.analyse(clip, saliency="foa", follow=[f"1.0,{yaw[FPS]},18"])
    assert in_view(a.path, yaw, pitch).mean() >= 0.95
    plain = pipeline.analyse(clip, saliency="foa")  # the sound alone: the other drum
    assert in_view(plain.path, *SOUNDING).mean() > 0.9 and in_view(plain.path, yaw, pitch).mean() < 0.5


def test_a_hidden_subject_is_reported_lost_and_found_again(tmp_path):
    clip = tmp_path / "hidden.mp4"
    t, yaw, pitch = write_lookalikes(clip, start_yaw=-120.0, hidden=(2.0, 2.4))
    notes: list[str] = []
    a = pipeline.analyse(clip, saliency="foa", follow=[f"0.5,{yaw[FPS // 2]},18"], notify=notes.append)
    lost = [n for n in notes if "lost" in n]
    assert len(lost) == 1 and "2.0" in lost[0], notes
    after = t >= 2.6
    assert in_view(a.path, yaw, pitch)[after].mean() >= 0.95  # found again after the occlusion
    assert in_view(a.path, yaw, pitch).mean() >= 0.9


def test_follow_spec_errors():
    assert parse_follow("1.5,-30,10") == (1.5, -30.0, 10.0)
    for bad in ("1,2", "a,b,c", "-1,0,0", "1,0,95"):
        with pytest.raises(Pan360Error, match="--follow"):
            parse_follow(bad)
