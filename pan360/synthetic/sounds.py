"""Procedural sounds of the synthetic object classes: each class its own, deterministic from a seed."""

from __future__ import annotations

from typing import Callable

import numpy as np

from pan360.synthetic.scene import CLASSES, SceneObject

REF_RMS = 0.1  # every dry class signal is normalised to this RMS (over its whole length)


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
    return s * (REF_RMS / rms) if rms > 0 else s
