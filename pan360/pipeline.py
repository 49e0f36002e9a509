"""The three jobs of pan360 as Python functions: :func:`render`, :func:`saliency` and :func:`info`.

The CLI is a thin layer over these; every CLI flag is a keyword here.

``render``: probe → saliency maps (spatial audio, …) → AUTOCAM-style trajectory → reprojected NFoV
video with camera-following sound. ``saliency``: the maps as a heatmap over the equirect video.
Outputs are written atomically; an existing output is replaced only with ``overwrite=True``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from numpy.typing import NDArray

from pan360 import geometry, visualize
from pan360.errors import Pan360Error
from pan360.media import AudioTrack, MediaInfo, atomic_output, check_output, probe, read_audio
from pan360.paths import CameraPath, load_path, resample_path, save_path
from pan360.render import render_video
from pan360.saliency import MAP_SIZE, choose_source, compute_saliency, foa_from_track
from pan360.spatial import camera_stereo
from pan360.trajectory import TrajectoryOptions, plan_camera_path

#: Progress callback: (stage name, done, total). Stages: "audio", "saliency", "trajectory", "render".
Progress = Callable[[str, int, int], None]
#: Messages for the user (fallbacks, choices made); the CLI prints them, the API collects them.
Notify = Callable[[str], None]

DEFAULT_FOV = 90.0  # horizontal degrees: wide enough to keep a source in view while the camera pans


@dataclass
class RenderResult:
    """What :func:`render` produced."""

    output: Path
    path: CameraPath
    saliency_source: str  # "foa", "net", "fused", "none" or "path" (a given camera path)
    notes: list[str] = field(default_factory=list)


@dataclass
class SaliencyOutput:
    """What :func:`saliency` produced."""

    output: Path
    maps: NDArray[np.float32]
    times: NDArray[np.float64]
    source: str
    notes: list[str] = field(default_factory=list)


def _stage(progress: Progress | None, name: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(name, done, total)


def parse_size(size: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"1280x720"`` → (1280, 720); even, positive sides (yuv420p)."""
    if size is None or isinstance(size, tuple):
        return size
    try:
        w_s, h_s = size.lower().split("x")
        w, h = int(w_s), int(h_s)
    except ValueError:
        raise Pan360Error(f"--size must look like 1280x720, got {size!r}") from None
    if w < 16 or h < 16 or w > 8192 or h > 8192:
        raise Pan360Error(f"--size {size}: each side must be between 16 and 8192 pixels")
    if w % 2 or h % 2:
        raise Pan360Error(f"--size {size}: width and height must be even (H.264 yuv420p)")
    return w, h


def _load_audio(info: MediaInfo, progress: Progress | None) -> AudioTrack | None:
    if info.audio is None:
        return None
    return read_audio(info, progress=_stage(progress, "audio"))


def _output_audio(info: MediaInfo, track: AudioTrack | None, path: CameraPath, foa_format: str,
                  notify: Notify) -> tuple[NDArray[np.float32], int] | None:
    """The output's sound: FOA becomes stereo that follows the camera; anything else passes through."""
    if track is None:
        return None
    if track.samples.shape[0] == 4 and (track.ambisonic is not None or foa_format != "auto"):
        foa = foa_from_track(track, foa_format)
        stereo = camera_stereo(foa, track.sample_rate, path.times, path.yaw, path.pitch, roll=path.roll)
        return stereo, track.sample_rate
    if track.samples.shape[0] not in (1, 2, 4, 6):
        notify(f"{track.samples.shape[0]}-channel audio cannot be written as AAC; keeping the first two channels")
        return np.ascontiguousarray(track.samples[:2]), track.sample_rate
    return track.samples, track.sample_rate


