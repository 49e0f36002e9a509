"""Camera orientation from a file's own motion metadata: GoPro GPMF and Google CAMM.

Read by the project's own code: PyAV demuxes the metadata track, this module parses the bytes
(GPMF KLV, CAMM packets) and, for files with only a gyroscope and an accelerometer, fuses them with a
complementary filter.

Conventions
-----------
Every orientation here is a unit quaternion ``(w, x, y, z)`` that rotates vectors from the
**camera frame** to the **world frame**, both in pan360's axes (:mod:`pan360.sphere`): x forward (the
centre of the picture, yaw 0 pitch 0), y left, z up. So ``quat_rotate(q, [1, 0, 0])`` is where the
camera looks in the world, and a direction ``v`` seen by the camera (``sphere.dir_to_vec(yaw, pitch)``
of a pixel) is ``quat_rotate(q, v)`` in the world. The world frame is **level** (z against gravity)
whenever gravity is known (GRAV, accelerometer), and its x axis is the camera's heading at the first
sample (the world yaw of the first sample is 0). In pan360's angles a camera whose orientation is
``q`` has yaw positive to the right, pitch up and roll as ffmpeg v360: :func:`quat_to_ypr` gives
``(yaw, pitch, roll)`` in degrees such that rendering the world at the camera's own direction is the
v360 view ``yaw/pitch/roll``.

Source axes, mapped onto pan360's by constant matrices (rows: pan360 x, y, z in source components):

- GoPro (GPMF), measured on the real GoPro MAX sample: CORI rotates world vectors into the camera
  (its conjugate takes GRAV to one fixed world vector: 0.50° median, 2.2° max over the clip), and
  CORI / IORI / GRAV share the camera frame (x right, y down, z forward); GRAV points down. The IMU
  (ORIN letters, HERO5 order Z, X, Y) is X left, Y back, Z up: integrated by the filter below, the MAX
  gyro + accelerometer agree with CORI within 1.2° median, 4.4° max. That forward is +z of CORI (and
  not -z, which gravity cannot tell) is the usual camera convention, not a measurement; that HERO5
  uses the MAX's IMU frame is an assumption.
- CAMM: the camera frame is taken as x right, y up, z backward (OpenGL / Android sensor axes; the
  spec leaves the world frame to the application); angle-axis packets are camera → world.

Timing: each packet's samples are spread evenly over the packet's duration (packet pts and duration
in the stream time base), then made relative to the first video frame, like
:attr:`pan360.media.probe.MediaInfo.frame_times`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from numpy.typing import ArrayLike, NDArray

from pan360.errors import Pan360Error

FloatArray = NDArray[np.float64]

# ---------------------------------------------------------------------------------------------------
# quaternions (w, x, y, z), pure NumPy, broadcasting over leading dimensions


def quat_normalize(q: ArrayLike) -> FloatArray:
    """Unit quaternions with w >= 0 (the same rotation)."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def quat_conj(q: ArrayLike) -> FloatArray:
    """Conjugate (the inverse rotation of a unit quaternion)."""
    return np.asarray(q, dtype=np.float64) * np.array([1.0, -1.0, -1.0, -1.0])


