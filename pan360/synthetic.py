"""Generated 360° audio-visual scenes with exact ground truth.

A :class:`Scene` is an equirect background plus objects of a few classes, each with its own look
(colour, pattern, shape, drawn on the sphere) and its own procedural sound, moving or static, and a
schedule of when each sounds. :func:`render_scene` turns it into lazily generated rgb24 frames, a
first-order ambisonic (ambiX, SN3D) track and a :class:`GroundTruth`. The same generator serves the
example clip, the tests, the acceptance benchmark and (later) training data for the sound-localisation
network, so everything is deterministic from seeds and every quantity of the truth is exact.

Angles follow ../shared/CONVENTIONS.md (degrees; yaw in (-180, 180], positive right; pitch up).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from scipy.signal import fftconvolve

from pan360 import sphere
from pan360.errors import Pan360Error
from pan360.spatial.ambisonics import encode_foa

#: Object classes and their RGB colour; each also has its own shape, pattern (drawing) and sound.
CLASSES: dict[str, tuple[int, int, int]] = {
    "drum": (220, 40, 40),
    "bell": (240, 200, 30),
    "voice": (200, 60, 220),
    "engine": (255, 130, 20),
    "bird": (40, 200, 90),
}
_REF_RMS = 0.1  # every dry class signal is normalised to this RMS (over its whole length)
_FADE_S = 0.015  # on/off ramps, so gating does not click


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


# --------------------------------------------------------------------------------------- sounds
def _place(template: np.ndarray, onsets: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n + len(template))
    for i in onsets:
        out[i : i + len(template)] += template
    return out[:n]


def _onsets(rng: np.random.Generator, n: int, sr: int, period: tuple[float, float]) -> np.ndarray:
    t, out = rng.uniform(0.0, period[0]), []
    while t < n / sr:
        out.append(int(t * sr))
        t += rng.uniform(*period)
    return np.asarray(out, dtype=np.int64)


def _drum(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Tom-like pitched-down thumps with a snare-like noise burst, ~2–3 hits per second."""
    t = np.arange(int(0.35 * sr)) / sr
    f = rng.uniform(90, 140) + rng.uniform(60, 120) * np.exp(-t / 0.03)
    hit = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / 0.12)
    hit += 0.5 * rng.standard_normal(len(t)) * np.exp(-t / 0.04)
    return _place(hit, _onsets(rng, n, sr, (0.33, 0.5)), n)


def _bell(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Inharmonic partials (bell ratios) with long decays, struck every 0.6–1 s."""
    t = np.arange(int(1.5 * sr)) / sr
    f0 = rng.uniform(500, 900)
    ratios, amps = [1.0, 2.0, 2.76, 5.4, 8.93], [1.0, 0.5, 0.6, 0.3, 0.2]
    hit = sum(a * np.sin(2 * np.pi * f0 * r * t) * np.exp(-t * (1.5 + r)) for r, a in zip(ratios, amps))
    return _place(hit, _onsets(rng, n, sr, (0.6, 1.0)), n)


def _smooth_random(rng: np.random.Generator, n: int, sr: int, rate: float) -> np.ndarray:
    """A smooth random curve in [-1, 1] with about ``rate`` changes per second."""
    k = int(n / sr * rate) + 2
    return np.interp(np.arange(n), np.linspace(0, n, k), rng.uniform(-1, 1, k))


def _voice(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Harmonic buzz with vibrato, moving formants and syllable-rate amplitude, like speech."""
    t = np.arange(n) / sr
    f0 = rng.uniform(110, 220) * (1 + 0.03 * np.sin(2 * np.pi * 5 * t) + 0.08 * _smooth_random(rng, n, sr, 2))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    f1 = 550 + 250 * _smooth_random(rng, n, sr, 4)
    f2 = 1700 + 600 * _smooth_random(rng, n, sr, 4)
    out = np.zeros(n)
    for k in range(1, int(4000 / f0.min())):
        fk = k * f0
        env = np.exp(-(((fk - f1) / 150) ** 2)) + 0.6 * np.exp(-(((fk - f2) / 250) ** 2)) + 0.05
        out += env * np.sin(k * phase) * (fk < 5000)
    syll = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)) + 0.3, 0, None)
    return out * syll


