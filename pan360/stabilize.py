"""Stabilisation: which frame the saliency, the camera path and the view live in.

A 360° camera films in its own axes: when it tilts, the horizon tilts in the picture; when it turns,
a source that stands still in the world moves across it. With the camera's orientation over time
(:mod:`pan360.media.motion`: GoPro GPMF, Google CAMM, or the spherical-video ``prhd`` pose as a
constant) pan360 works in one of three frames (:data:`MODES`):

- ``off`` — the picture's own axes ("camera" in trajectory files), what every file without motion
  metadata gets; nothing is rotated (bit-for-bit the unstabilised pipeline);
- ``level`` — the camera's roll and pitch removed: the horizon is level, yaw follows the camera's
  heading (yaw 0 is where the camera points, turned horizontal);
- ``world`` — the camera's turns removed too: yaw 0 is the camera's heading at the first motion
  sample, and a still source stays still.

One rotation per video frame, ``R`` (3, 3) taking camera-frame directions to the chosen frame
(pan360 axes: x forward, y left, z up), is applied everywhere, each time in the step that already
resamples: the FOA field is turned by it before its maps and before the output stereo
(:class:`pan360.spatial.ambisonics.RotatedFOA`); the network's maps, made on the camera's picture,
are resampled into the frame (:func:`rotate_maps`); and each view of the path is composed with
``R^T`` into one v360 view of the camera's picture (:meth:`Stabilization.camera_view`), so the
renderer's one reprojection does it (no extra pass over the pixels).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

from pan360 import geometry, sphere
from pan360.errors import Pan360Error
from pan360.geometry import View
from pan360.media import motion as M

FloatArray = NDArray[np.float64]

#: ``--stabilize`` choices; ``auto`` is ``level`` when the file records the camera's motion (GPMF, CAMM, or a
#: spherical-video pose with pitch or roll), else ``off``.
MODES = ("auto", "off", "level", "world")
#: The trajectory file's ``frame`` of each mode (:data:`pan360.paths.FRAMES`).
FRAME_OF = {"off": "camera", "level": "level", "world": "world"}
MODE_OF = {frame: mode for mode, frame in FRAME_OF.items()}

_SOURCES = {"gpmf-cori": "GoPro GPMF orientation (CORI)", "gpmf-imu": "GoPro GPMF gyro + accelerometer",
            "camm": "CAMM orientation", "camm-imu": "CAMM gyro + accelerometer",
            "prhd": "spherical-video pose (prhd)"}


@dataclass(frozen=True, eq=False)
class Stabilization:
    """The frame of one input: ``mode`` ("off", "level", "world"), ``source`` (where the orientation came
    from, :attr:`pan360.media.motion.CameraMotion.source`, "" for off) and ``rotations`` (T, 3, 3), one
    per video frame at ``times``, camera → frame; None for ``off``."""

    mode: str
    source: str = ""
    times: FloatArray | None = None
    rotations: FloatArray | None = None

    @property
    def frame(self) -> str:
        return FRAME_OF[self.mode]

    @property
    def active(self) -> bool:
        return self.rotations is not None

    def camera_view(self, index: int, view: View) -> View:
        """``view`` (in this frame) at video frame ``index`` as a view of the camera's own picture."""
        if self.rotations is None:
            return view
        m = self.rotations[index].T @ geometry.rotation_matrix(view.yaw, view.pitch, view.roll)
        yaw, pitch, roll = geometry.matrix_to_ypr(m)
        return replace(view, yaw=yaw, pitch=pitch, roll=roll)

    def foa(self, foa, yaw_offset: float = 0.0):
        """The FOA signal turned into this frame, after ``yaw_offset`` (degrees added to the audio's yaw:
        a camera whose FOA front is not the picture's centre); the signal itself when nothing turns."""
        from pan360.spatial.ambisonics import RotatedFOA

        offset = geometry.rotation_matrix(yaw_offset, 0.0, 0.0)
        if self.rotations is None:
            if yaw_offset == 0.0:
                return foa
            return RotatedFOA(foa, [0.0], offset[None])
        return RotatedFOA(foa, self.times, self.rotations @ offset)


def level_rotations(world: ArrayLike) -> FloatArray:
    """Camera → level rotations (T, 3, 3) from camera → world ones: each turned about the vertical so
    the camera's heading is yaw 0 (looking straight up or down, its top edge gives the heading)."""
    r = np.asarray(world, dtype=np.float64)
    fwd, up = r[:, :, 0], r[:, :, 2]  # the camera's forward and up axes in the world
    flat = np.hypot(fwd[:, 0], fwd[:, 1]) > 1e-6
    heading = np.where(flat, np.arctan2(fwd[:, 1], fwd[:, 0]),
                       np.arctan2(-np.sign(fwd[:, 2]) * up[:, 1], -np.sign(fwd[:, 2]) * up[:, 0]))
    c, s = np.cos(heading), np.sin(heading)
    turn = np.zeros_like(r)  # about z by -heading
    turn[:, 0, 0], turn[:, 0, 1], turn[:, 1, 0], turn[:, 1, 1], turn[:, 2, 2] = c, s, -s, c, 1.0
    return turn @ r


