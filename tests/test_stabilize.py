"""Stabilisation from the camera's own motion data (pan360.stabilize), end to end on a generated clip.

The clip is filmed by a camera that turns 90° to the right over 3 s while rolling ±20° and pitching
±8°; a GPMF track (CORI orientation + GRAV gravity, as a GoPro writes them) says so. The world holds a
level horizon (sky above, ground below) and a red marker that is also the only sound (FOA) at world
yaw 40, pitch 25. Everything is measured on the rendered pictures.
"""

from __future__ import annotations

import json
import math
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pan360 import geometry, pipeline, projections, sphere
from pan360.media import motion as M
from pan360.media import probe
from pan360.metrics import in_view
from pan360.spatial import encode_foa
from pan360.stabilize import choose_stabilization, level_rotations, rotate_maps
from tests.test_motion import _klv, _nest, _to_cori

W, H, FPS, SECONDS, SR = 512, 256, 10, 3.0, 48000
MARKER = (40.0, 25.0)  # world yaw, pitch of the red marker and of the sound
OUT_W, OUT_H, FOV = 320, 180, 90.0
FOCAL = OUT_W / 2 / math.tan(math.radians(FOV / 2))  # output pixels per unit on the image plane


def camera_angles(t):
    """The camera's v360 yaw, pitch, roll (degrees) in the world at time(s) t."""
    t = np.asarray(t, dtype=np.float64)
    return 90.0 * t / SECONDS, 8.0 * np.sin(2 * np.pi * t / 2.0), 20.0 * np.sin(2 * np.pi * t / 1.5)


def camera_matrix(t: float) -> np.ndarray:
    return geometry.rotation_matrix(*(float(a) for a in camera_angles(t)))


def world_picture(world_dirs: np.ndarray) -> np.ndarray:
    """RGB of world directions (..., 3): sky over ground with a soft 1° horizon, the red marker disc."""
    elev = np.degrees(np.arcsin(np.clip(world_dirs[..., 2], -1, 1)))
    sky = 1.0 / (1.0 + np.exp(-elev / 0.35))
    rgb = (np.array([60.0, 50.0, 40.0]) * (1 - sky)[..., None] + np.array([150.0, 190.0, 240.0]) * sky[..., None])
    ang = np.degrees(np.arccos(np.clip(world_dirs @ sphere.dir_to_vec(*MARKER), -1, 1)))
    disc = np.clip(8.0 - ang, 0.0, 1.0)[..., None]
    rgb = rgb * (1 - disc) + np.array([220.0, 30.0, 30.0]) * disc
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def gpmf_second(ts: np.ndarray) -> bytes:
    """One GPMF payload with CORI and GRAV samples at times ``ts``."""
    q = M.quat_normalize(np.stack([M.quat_from_matrix(camera_matrix(t)) for t in ts]))
    cori = np.round(_to_cori(q) * 32767).astype(">i2")
    down = np.stack([camera_matrix(t).T @ [0.0, 0.0, -1.0] for t in ts])
    grav = np.round((down @ M.GOPRO_CORI_TO_PAN360) * 32767).astype(">i2")
    scal = _klv("SCAL", "s", 2, struct.pack(">h", 32767))
    return _nest("DEVC", _klv("DVNM", "c", 1, b"Test"),
                 _nest("STRM", scal, _klv("CORI", "s", 8, cori.tobytes())),
                 _nest("STRM", scal, _klv("GRAV", "s", 6, grav.tobytes())))


