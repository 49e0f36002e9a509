"""Camera orientation from motion metadata (pan360.media.motion): GPMF and CAMM parsing, the
gyro + accelerometer filter, and the real GoPro samples."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from pan360.media import motion as M

CAMERA_METADATA = Path(__file__).resolve().parents[2] / "shared" / "media" / "camera_metadata"


def _klv(key: str, type_char: str, size: int, payload: bytes) -> bytes:
    repeat = len(payload) // size if size else 0
    head = key.encode() + (type_char.encode() if type_char != "\0" else b"\0") + struct.pack(">BH", size, repeat)
    return head + payload + b"\0" * ((-len(payload)) % 4)


def _nest(key: str, *items: bytes) -> bytes:
    body = b"".join(items)
    return key.encode() + b"\0" + struct.pack(">BH", 4, len(body) // 4) + body


def _yaw_quats(yaw_deg: np.ndarray, pitch_deg: float = 0.0) -> np.ndarray:
    """camera → world quaternions (pan360 axes) of a camera turning right by yaw, tilted by pitch."""
    qz = M.quat_from_rotvec(np.stack([0 * yaw_deg, 0 * yaw_deg, -np.radians(yaw_deg)], axis=-1))
    qy = M.quat_from_rotvec([0.0, -np.radians(pitch_deg), 0.0])
    return M.quat_mul(qz, qy)


def _to_cori(q_pan: np.ndarray) -> np.ndarray:
    """The inverse of gopro_quats_to_pan360."""
    v = q_pan[..., 1:] @ M.GOPRO_CORI_TO_PAN360  # pan → CORI axes (orthogonal matrix)
    return M.quat_conj(np.concatenate([q_pan[..., :1], v], axis=-1))


def test_gpmf_payload_known_rotation():
    yaw = np.linspace(0.0, 45.0, 30)
    q = _yaw_quats(yaw)
    cori = np.round(_to_cori(q) * 32767).astype(">i2")
    down_pan = M.quat_rotate(M.quat_conj(q), np.broadcast_to([0.0, 0.0, -1.0], (30, 3)))
    grav = np.round((down_pan @ M.GOPRO_CORI_TO_PAN360) * 32767).astype(">i2")
    payload = _nest("DEVC", _klv("DVNM", "c", 1, b"Test cam"),
                    _nest("STRM", _klv("STNM", "c", 1, b"CameraOrientation"), _klv("SCAL", "s", 2, struct.pack(">h", 32767)),
                          _klv("TSMP", "L", 4, struct.pack(">I", 30)), _klv("CORI", "s", 8, cori.tobytes())),
                    _nest("STRM", _klv("SCAL", "s", 2, struct.pack(">h", 32767)), _klv("GRAV", "s", 6, grav.tobytes())))
    streams = M.parse_gpmf(payload)
    assert [s.key for s in streams] == ["CORI", "GRAV"]
    assert streams[0].device == "Test cam" and streams[0].tsmp == 30
    assert streams[0].samples.shape == (30, 4)
    # two packets of one second each
    motion = M._gpmf_motion([(0.0, 1.0, payload), (1.0, 1.0, payload)], 0.0)
    assert motion.source == "gpmf-cori" and motion.n_samples == 60
    np.testing.assert_allclose(motion.times[:3], [0.0, 1 / 30, 2 / 30])
    y, p, r = M.quat_to_ypr(motion.quaternions[:30])
    np.testing.assert_allclose(y, yaw, atol=0.05)
    np.testing.assert_allclose(p, 0.0, atol=0.05)
    np.testing.assert_allclose(r, 0.0, atol=0.05)
    assert M.gravity_angle(motion).max() < 0.1


def test_gpmf_complex_type_and_fixed_point():
    rec = struct.pack(">4sf", b"SNOW", 0.25)
    items = list(M.iter_klv(_nest("STRM", _klv("TYPE", "c", 1, b"Ff"), _klv("SCEN", "?", 8, rec * 2),
                                  _klv("QVAL", "q", 4, struct.pack(">i", 3 * 65536 // 2)))))
    inner = list(M.iter_klv(items[0].payload))
    assert M._expand_type("f[3]L") == "fffL"
    vals = M.gpmf_values(inner[1], "Ff")
    assert vals.shape == (2, 2) and np.isnan(vals[0, 0]) and vals[0, 1] == 0.25
    assert M.gpmf_values(inner[2])[0, 0] == 1.5


def test_camm_packets_orientation_and_imu():
    rv = np.array([0.0, -0.3, 0.0])  # CAMM axes: rotation about up (y) by -0.3 rad = turn right
    pkt = M.camm_packet(0, rv)
    assert M.parse_camm_packet(pkt) == [(0, tuple(np.float32(rv).astype(float)))]
    gps = struct.pack("<HHddd", 0, 5, 1.0, 2.0, 3.0)
    assert M.parse_camm_packet(gps) == [(5, (1.0, 2.0, 3.0))]
    still = M.camm_packet(0, [0.0, 0.0, 0.0])
    motion = M._camm_motion([(0.5, 0.0, still), (0.6, 0.0, pkt), (0.6, 0.0, M.camm_packet(3, [0.0, 9.81, 0.0]))], 0.5)
    assert motion.source == "camm" and motion.times[0] == 0.0
    y, p, _ = M.quat_to_ypr(motion.quaternions)
    # levelled and zero-headed like GPMF: the first sample looks at yaw 0, the turn is relative to it
    assert abs(y[0]) < 1e-9 and abs(y[1] - np.degrees(0.3)) < 1e-3 and abs(p[1]) < 1e-3
    assert M.gravity_angle(motion)[0] < 1e-3  # accel up along CAMM y = world up, no tilt
    # gyro + accel only: a constant right turn
    t = np.arange(0, 2.0, 0.01)
    packets = [(s, 0.0, M.camm_packet(2, [0.0, -0.5, 0.0]) + M.camm_packet(3, [0.0, 9.81, 0.0])) for s in t]
    imu = M._camm_motion(packets, 0.0)
    assert imu.source == "camm-imu"
    y, _, _ = M.quat_to_ypr(imu.quaternions)
    assert abs(y[-1] - np.degrees(0.5 * t[-1])) < 0.5


def test_complementary_filter_recovers_yaw_rate_and_tilt():
    dt, rate, tilt = 1 / 400, np.radians(30.0), 15.0  # 30°/s right turn, camera pitched down 15°
    t = np.arange(0, 6.0, dt)
    truth = _yaw_quats(np.degrees(rate) * t, -tilt)
    # body rates: the world rotation about z expressed in the camera frame
    w_world = np.array([0.0, 0.0, -rate])
    gyro = M.quat_rotate(M.quat_conj(truth), np.broadcast_to(w_world, (len(t), 3)))
    rng = np.random.default_rng(0)
    gyro = gyro + rng.normal(0, 0.01, gyro.shape)
    accel = M.quat_rotate(M.quat_conj(truth), np.broadcast_to([0.0, 0.0, 9.81], (len(t), 3)))
    accel = accel + rng.normal(0, 0.3, accel.shape)
    q, down = M.complementary_filter(t, gyro, t[::2], accel[::2])
    err = np.degrees(np.linalg.norm(M.quat_to_rotvec(M.quat_mul(M.quat_conj(truth), q)), axis=1))
    assert np.median(err) < 3.0 and err.max() < 5.0
    y, p, r = M.quat_to_ypr(q)
    assert abs(p[-1] + tilt) < 2.0 and abs(r[-1]) < 2.0
    assert np.all(np.abs(down[:, 2]) > 0.9)  # gravity mostly along -z of a camera pitched 15°


def test_orientation_at_slerps_and_clamps():
    q = _yaw_quats(np.array([0.0, 90.0]))
    motion = M.CameraMotion(np.array([0.0, 1.0]), q, "test")
    y, _, _ = M.quat_to_ypr(M.orientation_at(motion, [-1.0, 0.5, 2.0]))
    np.testing.assert_allclose(y, [0.0, 45.0, 90.0], atol=1e-9)


def _sample(name: str) -> Path:
    p = CAMERA_METADATA / name
    if not p.is_file():
        pytest.skip("../shared/media/camera_metadata is not available")
    return p


def test_gopro_max_cori_matches_frames_and_gravity():
    import av

    path = _sample("gopro_max-heromode.mp4")
    motion = M.read_camera_motion(path)
    assert motion is not None and motion.source == "gpmf-cori"
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        pts = sorted(float(p.pts * v.time_base) for p in c.demux(v) if p.pts is not None)
    frames = np.array(pts) - pts[0]
    assert abs(motion.n_samples - len(frames)) <= 3
    n = min(len(frames), motion.n_samples)
    assert np.abs(motion.times[:n] - frames[:n]).max() < 0.02
    np.testing.assert_allclose(np.linalg.norm(motion.quaternions, axis=1), 1.0, atol=1e-9)
    ang = M.gravity_angle(motion)
    assert np.median(ang) < 1.0 and ang.max() < 3.0
    assert motion.image_quaternions is not None and motion.image_quaternions.shape == motion.quaternions.shape
    # the camera is upright, looking slightly down (hand-held)
    _, pitch, roll = M.quat_to_ypr(motion.quaternions)
    assert np.all(np.abs(roll) < 20) and np.all(pitch < 5)


def test_gopro_hero5_gyro_accel_orientation():
    motion = M.read_camera_motion(_sample("gopro_karma.mp4"))
    assert motion is not None and motion.source == "gpmf-imu"
    assert 300 < motion.extras["gyro_rate"] < 450
    assert motion.times[-1] > 12.0
    ang = M.gravity_angle(motion)
    assert np.median(ang) < 5.0


def test_file_without_motion_metadata(tmp_path):
    from tests.conftest import write_drum_clip

    clip = write_drum_clip(tmp_path / "c.mp4", width=64, height=32, duration=0.2, sounding_until=0.1)
    assert M.read_camera_motion(clip) is None
