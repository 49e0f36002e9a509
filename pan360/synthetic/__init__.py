"""Generated 360° audio-visual scenes with exact ground truth.

A :class:`Scene` is an equirect background plus objects of a few classes, each with its own look
(colour, pattern, shape, drawn on the sphere) and its own procedural sound, moving or static, and a
schedule of when each sounds. :func:`render_scene` turns it into lazily generated rgb24 frames, a
first-order ambisonic (ambiX, SN3D) track and a :class:`GroundTruth`. The same generator serves the
example clip, the tests, the acceptance benchmark and the training data of the sound-localisation
network (train/make_dataset.py), so everything is deterministic from seeds and every quantity of the truth is exact.

Angles follow docs/CONVENTIONS.md (degrees; yaw in (-180, 180], positive right; pitch up).

Layout: :mod:`.scene` (classes, objects, scenes, truth), :mod:`.sounds` (each class's sound),
:mod:`.drawing` (each class's look); this module renders them (FOA audio, frames, truth, files).
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
from scipy.signal import fftconvolve

from pan360 import sphere
from pan360.errors import Pan360Error
from pan360.progress import Progress
from pan360.spatial.ambisonics import encode_foa
from pan360.synthetic.drawing import draw_background, draw_object
from pan360.synthetic.scene import CLASSES, GroundTruth, Scene, SceneObject
from pan360.synthetic.sounds import REF_RMS, object_sound

__all__ = [
    "CLASSES", "GroundTruth", "Scene", "SceneObject", "ground_truth", "object_sound", "random_scene",
    "render_scene", "saliency_maps", "write_ground_truth", "write_scene",
]

_FADE_S = 0.015  # on/off ramps, so gating does not click


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
    direct_power = float(np.mean(foa[0, on] ** 2)) if on.any() else REF_RMS**2
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


def _frame_levels(scene: Scene, dry: np.ndarray, gates: np.ndarray) -> np.ndarray:
    """(T, K) visual sounding level: a steady part while on plus the sound's own short-term loudness."""
    spf = scene.sample_rate / scene.fps
    out = np.zeros((scene.n_frames, len(scene.objects)))
    for i in range(scene.n_frames):
        a, b = int(i * spf), int((i + 1) * spf)
        on = gates[:, a:b].mean(axis=1)
        rms = np.sqrt(np.mean(dry[:, a:b] ** 2, axis=1))
        out[i] = on * (0.6 + 0.4 * np.clip(rms / (1.5 * REF_RMS), 0, 1))
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
        bg = draw_background(scene.width, scene.height, scene.seed, vecs)
        for i in range(scene.n_frames):
            img = bg.copy()
            lv = levels[i] if scene.highlight_sounding else np.zeros_like(levels[i])
            for k in np.argsort(lv > 0, kind="stable"):  # sounding objects drawn on top
                draw_object(img, vecs, scene.objects[k], gt.object_yaw[i, k], gt.object_pitch[i, k], lv[k])
            yield img

    return frames(), foa, gt


def write_scene(scene: Scene, path: str | Path, *, crf: int = 20, preset: str = "medium", overwrite: bool = True,
                progress: Progress | None = None) -> GroundTruth:
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
