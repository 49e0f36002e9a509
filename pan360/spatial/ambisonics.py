"""First-order ambisonics (FOA): channel formats, encoding, rotation and camera-following stereo.

Conventions (docs/CONVENTIONS.md):

- the internal format is **ambiX**: ACN channel order (W, Y, Z, X), SN3D normalisation, a float32
  array of shape (4, N);
- ambisonic azimuth is counter-clockwise (positive to the left), so pan360 ``yaw = -azimuth`` and
  ``pitch = elevation``; :func:`pan360.sphere.dir_to_vec` gives the ambisonic (X, Y, Z) direction
  (x forward, y left, z up) of a pan360 (yaw, pitch) directly;
- SN3D encoding of a plane wave ``s`` from direction ``u``: W = s, (X, Y, Z) = s·u.

Every function here is pure NumPy, works on whole tracks in blocks (bounded temporaries) and never
prints.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pan360.errors import Pan360Error
from pan360.signal import ArraySignal, Signal
from pan360.sphere import dir_to_vec

__all__ = [
    "fuma_to_ambix",
    "ambix_to_fuma",
    "n3d_to_sn3d",
    "encode_foa",
    "rotate_foa",
    "camera_stereo",
    "CameraStereo",
]

F32 = NDArray[np.float32]
_SQRT2 = np.float32(np.sqrt(2.0))
_BLOCK = 1 << 18  # samples per block: keeps float64 temporaries to a few MB whatever the duration


def _check_foa(foa: ArrayLike) -> F32:
    a = np.asarray(foa)
    if a.ndim != 2 or a.shape[0] != 4:
        raise Pan360Error(f"first-order ambisonics needs 4 channels shaped (4, N), got shape {a.shape}")
    return a.astype(np.float32, copy=False)


def fuma_to_ambix(foa: ArrayLike) -> F32:
    """Convert FuMa B-format (W, X, Y, Z; W at -3 dB) to ambiX (W, Y, Z, X; SN3D).

    At first order FuMa's X, Y, Z already equal SN3D's; only W is scaled by sqrt(2) and the
    channels reordered.
    """
    f = _check_foa(foa)
    return np.stack([f[0] * _SQRT2, f[2], f[3], f[1]]).astype(np.float32, copy=False)


def ambix_to_fuma(foa: ArrayLike) -> F32:
    """Convert ambiX (W, Y, Z, X; SN3D) to FuMa B-format (W, X, Y, Z; W at -3 dB)."""
    a = _check_foa(foa)
    return np.stack([a[0] / _SQRT2, a[3], a[1], a[2]]).astype(np.float32, copy=False)


def n3d_to_sn3d(foa: ArrayLike) -> F32:
    """Convert ACN/N3D first order (e.g. spaudiopy, many room responses) to ACN/SN3D (ambiX).

    N3D scales the first-order channels by sqrt(3) relative to SN3D.
    """
    a = _check_foa(foa)
    out = a.copy()
    out[1:] /= np.float32(np.sqrt(3.0))
    return out


def encode_foa(signal: ArrayLike, yaw: ArrayLike, pitch: ArrayLike) -> F32:
    """Encode a mono signal as a plane wave from (yaw, pitch) into ambiX SN3D.

    Parameters
    ----------
    signal : (N,) samples.
    yaw, pitch : degrees in pan360 convention (yaw positive to the right, pitch up). Scalars, or
        per-sample arrays of shape (N,) for a moving source.

    Returns
    -------
    (4, N) float32 ambiX: W = s, Y = s·sin(a)cos(e), Z = s·sin(e), X = s·cos(a)cos(e) with
    azimuth a = -yaw and elevation e = pitch.
    """
    s = np.asarray(signal, dtype=np.float64)
    if s.ndim != 1:
        raise Pan360Error(f"encode_foa needs a mono signal (N,), got shape {s.shape}")
    out = np.empty((4, s.size), dtype=np.float32)
    yaw_a = np.broadcast_to(np.asarray(yaw, dtype=np.float64), s.shape)
    pitch_a = np.broadcast_to(np.asarray(pitch, dtype=np.float64), s.shape)
    for a in range(0, s.size, _BLOCK):
        b = min(a + _BLOCK, s.size)
        v = dir_to_vec(yaw_a[a:b], pitch_a[a:b])  # ambisonic (X, Y, Z)
        seg = s[a:b]
        out[0, a:b] = seg
        out[1, a:b] = seg * v[..., 1]
        out[2, a:b] = seg * v[..., 2]
        out[3, a:b] = seg * v[..., 0]
    return out


def _rotate_block(w: np.ndarray, y: np.ndarray, z: np.ndarray, x: np.ndarray, yaw: np.ndarray,
                  pitch: np.ndarray, roll: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera-frame (X, Y, Z) of a block; angles in degrees (scalars or per-sample arrays).

    The camera orientation is C = Rz(-yaw) · Ry(-pitch) · Rx(roll) in (x fwd, y left, z up): yaw
    turns right, pitch up about the new right axis, roll about the new forward axis (positive roll
    dips the camera's right side, as ffmpeg v360's roll rotates the view rays). The field seen by
    the camera is C^T applied to (X, Y, Z), computed here as three planar rotations.
    """
    ya, pa, ra = (np.radians(np.asarray(v, dtype=np.float64)) for v in (yaw, pitch, roll))
    cy, sy = np.cos(ya), np.sin(ya)
    x1 = x * cy - y * sy  # Rz(+yaw): a source at yaw ψ (azimuth -ψ) moves to azimuth 0
    y1 = x * sy + y * cy
    cp, sp = np.cos(pa), np.sin(pa)
    x2 = x1 * cp + z * sp  # Ry(+pitch): a source at elevation θ moves to elevation 0
    z2 = z * cp - x1 * sp
    cr, sr = np.cos(ra), np.sin(ra)
    y3 = y1 * cr + z2 * sr  # Rx(-roll)
    z3 = z2 * cr - y1 * sr
    return x2, y3, z3


