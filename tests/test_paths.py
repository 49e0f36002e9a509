"""Camera paths: validation, trajectory JSON v1 round trip, keyframe interpolation, ffmpeg export."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pan360 import sphere
from pan360.errors import Pan360Error
from pan360.paths import (CameraPath, constant_path, load_path, path_from_dict, resample_path, save_path,
                          to_ffmpeg_sendcmd)
from pan360.geometry import v_fov_for


def random_path(n: int = 50, seed: int = 0) -> CameraPath:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.uniform(0.02, 0.05, n))
    return CameraPath(t, rng.uniform(-180, 180, n), rng.uniform(-80, 80, n), rng.uniform(-30, 30, n),
                      rng.uniform(40, 120, n), rng.uniform(30, 90, n), 1920, 1080, 29.97)


def write(tmp_path: Path, doc) -> Path:
    f = tmp_path / "path.json"
    f.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return f


def test_validation_and_wrapping():
    p = CameraPath([0.0, 0.1], [190.0, -180.0], [0.0, 0.0], [0.0, 370.0], [90.0, 90.0], [60.0, 60.0], 640, 360, 10)
    assert np.allclose(p.yaw, [-170.0, 180.0]) and np.allclose(p.roll, [0.0, 10.0])
    with pytest.raises(Pan360Error, match="times"):
        CameraPath([0.0, 0.0], [0, 0], [0, 0], [0, 0], [90, 90], [60, 60], 640, 360, 10)
    with pytest.raises(Pan360Error):
        CameraPath([0.0], [0.0], [95.0], [0.0], [90.0], [60.0], 640, 360, 10)
    with pytest.raises(Pan360Error):
        CameraPath([0.0], [0.0], [0.0], [0.0], [180.0], [60.0], 640, 360, 10)
    with pytest.raises(Pan360Error):
        CameraPath([0.0, 1.0], [0.0], [0.0], [0.0], [90.0], [60.0], 640, 360, 10)
    with pytest.raises(Pan360Error):
        CameraPath([0.0], [np.nan], [0.0], [0.0], [90.0], [60.0], 640, 360, 10)
    with pytest.raises(Pan360Error):
        CameraPath([0.0], [0.0], [0.0], [0.0], [90.0], [60.0], 0, 360, 10)


def test_json_round_trip_per_frame(tmp_path):
    p = random_path()
    f = tmp_path / "traj.json"
    save_path(p, f)
    doc = json.loads(f.read_text())
    assert doc["version"] == 1 and doc["width"] == 1920 and doc["height"] == 1080 and doc["fps"] == 29.97
    assert [fr["index"] for fr in doc["frames"]] == list(range(len(p)))
    assert set(doc["frames"][0]) == {"index", "time", "yaw", "pitch", "roll", "h_fov", "v_fov"}
    q = resample_path(load_path(f), p.times)
    for key in ("yaw", "pitch", "roll", "h_fov", "v_fov"):
        diff = getattr(q, key) - getattr(p, key)
        if key in ("yaw", "roll"):
            diff = sphere.wrap_yaw(diff)
        assert np.abs(diff).max() < 1e-6, key
    assert np.abs(q.times - p.times).max() < 1e-6
    assert (q.width, q.height, q.fps) == (p.width, p.height, p.fps)


def test_optional_roll_vfov_and_index_only(tmp_path):
    doc = {"version": 1, "fps": 25, "width": 1920, "height": 1080,
           "frames": [{"index": 0, "yaw": 10, "pitch": 0, "h_fov": 90}, {"index": 50, "yaw": 20, "pitch": 0, "h_fov": 90}]}
    p = load_path(write(tmp_path, doc))
    assert np.allclose(p.times, [0.0, 2.0]) and np.allclose(p.roll, 0.0)
    assert np.allclose(p.v_fov, 58.7155, atol=1e-4)
    assert np.isclose(float(v_fov_for(90.0, 1080, 1920)), 2 * np.degrees(np.arctan(1920 / 1080)))


def test_keyframes_slerp_through_the_seam_and_linear_fov():
    kf = CameraPath([0.0, 1.0, 2.0], [170.0, -170.0, -170.0], [0.0, 0.0, 60.0], [0.0, 0.0, 20.0],
                    [60.0, 90.0, 90.0], [40.0, 60.0, 60.0], 1280, 720, 30)
    p = resample_path(kf, [-1.0, 0.5, 1.5, 3.0])
    assert abs(abs(p.yaw[1]) - 180.0) < 1e-6 and abs(p.pitch[1]) < 1e-9  # through 180, not 0
    assert np.isclose(p.pitch[2], 30.0) and np.isclose(p.yaw[2], -170.0)  # great circle midpoint
    assert np.isclose(p.h_fov[1], 75.0) and np.isclose(p.v_fov[1], 50.0) and np.isclose(p.roll[2], 10.0)
    assert np.isclose(p.yaw[0], 170.0) and np.isclose(p.h_fov[0], 60.0)  # held before the first
    assert np.isclose(p.pitch[3], 60.0) and np.isclose(p.roll[3], 20.0)  # and after the last
    # Direction interpolation is uniform in angle (slerp): a quarter of the way is a quarter of 20°.
    q = resample_path(kf, [0.25])
    assert np.isclose(q.yaw[0], 175.0)


def test_keyframes_roll_short_way_and_antipodes():
    kf = CameraPath([0.0, 1.0], [0.0, 180.0], [0.0, 0.0], [170.0, -170.0], [90.0, 90.0], [60.0, 60.0], 640, 360, 30)
    p = resample_path(kf, np.linspace(0, 1, 11))
    assert np.all(np.isfinite(p.yaw)) and np.all(np.isfinite(p.pitch))
    assert np.isclose(abs(p.roll[5]), 180.0)
    assert np.isclose(p.yaw[5], 90.0)  # documented choice for opposite keyframes: turn right
    steps = sphere.vec_angle(p.directions()[:-1], p.directions()[1:])
    assert np.allclose(steps, 18.0)


def test_single_keyframe_and_constant_path():
    kf = constant_path([0.0], 30.0, -10.0, 80.0, 1280, 720, 30.0)
    p = resample_path(kf, np.arange(5) / 30)
    assert len(p) == 5 and np.allclose(p.yaw, 30.0) and np.allclose(p.pitch, -10.0)
    assert np.allclose(p.v_fov, float(v_fov_for(80.0, 1280, 720)))


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"fps": 30, "width": 10, "height": 10, "frames": []}', "version"),
    ('{"version": 2, "fps": 30, "width": 10, "height": 10, "frames": []}', "version 2"),
    ('{"version": 1, "width": 10, "height": 10, "frames": []}', "'fps'"),
    ('{"version": 1, "fps": 30, "width": 10, "height": 10, "frames": []}', "non-empty"),
    ('{"version": 1, "fps": 30, "width": 10.5, "height": 10, "frames": [{"time": 0, "yaw": 0, "pitch": 0, "h_fov": 90}]}', "width"),
    ('{"version": 1, "fps": 30, "width": 10, "height": 10, "frames": [{"time": 0, "pitch": 0, "h_fov": 90}]}', "'yaw'"),
    ('{"version": 1, "fps": 30, "width": 10, "height": 10, "frames": [{"yaw": 0, "pitch": 0, "h_fov": 90}]}', "'time'"),
    ('{"version": 1, "fps": 30, "width": 10, "height": 10, "frames": [{"time": 0, "yaw": "a", "pitch": 0, "h_fov": 90}]}', "number"),
    ('{"version": 1, "fps": 30, "width": 10, "height": 10, "frames": [{"time": 0, "yaw": 0, "pitch": 0, "h_fov": 190}]}', "h_fov"),
    ('{"version": 1, "fps": 30, "width": 10, "height": 10, "frames": [{"time": 1, "yaw": 0, "pitch": 0, "h_fov": 90},'
     ' {"time": 1, "yaw": 0, "pitch": 0, "h_fov": 90}]}', "increase"),
])
def test_malformed_json_errors(tmp_path, text, message):
    with pytest.raises(Pan360Error, match=message) as info:
        load_path(write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(Pan360Error, match="cannot read"):
        load_path(tmp_path / "absent.json")
    with pytest.raises(Pan360Error):
        path_from_dict({"version": True, "fps": 30, "width": 1, "height": 1, "frames": []})


def test_sendcmd_text():
    p = CameraPath([0.0, 0.1, 0.2], [0.0, 90.0, 90.0], [0.0, 20.0, 20.0], [0.0, 0.0, 0.0],
                   [90.0, 90.0, 90.0], [58.7155, 58.7155, 58.7155], 64, 36, 10)
    lines = to_ffmpeg_sendcmd(p).splitlines()
    body = [ln for ln in lines if not ln.startswith("#")]
    assert body[0].startswith("0.000000 v360 yaw 0.0000, v360 pitch 0.0000, v360 roll 0.0000")
    assert body[1] == "0.100000 v360 yaw 90.0000, v360 pitch 20.0000;"
    assert len(body) == 2  # nothing changes at 0.2 s


def test_sendcmd_replays_in_ffmpeg(tmp_path):
    """Absolute angles: the sendcmd-driven v360 matches a static v360 at the same angles."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    ff = imageio_ffmpeg.get_ffmpeg_exe()
    p = CameraPath([0.0, 0.1, 0.2], [0.0, 90.0, 90.0], [0.0, 20.0, 20.0], [0.0, 0.0, 0.0],
                   [90.0, 90.0, 90.0], [58.7155, 58.7155, 58.7155], 64, 36, 10)
    cmd = tmp_path / "path.cmd"
    cmd.write_text(to_ffmpeg_sendcmd(p))

    def run(vf: str) -> np.ndarray:
        out = subprocess.run([ff, "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=256x128:r=10:d=0.3", "-vf", vf,
                              "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True,
                             cwd=tmp_path).stdout
        return np.frombuffer(out, np.uint8).reshape(-1, 36, 64, 3).astype(int)

    size = "w=64:h=36:h_fov=90:v_fov=58.7155"
    moving = run(f"sendcmd=f=path.cmd,v360=e:flat:reset_rot=1:{size}")
    static = run(f"v360=e:flat:yaw=90:pitch=20:{size}")
    assert len(moving) == 3
    assert np.abs(moving[1] - static[1]).mean() < 0.5 and np.abs(moving[2] - static[2]).mean() < 0.5
    assert np.abs(moving[0] - static[0]).mean() > 10  # frame 0 looks elsewhere


def test_keyframe_interpolation_ease_linear_cut(tmp_path):
    doc = {"version": 1, "fps": 30, "width": 640, "height": 360, "frames": [
        {"time": 0.0, "yaw": 0.0, "pitch": 0.0, "h_fov": 90.0},
        {"time": 2.0, "yaw": 60.0, "pitch": 0.0, "h_fov": 60.0},  # eased (the default)
        {"time": 4.0, "yaw": 120.0, "pitch": 0.0, "h_fov": 60.0, "interp": "linear"},
        {"time": 5.0, "yaw": -90.0, "pitch": 20.0, "h_fov": 60.0, "interp": "cut"}]}
    kf = load_path(write(tmp_path, doc))
    assert kf.interp == ("ease", "ease", "linear", "cut")
    t = np.arange(0, 6.0, 1 / 300)
    p = resample_path(kf, t)
    speed = sphere.vec_angle(p.directions()[:-1], p.directions()[1:]) * 300  # °/s between samples
    at = lambda s: int(round(s * 300))  # noqa: E731
    # eased: starts and stops at rest, so the speed is continuous at an eased keyframe
    assert speed[at(0.0)] < 0.5 and speed[at(2.0) - 1] < 0.5  # (a linear segment leaves at its own speed)
    assert abs(speed[at(1.0)] - 1.5 * 60 / 2) < 0.2  # smoothstep peaks at 1.5x the mean speed
    assert np.isclose(p.h_fov[at(1.0)], 75.0)  # FOV eased alike: halfway at the middle
    # linear: 60° in 2 s at a constant 30°/s
    assert np.allclose(speed[at(2.0) + 1:at(4.0) - 1], 30.0, atol=0.05)
    # cut: held until 5 s, then the new view
    assert np.isclose(p.yaw[at(4.99)], 120.0) and np.isclose(p.yaw[at(5.0)], -90.0) and np.isclose(p.pitch[at(5.5)], 20.0)
    # round trip: a keyframe path saved keeps its interp; a per-frame path is written as linear
    save_path(kf, tmp_path / "kf.json")
    again = load_path(tmp_path / "kf.json")
    assert again.interp == kf.interp and np.allclose(again.yaw, kf.yaw)
    save_path(p, tmp_path / "frames.json")
    assert load_path(tmp_path / "frames.json").interp is None
    doc["frames"][1]["interp"] = "bounce"
    with pytest.raises(Pan360Error, match="interp"):
        load_path(write(tmp_path, doc))