def quat_mul(a: ArrayLike, b: ArrayLike) -> FloatArray:
    """Hamilton product ``a ⊗ b`` (rotate by b, then by a)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], axis=-1)


def quat_rotate(q: ArrayLike, v: ArrayLike) -> FloatArray:
    """Rotate vectors (..., 3) by unit quaternions (..., 4)."""
    q = np.asarray(q, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    u = q[..., 1:]
    t = 2.0 * np.cross(u, v)
    return v + q[..., :1] * t + np.cross(u, t)


def quat_from_rotvec(rv: ArrayLike) -> FloatArray:
    """Quaternions of rotation vectors (axis times angle in radians), shape (..., 3) → (..., 4)."""
    rv = np.asarray(rv, dtype=np.float64)
    angle = np.linalg.norm(rv, axis=-1, keepdims=True)
    half = 0.5 * angle
    # sin(half)/angle, with its limit 1/2 at zero
    k = np.where(angle > 1e-12, np.sin(half) / np.where(angle > 1e-12, angle, 1.0), 0.5 - angle**2 / 48.0)
    return np.concatenate([np.cos(half), rv * k], axis=-1)


def quat_to_rotvec(q: ArrayLike) -> FloatArray:
    """Rotation vectors (radians) of unit quaternions."""
    q = quat_normalize(q)
    s = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(s, q[..., :1])
    k = np.where(s > 1e-12, angle / np.where(s > 1e-12, s, 1.0), 2.0)
    return q[..., 1:] * k


def quat_from_matrix(m: ArrayLike) -> FloatArray:
    """Unit quaternion of a rotation matrix (3, 3)."""
    m = np.asarray(m, dtype=np.float64)
    w = np.sqrt(max(0.0, 1.0 + m[0, 0] + m[1, 1] + m[2, 2])) / 2.0
    x = np.copysign(np.sqrt(max(0.0, 1.0 + m[0, 0] - m[1, 1] - m[2, 2])) / 2.0, m[2, 1] - m[1, 2])
    y = np.copysign(np.sqrt(max(0.0, 1.0 - m[0, 0] + m[1, 1] - m[2, 2])) / 2.0, m[0, 2] - m[2, 0])
    z = np.copysign(np.sqrt(max(0.0, 1.0 - m[0, 0] - m[1, 1] + m[2, 2])) / 2.0, m[1, 0] - m[0, 1])
    return quat_normalize([w, x, y, z])


def quat_to_matrix(q: ArrayLike) -> FloatArray:
    """Rotation matrices (..., 3, 3) of quaternions (w, x, y, z): column k is the rotated k-th axis."""
    q = quat_normalize(q)
    eye = np.broadcast_to(np.eye(3), q.shape[:-1] + (3, 3))
    return np.stack([quat_rotate(q, eye[..., :, k]) for k in range(3)], axis=-1)


def quat_between(a: ArrayLike, b: ArrayLike) -> FloatArray:
    """The smallest rotation taking direction ``a`` to direction ``b`` (..., 3)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    q = np.concatenate([1.0 + np.sum(a * b, axis=-1, keepdims=True), np.cross(a, b)], axis=-1)
    # opposite vectors: half a turn about any axis perpendicular to a
    perp = np.cross(a, np.where(np.abs(a[..., :1]) < 0.9, [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]))
    opposite = q[..., :1] < 1e-9
    q = np.where(opposite, np.concatenate([np.zeros_like(q[..., :1]), perp], axis=-1), q)
    return quat_normalize(q)


def quat_slerp(q0: ArrayLike, q1: ArrayLike, t: ArrayLike) -> FloatArray:
    """Spherical interpolation between unit quaternions at fractions t (the shorter way round)."""
    q0 = np.asarray(q0, dtype=np.float64)
    q1 = np.asarray(q1, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)[..., None]
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.abs(dot)
    omega = np.arccos(np.clip(dot, -1.0, 1.0))
    so = np.sin(omega)
    near = so < 1e-9
    safe = np.where(near, 1.0, so)
    out = np.where(near, (1.0 - t) * q0 + t * q1,
                   (np.sin((1.0 - t) * omega) * q0 + np.sin(t * omega) * q1) / safe)
    return quat_normalize(out)