def pose_motion(yaw: float, pitch: float, roll: float) -> M.CameraMotion | None:
    """The spherical-video pose as a constant camera orientation (camera → world); None when it is level
    (its yaw is the initial view, which pan360 already starts from: only pitch and roll need undoing)."""
    if not (pitch or roll):
        return None
    q = M.quat_from_matrix(geometry.rotation_matrix(0.0, pitch, roll))
    return M.CameraMotion(np.zeros(1), M.quat_normalize(q)[None], "prhd")


def recorded_motion(info) -> tuple[M.CameraMotion | None, str | None]:
    """The camera's orientation the file records (GPMF or CAMM, else the ``prhd`` pose when it tilts), or
    None; and why it could not be read (a damaged track), or None."""
    try:
        motion = M.read_camera_motion(info)
    except Pan360Error as exc:
        return None, str(exc)
    return motion or pose_motion(info.yaw, info.pitch, info.roll), None


def choose_stabilization(info, mode: str = "auto") -> tuple[Stabilization, str | None]:
    """The :class:`Stabilization` of ``info`` (a :class:`pan360.media.MediaInfo`) for ``--stabilize mode``,
    and a note for the user (what was found and chosen) or None. ``auto`` levels when the file records
    the camera's motion (:func:`recorded_motion`); ``level``/``world`` without it are refused."""
    if mode not in MODES:
        raise Pan360Error(f"unknown --stabilize {mode!r}; use one of {', '.join(MODES)}")
    if mode == "off":
        return Stabilization("off"), None
    motion, damaged = recorded_motion(info)
    if damaged is not None and mode != "auto":
        raise Pan360Error(damaged)
    if motion is None:
        if mode != "auto":
            raise Pan360Error(f"--stabilize {mode} needs the camera's motion, but {info.path.name} records none "
                              "(no GPMF or CAMM track, no tilted spherical-video pose)")
        return Stabilization("off"), (None if damaged is None else f"{damaged}: not stabilised")
    chosen = "level" if mode == "auto" else mode
    times = np.asarray(info.frame_times, dtype=np.float64)
    world = M.quat_to_matrix(M.orientation_at(motion, times))
    rot = world if chosen == "world" else level_rotations(world)
    what = _SOURCES.get(motion.source, motion.source)
    note = None
    if mode == "auto":
        note = (f"camera motion recorded ({what}): horizon levelled (--stabilize level; world also holds the "
                "camera's turns still, off keeps the picture's own axes)")
    return Stabilization(chosen, motion.source, times, rot), note


def rotate_maps(maps: NDArray[np.float32], rotations: ArrayLike) -> NDArray[np.float32]:
    """Equirect maps (T, H, W) in the camera frame, resampled into a frame: map ``t`` at direction ``d``
    is the camera map at ``rotations[t]^T d`` (bilinear, wrapping at ±180°, rows clamped)."""
    m = np.asarray(maps, dtype=np.float32)
    r = np.asarray(rotations, dtype=np.float64)
    if m.ndim != 3 or r.shape != (len(m), 3, 3):
        raise Pan360Error(f"need one rotation per map: maps {m.shape}, rotations {r.shape}")
    h, w = m.shape[1:]
    grid = sphere.equirect_vectors(w, h)
    out = np.empty_like(m)
    for t in range(len(m)):
        lon, lat = geometry.world_angles(grid, r[t].T)
        x, y = geometry.angles_to_source(lon, lat, w, h)
        out[t] = cv2.remap(m[t], x.astype(np.float32), np.clip(y, 0.0, h - 1.0).astype(np.float32),
                           cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    return out


def describe_motion(info) -> str:
    """One line for ``pan360 info``: the camera motion the file records and what ``auto`` does with it."""
    motion, damaged = recorded_motion(info)
    if damaged is not None:
        return f"unreadable ({damaged}): not stabilised"
    if motion is None:
        return "none recorded (the picture's own axes)"
    what = _SOURCES.get(motion.source, motion.source)
    if motion.n_samples == 1:
        return f"{what}, constant: --stabilize auto levels the horizon"
    span = float(motion.times[-1] - motion.times[0])
    rate = (motion.n_samples - 1) / span if span > 0 else 0.0
    return f"{what}, {motion.n_samples} samples ({rate:.0f}/s over {span:.1f} s): --stabilize auto levels the horizon"