def rotate_foa(foa: ArrayLike, yaw: ArrayLike, pitch: ArrayLike = 0.0, roll: ArrayLike = 0.0) -> F32:
    """Rotate the sound field so that direction (yaw, pitch) comes to the front.

    The result is the field as heard by a listener looking along a camera at (yaw, pitch, roll)
    (pan360/v360 convention, degrees; scalars or per-sample arrays of shape (N,)). W is unchanged;
    (X, Y, Z) turn as a vector. A source encoded at (yaw=30, pitch=0) rotated with yaw=30 ends up
    at the front (X = W, Y = Z = 0).
    """
    f = _check_foa(foa)
    n = f.shape[1]
    angles = [np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)) for v in (yaw, pitch, roll)]
    out = np.empty_like(f)
    out[0] = f[0]
    for a in range(0, n, _BLOCK):
        b = min(a + _BLOCK, n)
        x, y, z = _rotate_block(f[0, a:b], f[1, a:b], f[2, a:b], f[3, a:b], *(v[a:b] for v in angles))
        out[1, a:b], out[2, a:b], out[3, a:b] = y, z, x
    return out


def _camera_angles_at(sample_times: np.ndarray, times: np.ndarray, yaw_unwrapped: np.ndarray,
                      pitch: np.ndarray, roll: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera yaw/pitch/roll per sample, linearly interpolated between frames on unwrapped yaw.

    Unwrapping makes a path that crosses ±180° turn the short way, so the gains stay continuous at
    the seam; a hard cut becomes a sweep lasting one frame interval (~33 ms at 30 fps), i.e. a
    crossfade-like gain change rather than a sample discontinuity (no click). Between frames this
    equals slerp to well under a degree for the step sizes a smooth path takes.
    """
    return (np.interp(sample_times, times, yaw_unwrapped), np.interp(sample_times, times, pitch),
            np.interp(sample_times, times, roll))


def camera_stereo(foa: ArrayLike, sample_rate: float, times: ArrayLike, yaw: ArrayLike, pitch: ArrayLike,
                  *, roll: ArrayLike | None = None, mic_angle: float = 60.0, pattern: float = 0.5,
                  peak_limit: float = 0.99) -> F32:
    """Stereo (2, N) that follows a camera path: what a coincident mic pair on the camera hears.

    Parameters
    ----------
    foa : (4, N) ambiX SN3D.
    sample_rate : Hz.
    times, yaw, pitch : (T,) per video frame: presentation time in seconds and the camera direction
        in degrees (pan360 convention). Sample n is at time n / sample_rate; the direction is
        interpolated per sample (see ``_camera_angles_at``) and held before the first / after the
        last frame.
    roll : (T,) degrees, default 0.
    mic_angle : degrees; the two virtual microphones point at ±mic_angle from the view centre in the
        camera's horizontal plane (left mic at azimuth +mic_angle).
    pattern : first-order pattern p in g(θ) = p + (1 - p)·cos θ; 0.5 is a cardioid.
    peak_limit : if the decoded track's peak exceeds this, the whole track is scaled by one constant
        gain to bring the peak to it (no time-varying limiter, so no pumping); otherwise the level is
        untouched.

    Returns
    -------
    (2, N) float32, rows (left, right).

    Notes
    -----
    Default: cardioids at ±60°, normalised so a source at the view centre is heard at the level of
    the W (omni) channel in both ears (L == R). Why this pair: a source at the edge of a 90° view
    (azimuth ±45°) gets an 8.5 dB level difference, clearly to one side; a source directly behind is
    9.5 dB below one in front (cardioids at ±90° would make front and back identical, and a
    supercardioid's rear lobe would put out-of-view sources in anti-phase between the ears).
    Cardioids never invert polarity, so the mix stays mono-compatible.
    """
    f = _check_foa(foa)
    return CameraStereo(ArraySignal(f, sample_rate), times, yaw, pitch, roll=roll, mic_angle=mic_angle,
                        pattern=pattern, peak_limit=peak_limit).array()


class CameraStereo(Signal):
    """:func:`camera_stereo` as a signal: (2, N) computed range by range from a FOA signal (an array's, or
    a streamed track's), so a long recording is never held whole. The constant gain of ``peak_limit``
    comes from one pass over the whole track, made at the first read."""

    def __init__(self, foa: Signal, times: ArrayLike, yaw: ArrayLike, pitch: ArrayLike, *,
                 roll: ArrayLike | None = None, mic_angle: float = 60.0, pattern: float = 0.5,
                 peak_limit: float = 0.99) -> None:
        if foa.channels != 4:
            raise Pan360Error(f"first-order ambisonics needs 4 channels, got {foa.channels}")
        t = np.asarray(times, dtype=np.float64).ravel()
        ya = np.asarray(yaw, dtype=np.float64).ravel()
        pa = np.asarray(pitch, dtype=np.float64).ravel()
        ra = np.zeros_like(t) if roll is None else np.asarray(roll, dtype=np.float64).ravel()
        if not (t.size == ya.size == pa.size == ra.size) or t.size == 0:
            raise Pan360Error("camera path arrays (times, yaw, pitch, roll) must be non-empty and of one length")
        if np.any(np.diff(t) < 0):
            order = np.argsort(t, kind="stable")
            t, ya, pa, ra = t[order], ya[order], pa[order], ra[order]
        if not 0.0 <= pattern <= 1.0:
            raise Pan360Error(f"microphone pattern must be in [0, 1], got {pattern}")
        phi = np.radians(mic_angle)
        front_gain = pattern + (1.0 - pattern) * np.cos(phi)
        if front_gain <= 1e-6:
            raise Pan360Error("microphone angle/pattern leave no sensitivity at the view centre")
        self.foa, self.sample_rate, self.channels = foa, foa.sample_rate, 2
        self._t, self._pitch, self._roll = t, pa, ra
        self._yaw = np.degrees(np.unwrap(np.radians(ya)))  # the short way across ±180°
        self._g = (pattern / front_gain, (1.0 - pattern) * np.cos(phi) / front_gain,
                   (1.0 - pattern) * np.sin(phi) / front_gain)
        self._peak_limit = peak_limit
        self._gain: float | None = None

    @property
    def length(self) -> int:
        return self.foa.length

    def _raw(self, start: int, stop: int) -> F32:
        """Stereo before the gain, samples start..stop-1 (zeros outside the track)."""
        out = np.zeros((2, max(stop - start, 0)), dtype=np.float32)
        g_w, g_x, g_y = self._g
        lo, hi = max(start, 0), min(stop, self.length)
        for a in range(lo, hi, _BLOCK):
            b = min(a + _BLOCK, hi)
            f = self.foa.read(a, b)
            st = np.arange(a, b, dtype=np.float64) / float(self.sample_rate)
            cy, cp, cr = _camera_angles_at(st, self._t, self._yaw, self._pitch, self._roll)
            x, y, _ = _rotate_block(f[0], f[1], f[2], f[3], cy, cp, cr)
            common = g_w * f[0] + g_x * x
            out[0, a - start:b - start] = common + g_y * y  # left mic: azimuth +mic_angle (Y is positive to the left)
            out[1, a - start:b - start] = common - g_y * y
        return out

    @property
    def gain(self) -> float:
        """The one constant gain that brings the whole track's peak down to ``peak_limit`` (or 1)."""
        if self._gain is None:
            peak = 0.0
            for a in range(0, self.length, _BLOCK):
                peak = max(peak, float(np.max(np.abs(self._raw(a, min(a + _BLOCK, self.length))))))
            self._gain = self._peak_limit / peak if peak > self._peak_limit > 0 else 1.0
        return self._gain

    def read(self, start: int, stop: int) -> F32:
        gain = self.gain
        out = self._raw(start, stop)
        if gain != 1.0:
            out *= np.float32(gain)
        return out


class RotatedFOA(Signal):
    """A FOA signal whose sound field is turned by a rotation that changes over time.

    ``rotations`` (T, 3, 3) take directions from the recording's frame to the wanted one (pan360 axes:
    x forward, y left, z up, which are ambiX's X, Y, Z) at ``times`` (T,) seconds; between two times
    the matrix is interpolated linearly per sample (a camera turns by a few degrees between video
    frames, where that is a rotation to within 1e-3), and held before the first and after the last.
    W is unchanged. Read by ranges like its parent, so a streamed track stays streamed.
    """

    def __init__(self, foa: Signal, times: ArrayLike, rotations: ArrayLike) -> None:
        if foa.channels != 4:
            raise Pan360Error(f"first-order ambisonics needs 4 channels, got {foa.channels}")
        t = np.asarray(times, dtype=np.float64).ravel()
        r = np.asarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
        if t.size == 0 or t.size != r.shape[0] or np.any(np.diff(t) <= 0):
            raise Pan360Error("rotations need one matrix per time, at increasing times")
        self.foa, self.sample_rate, self.channels = foa, foa.sample_rate, 4
        self._t, self._r = t, r

    @property
    def length(self) -> int:
        return self.foa.length

    def read(self, start: int, stop: int) -> F32:
        f = self.foa.read(start, stop)
        out = np.empty_like(f)
        out[0] = f[0]
        for a in range(0, f.shape[1], _BLOCK):
            b = min(a + _BLOCK, f.shape[1])
            st = (start + np.arange(a, b, dtype=np.float64)) / float(self.sample_rate)
            m = np.stack([np.interp(st, self._t, self._r[:, i, j]) for i in range(3) for j in range(3)])
            v = (f[3, a:b], f[1, a:b], f[2, a:b])  # ambiX X, Y, Z
            x, y, z = (m[3 * i] * v[0] + m[3 * i + 1] * v[1] + m[3 * i + 2] * v[2] for i in range(3))
            out[1, a:b], out[2, a:b], out[3, a:b] = y, z, x
        return out
