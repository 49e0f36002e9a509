"""Saliency sources: where in the sphere is something worth looking at, per video frame.

Every source turns an input into maps of the same shape: float32 ``(T, H, W)`` on an equirect grid
(pixel centres as :func:`pan360.sphere.equirect_angles`), one per video frame, non-negative, on an
absolute scale (an all-zero map means "nothing here"), so the trajectory planner can treat them alike.

Sources:

- ``foa``: the physical direction of sound from first-order ambisonic audio (training-free);
- ``none``: no saliency at all (the camera holds its initial direction); what ``auto`` falls back to
  when the input has no spatial audio.

``auto`` picks the best source the input supports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.typing import NDArray

from pan360.errors import Pan360Error
from pan360.media import AudioTrack, MediaInfo
from pan360.spatial import fuma_to_ambix, foa_energy_maps

#: Map grid (height, width): 2.8° cells, fine enough for a 60°+ view, cheap for 1800 frames.
MAP_SIZE = (64, 128)
SOURCES = ("auto", "foa", "none")

Progress = Callable[[int, int], None]


@dataclass
class SaliencyResult:
    """Maps of one source and why that source was chosen."""

    maps: NDArray[np.float32]  # (T, H, W)
    times: NDArray[np.float64]  # (T,) seconds, the video frame times
    source: str  # the source actually used ("foa", "none")
    note: str | None = None  # a message for the user (e.g. a fallback)


def foa_from_track(track: AudioTrack, foa_format: str = "auto") -> NDArray[np.float32]:
    """The ambiX (4, N) signal of a 4-channel track; FuMa is converted (``foa_format`` overrides)."""
    if track.samples.shape[0] != 4:
        raise Pan360Error(
            f"spatial audio needs 4 channels (first-order ambisonics), this track has {track.samples.shape[0]}")
    kind = track.ambisonic if foa_format == "auto" else foa_format
    if kind == "fuma":
        return fuma_to_ambix(track.samples)
    return np.ascontiguousarray(track.samples, dtype=np.float32)


def choose_source(name: str, info: MediaInfo) -> tuple[str, str | None]:
    """Resolve ``auto`` and check that the input supports the requested source.

    Returns (source, note); the note explains a fallback to the user.
    """
    if name not in SOURCES:
        raise Pan360Error(f"unknown saliency source {name!r}; choose one of {', '.join(SOURCES)}")
    audio = info.audio
    if name == "foa":
        if audio is None:
            raise Pan360Error("--saliency foa needs spatial audio, but the input has no audio track")
        if audio.channels != 4:
            raise Pan360Error(
                f"--saliency foa needs 4-channel first-order ambisonic audio, the input has "
                f"{audio.channels} channel(s) ({audio.layout})")
        return "foa", None
    if name == "none":
        return "none", None
    if audio is not None and audio.channels == 4:
        return "foa", None
    why = "no audio track" if audio is None else f"{audio.channels}-channel audio, not spatial"
    return "none", f"{why}: no saliency source for this input, the camera holds its initial direction"


def compute_saliency(source: str, info: MediaInfo, track: AudioTrack | None, *, foa_format: str = "auto",
                     yaw_offset: float = 0.0, map_size: tuple[int, int] = MAP_SIZE,
                     progress: Progress | None = None) -> NDArray[np.float32]:
    """Maps (T, H, W) of a resolved source (see :func:`choose_source`) for every video frame."""
    h, w = map_size
    if source == "foa":
        if track is None:
            raise Pan360Error("spatial audio requested but the input has no audio track")
        foa = foa_from_track(track, foa_format)
        return foa_energy_maps(foa, track.sample_rate, info.frame_times, width=w, height=h,
                               yaw_offset=yaw_offset, progress=progress)
    if source == "none":
        return np.zeros((info.n_frames, h, w), dtype=np.float32)
    raise Pan360Error(f"unknown saliency source {source!r}")