def _engine(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Low sawtooth-like hum with firing modulation plus a band of noise, steady."""
    t = np.arange(n) / sr
    f0 = rng.uniform(35, 60) * (1 + 0.05 * _smooth_random(rng, n, sr, 0.5))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    out = sum(np.sin(k * phase) / k for k in range(1, 30))
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    noise = np.fft.irfft(spec * ((freqs > 300) & (freqs < 1500)), n)
    out = out * (1 + 0.3 * np.sin(4 * phase)) + 3.0 * noise
    return out * (1 + 0.2 * np.sin(2 * np.pi * 0.7 * t))


def _bird(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Bursts of 3–6 fast frequency-swept chirps in the 2–6 kHz range, short pauses between bursts."""
    out = np.zeros(n + sr)
    at = int(rng.uniform(0.0, 0.2) * sr)
    while at < n:
        for _ in range(rng.integers(3, 7)):
            dur = rng.uniform(0.05, 0.11)
            t = np.arange(int(dur * sr)) / sr
            f = np.linspace(rng.uniform(2000, 3500), rng.uniform(4000, 6000), len(t))[:: rng.choice([-1, 1])]
            end = min(at + len(t), len(out))
            out[at:end] += (np.sin(2 * np.pi * np.cumsum(f) / sr) * np.sin(np.pi * t / dur))[: end - at]
            at += len(t) + int(rng.uniform(0.03, 0.08) * sr)
        at += int(rng.uniform(0.1, 0.3) * sr)
    return out[:n]


_SOUNDS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "drum": _drum, "bell": _bell, "voice": _voice, "engine": _engine, "bird": _bird,
}


def object_sound(obj: SceneObject, n: int, sample_rate: int) -> np.ndarray:
    """The dry, ungated sound of an object: ``n`` samples at RMS 0.1, deterministic from its seed."""
    rng = np.random.default_rng([obj.seed, list(CLASSES).index(obj.kind)])
    s = _SOUNDS[obj.kind](rng, n, sample_rate)
    rms = float(np.sqrt(np.mean(s**2)))
    return s * (_REF_RMS / rms) if rms > 0 else s


# ---------------------------------------------------------------------------------------- audio
def _gates(scene: Scene) -> np.ndarray:
    """(K, N) on/off gains of each object from the schedule, with short ramps."""
    n, sr = scene.n_samples, scene.sample_rate
    t = np.arange(n) / sr
    g = np.zeros((len(scene.objects), n))
    for k, start, end in scene.schedule:
        i0, i1 = max(0, int(start * sr)), min(n, int(np.ceil(end * sr)))
        tt = t[i0:i1]
        ramp = np.clip((tt - start) / _FADE_S, 0, 1) * np.clip((end - tt) / _FADE_S, 0, 1)
        g[k, i0:i1] = np.maximum(g[k, i0:i1], ramp)
    return g


