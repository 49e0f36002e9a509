"""Saliency sources: where in the sphere is something worth looking at, per video frame.

Every source turns an input into maps of the same shape: float32 ``(T, H, W)`` on an equirect grid
(pixel centres as :func:`pan360.sphere.equirect_angles`), one per video frame, non-negative, on an
absolute scale (an all-zero map means "nothing here"), so the trajectory planner can treat them alike.

Sources:

- ``foa``: the physical direction of sound from first-order ambisonic audio (training-free);
- ``net``: the sound-attention network (:mod:`pan360.saliency.network`) on the mono sound and the
  picture; needs trained weights (``weights``: a checkpoint, or the bundled ones in ``weights/``);
- ``fused``: FOA sharpened by the network within the FOA lobe, the network leading where the FOA
  field is diffuse (:mod:`pan360.saliency.fusion`);
- ``none``: no saliency at all (the camera holds its initial direction); what ``auto`` falls back to
  when the input has no usable audio (or only mono/stereo audio and no weights).

``auto`` picks the best source the input supports: FOA input → ``fused`` when weights are available,
else ``foa``; mono/stereo input → ``net`` when weights are available, else ``none``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from numpy.typing import NDArray

from pan360.errors import Pan360Error
from pan360.media import AudioTrack, MediaInfo
from pan360.spatial import fuma_to_ambix, foa_energy_maps

#: Map grid (height, width): 2.8° cells, fine enough for a 60°+ view, cheap for 1800 frames.
MAP_SIZE = (64, 128)
SOURCES = ("auto", "foa", "net", "fused", "none")
#: Where bundled network weights live, searched in order: a checkout's ``weights/`` (editable
#: installs, running from the repository) and ``<prefix>/share/pan360/weights`` (``pip install .``).
WEIGHTS_DIRS = (Path(__file__).resolve().parents[2] / "weights", Path(sys.prefix) / "share" / "pan360" / "weights")

Progress = Callable[[int, int], None]


@dataclass
class SaliencyResult:
    """Maps of one source and why that source was chosen."""

    maps: NDArray[np.float32]  # (T, H, W)
    times: NDArray[np.float64]  # (T,) seconds, the video frame times
    source: str  # the source actually used ("foa", "net", "fused", "none")
    note: str | None = None  # a message for the user (e.g. a fallback)


def is_foa(channels: int, ambisonic: str | None, foa_format: str = "auto") -> bool:
    """Whether audio is read as first-order ambisonics: 4 channels that probing recognised as ambisonic,
    or any 4 channels when ``foa_format`` forces a format."""
    return channels == 4 and (ambisonic is not None or foa_format != "auto")


def foa_from_track(track: AudioTrack, foa_format: str = "auto") -> NDArray[np.float32]:
    """The ambiX (4, N) signal of a 4-channel track; FuMa is converted (``foa_format`` overrides)."""
    if track.samples.shape[0] != 4:
        raise Pan360Error(
            f"spatial audio needs 4 channels (first-order ambisonics), this track has {track.samples.shape[0]}")
    kind = track.ambisonic if foa_format == "auto" else foa_format
    if kind == "fuma":
        return fuma_to_ambix(track.samples)
    return np.ascontiguousarray(track.samples, dtype=np.float32)


#: Seconds of audio behind each directness value, and the step between them (then interpolated).
DIRECTNESS_WINDOW = 1.0
DIRECTNESS_STEP = 0.5


def foa_directness(foa: NDArray[np.float32], sample_rate: int, frame_times: NDArray[np.float64]) -> NDArray[np.float64]:
    """(T,) FOA directness (direct / total power, :class:`pan360.spatial.foa_map.DirectionTrack`) at the
    frame times: 1 s windows every 0.5 s, linearly interpolated (the fusion's trust in the FOA map)."""
    from pan360.spatial.foa_map import foa_direction_track

    t = np.asarray(frame_times, dtype=np.float64)
    if t.size == 0:
        return np.zeros(0)
    grid = np.arange(t[0], t[-1] + DIRECTNESS_STEP, DIRECTNESS_STEP)
    track = foa_direction_track(foa, sample_rate, grid, window=DIRECTNESS_WINDOW, width=64, height=32)
    return np.interp(t, grid, track.directness)


#: The default checkpoint's name (weights/README.md); other bundled files are used when it is absent.
BUNDLED_NAME = "pan360-lite0.safetensors"


def bundled_weights() -> Path | None:
    """The bundled network checkpoint: :data:`BUNDLED_NAME`, else the first ``*.safetensors`` (by name),
    in the first of :data:`WEIGHTS_DIRS` that has one, or None."""
    for folder in WEIGHTS_DIRS:
        found = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
        if found:
            return next((f for f in found if f.name == BUNDLED_NAME), found[0])
    return None


def _has_weights(weights: Any) -> bool:
    return weights is not None or bundled_weights() is not None


def load_network(weights: Any = None) -> Any:
    """A :class:`pan360.nn.model.SoundLocalizer`: ``weights`` itself when it is a model, else loaded (on the
    CPU) from a checkpoint path, else the bundled checkpoint."""
    if weights is not None and not isinstance(weights, (str, Path)):
        return weights
    path = weights if weights is not None else bundled_weights()
    if path is None:
        raise Pan360Error("the network needs trained weights: pass --weights CHECKPOINT (see pan360 train)")
    from pan360.nn.weights import load_model

    return load_model(path, device="cpu")


def choose_source(name: str, info: MediaInfo, weights: Any = None) -> tuple[str, str | None]:
    """Resolve ``auto`` and check that the input supports the requested source.

    ``weights``: a checkpoint path or a loaded model for the network sources (None: the bundled
    weights, when present). Returns (source, note); the note explains a fallback to the user.
    """
    if name not in SOURCES:
        raise Pan360Error(f"unknown saliency source {name!r}; choose one of {', '.join(SOURCES)}")
    audio = info.audio
    foa_in = audio is not None and audio.channels == 4
    if name in ("foa", "fused"):
        if audio is None:
            raise Pan360Error(f"--saliency {name} needs spatial audio, but the input has no audio track")
        if not foa_in:
            raise Pan360Error(
                f"--saliency {name} needs 4-channel first-order ambisonic audio, the input has "
                f"{audio.channels} channel(s) ({audio.layout})")
    if name in ("net", "fused"):
        if audio is None:
            raise Pan360Error(f"--saliency {name} needs an audio track: the network localises what it hears")
        if not _has_weights(weights):
            raise Pan360Error(f"--saliency {name} needs trained weights: pass --weights CHECKPOINT")
    if name != "auto":
        return name, None
    if foa_in:
        return ("fused", None) if _has_weights(weights) else ("foa", None)
    if audio is not None and _has_weights(weights):
        which = "the bundled network (pretrained SoundNet + EfficientNet-Lite0)" if weights is None else "the network"
        return "net", (f"{audio.channels}-channel audio, not spatial: {which} alone says where the "
                       f"sound is (see weights/README.md for what it can do)")
    why = "no audio track" if audio is None else f"{audio.channels}-channel audio, not spatial"
    if audio is not None:
        why += ", and no network weights"
    return "none", f"{why}: no saliency source for this input, the camera holds its initial direction"


def compute_saliency(source: str, info: MediaInfo, track: AudioTrack | None, *, foa_format: str = "auto",
                     yaw_offset: float = 0.0, map_size: tuple[int, int] = MAP_SIZE,
                     progress: Progress | None = None, weights: Any = None, device: str = "auto",
                     net_rate: float | None = None) -> NDArray[np.float32]:
    """Maps (T, H, W) of a resolved source (see :func:`choose_source`) for every video frame.

    ``weights`` (checkpoint path, loaded model, or None for the bundled weights), ``device`` ("auto",
    "cpu", "cuda") and ``net_rate`` (analysed frames per second; None: every frame on CUDA, fewer on CPU)
    concern the network sources only. ``yaw_offset`` turns the FOA map only: the network's map is in
    the picture's own coordinates.
    """
    h, w = map_size
    if source in ("foa", "fused"):
        if track is None:
            raise Pan360Error("spatial audio requested but the input has no audio track")
        foa = foa_from_track(track, foa_format)
        total = 2 * info.n_frames if source == "fused" else info.n_frames
        foa_maps = foa_energy_maps(foa, track.sample_rate, info.frame_times, width=w, height=h,
                                   yaw_offset=yaw_offset, progress=_offset(progress, 0, total))
        if source == "foa":
            return foa_maps
    if source in ("net", "fused"):
        from pan360.saliency.network import network_maps

        offset = info.n_frames if source == "fused" else 0
        net_maps = network_maps(load_network(weights), info, track, map_size=map_size, foa_format=foa_format,
                                device=device, rate=net_rate,
                                progress=_offset(progress, offset, offset + info.n_frames))
        if source == "net":
            return net_maps
        from pan360.saliency.fusion import fuse_maps

        return fuse_maps(foa_maps, net_maps, directness=foa_directness(foa, track.sample_rate, info.frame_times))
    if source == "none":
        return np.zeros((info.n_frames, h, w), dtype=np.float32)
    raise Pan360Error(f"unknown saliency source {source!r}")


def _offset(progress: Progress | None, start: int, total: int) -> Progress | None:
    """A progress callback for one part of a job: (done, _) → (start + done, total)."""
    if progress is None:
        return None
    return lambda done, _: progress(start + done, total)