def render(input: str | Path, output: str | Path, *, size: str | tuple[int, int] | None = None,
           fov: float | None = None, crf: float = 20, preset: str = "medium", path: str | Path | None = None,
           trajectory_out: str | Path | None = None, plot: str | Path | None = None,
           saliency: str = "auto", weights: str | Path | None = None, cuts: bool = False,
           max_speed: float | None = None, overwrite: bool = False, device: str = "auto", yaw_offset: float = 0.0, foa_format: str = "auto",
           projection: str = "auto", stereo: str = "auto", progress: Progress | None = None,
           notify: Notify | None = None) -> RenderResult:
    """Render the NFoV video of a 360° equirect ``input`` whose camera follows the sound.

    Parameters
    ----------
    size : output "WxH" (default 16:9, no larger than the input's native resolution at ``fov``, at
        most 1920 wide).
    fov : horizontal field of view in degrees (default 90; with ``path`` the path's own FOV).
    crf, preset : x264 quality and speed.
    path : render this camera path (trajectory JSON, sparse keyframes allowed) instead of planning one.
    trajectory_out : write the per-frame camera path (JSON v1) here.
    plot : write a PNG of the camera yaw over the saliency against time.
    saliency : "auto", "foa" (spatial audio), "net" (the sound-attention network on mono sound),
        "fused" (FOA sharpened by the network) or "none". ``auto``: FOA input → fused when network
        weights are available, else foa; mono/stereo → net when weights are available, else none.
    weights : network checkpoint (default: the bundled weights in ``weights/``).
    cuts : cut instead of panning for far jumps between sources.
    max_speed : camera speed bound in °/s (default: :class:`TrajectoryOptions`).
    overwrite : replace existing outputs.
    device : "auto" (CUDA when present), "cpu" or "cuda" for the network and the reprojection.
    yaw_offset : degrees added to the audio direction (cameras whose audio front is not the video centre).
    foa_format : "auto" (metadata, else ambiX), "ambix" or "fuma".
    projection, stereo : override what the metadata says ("equirect" forces equirect input; stereo
        "mono", "top-bottom" or "side-by-side").
    """
    notes: list[str] = []

    def say(msg: str) -> None:
        notes.append(msg)
        if notify is not None:
            notify(msg)

    inputs = [Path(input)] + ([Path(path)] if path is not None else [])
    outputs = [Path(output)] + [Path(p) for p in (trajectory_out, plot) if p is not None]
    if len({o.resolve() for o in outputs}) != len(outputs):
        raise Pan360Error("the output, --trajectory-out and --plot must be different files")
    for o in outputs:  # fail before hours of work, not after
        check_output(o, overwrite=overwrite, inputs=inputs)
    requested_size = parse_size(size)
    if fov is not None and not 1.0 <= fov <= 160.0:
        raise Pan360Error(f"--fov must be between 1 and 160 degrees, got {fov:g}")

    info = probe(input, projection=projection, stereo=stereo)
    if path is None:
        source, note = choose_source(saliency, info, weights)  # refuse a missing source before decoding anything
        if note:
            say(note)
    track = _load_audio(info, progress)
    maps: NDArray[np.float32] | None = None

    if path is not None:
        keyframes = load_path(path)
        w, h = requested_size or (keyframes.width, keyframes.height)
        if fov is not None:
            keyframes.h_fov[:] = fov
        if fov is not None or (w, h) != (keyframes.width, keyframes.height):
            # a new size or FOV: the vertical FOV follows the output aspect (square pixels)
            keyframes.v_fov = geometry.v_fov_for(keyframes.h_fov, w, h)
        keyframes.width, keyframes.height = w, h
        cam = resample_path(keyframes, info.frame_times)
        cam.fps = float(info.fps)
        source = "path"
    else:
        h_fov = DEFAULT_FOV if fov is None else fov
        w, h = requested_size or geometry.default_output_size(info.eye_width, h_fov)
        maps = compute_saliency(source, info, track, foa_format=foa_format, yaw_offset=yaw_offset,
                                map_size=MAP_SIZE, progress=_stage(progress, "saliency"), weights=weights,
                                device=device)
        overrides: dict[str, float | bool] = {"h_fov": h_fov, "cuts": cuts,
                                              "initial_yaw": info.yaw, "initial_pitch": info.pitch}
        if max_speed is not None:
            overrides["max_speed"] = max_speed
        cam = plan_camera_path(maps, info.frame_times, w, h, float(info.fps), TrajectoryOptions(),
                               progress=_stage(progress, "trajectory"), **overrides)

    if info.audio is None:
        say("the input has no audio: the output is silent")
    audio = _output_audio(info, track, cam, foa_format, say)

    with atomic_output(output, overwrite=overwrite, inputs=inputs) as tmp:
        render_video(info, cam, tmp, crf=crf, preset=preset, audio=audio, device=device,
                     progress=_stage(progress, "render"))
    if trajectory_out is not None:
        with atomic_output(trajectory_out, overwrite=overwrite, inputs=inputs) as tmp:
            save_path(cam, tmp)
    if plot is not None:
        with atomic_output(plot, overwrite=overwrite, inputs=inputs) as tmp:
            visualize.plot_trajectory(tmp, cam, maps, title=Path(input).name)
    return RenderResult(Path(output), cam, source, notes)


