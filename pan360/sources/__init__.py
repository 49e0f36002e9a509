"""Saliency sources: where in the sphere is something worth looking at, per video frame.

Every source turns an input into maps of the same shape: float32 ``(T, H, W)`` on an equirect grid
(pixel centres as :func:`pan360.sphere.equirect_angles`), one per video frame, non-negative, on an
absolute scale (an all-zero map means "nothing here"), so the trajectory planner can treat them alike.

Sources:

- ``foa``: the physical direction of sound from first-order ambisonic audio (training-free);
- ``net``: the sound-attention network (:mod:`pan360.sources.network`) on the mono sound and the
  picture; needs trained weights (``weights``: a checkpoint, or the bundled ones in ``weights/``);
- ``fused``: FOA sharpened by the network within the FOA lobe, the network leading where the FOA
  field is diffuse (:mod:`pan360.sources.fusion`);
- ``none``: no saliency at all (the camera holds its initial direction); what ``auto`` falls back to
  when the input has no usable audio (or only mono/stereo audio and no weights).

``auto`` picks the best source the input supports: FOA input → ``fused`` when weights are available,
else ``foa``; mono/stereo input → ``net`` when weights are available, else ``none``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pan360.errors import Pan360Error
from pan360.progress import Progress, offset
from pan360.media import AudioStream, AudioTrack, MediaInfo
from pan360.nn.weights import has_weights, load_network
from pan360.signal import Signal
from pan360.spatial import foa_energy_maps
from pan360.stabilize import Stabilization

#: Map grid (height, width): 2.8° cells, fine enough for a 60°+ view, cheap for 1800 frames.
MAP_SIZE = (64, 128)
SOURCES = ("auto", "foa", "net", "fused", "none")

#: Seconds of audio behind each directness value, and the step between them (then interpolated).
DIRECTNESS_WINDOW = 1.0
DIRECTNESS_STEP = 0.5


def foa_directness(foa: NDArray[np.float32] | Signal, sample_rate: int,
                   frame_times: NDArray[np.float64]) -> NDArray[np.float64]:
    """(T,) FOA directness (direct / total power, :class:`pan360.spatial.foa_map.DirectionTrack`) at the
    frame times: 1 s windows every 0.5 s, linearly interpolated (the fusion's trust in the FOA map)."""
    from pan360.spatial.foa_map import foa_direction_track

    t = np.asarray(frame_times, dtype=np.float64)
    if t.size == 0:
        return np.zeros(0)
    grid = np.arange(t[0], t[-1] + DIRECTNESS_STEP, DIRECTNESS_STEP)
    track = foa_direction_track(foa, sample_rate, grid, window=DIRECTNESS_WINDOW, width=64, height=32)
    return np.interp(t, grid, track.directness)


@dataclass(frozen=True)
class SaliencyOptions:
    """How the saliency maps are made (one object for :func:`choose_source` and :func:`compute_saliency`).

    ``source``: one of :data:`SOURCES`. ``weights``, ``device`` ("auto", "cpu", "cuda") and ``net_rate``
    (analysed frames per second; None: every frame on CUDA, fewer on CPU) concern the network sources
    only; ``weights`` is a checkpoint path, a loaded model, or None for the bundled weights.
    ``yaw_offset`` turns the FOA map only (the network's map is in the picture's own coordinates);
    ``foa_format`` says how 4-channel audio is read (:data:`pan360.media.FOA_FORMATS`).
    """

    source: str = "auto"
    weights: Any = None
    device: str = "auto"
    foa_format: str = "auto"
    yaw_offset: float = 0.0
    net_rate: float | None = None
    map_size: tuple[int, int] = MAP_SIZE


def choose_source(info: MediaInfo, options: SaliencyOptions = SaliencyOptions()) -> tuple[str, str | None]:
    """Resolve ``auto`` and check that the input supports the requested ``options.source``.

    Returns (source, note); the note explains a fallback to the user.
    """
    name, weights = options.source, options.weights
    if name not in SOURCES:
        raise Pan360Error(f"unknown saliency source {name!r}; choose one of {', '.join(SOURCES)}")
    audio = info.audio
    foa_in = audio is not None and audio.is_foa(options.foa_format)
    if name in ("foa", "fused"):
        if audio is None:
            raise Pan360Error(f"--saliency {name} needs spatial audio, but the input has no audio track")
        if not foa_in:
            raise Pan360Error(
                f"--saliency {name} needs 4-channel first-order ambisonic audio (or a higher-order track "
                f"marked as ambisonic, or --foa-format), the input has {audio.channels} channel(s) ({audio.layout})")
    if name in ("net", "fused"):
        if audio is None:
            raise Pan360Error(f"--saliency {name} needs an audio track: the network localises what it hears")
        if not has_weights(weights):
            raise Pan360Error(f"--saliency {name} needs trained weights: pass --weights CHECKPOINT")
    # a higher-order track: what it is read as, said once
    higher = (f"{audio.channels}-channel ambisonics: its first-order part (the first 4 channels) is used"
              if foa_in and audio.channels > 4 else None)
    if name != "auto":
        return name, higher if name in ("foa", "fused") else None
    if foa_in:
        return ("fused", higher) if has_weights(weights) else ("foa", higher)
    if audio is not None and has_weights(weights):
        which = "the bundled network (pretrained SoundNet + EfficientNet-Lite0)" if weights is None else "the network"
        return "net", (f"{audio.channels}-channel audio, not spatial: {which} alone says where the "
                       f"sound is (see weights/README.md for what it can do)")
    why = "no audio track" if audio is None else f"{audio.channels}-channel audio, not spatial"
    if audio is not None:
        why += ", and no network weights"
    return "none", f"{why}: no saliency source for this input, the camera holds its initial direction"


def compute_saliency(source: str, info: MediaInfo, track: AudioTrack | AudioStream | None,
                     options: SaliencyOptions = SaliencyOptions(), *, progress: Progress | None = None,
                     parts: dict[str, NDArray[np.float32]] | None = None,
                     stabilization: Stabilization | None = None) -> NDArray[np.float32]:
    """Maps (T, H, W) of a resolved ``source`` (see :func:`choose_source`) for every video frame.

    ``parts``, when given, receives the maps a combined source is made of ("foa" and "net" for "fused").
    ``stabilization`` (:mod:`pan360.stabilize`) gives the frame the maps are in (default: the camera's):
    the FOA field is turned into it before its maps, each analysed network map is resampled into it
    before the frames between analysed ones are interpolated.
    """
    h, w = options.map_size
    stab = stabilization or Stabilization("off")
    if source in ("foa", "fused"):
        if track is None:
            raise Pan360Error("spatial audio requested but the input has no audio track")
        foa = track.foa(options.foa_format)
        yaw_offset = options.yaw_offset
        if stab.active:  # the offset turns the field before the camera's rotation, in the camera's frame
            foa, yaw_offset = stab.foa(foa, yaw_offset), 0.0
        total = 2 * info.n_frames if source == "fused" else info.n_frames
        foa_maps = foa_energy_maps(foa, track.sample_rate, info.frame_times, width=w, height=h,
                                   yaw_offset=yaw_offset, progress=offset(progress, 0, total))
        if source == "foa":
            return foa_maps
    if source in ("net", "fused"):
        from pan360.sources.fusion import fuse_maps
        from pan360.sources.network import network_maps

        start = info.n_frames if source == "fused" else 0
        net = dict(map_size=options.map_size, foa_format=options.foa_format, device=options.device,
                   rate=options.net_rate, rotations=stab.rotations,  # each analysed map turned into the frame
                   progress=offset(progress, start, start + info.n_frames))
        model = load_network(options.weights)
        if source == "net":
            return network_maps(model, info, track, **net)
        directness = foa_directness(foa, track.sample_rate, info.frame_times)
        if parts is not None:  # every set kept, for the caller
            net_maps = network_maps(model, info, track, **net)
            parts.update(foa=foa_maps, net=net_maps)
            return fuse_maps(foa_maps, net_maps, directness=directness)

        def fuse(first: int, net_block: NDArray[np.float32]) -> None:
            # the network's maps fused into the FOA maps' own array as they come: one set of maps alive
            view = foa_maps[first:first + len(net_block)]
            fuse_maps(view, net_block, directness=directness[first:first + len(net_block)], out=view)

        network_maps(model, info, track, sink=fuse, **net)
        return foa_maps
    if source == "none":
        return np.zeros((info.n_frames, h, w), dtype=np.float32)
    raise Pan360Error(f"unknown saliency source {source!r}")
