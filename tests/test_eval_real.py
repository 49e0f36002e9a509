"""bench/eval_real.py: the rotation sign of rotate_foa, the rotated-copy writer, the real-media inputs."""

from __future__ import annotations

import importlib.util
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from pan360.media import VideoWriter, iter_frames, probe, read_audio
from pan360.spatial.ambisonics import encode_foa, rotate_foa
from pan360.spatial.foa_map import foa_direction_track
from pan360.sphere import wrap_yaw

REPO = Path(__file__).resolve().parents[1]
# ../shared/media next to the repository, as in tests/conftest.py (absent in a user's checkout).
REAL360_FOA = Path(__file__).resolve().parents[2] / "shared" / "media" / "real360_foa"
SR = 48000

_spec = importlib.util.spec_from_file_location("eval_real", REPO / "bench" / "eval_real.py")
eval_real = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(eval_real)


def _yaw_diff(a: float, b: float) -> float:
    return abs(float(wrap_yaw(a - b)))


def _foa_yaw(foa: np.ndarray) -> float:
    """Direction of a single plane wave from the active intensity W·(X, Y): yaw = -atan2(Y, X)."""
    x, y = float(np.dot(foa[0], foa[3])), float(np.dot(foa[0], foa[1]))
    return -float(np.degrees(np.arctan2(y, x)))


def test_rotate_foa_sign_convention():
    """rotate_foa(foa, yaw) brings ``yaw`` to the front: a source at y goes to y - yaw. So turning the
    content right by DEG (as the rolled picture) is rotate_foa(foa, -DEG)."""
    rng = np.random.default_rng(3)
    s = rng.standard_normal(SR // 2).astype(np.float32)
    front = encode_foa(s, 0.0, 0.0)
    assert _foa_yaw(front) == pytest.approx(0.0, abs=1e-3)
    assert _foa_yaw(rotate_foa(front, 40.0)) == pytest.approx(-40.0, abs=1e-3)
    assert _foa_yaw(rotate_foa(encode_foa(s, 30.0, 0.0), 40.0)) == pytest.approx(-10.0, abs=1e-3)
    for deg in (90.0, 100.0, -140.0):
        assert _yaw_diff(_foa_yaw(eval_real.rotate_audio(front, deg)), deg) < 1e-3
    # the same with pan360's own direction finder
    times = np.arange(0.1, 0.45, 0.05)
    track = foa_direction_track(eval_real.rotate_audio(encode_foa(s, -30.0, 0.0), 90.0), SR, times)
    assert all(_yaw_diff(y, 60.0) < 5.0 for y in track.yaw)
    assert np.all(np.abs(track.pitch) < 5.0)


def test_roll_shift_is_content_moving_right():
    assert eval_real.roll_shift(90, 128) == 32
    assert eval_real.roll_shift(100, 1920) == 533  # 99.94°
    assert eval_real.roll_shift(-140, 1920) == -747
    pic = np.zeros((4, 8), np.uint8)
    pic[:, 4] = 1  # column 4 of 8: yaw = (4.5 / 8 - 0.5) * 360 = 22.5
    assert int(np.argmax(eval_real.rotate_picture(pic, eval_real.roll_shift(90, 8))[0])) == 6  # 112.5


def _block_yaw(rgb: np.ndarray) -> float:
    """Yaw of the bright block's centroid (circular mean of its columns)."""
    w = rgb.shape[1]
    cols = rgb[..., 0].astype(np.float64).mean(axis=0)
    yaw = np.radians(((np.arange(w) + 0.5) / w - 0.5) * 360.0)
    return float(np.degrees(np.arctan2((cols * np.sin(yaw)).sum(), (cols * np.cos(yaw)).sum())))


def _write_block_clip(path: Path, yaw: float, *, width: int = 128, height: int = 64, fps: int = 30,
                      seconds: float = 1.0) -> None:
    """A full-360 clip with a bright block at ``yaw`` on the horizon and FOA noise from that yaw."""
    n = int(seconds * fps)
    pic = np.full((height, width, 3), 16, np.uint8)
    x0 = int(round((yaw / 360.0 + 0.5) * width - 0.5))
    cols = np.arange(x0 - 4, x0 + 5) % width
    pic[height // 2 - 5:height // 2 + 5][:, cols] = 235
    s = np.random.default_rng(5).standard_normal(int(seconds * SR)).astype(np.float32) * 0.2
    with VideoWriter(path, width, height, fps=Fraction(fps), duration=seconds, preset="ultrafast", crf=10,
                     audio=encode_foa(s, yaw, 0.0), sample_rate=SR, audio_bitrate=512_000) as w:
        for i in range(n):
            w.write(pic, i / fps)


def test_write_rotated_moves_picture_and_sound_right(tmp_path):
    src = tmp_path / "block.mp4"
    _write_block_clip(src, -30.0)
    frames = [rgb for _, rgb in iter_frames(probe(src), fmt="rgb24")]
    assert _yaw_diff(_block_yaw(frames[5]), -30.0) < 3.0
    outs = {"foa": tmp_path / "rot_foa.mp4", "mono": tmp_path / "rot_mono.mp4"}
    done = eval_real.write_rotated(src, 90.0, outs, preset="ultrafast", crf=10)
    assert done["shift_px"] == 32 and done["shift_deg"] == 90.0 and done["eye_size"] == [128, 64]

    info = probe(outs["foa"])
    assert (info.width, info.height, info.n_frames) == (128, 64, 30)
    assert info.audio.channels == 4 and info.audio.ambisonic == "ambix"  # pan360 reads it as FOA unasked
    rotated = [rgb for _, rgb in iter_frames(info, fmt="rgb24")]
    for i in (0, 15, 29):
        assert _yaw_diff(_block_yaw(rotated[i]), 60.0) < 3.0, i
    track = read_audio(info)
    direction = foa_direction_track(track.samples, track.sample_rate, info.frame_times[3:27])
    assert np.all([_yaw_diff(y, 60.0) < 8.0 for y in direction.yaw])
    assert _yaw_diff(_foa_yaw(track.samples), 60.0) < 3.0

    mono = probe(outs["mono"])
    assert mono.audio.channels == 1 and mono.audio.ambisonic is None
    w_rot, w_src = read_audio(mono).samples[0], read_audio(probe(src)).samples[0]
    n = min(w_rot.size, w_src.size)
    # the W channel, unrotated (omni); white noise through two AAC generations keeps ~0.92 correlation
    assert np.corrcoef(w_rot[:n], w_src[:n])[0, 1] > 0.85
    assert _yaw_diff(_block_yaw([rgb for _, rgb in iter_frames(mono, fmt="rgb24")][10]), 60.0) < 3.0


def test_absent_media_exits_2(tmp_path, capsys):
    assert eval_real.main(["--media", str(tmp_path / "absent"), "--workdir", str(tmp_path / "w")]) == 2
    assert "absent" in capsys.readouterr().err


@pytest.mark.skipif(not REAL360_FOA.is_dir(), reason="../shared/media/real360_foa is not available")
def test_real_annotations_name_readable_full_sphere_clips():
    clips = eval_real.load_annotations(REAL360_FOA)
    assert {"guitar19", "flute49"} <= set(clips)
    for name, clip in clips.items():
        info = probe(REAL360_FOA / clip["file"])
        assert info.audio is not None and info.audio.channels == 4, name
        assert info.eye_width in (1920,) and info.eye_height in (960, 1080), name
        times = [p[0] for p in clip["points"]]
        assert 0 <= min(times) and max(times) <= info.duration, name
    json.dumps(clips)  # plain data