def _fibonacci_dirs(m: int, twist: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """m nearly uniform directions (yaw, pitch) on the sphere."""
    i = np.arange(m) + 0.5
    pitch = np.degrees(np.arcsin(1 - 2 * i / m))
    return sphere.wrap_yaw(i * 137.50776 + twist), pitch


def _pink(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr)
    s = np.fft.irfft(spec / np.sqrt(np.maximum(f, 50.0)) * (f > 20), n)
    return s / np.sqrt(np.mean(s**2))


def _reverb(rng: np.random.Generator, s: np.ndarray, yaw, pitch, sr: int) -> np.ndarray:
    """Four early reflections from other directions plus a diffuse exponential tail (RT60 ~0.5 s)."""
    n = len(s)
    out = np.zeros((4, n))
    for _ in range(4):
        d = int(rng.uniform(0.008, 0.04) * sr)
        # Rough surfaces scatter: a short random filter partly decorrelates the reflection from the direct sound.
        scatter = rng.standard_normal(int(0.003 * sr)) * np.exp(-np.arange(int(0.003 * sr)) / (0.001 * sr))
        delayed = np.concatenate([np.zeros(d), fftconvolve(s, scatter / np.linalg.norm(scatter))[: n - d]])
        ry = sphere.wrap_yaw(yaw + rng.choice([-1, 1]) * rng.uniform(60, 180))
        rp = -np.asarray(pitch) if rng.random() < 0.5 else np.asarray(pitch) * 0.5 + 20
        out += encode_foa(rng.uniform(0.1, 0.2) * delayed, ry, rp)
    t = np.arange(int(0.6 * sr)) / sr
    for ty, tp in zip(*_fibonacci_dirs(8, rng.uniform(0, 360))):
        ir = rng.standard_normal(len(t)) * np.exp(-t * 6.9 / 0.5) * (t > 0.02)
        ir *= np.sqrt(0.03 / np.sum(ir**2))  # total tail energy ~ -6 dB of the direct sound
        out += encode_foa(fftconvolve(s, ir)[:n], ty, tp)
    return out


def _scene_audio(scene: Scene, dry: np.ndarray, gates: np.ndarray) -> np.ndarray:
    """(4, N) ambiX FOA: the gated direct sounds, optional reverb, diffuse noise."""
    n, sr = scene.n_samples, scene.sample_rate
    t = np.arange(n) / sr
    foa = np.zeros((4, n))
    for k, obj in enumerate(scene.objects):
        if not np.any(dry[k]):
            continue
        moving = obj.yaw_rate != 0 or obj.pitch_amp != 0
        yaw, pitch = obj.direction(t) if moving else obj.direction(0.0)
        foa += encode_foa(dry[k], yaw, pitch)
    on = gates.max(axis=0, initial=0.0) > 0.5  # the direct level is measured while something is on
    direct_power = float(np.mean(foa[0, on] ** 2)) if on.any() else _REF_RMS**2
    if scene.reverb:
        for k, obj in enumerate(scene.objects):
            if np.any(dry[k]):
                rng = np.random.default_rng([scene.seed, 7, k])
                foa += _reverb(rng, dry[k], *obj.direction(t), sr)
    if scene.diffuse_noise_db is not None:
        # Decorrelated noise from many directions: an (approximately) isotropic diffuse field.
        rng = np.random.default_rng([scene.seed, 11])
        m = 24
        gain = np.sqrt(direct_power * 10 ** (scene.diffuse_noise_db / 10) / m)
        for ny, npitch in zip(*_fibonacci_dirs(m, rng.uniform(0, 360))):
            foa += encode_foa(gain * _pink(rng, n, sr), ny, npitch)
    peak = float(np.abs(foa).max(initial=0.0))
    if peak > 0.98:  # keep headroom for the AAC encoder rather than clip
        foa *= 0.98 / peak
    return foa.astype(np.float32)


# -------------------------------------------------------------------------------------- drawing
def _background(width: int, height: int, seed: int, vecs: np.ndarray) -> np.ndarray:
    """Sky/ground gradient, a 30° yaw/pitch grid (red meridian at yaw 0) and seamless noise."""
    yaw, pitch = sphere.equirect_angles(width, height)
    p = pitch[:, None, None]
    sky = np.array([150, 190, 235]) + (np.array([30, 60, 150]) - [150, 190, 235]) * (np.clip(p, 0, None) / 90) ** 0.7
    ground = np.array([120, 100, 70]) + (np.array([50, 70, 40]) - [120, 100, 70]) * (np.clip(-p, 0, None) / 90) ** 0.7
    img = np.where(p >= 0, sky, ground) * np.ones((1, width, 1))
    rng = np.random.default_rng([seed, 3])
    noise = np.zeros((height, width), np.float32)
    for _ in range(12):  # random plane waves in 3D: a texture with no seam and no pole pinch
        k = rng.standard_normal(3) * rng.uniform(3, 14)
        noise += np.cos(vecs @ k.astype(np.float32) + rng.uniform(0, 2 * np.pi))
    img *= (1 + 0.05 * noise)[..., None]
    lw = max(0.3, 1.2 * 360 / width)  # line half-width in degrees, at least about a pixel
    dy = np.abs((yaw[None, :] + 15) % 30 - 15) * np.cos(np.radians(p[..., 0]))
    dp = np.abs((p[..., 0] + 15) % 30 - 15) * np.ones((1, width))
    line = np.clip(1 - np.minimum(dy, dp) / lw, 0, 1)[..., None]
    front = np.clip(1 - np.abs(yaw)[None, :] * np.cos(np.radians(p[..., 0])) / lw, 0, 1)[..., None]
    img = img * (1 - 0.6 * line) + 0.6 * line * 30
    img = img * (1 - front) + front * np.array([200, 30, 30])
    return np.clip(img, 0, 255).astype(np.uint8)


def _shape(kind: str, phi: np.ndarray) -> np.ndarray:
    """Outline radius (fraction of the object radius) at polar angle phi (0 = right, π/2 = up)."""
    if kind == "bell":  # five-point star
        return 0.75 + 0.25 * np.cos(5 * (phi - np.pi / 2))
    if kind == "voice":  # square
        return 0.8 / np.maximum(np.abs(np.cos(phi)), np.abs(np.sin(phi)))
    if kind == "engine":  # hexagon
        return np.cos(np.pi / 6) / np.cos(np.mod(phi, np.pi / 3) - np.pi / 6)
    if kind == "bird":  # triangle pointing up
        return 0.5 / np.cos(np.mod(phi + np.pi / 2 + np.pi / 3, 2 * np.pi / 3) - np.pi / 3)
    return np.ones_like(phi)  # drum: disc


def _pattern(kind: str, d: np.ndarray, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """1 where the pattern darkens the class colour, 0 elsewhere (u right, v up, degrees)."""
    if kind == "drum":
        return np.floor(d / (r / 4)) % 2
    if kind == "bell":
        return (d > 0.55 * r).astype(np.float64)
    if kind == "voice":
        return np.floor(v / (r / 3)) % 2
    if kind == "engine":
        return (np.floor(u / (r / 2.5)) + np.floor(v / (r / 2.5))) % 2
    return (np.hypot(u - 0.25 * r, v - 0.15 * r) < 0.12 * r).astype(np.float64)  # bird: an eye


def _draw(img: np.ndarray, vecs: np.ndarray, obj: SceneObject, yaw: float, pitch: float, level: float) -> None:
    """Draw one object in place, shape and pattern in its own tangent frame (exact on the sphere).

    ``level`` in [0, 1] is how loud it sounds now: it brightens the object and lights a halo.
    """
    h, w = img.shape[:2]
    r = obj.radius
    big = r * (1.3 if level > 0 else 1.05)
    y0 = max(0, int(np.floor((0.5 - (pitch + big) / 180) * h - 1)))
    y1 = min(h, int(np.ceil((0.5 - (pitch - big) / 180) * h + 1)))
    if abs(pitch) + big >= 89.0:
        cols = np.arange(w)
    else:  # yaw half-extent of a spherical cap of radius `big` centred at this pitch
        half = np.degrees(np.arcsin(min(1.0, np.sin(np.radians(big)) / np.cos(np.radians(pitch)))))
        xc = sphere.dir_to_pixel(yaw, pitch, w, h)[0]
        hw = half / 360 * w + 2
        cols = np.arange(w) if 2 * hw + 1 >= w else np.arange(int(xc - hw), int(np.ceil(xc + hw)) + 1) % w
    patch_v = vecs[y0:y1][:, cols]
    ya, pa = np.radians(yaw), np.radians(pitch)
    c = sphere.dir_to_vec(yaw, pitch)
    east = np.array([-np.sin(ya), -np.cos(ya), 0.0])  # direction of increasing yaw (image right)
    north = np.array([-np.sin(pa) * np.cos(ya), np.sin(pa) * np.sin(ya), np.cos(pa)])
    a, b, z = patch_v @ east.astype(np.float32), patch_v @ north.astype(np.float32), patch_v @ c.astype(np.float32)
    d = np.degrees(np.arctan2(np.hypot(a, b), z))  # exact angular distance to the centre
    phi = np.arctan2(b, a)
    u, v = d * np.cos(phi), d * np.sin(phi)
    pix = 360.0 / w
    edge = _shape(obj.kind, phi) * r
    alpha = np.clip((edge - d) / pix + 0.5, 0, 1)[..., None]
    col = np.asarray(CLASSES[obj.kind], np.float64)
    col = col + (255 - col) * 0.55 * level
    dark = (_pattern(obj.kind, d, u, v, r) * (d > 0.3 * r))[..., None]  # plain hub of the class colour
    fill = col * (1 - 0.45 * dark)
    patch = img[y0:y1][:, cols].astype(np.float64)
    if level > 0:
        halo = np.clip(1 - np.abs(d - edge * 1.16) / (0.1 * r + pix), 0, 1)[..., None] * level
        patch = patch * (1 - halo) + halo * np.array([255, 255, 210])
    patch = patch * (1 - alpha) + alpha * fill
    img[y0:y1, cols] = np.clip(patch + 0.5, 0, 255).astype(np.uint8)


def _frame_levels(scene: Scene, dry: np.ndarray, gates: np.ndarray) -> np.ndarray:
    """(T, K) visual sounding level: a steady part while on plus the sound's own short-term loudness."""
    spf = scene.sample_rate / scene.fps
    out = np.zeros((scene.n_frames, len(scene.objects)))
    for i in range(scene.n_frames):
        a, b = int(i * spf), int((i + 1) * spf)
        on = gates[:, a:b].mean(axis=1)
        rms = np.sqrt(np.mean(dry[:, a:b] ** 2, axis=1))
        out[i] = on * (0.6 + 0.4 * np.clip(rms / (1.5 * _REF_RMS), 0, 1))
    return out


# --------------------------------------------------------------------------------- ground truth
def _sounding_at(scene: Scene, t: float) -> int:
    for k, start, end in scene.schedule:
        if start <= t < end:
            return k
    return -1


def ground_truth(scene: Scene) -> GroundTruth:
    """Exact per-frame truth of a scene (no rendering needed)."""
    times = scene.frame_times()
    k_obj = len(scene.objects)
    oy, op = np.zeros((len(times), k_obj)), np.zeros((len(times), k_obj))
    for k, obj in enumerate(scene.objects):
        oy[:, k], op[:, k] = obj.direction(times)
    active = np.zeros((len(times), k_obj), bool)
    for k, start, end in scene.schedule:
        active[:, k] |= (times >= start) & (times < end)
    first = np.argmax(active, axis=1) if k_obj else np.zeros(len(times), np.int64)
    sounding = np.where(active.any(axis=1), first, -1)
    pad = np.full((len(times), 1), np.nan)  # column -1: nobody sounds
    yaw = np.concatenate([oy, pad], axis=1)[np.arange(len(times)), sounding]
    pitch = np.concatenate([op, pad], axis=1)[np.arange(len(times)), sounding]
    edges = sorted({e for _, s, t in scene.schedule for e in (s, t) if 0 < e < scene.duration})
    switches = [e for e in edges if _sounding_at(scene, e - 1e-9) != _sounding_at(scene, e)]
    return GroundTruth(times, sounding, yaw, pitch, oy, op, active, np.array([o.radius for o in scene.objects]),
                       [o.kind for o in scene.objects], switches, scene.fps, scene.width, scene.height)


def saliency_maps(gt: GroundTruth, width: int = 128, height: int = 64, frames: np.ndarray | None = None) -> np.ndarray:
    """Exact ground-truth saliency (T, height, width) float32: 1 inside the sounding object's disc.

    The disc is every grid cell whose centre is within the object's angular radius of its centre;
    frames with no sounding object are all zero. ``frames`` selects frame indices (default all).
    """
    idx = np.arange(len(gt.times)) if frames is None else np.asarray(frames)
    vecs = sphere.equirect_vectors(width, height)
    out = np.zeros((len(idx), height, width), np.float32)
    for j, i in enumerate(idx):
        k = gt.sounding[i]
        if k >= 0:
            c = sphere.dir_to_vec(gt.object_yaw[i, k], gt.object_pitch[i, k])
            out[j] = vecs @ c >= np.cos(np.radians(gt.radii[k]))
    return out


def _check(scene: Scene) -> None:
    if scene.width < 8 or scene.height < 4 or scene.fps <= 0 or scene.duration <= 0 or scene.sample_rate < 8000:
        raise Pan360Error(f"invalid scene size/timing: {scene.width}x{scene.height}, {scene.fps} fps, {scene.duration} s")
    for obj in scene.objects:
        if obj.kind not in CLASSES:
            raise Pan360Error(f"unknown object class {obj.kind!r}; known: {', '.join(CLASSES)}")
    for k, start, end in scene.schedule:
        if not 0 <= k < len(scene.objects) or end <= start:
            raise Pan360Error(f"invalid schedule entry ({k}, {start}, {end})")


def render_scene(scene: Scene) -> tuple[Iterator[np.ndarray], np.ndarray, GroundTruth]:
    """Render a scene: (lazy iterator of HxWx3 uint8 rgb24 frames, FOA float32 (4, N) ambiX, truth).

    The audio is computed up front (small); frames are drawn one at a time when iterated, over a
    background computed once, so memory does not grow with the duration.
    """
    _check(scene)
    n = scene.n_samples
    dry = np.stack([object_sound(o, n, scene.sample_rate) for o in scene.objects]) if scene.objects else np.zeros((0, n))
    gates = _gates(scene)
    gated = dry * gates
    foa = _scene_audio(scene, gated, gates)
    gt = ground_truth(scene)
    levels = _frame_levels(scene, gated, gates)

    def frames() -> Iterator[np.ndarray]:
        vecs = sphere.equirect_vectors(scene.width, scene.height).astype(np.float32)
        bg = _background(scene.width, scene.height, scene.seed, vecs)
        for i in range(scene.n_frames):
            img = bg.copy()
            lv = levels[i] if scene.highlight_sounding else np.zeros_like(levels[i])
            for k in np.argsort(lv > 0, kind="stable"):  # sounding objects drawn on top
                _draw(img, vecs, scene.objects[k], gt.object_yaw[i, k], gt.object_pitch[i, k], lv[k])
            yield img

    return frames(), foa, gt


def write_scene(scene: Scene, path: str | Path, *, crf: int = 20, preset: str = "medium", overwrite: bool = True,
                progress: Callable[[int, int], None] | None = None) -> GroundTruth:
    """Render ``scene`` to an MP4 (H.264 equirect video + 4-channel ambiX AAC); returns its truth.

    The file appears only when complete (written to a temporary name, then renamed).
    """
    from pan360.media import VideoWriter, atomic_output

    frames, foa, gt = render_scene(scene)
    with atomic_output(path, overwrite=overwrite) as tmp, VideoWriter(
        tmp, scene.width, scene.height, fps=Fraction(scene.fps).limit_denominator(1001),
        duration=scene.n_frames / scene.fps, crf=crf, preset=preset, audio=foa, sample_rate=scene.sample_rate,
    ) as writer:
        for i, frame in enumerate(frames):
            writer.write(frame, float(gt.times[i]))
            if progress is not None:
                progress(i + 1, scene.n_frames)
    return gt


def write_ground_truth(gt: GroundTruth, json_path: str | Path) -> None:
    """Write the truth as JSON: per-frame time, sounding index, its yaw/pitch (null if none), all objects."""
    def r(x: float) -> float | None:
        return None if not np.isfinite(x) else round(float(x), 4)

    doc = {
        "version": 1, "fps": gt.fps, "width": gt.width, "height": gt.height,
        "objects": [{"class": c, "radius": float(rad)} for c, rad in zip(gt.classes, gt.radii)],
        "switch_times": [round(float(s), 4) for s in gt.switch_times],
        "frames": [
            {"index": i, "time": r(gt.times[i]), "sounding": int(gt.sounding[i]), "yaw": r(gt.yaw[i]),
             "pitch": r(gt.pitch[i]), "objects": [[r(y), r(p)] for y, p in zip(gt.object_yaw[i], gt.object_pitch[i])]}
            for i in range(len(gt.times))
        ],
        **gt.extra,
    }
    Path(json_path).write_text(json.dumps(doc, separators=(",", ":")))


# -------------------------------------------------------------------------------- random scenes
def _place_objects(rng: np.random.Generator, n: int, min_sep: float) -> list[tuple[float, float]]:
    """Random directions, pairwise at least ``min_sep`` apart; objects 0 and 1 more than 120° apart."""
    for _ in range(1000):
        y0 = rng.uniform(-180, 180)
        dirs = [(y0, rng.uniform(-25, 25)), (y0 + 180 + rng.uniform(-50, 50), rng.uniform(-25, 25))]
        while len(dirs) < n:
            cand = (rng.uniform(-180, 180), rng.uniform(-25, 25))
            if all(sphere.angular_distance(*cand, *d) >= min_sep for d in dirs):
                dirs.append(cand)
            elif rng.random() < 0.02:
                break
        if len(dirs) == n:
            return [(float(sphere.wrap_yaw(y)), p) for y, p in dirs]
    raise Pan360Error(f"cannot place {n} objects {min_sep}° apart")


def random_scene(seed: int, *, width: int = 1920, height: int = 960, fps: float = 30.0, duration: float = 10.0,
                 n_objects: int | None = None, switch_every: tuple[float, float] = (2.5, 4.0),
                 diffuse_noise_db: float | None = -3.0, reverb: bool = False, n_moving: int = 1,
                 ambient_prob: float = 0.0, radius: tuple[float, float] = (7.0, 12.0),
                 min_separation: float = 45.0, sample_rate: int = 48000) -> Scene:
    """A random scene: 3–5 objects of distinct classes (``n_objects`` to fix it), angular radius in
    ``radius`` (7–12°: 14–24° across), at least ``min_separation`` apart, one sounding at a time.

    The sounding object switches every ``switch_every`` seconds (uniform range) to another one; the
    first switch goes between two objects more than 120° apart (a fast pan). ``n_moving`` objects
    move (6–15 °/s in yaw, up to ±8° in pitch, staying within ±35° pitch). Each later segment is an
    ambient-only stretch with probability ``ambient_prob``. ``diffuse_noise_db``: diffuse noise power
    relative to the direct sound (-3: SNR 3 dB; None: none). Deterministic from ``seed``.
    """
    rng = np.random.default_rng([seed, 1])
    n = int(rng.integers(3, 6)) if n_objects is None else n_objects
    if n < 2:
        raise Pan360Error("a random scene needs at least 2 objects")
    kinds = [list(CLASSES)[i % len(CLASSES)] for i in rng.permutation(max(n, len(CLASSES)))[:n]]
    objects = []
    for k, (yaw, pitch) in enumerate(_place_objects(rng, n, min_separation)):
        moving = k >= n - n_moving
        objects.append(SceneObject(
            kind=kinds[k], yaw=yaw, pitch=pitch, radius=float(rng.uniform(*radius)),
            yaw_rate=float(rng.choice([-1, 1]) * rng.uniform(6, 15)) if moving else 0.0,
            pitch_amp=float(rng.uniform(3, 8)) if moving else 0.0,
            pitch_period=float(rng.uniform(4, 8)), seed=int(rng.integers(0, 2**31)),
        ))
    schedule, t, cur, used = [], 0.0, -1, set()
    while t < duration - 1e-9:
        seg = float(rng.uniform(*switch_every))
        if not schedule:
            nxt = 0
        elif len(schedule) == 1:
            nxt = 1  # the guaranteed far switch
        elif rng.random() < ambient_prob and cur != -1:
            nxt = -1
        else:
            pool = [k for k in range(n) if k != cur and k not in used] or [k for k in range(n) if k != cur]
            nxt = int(rng.choice(pool))
        if nxt >= 0:
            schedule.append((nxt, round(t, 6), round(min(t + seg, duration), 6)))
            used.add(nxt)
        cur, t = nxt, t + seg
    return Scene(width=width, height=height, fps=fps, duration=duration, sample_rate=sample_rate,
                 objects=tuple(objects), schedule=tuple(schedule), diffuse_noise_db=diffuse_noise_db,
                 reverb=reverb, seed=seed)