def saliency(input: str | Path, output: str | Path, *, maps_out: str | Path | None = None,
             plot: str | Path | None = None, saliency: str = "auto", weights: str | Path | None = None,
             device: str = "auto", crf: float = 23, preset: str = "medium", max_width: int = 1920,
             overwrite: bool = False, yaw_offset: float = 0.0, foa_format: str = "auto",
             projection: str = "auto", stereo: str = "auto", progress: Progress | None = None,
             notify: Notify | None = None) -> SaliencyOutput:
    """Write the equirect video with its saliency as a colour heatmap (same duration, with its audio).

    ``maps_out`` writes the raw maps (NPZ: ``maps`` (T, H, W), ``times``, ``yaw``/``pitch`` of the
    grid's pixel centres, ``source``); ``plot`` writes the planned camera yaw over the saliency.
    The heatmap's colour scale is shared by the whole clip (quiet stretches look quiet).
    """
    notes: list[str] = []

    def say(msg: str) -> None:
        notes.append(msg)
        if notify is not None:
            notify(msg)

    inputs = [Path(input)]
    outputs = [Path(output)] + [Path(p) for p in (maps_out, plot) if p is not None]
    if len({o.resolve() for o in outputs}) != len(outputs):
        raise Pan360Error("the output, --maps-out and --plot must be different files")
    for o in outputs:
        check_output(o, overwrite=overwrite, inputs=inputs)

    info = probe(input, projection=projection, stereo=stereo)
    source, note = choose_source(saliency, info, weights)
    if note:
        say(note)
    track = _load_audio(info, progress)
    maps = compute_saliency(source, info, track, foa_format=foa_format, yaw_offset=yaw_offset, map_size=MAP_SIZE,
                            progress=_stage(progress, "saliency"), weights=weights, device=device)
    with atomic_output(output, overwrite=overwrite, inputs=inputs) as tmp:
        visualize.write_heatmap_video(info, maps, tmp, track=track, crf=crf, preset=preset, max_width=max_width,
                                      progress=_stage(progress, "heatmap"))
    if maps_out is not None:
        with atomic_output(maps_out, overwrite=overwrite, inputs=inputs) as tmp:
            visualize.save_maps(tmp, maps, info.frame_times, source)
    if plot is not None:
        w, h = geometry.default_output_size(info.eye_width, DEFAULT_FOV)
        cam = plan_camera_path(maps, info.frame_times, w, h, float(info.fps), TrajectoryOptions(),
                               initial_yaw=info.yaw, initial_pitch=info.pitch)
        with atomic_output(plot, overwrite=overwrite, inputs=inputs) as tmp:
            visualize.plot_trajectory(tmp, cam, maps, title=Path(input).name)
    return SaliencyOutput(Path(output), maps, info.frame_times, source, notes)


def info(input: str | Path, *, projection: str = "auto", stereo: str = "auto") -> MediaInfo:
    """Probe ``input`` (see :func:`pan360.media.probe`)."""
    return probe(input, projection=projection, stereo=stereo)