def write_moving_camera_clip(path: Path, *, gpmf: bool = True, damaged: bool = False) -> Path:
    n = int(SECONDS * FPS)
    cam_dirs = projections.pixel_grid_dirs("equirect", W, H)
    t_audio = np.arange(int(SECONDS * SR)) / SR
    # the sound at the marker, as the moving camera's microphones hear it
    y, p, r = camera_angles(t_audio)
    mats = np.stack([geometry.rotation_matrix(a, b, c) for a, b, c in zip(y[::48], p[::48], r[::48])])
    mats = np.repeat(mats, 48, axis=0)[: len(t_audio)]
    src = np.einsum("nji,j->ni", mats, sphere.dir_to_vec(*MARKER))  # R(t)^T s
    yaw_c, pitch_c = sphere.vec_to_dir(src)
    rng = np.random.default_rng(0)
    noise = np.convolve(rng.standard_normal(len(t_audio)), np.ones(4) / 4, mode="same")
    foa = encode_foa(0.3 * noise, yaw_c, pitch_c)
    with av.open(str(path), "w") as c:
        video = c.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        video.options = {"crf": "12", "preset": "ultrafast"}
        audio = c.add_stream("aac", rate=SR, layout="4.0")
        data = c.add_data_stream("bin_data") if gpmf else None  # MP4: a 'gpmd' track, "GoPro MET"
        if data is not None:
            data.time_base = Fraction(1, 1000)
        for i in range(n):
            world = cam_dirs @ camera_matrix(i / FPS).T
            frame = av.VideoFrame.from_ndarray(world_picture(world), format="rgb24")
            frame.pts = i
            for pk in video.encode(frame):
                c.mux(pk)
            if data is not None and i % FPS == 0:
                payload = gpmf_second(np.arange(i, i + FPS) / FPS)
                pk = av.Packet(payload[: len(payload) // 2] if damaged else payload)
                pk.stream, pk.time_base = data, data.time_base
                pk.pts = pk.dts = i * 100
                pk.duration = 1000
                c.mux(pk)
        for a in range(0, foa.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(foa[:, a:a + 1024]), format="fltp", layout="4.0")
            frame.sample_rate, frame.pts = SR, a
            for pk in audio.encode(frame):
                c.mux(pk)
        for pk in [*video.encode(None), *audio.encode(None)]:
            c.mux(pk)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_moving_camera_clip(tmp_path_factory.mktemp("stab") / "moving.mp4")


def fixed_path(tmp: Path, frame: str, yaw: float, pitch: float) -> Path:
    f = tmp / f"fixed_{frame}.json"
    f.write_text(json.dumps({"version": 1, "fps": FPS, "width": OUT_W, "height": OUT_H, "frame": frame,
                             "frames": [{"time": 0.0, "yaw": yaw, "pitch": pitch, "h_fov": FOV}]}))
    return f


def decoded_rgb(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


def horizon_line(rgb: np.ndarray) -> tuple[float, float]:
    """(tilt of the horizon in degrees, pitch of the view in degrees) measured on an output picture: per
    column, the row where the luma crosses midway from ground to sky (scanning up from the bottom,
    sub-pixel), then a least-squares line (a level horizon through the centre: (0, 0))."""
    luma = rgb.astype(np.float64) @ [0.299, 0.587, 0.114]
    thr = 0.5 * (54.0 + 183.0)
    xs, ys = [], []
    for x in range(10, rgb.shape[1] - 10, 4):
        col = luma[::-1, x]  # bottom up
        k = int(np.argmax(col > thr))
        if k == 0 or col[k] <= thr:
            continue
        frac = (thr - col[k - 1]) / (col[k] - col[k - 1])
        xs.append(x)
        ys.append(rgb.shape[0] - 1 - (k - 1 + frac))
    a, b = np.polyfit(xs, ys, 1)
    cx, cy = (rgb.shape[1] - 1) / 2, (rgb.shape[0] - 1) / 2
    tilt = math.degrees(math.atan(a))
    pitch = math.degrees(math.atan((a * cx + b - cy) / FOCAL))  # horizon below the centre: looking up
    return tilt, -pitch


def marker_offset(rgb: np.ndarray) -> float:
    """Degrees between the view centre and the red marker's centroid."""
    r, g, b = (rgb[..., k].astype(int) for k in range(3))
    ys, xs = np.nonzero((r > 150) & (g < 110) & (b < 110))
    assert len(xs) > 100, "the marker is not in view"
    dx, dy = xs.mean() - (rgb.shape[1] - 1) / 2, ys.mean() - (rgb.shape[0] - 1) / 2
    return math.degrees(math.atan(math.hypot(dx, dy) / FOCAL))


def test_motion_of_the_generated_clip(clip):
    motion = M.read_camera_motion(clip)
    assert motion is not None and motion.source == "gpmf-cori" and motion.n_samples == 30
    np.testing.assert_allclose(motion.times, np.arange(30) / FPS, atol=1e-6)
    y, p, r = M.quat_to_ypr(motion.quaternions)
    ty, tp, tr = camera_angles(motion.times)
    np.testing.assert_allclose(y, ty, atol=0.05)
    np.testing.assert_allclose(p, tp, atol=0.05)
    np.testing.assert_allclose(r, tr, atol=0.05)
    stab, note = choose_stabilization(probe(clip))
    assert stab.mode == "level" and "levelled" in note


def test_level_output_has_a_level_horizon(clip, tmp_path):
    tilts = {}
    for frame in ("camera", "level"):
        out = tmp_path / f"{frame}.mp4"
        res = pipeline.render(clip, out, path=fixed_path(tmp_path, frame, 0.0, 0.0), preset="ultrafast")
        assert res.path.frame == frame
        lines = [horizon_line(rgb) for rgb in decoded_rgb(out)]
        tilts[frame] = np.array([t for t, _ in lines])
        if frame == "level":
            pitches = np.array([p for _, p in lines])
            assert np.abs(tilts[frame]).max() < 1.0, tilts[frame]
            assert np.abs(pitches).max() < 1.0, pitches
    assert np.abs(tilts["camera"]).max() > 15.0  # unstabilised, the horizon rolls with the camera


def test_world_output_holds_a_world_direction_still(clip, tmp_path):
    out = tmp_path / "world.mp4"
    pipeline.render(clip, out, path=fixed_path(tmp_path, "world", *MARKER), preset="ultrafast")
    frames = decoded_rgb(out)
    offsets = np.array([marker_offset(rgb) for rgb in frames])
    assert offsets.max() < 1.0, offsets
    assert np.abs([horizon_line(rgb)[0] for rgb in frames]).max() < 1.0
    # a level view follows the camera's heading: the marker leaves it as the camera turns away
    lev = tmp_path / "level.mp4"
    pipeline.render(clip, lev, path=fixed_path(tmp_path, "level", *MARKER), preset="ultrafast")
    frames = decoded_rgb(lev)
    assert marker_offset(frames[0]) < 1.0
    r, g = frames[-1][..., 0].astype(int), frames[-1][..., 1].astype(int)
    assert np.count_nonzero((r > 150) & (g < 110)) < 100


def test_world_foa_source_stays_in_view_without_the_camera_moving(clip, tmp_path):
    world = pipeline.analyse(clip, saliency="foa", stabilize="world")
    assert world.stabilization.mode == "world" and world.path.frame == "world"
    assert in_view(world.path, *MARKER).all()
    err = sphere.angular_distance(world.path.yaw, world.path.pitch, *MARKER)
    assert np.median(err) < 5.0
    # the planner settles from its soft start (the initial view, yaw 0) within a second, then holds still
    last = world.path.yaw[-1], world.path.pitch[-1]
    spread = sphere.angular_distance(world.path.yaw, world.path.pitch, *last)
    assert spread.max() < 5.0 and spread[FPS:].max() < 0.5, spread
    camera = pipeline.analyse(clip, saliency="foa", stabilize="off")  # the source turns 90° in the picture
    moved = sphere.angular_distance(camera.path.yaw, camera.path.pitch, camera.path.yaw[0], camera.path.pitch[0])
    assert moved.max() > 25.0


def test_a_world_path_replays_identically(clip, tmp_path):
    first = tmp_path / "a.mp4"
    traj = tmp_path / "a.json"
    res = pipeline.render(clip, first, saliency="foa", stabilize="world", trajectory_out=traj, preset="ultrafast")
    doc = json.loads(traj.read_text())
    assert doc["frame"] == "world"
    again = tmp_path / "b.mp4"
    rep = pipeline.render(clip, again, path=traj, preset="ultrafast")
    assert rep.path.frame == "world"
    for k in ("yaw", "pitch", "roll", "h_fov"):
        np.testing.assert_allclose(getattr(rep.path, k), getattr(res.path, k), atol=2e-6)
    a, b = decoded_rgb(first), decoded_rgb(again)
    assert len(a) == len(b)
    assert max(np.abs(x.astype(int) - y.astype(int)).mean() for x, y in zip(a, b)) < 0.5
    with pytest.raises(Exception, match="world frame"):
        pipeline.render(clip, tmp_path / "c.mp4", path=traj, stabilize="off")


def test_stabilize_needs_motion_and_off_changes_nothing(tmp_path):
    plain = write_moving_camera_clip(tmp_path / "plain.mp4", gpmf=False)
    info = probe(plain)
    stab, note = choose_stabilization(info)
    assert stab.mode == "off" and not stab.active and note is None
    with pytest.raises(Exception, match="records none"):
        choose_stabilization(info, "level")
    assert stab.camera_view(0, geometry.View(10.0, 5.0, 0.0, 90.0, 60.0)) == geometry.View(10.0, 5.0, 0.0, 90.0, 60.0)


def test_rotate_maps_and_level_rotations():
    # a map peak at camera (yaw 30, pitch 0) seen by a camera turned 30° right is at world yaw 60
    m = np.zeros((1, 64, 128), np.float32)
    yaw, pitch = sphere.equirect_angles(128, 64)
    d = sphere.angular_distance(yaw[None, :], pitch[:, None], 30.0, 0.0)
    m[0] = np.exp(-(d / 6.0) ** 2)
    r = geometry.rotation_matrix(30.0, 0.0, 0.0)[None]
    out = rotate_maps(m, r)
    i = np.unravel_index(np.argmax(out[0]), out[0].shape)
    assert abs(yaw[i[1]] - 60.0) < 2.0 and abs(pitch[i[0]]) < 2.0
    # level: heading removed, roll and pitch kept out
    world = np.stack([camera_matrix(t) for t in (0.3, 1.1, 2.9)])
    lev = level_rotations(world)
    for k, t in enumerate((0.3, 1.1, 2.9)):
        y, p, r_ = geometry.matrix_to_ypr(lev[k])
        assert abs(y) < 1e-9 and abs(p - camera_angles(t)[1]) < 1e-9 and abs(r_ - camera_angles(t)[2]) < 1e-9
    q = M.quat_from_matrix(world[1])
    np.testing.assert_allclose(M.quat_to_matrix(q), world[1], atol=1e-12)


def test_cli_stabilize_and_info(clip, tmp_path):
    from tests.test_cli import assert_one_line_error, run_cli

    shown = run_cli("info", clip).stdout
    assert "camera motion  GoPro GPMF orientation (CORI), 30 samples" in shown
    out = tmp_path / "o.mp4"
    proc = run_cli("render", clip, "-o", out, "--path", fixed_path(tmp_path, "camera", 0.0, 0.0),
                   "--stabilize", "world", check=False)
    assert_one_line_error(proc, "camera frame", "--stabilize world")
    assert not out.exists()
    proc = run_cli("render", clip, "-o", out, "--saliency", "foa", "--size", "160x90", "--preset", "ultrafast")
    assert "horizon levelled" in proc.stderr and out.exists()


def test_rotated_foa_turns_the_field_with_the_camera():
    from pan360.signal import ArraySignal
    from pan360.spatial.ambisonics import RotatedFOA

    sr = 8000
    s = np.random.default_rng(3).standard_normal(2 * sr).astype(np.float32)
    foa = encode_foa(s, 30.0, 10.0)  # heard by the camera at yaw 30, pitch 10
    # the camera turns from yaw 0 to yaw 40 (right) over 2 s, one rotation per 30 fps frame: the
    # source's world yaw goes 30 -> 70
    times = np.arange(61) / 30.0
    rots = np.stack([geometry.rotation_matrix(20.0 * t, 0.0, 0.0) for t in times])
    out = RotatedFOA(ArraySignal(foa, sr), times, rots)
    for start, want in ((0, 30.0), (sr - 1, 50.0), (2 * sr - 1, 70.0)):
        w, y, z, x = out.read(start, start + 1)[:, 0]
        yaw, pitch = sphere.vec_to_dir([x * w, y * w, z * w])
        assert abs(yaw - want) < 0.1 and abs(pitch - 10.0) < 0.1, (start, yaw, pitch)
    np.testing.assert_array_equal(out.read(0, 100)[0], foa[0, :100])  # W is untouched


def test_a_damaged_motion_track_is_said_and_not_fatal(tmp_path):
    clip = write_moving_camera_clip(tmp_path / "damaged.mp4", damaged=True)
    stab, note = choose_stabilization(probe(clip))
    assert stab.mode == "off" and "damaged" in note and "not stabilised" in note
    with pytest.raises(Exception, match="damaged"):
        choose_stabilization(probe(clip), "level")  # asked for explicitly: refused
    from pan360.stabilize import describe_motion

    assert describe_motion(probe(clip)).startswith("unreadable")


def test_a_tilted_spherical_pose_is_levelled(tmp_path):
    from tests.test_media import inject_spherical, write_clip

    clip = tmp_path / "posed.mp4"
    write_clip(clip, size=(256, 128), pts=[0, 1, 2])
    inject_spherical(clip, None, b"equi", pose=(0.0, 20.0, 0.0))
    info = probe(clip)
    stab, note = choose_stabilization(info)
    assert stab.mode == "level" and stab.source == "prhd" and "pose" in note
    # the level frame's horizon ahead is the picture's pitch -20 (ffmpeg: a positive pose pitch turns the
    # sphere in front of the viewer up, so the picture shows the horizon 20 degrees low)
    v = stab.camera_view(0, geometry.View(0.0, 0.0, 0.0, 90.0, 60.0))
    assert abs(v.yaw) < 1e-9 and abs(v.pitch + 20.0) < 1e-9
    a = pipeline.analyse(clip, saliency="none")
    assert a.path.frame == "level" and np.allclose(a.path.pitch, 0.0)  # starts level, not at the pose again


def test_a_given_path_refuses_the_planning_options(clip, tmp_path):
    with pytest.raises(Exception, match="--zoom shape a planned camera"):
        pipeline.analyse(clip, path=fixed_path(tmp_path, "camera", 0.0, 0.0), zoom=True)