def quat_to_ypr(q: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(yaw, pitch, roll) in degrees (pan360 / v360 conventions) of camera → world quaternions.

    yaw/pitch are the world direction of the camera's forward axis; roll is the turn of the camera's
    up axis about it, positive when the picture's top tilts to the viewer's right (clockwise), as
    ffmpeg v360's roll.
    """
    q = np.asarray(q, dtype=np.float64)
    fwd = quat_rotate(q, [1.0, 0.0, 0.0])
    up = quat_rotate(q, [0.0, 0.0, 1.0])
    yaw = np.degrees(np.arctan2(-fwd[..., 1], fwd[..., 0]))
    pitch = np.degrees(np.arctan2(fwd[..., 2], np.hypot(fwd[..., 0], fwd[..., 1])))
    # the level frame at (yaw, pitch): its left and up vectors
    ya, pa = np.radians(yaw), np.radians(pitch)
    left0 = np.stack([np.sin(ya), np.cos(ya), np.zeros_like(ya)], axis=-1)
    up0 = np.stack([-np.sin(pa) * np.cos(ya), np.sin(pa) * np.sin(ya), np.cos(pa)], axis=-1)
    roll = np.degrees(np.arctan2(-np.sum(up * left0, axis=-1), np.sum(up * up0, axis=-1)))
    return yaw, pitch, roll


# ---------------------------------------------------------------------------------------------------
# the result


@dataclass(frozen=True, eq=False)
class CameraMotion:
    """The camera's orientation over time.

    ``times`` (T,) seconds relative to the first video frame; ``quaternions`` (T, 4) unit
    ``(w, x, y, z)``, camera → world in pan360's axes (module docstring); ``source`` says where it
    came from: "gpmf-cori", "gpmf-imu" (gyro + accelerometer, filtered), "camm" (angle-axis packets),
    "camm-imu"; ``gravity`` (T, 3) is the measured direction of gravity (pointing down) in the camera
    frame when the file has it (GRAV, or the accelerometer, low-passed), else None.
    ``image_quaternions`` is GoPro's IORI (image relative to the camera body) when present.
    """

    times: FloatArray
    quaternions: FloatArray
    source: str
    gravity: FloatArray | None = None
    image_quaternions: FloatArray | None = None
    extras: dict[str, object] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.times.shape[0])


def orientation_at(motion: CameraMotion, frame_times: ArrayLike) -> FloatArray:
    """The camera orientation (T, 4) at each frame time (seconds, same timeline), by slerp between the
    neighbouring samples; times before the first sample or after the last take the end samples."""
    t = np.asarray(frame_times, dtype=np.float64)
    ts = motion.times
    q = motion.quaternions
    if len(ts) == 1:
        return np.repeat(q[:1], len(t), axis=0)
    i = np.clip(np.searchsorted(ts, t, side="right") - 1, 0, len(ts) - 2)
    span = ts[i + 1] - ts[i]
    frac = np.clip(np.divide(t - ts[i], span, out=np.zeros_like(t), where=span > 0), 0.0, 1.0)
    return quat_slerp(q[i], q[i + 1], frac)


# ---------------------------------------------------------------------------------------------------
# GPMF (GoPro Metadata Format): KLV = FourCC key, type char, struct size, big-endian repeat, payload
# padded to 4 bytes; type 0 = nested (DEVC, STRM).

_GPMF_TYPES = {
    "b": ">i1", "B": ">u1", "c": "S1", "d": ">f8", "f": ">f4", "F": "S4", "G": "S16", "j": ">i8",
    "J": ">u8", "l": ">i4", "L": ">u4", "q": ">i4", "Q": ">i8", "s": ">i2", "S": ">u2", "U": "S16",
}
_FIXED_POINT = {"q": 2.0**16, "Q": 2.0**32}
# keys that describe the stream's data rather than being it
_GPMF_META_KEYS = {
    "STMP", "TSMP", "STNM", "SIUN", "UNIT", "SCAL", "TYPE", "ORIN", "ORIO", "MTRX", "TMPC", "TICK",
    "TOCK", "EMPT", "RMRK", "VPTS", "DVID", "DVNM", "TIMO", "QUAN",
}


@dataclass(frozen=True)
class GpmfItem:
    """One KLV entry: key, type char ("\\0" for nested), struct size, repeat, raw payload."""

    key: str
    type: str
    size: int
    repeat: int
    payload: bytes


def iter_klv(buf: bytes) -> Iterator[GpmfItem]:
    """The KLV entries at one level of a GPMF buffer (nested payloads are not entered)."""
    i, n = 0, len(buf)
    while i + 8 <= n:
        key = buf[i:i + 4]
        if key == b"\0\0\0\0":
            break
        type_code, size, repeat = buf[i + 4], buf[i + 5], struct.unpack_from(">H", buf, i + 6)[0]
        length = size * repeat
        end = i + 8 + length
        if end > n:
            raise ValueError(f"GPMF entry {key!r} runs past its buffer")
        yield GpmfItem(key.decode("latin-1"), chr(type_code) if type_code else "\0", size, repeat,
                       bytes(buf[i + 8:end]))
        i += 8 + ((length + 3) & ~3)


def _expand_type(spec: str) -> str:
    """A GPMF TYPE string with ``x[n]`` arrays written out (``"f[3]L"`` → ``"fffL"``)."""
    out, i = [], 0
    while i < len(spec):
        ch = spec[i]
        if i + 1 < len(spec) and spec[i + 1] == "[":
            close = spec.index("]", i)
            out.append(ch * int(spec[i + 2:close]))
            i = close + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def gpmf_values(item: GpmfItem, complex_type: str | None = None) -> NDArray | str:
    """The decoded values of a KLV entry: (repeat, k) array (float64 for numbers), or a string for 'c'
    entries. Complex ('?') entries need the stream's TYPE string; their non-numeric fields are NaN."""
    t = item.type
    if t == "c":
        return item.payload.split(b"\0")[0].decode("latin-1")
    if t == "?":
        if not complex_type:
            raise ValueError(f"GPMF {item.key}: complex type without TYPE")
        fields = _expand_type(complex_type)
        dtype = np.dtype([(f"f{j}", _GPMF_TYPES[ch]) for j, ch in enumerate(fields)])
        if dtype.itemsize != item.size:
            raise ValueError(f"GPMF {item.key}: TYPE {complex_type!r} does not match size {item.size}")
        rec = np.frombuffer(item.payload, dtype=dtype, count=item.repeat)
        cols = [rec[f"f{j}"].astype(np.float64) / _FIXED_POINT.get(ch, 1.0) if ch not in "cFGU"
                else np.full(item.repeat, np.nan) for j, ch in enumerate(fields)]
        return np.stack(cols, axis=-1) if cols else np.zeros((item.repeat, 0))
    if t not in _GPMF_TYPES:
        raise ValueError(f"GPMF {item.key}: unknown type {t!r}")
    dt = np.dtype(_GPMF_TYPES[t])
    count = (item.size * item.repeat) // dt.itemsize
    arr = np.frombuffer(item.payload, dtype=dt, count=count)
    if t in "FGU":
        return arr.reshape(item.repeat, -1)
    per = max(1, item.size // dt.itemsize)
    return arr.astype(np.float64).reshape(item.repeat, per) / _FIXED_POINT.get(t, 1.0)


@dataclass(frozen=True)
class GpmfStream:
    """One STRM of one payload: its data key and scaled samples (n, k), plus its sticky metadata."""

    device: str
    key: str
    samples: FloatArray
    name: str = ""
    orin: str | None = None
    matrix: FloatArray | None = None
    stmp: int | None = None
    tsmp: int | None = None
    units: str | None = None


def parse_gpmf(payload: bytes) -> list[GpmfStream]:
    """Every data stream of one GPMF payload (a metadata-track packet), SCAL applied."""
    out: list[GpmfStream] = []
    for devc in iter_klv(payload):
        if devc.key != "DEVC" or devc.type != "\0":
            continue
        device = ""
        for item in iter_klv(devc.payload):
            if item.key == "DVNM" and item.type == "c":
                device = str(gpmf_values(item))
            elif item.key == "STRM" and item.type == "\0":
                out.extend(_parse_strm(item.payload, device))
    return out


def _parse_strm(buf: bytes, device: str) -> list[GpmfStream]:
    meta: dict[str, object] = {}
    scale: FloatArray | None = None
    ctype: str | None = None
    streams = []
    for item in iter_klv(buf):
        if item.type == "\0":
            continue
        if item.key in _GPMF_META_KEYS:
            if item.key == "TYPE":
                ctype = str(gpmf_values(item))
            elif item.key == "SCAL":
                scale = np.asarray(gpmf_values(item), dtype=np.float64).reshape(-1)
            elif item.key in ("STMP", "TSMP"):
                meta[item.key] = int(np.asarray(gpmf_values(item)).reshape(-1)[0])
            elif item.key == "MTRX":
                meta["MTRX"] = np.asarray(gpmf_values(item), dtype=np.float64).reshape(3, 3)
            elif item.type == "c":
                meta[item.key] = str(gpmf_values(item)) if item.key != "ORIN" else \
                    item.payload.decode("latin-1").replace("\0", "")
            continue
        try:
            values = gpmf_values(item, ctype)
        except ValueError:
            continue
        if isinstance(values, str) or values.dtype.kind != "f":
            continue
        if scale is not None and scale.size in (1, values.shape[1]):
            safe = np.where(scale == 0, 1.0, scale)
            values = values / safe
        streams.append(GpmfStream(device=device, key=item.key, samples=values, name=str(meta.get("STNM", "")),
                                  orin=meta.get("ORIN"), matrix=meta.get("MTRX"), stmp=meta.get("STMP"),
                                  tsmp=meta.get("TSMP"), units=meta.get("SIUN")))  # type: ignore[arg-type]
    return streams


# GoPro IMU axes (ORIN letters X, Y, Z; HERO5 stores them in Z, X, Y order) → pan360 (x forward,
# y left, z up); rows are pan360 axes. Measured on the GoPro MAX sample: its accelerometer, mapped by
# ORIN, agrees with GRAV and CORI when X is left, Y back and Z up (see the module docstring).
GOPRO_IMU_TO_PAN360 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
# GoPro CORI / IORI / GRAV axes: the camera's (x right, y down, z forward) → pan360.
GOPRO_CORI_TO_PAN360 = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def _order_matrix(order: str) -> FloatArray:
    """Matrix taking stored components (in ``order``, e.g. "ZXY" or "XzY", lowercase negated) to GoPro
    IMU (X, Y, Z)."""
    m = np.zeros((3, 3))
    for col, ch in enumerate(order[:3]):
        m["XYZ".index(ch.upper()), col] = 1.0 if ch.isupper() else -1.0
    return m


def gopro_imu_to_pan360(samples: ArrayLike, order: str = "XYZ") -> FloatArray:
    """GYRO / ACCL vectors (n, 3) stored in GoPro component ``order`` → pan360 camera axes."""
    m = GOPRO_IMU_TO_PAN360 @ _order_matrix(order)
    return np.asarray(samples, dtype=np.float64) @ m.T


def gopro_grav_to_pan360(samples: ArrayLike) -> FloatArray:
    """GRAV vectors (n, 3) → pan360 camera axes (the direction of gravity, pointing down)."""
    return np.asarray(samples, dtype=np.float64) @ GOPRO_CORI_TO_PAN360.T


def gopro_quats_to_pan360(q: ArrayLike) -> FloatArray:
    """GoPro CORI (w, x, y, z) → camera → world quaternions in pan360 axes. CORI rotates world
    vectors into the camera (its conjugate takes GRAV to a constant world vector), so it is
    conjugated, and its axes are mapped like GRAV's."""
    q = quat_conj(np.asarray(q, dtype=np.float64))
    return quat_normalize(np.concatenate([q[..., :1], q[..., 1:] @ GOPRO_CORI_TO_PAN360.T], axis=-1))


# ---------------------------------------------------------------------------------------------------
# CAMM (little-endian: uint16 reserved, uint16 type, payload)

CAMM_SIZES = {0: 12, 1: 8, 2: 12, 3: 12, 4: 12, 5: 24, 6: 56, 7: 12}
CAMM_NAMES = {0: "angle_axis", 1: "exposure", 2: "gyro", 3: "acceleration", 4: "position", 5: "gps",
              6: "gps_full", 7: "magnetic_field"}
# CAMM camera axes (x right, y up, z backward) → pan360: rows pan360 x, y, z.
CAMM_TO_PAN360 = np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def parse_camm_packet(data: bytes) -> list[tuple[int, tuple[float, ...]]]:
    """The CAMM records of one packet: (type, values). A packet normally holds one record; several
    back to back are accepted. Unknown types stop the parse (their size is unknown)."""
    out = []
    i = 0
    while i + 4 <= len(data):
        _, kind = struct.unpack_from("<HH", data, i)
        size = CAMM_SIZES.get(kind)
        if size is None or i + 4 + size > len(data):
            break
        body = data[i + 4:i + 4 + size]
        if kind == 1:
            values: tuple[float, ...] = struct.unpack("<ii", body)
        elif kind == 5:
            values = struct.unpack("<ddd", body)
        elif kind == 6:
            values = struct.unpack("<didd7f", body)
        else:
            values = struct.unpack("<3f", body)
        out.append((kind, tuple(float(v) for v in values)))
        i += 4 + size
    return out


def camm_packet(kind: int, values: ArrayLike) -> bytes:
    """One CAMM packet (for tests and tools): the inverse of :func:`parse_camm_packet` for the
    float-vector types 0, 2, 3, 4 and 7."""
    if kind not in (0, 2, 3, 4, 7):
        raise ValueError("camm_packet writes float[3] types only")
    return struct.pack("<HH3f", 0, kind, *np.asarray(values, dtype=np.float64).reshape(3))


def camm_vectors_to_pan360(v: ArrayLike) -> FloatArray:
    """CAMM camera-axis vectors (..., 3) → pan360 axes."""
    return np.asarray(v, dtype=np.float64) @ CAMM_TO_PAN360.T


# ---------------------------------------------------------------------------------------------------
# gyro + accelerometer fusion


def complementary_filter(
    times: ArrayLike,
    gyro: ArrayLike,
    accel_times: ArrayLike,
    accel: ArrayLike,
    *,
    tau: float = 2.0,
    gravity: float = 9.80665,
) -> tuple[FloatArray, FloatArray]:
    """Camera → world orientations (N, 4) at the gyro ``times`` from body-frame angular rates
    (N, 3, rad/s) and accelerometer specific force (M, 3, m/s², reading +g upward at rest), both in
    pan360 camera axes.

    The gyro is integrated; the tilt is pulled towards the accelerometer's "up" with time constant
    ``tau`` seconds (less when the acceleration's magnitude is far from ``gravity``). The start is
    levelled from the first 0.2 s of the accelerometer, with the camera's heading as world yaw 0.
    Returns the orientations and the low-passed gravity direction (N, 3) in the camera frame.
    """
    t = np.asarray(times, dtype=np.float64)
    w = np.asarray(gyro, dtype=np.float64)
    ta = np.asarray(accel_times, dtype=np.float64)
    a = np.asarray(accel, dtype=np.float64)
    if len(t) < 2 or len(ta) < 1:
        raise ValueError("too few samples")
    acc = np.stack([np.interp(t, ta, a[:, k]) for k in range(3)], axis=-1)
    first = a[ta <= ta[0] + 0.2].mean(axis=0)
    q = level_quaternion(first)
    out = np.empty((len(t), 4))
    out[0] = q
    z = np.array([0.0, 0.0, 1.0])
    for k in range(1, len(t)):
        dt = t[k] - t[k - 1]
        if dt > 0:
            q = quat_mul(q, quat_from_rotvec(0.5 * (w[k] + w[k - 1]) * dt))
            norm = np.linalg.norm(acc[k])
            if norm > 0:
                trust = np.exp(-(((norm - gravity) / (0.2 * gravity)) ** 2))
                up_world = quat_rotate(q, acc[k] / norm)
                corr = quat_to_rotvec(quat_between(up_world, z))
                q = quat_mul(quat_from_rotvec(corr * min(1.0, trust * dt / tau)), q)
            q = quat_normalize(q)
        out[k] = q
    # measured gravity: the accelerometer low-passed over ~0.25 s, pointing down
    width = max(1, int(round(0.25 / max(float(np.median(np.diff(t))), 1e-6))))
    kernel = np.ones(width) / width
    smooth = np.stack([np.convolve(np.pad(acc[:, k], (width // 2, width - 1 - width // 2), mode="edge"),
                                   kernel, mode="valid") for k in range(3)], axis=-1)
    down = -smooth / np.maximum(np.linalg.norm(smooth, axis=-1, keepdims=True), 1e-12)
    return out, down


def level_quaternion(up_in_camera: ArrayLike) -> FloatArray:
    """Camera → world rotation that makes ``up_in_camera`` (the accelerometer at rest, or minus the
    gravity direction) the world's z, with the camera's heading at world yaw 0."""
    q = quat_between(up_in_camera, [0.0, 0.0, 1.0])
    return zero_heading(q[None])[0]


def zero_heading(q: ArrayLike) -> FloatArray:
    """Turn the world about z so the first orientation's forward axis has world yaw 0."""
    q = np.asarray(q, dtype=np.float64)
    fwd = quat_rotate(q[0], [1.0, 0.0, 0.0])
    if np.hypot(fwd[0], fwd[1]) < 1e-9:  # looking straight up or down: use the camera's up axis
        fwd = -np.sign(fwd[2]) * quat_rotate(q[0], [0.0, 0.0, 1.0])
    yaw = np.arctan2(fwd[1], fwd[0])
    return quat_normalize(quat_mul(quat_from_rotvec([0.0, 0.0, -yaw]), q))


# ---------------------------------------------------------------------------------------------------
# reading files


def _mp4_sample_formats(path: Path) -> list[str]:
    """The sample-entry format (stsd's first entry, e.g. "avc1", "gpmd", "camm") of every 'trak' of an
    MP4/MOV file, in file order (FFmpeg's stream order); [] when the file is not ISO-BMFF."""
    formats: list[str] = []
    with open(path, "rb") as f:
        size_total = path.stat().st_size

        def boxes(start: int, end: int) -> Iterator[tuple[str, int, int]]:
            pos = start
            while pos + 8 <= end:
                f.seek(pos)
                head = f.read(16)
                if len(head) < 8:
                    return
                size, kind = struct.unpack(">I4s", head[:8])
                hdr = 8
                if size == 1 and len(head) >= 16:
                    size, hdr = struct.unpack(">Q", head[8:16])[0], 16
                elif size == 0:
                    size = end - pos
                if size < hdr:
                    return
                yield kind.decode("latin-1"), pos + hdr, min(pos + size, end)
                pos += size

        def find(start: int, end: int, path_: list[str]) -> list[tuple[int, int]]:
            if not path_:
                return [(start, end)]
            hits = []
            for kind, s, e in boxes(start, end):
                if kind == path_[0]:
                    hits.extend(find(s, e, path_[1:]))
            return hits

        for moov_s, moov_e in find(0, size_total, ["moov"]):
            for kind, s, e in boxes(moov_s, moov_e):
                if kind != "trak":
                    continue
                fmt = ""
                for ss, se in find(s, e, ["mdia", "minf", "stbl", "stsd"]):
                    f.seek(ss + 8)  # version/flags, entry count
                    entry = f.read(8)
                    if len(entry) == 8:
                        fmt = entry[4:8].decode("latin-1")
                formats.append(fmt)
    return formats


def _video_start(container: av.container.InputContainer) -> float:
    vs = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
    if not vs:
        return 0.0
    s = vs[0]
    if s.start_time is not None:
        return float(s.start_time * s.time_base)
    return 0.0


def _packet_times(packets: list[tuple[int, int, bytes]], tb: float) -> list[tuple[float, float, bytes]]:
    """(start s, duration s, data); a packet without a duration lasts until the next one."""
    out = []
    for k, (pts, dur, data) in enumerate(packets):
        if dur <= 0:
            dur = packets[k + 1][0] - pts if k + 1 < len(packets) else (packets[k - 1][1] if k else 0)
        out.append((pts * tb, max(dur, 0) * tb, data))
    return out


def _demux(container, stream) -> list[tuple[int, int, bytes]]:
    packets = []
    for p in container.demux(stream):
        if p.size == 0 or p.pts is None:
            continue
        packets.append((int(p.pts), int(p.duration or 0), bytes(p)))
    packets.sort(key=lambda x: x[0])
    return packets


def read_camera_motion(source: str | Path | object) -> CameraMotion | None:
    """The camera orientation recorded in a file (a path or a :class:`MediaInfo`), or None when it
    has no motion metadata (no GPMF or CAMM track, or one without orientation, gyro or accelerometer).

    GPMF: CORI (with GRAV and IORI) when present, else GYRO + ACCL through :func:`complementary_filter`.
    CAMM: angle-axis packets when present, else gyro + acceleration packets the same way.
    Raises Pan360Error when the file cannot be read or its motion track is damaged.
    """
    path = Path(getattr(source, "path", source))  # type: ignore[arg-type]
    start = getattr(source, "start_time", None)
    try:
        formats = _mp4_sample_formats(path)
    except OSError as exc:
        raise Pan360Error(f"cannot read {path.name}: {exc.__class__.__name__}") from exc
    try:
        container = av.open(str(path), "r")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise Pan360Error(f"cannot read {path.name}: not a readable media file ({exc.__class__.__name__})") from exc
    try:
        video_start = float(start) if start is not None else _video_start(container)
        kinds = {}
        for s in container.streams:
            if s.type != "data":
                continue
            fmt = formats[s.index] if s.index < len(formats) else ""
            handler = s.metadata.get("handler_name", "")
            if fmt == "gpmd" or (not fmt and "GoPro MET" in handler):
                kinds.setdefault("gpmd", s)
            elif fmt == "camm":
                kinds.setdefault("camm", s)
        for kind in ("gpmd", "camm"):
            if kind in kinds:
                stream = kinds[kind]
                tb = float(stream.time_base)
                packets = _packet_times(_demux(container, stream), tb)
                container.seek(0)
                try:
                    motion = (_gpmf_motion if kind == "gpmd" else _camm_motion)(packets, video_start)
                except ValueError as exc:
                    raise Pan360Error(f"{path.name}: damaged {kind} motion track ({exc})") from exc
                if motion is not None:
                    return motion
        return None
    finally:
        container.close()


def _spread(chunks: list[tuple[float, float, FloatArray]], video_start: float) -> tuple[FloatArray, FloatArray]:
    times, values = [], []
    for start, dur, v in chunks:
        n = len(v)
        if n:
            times.append(start + dur * np.arange(n) / n - video_start)
            values.append(v)
    if not values:
        return np.zeros(0), np.zeros((0, 3))
    return np.concatenate(times), np.concatenate(values)


def _gpmf_motion(packets: list[tuple[float, float, bytes]], video_start: float) -> CameraMotion | None:
    by_key: dict[str, list[tuple[float, float, FloatArray]]] = {}
    order: dict[str, str] = {}
    for start, dur, data in packets:
        for st in parse_gpmf(data):
            if st.key in ("CORI", "IORI", "GRAV", "GYRO", "ACCL"):
                by_key.setdefault(st.key, []).append((start, dur, st.samples))
                if st.orin and st.key in ("GYRO", "ACCL"):
                    order[st.key] = st.orin
                elif st.key in ("GYRO", "ACCL") and "z,x,y" in st.name.lower():
                    order.setdefault(st.key, "ZXY")
    if "CORI" in by_key:
        t, q = _spread(by_key["CORI"], video_start)
        q = gopro_quats_to_pan360(q)
        grav = iori = None
        if "GRAV" in by_key:
            tg, g = _spread(by_key["GRAV"], video_start)
            g = gopro_grav_to_pan360(g)
            grav = np.stack([np.interp(t, tg, g[:, k]) for k in range(3)], axis=-1)
            grav /= np.linalg.norm(grav, axis=-1, keepdims=True)
        if "IORI" in by_key:
            ti, qi = _spread(by_key["IORI"], video_start)
            if len(ti) == len(t):
                iori = gopro_quats_to_pan360(qi)
        q = _level_with_gravity(q, grav)
        return CameraMotion(t, q, "gpmf-cori", grav, iori)
    if "GYRO" in by_key and "ACCL" in by_key:
        tw, w = _spread(by_key["GYRO"], video_start)
        ta, a = _spread(by_key["ACCL"], video_start)
        w = gopro_imu_to_pan360(w, order.get("GYRO", "ZXY"))
        a = gopro_imu_to_pan360(a, order.get("ACCL", "ZXY"))
        q, down = complementary_filter(tw, w, ta, a)
        return CameraMotion(tw, q, "gpmf-imu", down, None, {"gyro_rate": _rate(tw), "accel_rate": _rate(ta)})
    return None


def _rate(t: FloatArray) -> float:
    return float((len(t) - 1) / (t[-1] - t[0])) if len(t) > 1 and t[-1] > t[0] else 0.0


def _level_with_gravity(q: FloatArray, grav: FloatArray | None) -> FloatArray:
    """Re-express camera → world quaternions in a level world (z against the mean measured gravity,
    seen in the world) with the first sample's heading at yaw 0."""
    if grav is not None and len(grav):
        down_world = quat_rotate(q, grav).mean(axis=0)
        if np.linalg.norm(down_world) > 1e-6:
            q = quat_mul(quat_between(-down_world, [0.0, 0.0, 1.0]), q)
    return zero_heading(q)


def gravity_angle(motion: CameraMotion) -> FloatArray:
    """Angle in degrees, per sample, between the measured gravity (camera frame) and the world's down
    as the orientation sees it (``-z`` taken into the camera frame); needs ``motion.gravity``."""
    if motion.gravity is None:
        raise ValueError("no gravity in this motion")
    down = quat_rotate(quat_conj(motion.quaternions), np.broadcast_to([0.0, 0.0, -1.0], motion.gravity.shape))
    cos = np.clip(np.sum(down * motion.gravity, axis=-1) / np.linalg.norm(motion.gravity, axis=-1), -1.0, 1.0)
    return np.degrees(np.arccos(cos))


def _camm_motion(packets: list[tuple[float, float, bytes]], video_start: float) -> CameraMotion | None:
    series: dict[int, list[tuple[float, FloatArray]]] = {}
    for start, _, data in packets:
        for kind, values in parse_camm_packet(data):
            if kind in (0, 2, 3):
                series.setdefault(kind, []).append((start - video_start, np.asarray(values)))
    if 0 in series:
        t = np.array([s for s, _ in series[0]])
        rv = camm_vectors_to_pan360(np.stack([v for _, v in series[0]]))
        q = quat_from_rotvec(rv)
        grav = None
        if 3 in series:
            ta = np.array([s for s, _ in series[3]])
            a = camm_vectors_to_pan360(np.stack([v for _, v in series[3]]))
            grav = -np.stack([np.interp(t, ta, a[:, k]) for k in range(3)], axis=-1)
            grav /= np.linalg.norm(grav, axis=-1, keepdims=True)
        # levelled with the measured gravity and the first heading at yaw 0, as GPMF's
        return CameraMotion(t, _level_with_gravity(quat_normalize(q), grav), "camm", grav)
    if 2 in series and 3 in series:
        tw = np.array([s for s, _ in series[2]])
        w = camm_vectors_to_pan360(np.stack([v for _, v in series[2]]))
        ta = np.array([s for s, _ in series[3]])
        a = camm_vectors_to_pan360(np.stack([v for _, v in series[3]]))
        q, down = complementary_filter(tw, w, ta, a)
        return CameraMotion(tw, q, "camm-imu", down)
    return None
