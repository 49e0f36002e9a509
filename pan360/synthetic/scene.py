"""The scene model of :mod:`pan360.synthetic`: object classes, objects, scenes and their ground truth.

Angles follow docs/CONVENTIONS.md (degrees; yaw in (-180, 180], positive right; pitch up).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pan360 import sphere

#: Object classes and their RGB colour; each also has its own shape, pattern (drawing) and sound.
CLASSES: dict[str, tuple[int, int, int]] = {
    "drum": (220, 40, 40),
    "bell": (240, 200, 30),
    "voice": (200, 60, 220),
    "engine": (255, 130, 20),
    "bird": (40, 200, 90),
}


@dataclass(frozen=True)
class SceneObject:
    """One object: class, angular radius (degrees) and motion on the sphere.

    Direction at time t: ``yaw = yaw0 + yaw_rate * t`` (wrapped; degrees/s, positive to the right) and
    ``pitch = pitch0 + pitch_amp * sin(2π t / pitch_period)``. ``seed`` varies the class's sound.
    """

    kind: str
    yaw: float
    pitch: float
    radius: float = 12.0
    yaw_rate: float = 0.0
    pitch_amp: float = 0.0
    pitch_period: float = 6.0
    seed: int = 0

    def direction(self, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(yaw, pitch) in degrees at time(s) ``t`` in seconds."""
        t = np.asarray(t, dtype=np.float64)
        yaw = sphere.wrap_yaw(self.yaw + self.yaw_rate * t)
        pitch = self.pitch + self.pitch_amp * np.sin(2.0 * np.pi * t / self.pitch_period)
        return yaw, np.clip(pitch, -90.0, 90.0)


@dataclass(frozen=True)
class Scene:
    """A scene: equirect size (any aspect), timing, objects and their schedule.

    ``schedule`` holds ``(object_index, start_s, end_s)`` intervals during which that object sounds.
    ``diffuse_noise_db`` is the power of the diffuse noise relative to the direct sound in W (e.g. -3:
    SNR 3 dB); None disables it. ``reverb`` adds early reflections and a diffuse tail.
    ``highlight_sounding`` draws sounding objects brighter with a halo (a visual cue); False draws every
    object at the same level, so only the sound tells which one sounds (training data for the network).
    """

    width: int = 1920
    height: int = 960
    fps: float = 30.0
    duration: float = 4.0
    sample_rate: int = 48000
    objects: tuple[SceneObject, ...] = ()
    schedule: tuple[tuple[int, float, float], ...] = ()
    diffuse_noise_db: float | None = -3.0
    reverb: bool = False
    seed: int = 0
    highlight_sounding: bool = True

    @property
    def n_frames(self) -> int:
        return int(round(self.duration * self.fps))

    @property
    def n_samples(self) -> int:
        return int(round(self.n_frames / self.fps * self.sample_rate))

    def frame_times(self) -> np.ndarray:
        return np.arange(self.n_frames) / self.fps


@dataclass
class GroundTruth:
    """Exact truth per video frame (T frames, K objects); directions in degrees.

    ``sounding`` is the index of the object sounding at the frame time (the first one when several
    do), -1 when none; ``yaw``/``pitch`` are its direction (NaN when -1). ``switch_times`` are the
    times where ``sounding`` changes.
    """

    times: np.ndarray
    sounding: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    object_yaw: np.ndarray
    object_pitch: np.ndarray
    active: np.ndarray
    radii: np.ndarray
    classes: list[str]
    switch_times: list[float]
    fps: float
    width: int
    height: int
    extra: dict = field(default_factory=dict)
