"""The jobs of pan360 as Python functions: :func:`analyse`, :func:`render`, :func:`saliency`, :func:`info`.

The CLI is a thin layer over these; every CLI flag is a keyword here. There is one pipeline:

``analyse``: probe → audio → saliency maps (spatial audio, network, …) → AUTOCAM-style camera path,
  everything a job needs before it writes anything. ``render``, ``saliency``, the benchmarks and the
  evaluation scripts all start from it.
``render``: the analysis, then the reprojected NFoV video with camera-following sound.
``saliency``: the analysis' maps as a heatmap over the equirect video.

Every option is checked before any work (:func:`check_options`). All outputs of a job are checked against
its inputs and each other, claimed against concurrent runs, written as temporaries and moved into place
together only when all of them succeeded (:class:`pan360.media.output.OutputSet`); an existing output
is replaced only with ``overwrite=True``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
from numpy.typing import NDArray

from pan360 import geometry, visualize
from pan360.errors import Pan360Error
from pan360.media import AudioStream, MediaInfo, aac_writable, probe
from pan360.media.output import OutputSet
from pan360.options import MAX_SIDE, MIN_SIDE, check_frame_size, check_number, check_x264
from pan360.paths import CameraPath, load_path, resample_path, save_path
from pan360.progress import StageProgress, stage
from pan360.rendering import render_video
from pan360.sources import SaliencyOptions, choose_source, compute_saliency
from pan360.signal import Signal
from pan360.spatial import CameraStereo
from pan360.stabilize import MODE_OF, MODES as STABILIZE_MODES, Stabilization, choose_stabilization
from pan360.trajectory import TrajectoryOptions, plan_camera_path

#: Messages for the user (fallbacks, choices made); the CLI prints them, the API collects them.
Notify = Callable[[str], None]


@dataclass
class Analysis:
    """What :func:`analyse` found: the input, its sound, where to look, and the camera path."""

    info: MediaInfo
    track: AudioStream | None  # the audio, in memory or streamed (None: the input has none)
    source: str  # the saliency source used: "foa", "net", "fused", "none", or "path" (a given camera path)
    maps: NDArray[np.float32] | None  # (T, H, W) saliency per video frame; None with a given path
    path: CameraPath | None  # one entry per video frame; None when not planned (``plan=False``)
    parts: dict[str, NDArray[np.float32]] = field(default_factory=dict)  # maps behind ``maps`` (``keep_parts``)
    notes: list[str] = field(default_factory=list)
    stabilization: Stabilization = field(default_factory=lambda: Stabilization("off"))  # the frame of maps and path


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


def parse_size(size: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"1280x720"`` → (1280, 720); even, positive sides (yuv420p)."""
    if size is None or isinstance(size, tuple):
        return size
    try:
        w_s, h_s = size.lower().split("x")
        w, h = int(w_s), int(h_s)
    except ValueError:
        raise Pan360Error(f"--size must look like 1280x720, got {size!r}") from None
    check_frame_size(w, h, "--size")
    return w, h


def check_options(*, size: str | tuple[int, int] | None = None, fov: float | None = None,
                  max_speed: float | None = None, yaw_offset: float = 0.0, crf: float | None = None,
                  preset: str | None = None, max_width: int | None = None) -> tuple[int, int] | None:
    """Refuse a bad option before any work (one line naming the flag); returns the parsed ``size``."""
    requested_size = parse_size(size)
    if fov is not None:
        geometry.check_fov(fov, where="--fov")
    if max_speed is not None:
        check_number(max_speed, "--max-speed", low=0.0, above=True)
    check_number(yaw_offset, "--yaw-offset", low=-360.0, high=360.0)
    if crf is not None or preset is not None:
        check_x264(20 if crf is None else crf, "medium" if preset is None else preset)
    if max_width is not None:
        check_number(max_width, "--max-width", low=MIN_SIDE, high=MAX_SIDE)
    return requested_size


def camera_options(info: MediaInfo, *, fov: float | None = None, cuts: bool = False,
                   max_speed: float | None = None) -> TrajectoryOptions:
    """The planner's options for ``info``: the defaults, starting from the metadata's initial view."""
    opts = TrajectoryOptions(h_fov=geometry.DEFAULT_FOV if fov is None else float(fov), cuts=cuts,
                             initial_yaw=info.yaw, initial_pitch=info.pitch)
    return opts if max_speed is None else replace(opts, max_speed=float(max_speed))


def plan_path(info: MediaInfo, maps: NDArray[np.float32], options: TrajectoryOptions,
              size: tuple[int, int] | None = None, progress: StageProgress | None = None) -> CameraPath:
    """The camera path over ``maps`` at ``info``'s frame times, for an output of ``size`` (default: 16:9,
    no larger than the input's native resolution at the field of view)."""
    w, h = size or geometry.default_output_size(info.equirect_size[0], options.h_fov)
    return plan_camera_path(maps, info.frame_times, w, h, float(info.fps), options,
                            progress=stage(progress, "trajectory"))


def given_path(file: str | Path | CameraPath, info: MediaInfo, size: tuple[int, int] | None = None,
               fov: float | None = None) -> CameraPath:
    """A trajectory file (keyframes allowed) at ``info``'s frame times; ``size`` and ``fov`` replace the
    file's (the vertical FOV then follows the output aspect, square pixels)."""
    keyframes = file if isinstance(file, CameraPath) else load_path(file)
    w, h = size or (keyframes.width, keyframes.height)
    h_fov = keyframes.h_fov if fov is None else np.full(len(keyframes), float(fov))
    v_fov = keyframes.v_fov
    if fov is not None or (w, h) != (keyframes.width, keyframes.height):
        v_fov = geometry.v_fov_for(h_fov, w, h)
    keyframes = replace(keyframes, h_fov=h_fov, v_fov=v_fov, width=w, height=h)
    return replace(resample_path(keyframes, info.frame_times), fps=float(info.fps))


def analyse(input: str | Path, *, size: str | tuple[int, int] | None = None, fov: float | None = None,
            path: str | Path | None = None, saliency: str = "auto", weights: Any = None, cuts: bool = False,
            max_speed: float | None = None, device: str = "auto", yaw_offset: float = 0.0,
            foa_format: str = "auto", projection: str = "auto", stereo: str = "auto", stabilize: str = "auto",
            follow: list[str] | list[tuple[float, float, float]] | None = None, framing: bool = False,
            zoom: bool = False, plan: bool = True,
            keep_parts: bool = False, progress: StageProgress | None = None,
            notify: Notify | None = None) -> Analysis:
    """Probe ``input``, open its audio, compute its saliency maps and plan the camera path.

    Keywords are :func:`render`'s (``weights`` may also be a loaded model); ``plan=False`` stops after the
    maps; ``keep_parts`` keeps the maps a combined source is made of in ``Analysis.parts`` (otherwise
    they are not kept: on long inputs each set is large). With ``path`` the camera path is that file's
    (resampled to the frame times) and no maps are computed; its ``frame`` decides the stabilisation
    unless ``stabilize`` names one (which must agree). Nothing is written. A short audio track is
    decoded into memory, a long one streams (:class:`pan360.media.AudioStream`).
    """
    notes: list[str] = []
    say = _collector(notes, notify)
    requested_size = check_options(size=size, fov=fov, max_speed=max_speed, yaw_offset=yaw_offset)
    from pan360.sources.follow import follow_saliency, parse_follow

    follows = [parse_follow(f) if isinstance(f, str) else tuple(map(float, f)) for f in (follow or [])]
    info = probe(input, projection=projection, stereo=stereo)
    if info.display_rotation % 360:
        # an equirect picture turned in the plane is no longer equirect: refuse rather than guess
        raise Pan360Error(
            f"{info.path.name} asks players to rotate its picture by {info.display_rotation:g}° (display matrix); "
            f"pan360 does not turn 360° pictures in the plane: remux without it: ffmpeg -display_rotation 0 "
            f"-i {info.path.name} -c copy fixed{info.path.suffix}")
    options = SaliencyOptions(saliency, weights=weights, device=device, foa_format=foa_format, yaw_offset=yaw_offset)
    if stabilize not in STABILIZE_MODES:
        raise Pan360Error(f"unknown --stabilize {stabilize!r}; use one of {', '.join(STABILIZE_MODES)}")
    keyframes = None if path is None else load_path(path)
    if keyframes is not None and (follows or framing or zoom):
        given = ", ".join(f for f, on in (("--follow", follows), ("--framing", framing), ("--zoom", zoom)) if on)
        raise Pan360Error(f"{given} shape a planned camera; --path renders the given one as it is (use one or the other)")
    if keyframes is not None:
        wanted = MODE_OF[keyframes.frame]
        if stabilize not in ("auto", wanted):
            raise Pan360Error(f"--path is in the {keyframes.frame} frame (its 'frame'), --stabilize {stabilize} "
                              f"asks for {'camera' if stabilize == 'off' else stabilize}: drop --stabilize or use {wanted}")
        try:
            stab, _ = choose_stabilization(info, wanted)
        except Pan360Error as exc:
            raise Pan360Error(f"--path is in the {keyframes.frame} frame: {exc}") from None
    else:
        stab, note = choose_stabilization(info, stabilize)
        if note:
            say(note)
        source, note = choose_source(info, options)  # refuse a missing source before decoding anything
        if note:
            say(note)
    # short tracks are decoded once into memory; long ones stream through every stage (flat memory)
    track = None if info.audio is None else AudioStream(info).load(progress=stage(progress, "audio"))
    if keyframes is not None:
        return Analysis(info, track, "path", None, given_path(keyframes, info, requested_size, fov), notes=notes,
                        stabilization=stab)
    parts: dict[str, NDArray[np.float32]] = {}
    maps = compute_saliency(source, info, track, options, progress=stage(progress, "saliency"),
                            parts=parts if keep_parts else None, stabilization=stab)
    if follows:  # the followed subject becomes the saliency; the sound breaks ties and carries it when lost
        maps = follow_saliency(info, maps, follows, stab, say)
    cam = None
    if plan:
        opts = camera_options(info, fov=fov, cuts=cuts, max_speed=max_speed)
        if stab.active:  # a levelled camera starts level (a spherical-video pose's pitch is undone already)
            opts = replace(opts, initial_pitch=0.0)
        cam = plan_path(info, maps, opts, requested_size, progress)
        cam = replace(cam, frame=stab.frame)
        if zoom:
            from pan360.trajectory import zoom_path

            cam = zoom_path(cam, maps)
        cam = _framed(info, cam, framing, stab, say)
    return Analysis(info, track, source, maps, cam, parts, notes, stab)


def _framed(info: MediaInfo, cam: CameraPath, framing: bool, stab: Stabilization, say: Notify) -> CameraPath:
    """The planned path with faces near the view kept in frame (:mod:`pan360.framing`) when ``framing``."""
    if not framing:
        return cam
    from pan360.framing import face_detector, frame_faces

    detector = face_detector()
    if detector is None:
        raise Pan360Error("--framing needs the face detector: pip install requests tqdm && "
                          "pip install --no-deps facenet-pytorch")
    return frame_faces(info, cam, detector, stabilization=stab, notify=say)[0]


def output_files(input: str | Path, outputs: dict[str, str | Path | None], *, overwrite: bool,
                 path: str | Path | None = None, weights: Any = None, notify: Notify | None = None) -> OutputSet:
    """Every input and output of a render/saliency job: ``outputs`` maps flags to files (the first one
    is the video); entering the set checks and claims them before any work, leaving commits them."""
    files = OutputSet(overwrite=overwrite, notify=notify)
    files.add_input(input, "video")
    files.add_input(path, "--path")
    from pan360.nn.weights import checkpoint_files  # no torch: only names

    for f in checkpoint_files(weights):
        files.add_input(f, "--weights")
    for i, (flag, out) in enumerate(outputs.items()):
        files.add_output(out, flag, video=i == 0)
    return files


def output_audio(track: AudioStream | None, path: CameraPath | None, foa_format: str = "auto",
                 notify: Notify | None = None, stabilization: Stabilization | None = None,
                 yaw_offset: float = 0.0) -> tuple[Signal, int] | None:
    """The output's sound, as a signal the encoder reads as it goes: with a camera ``path``, FOA becomes
    stereo that follows the camera (the field turned by ``yaw_offset`` and into the path's frame);
    anything else passes through, as far as AAC can carry it."""
    if track is None:
        return None
    if path is not None and track.is_foa(foa_format):
        foa = (stabilization or Stabilization("off")).foa(track.foa(foa_format), yaw_offset)
        stereo = CameraStereo(foa, path.times, path.yaw, path.pitch, roll=path.roll)
        return stereo, track.sample_rate
    samples, note = aac_writable(track)
    if note and notify is not None:
        notify(note)
    return samples, track.sample_rate


def _collector(notes: list[str], notify: Notify | None) -> Notify:
    def say(msg: str) -> None:
        notes.append(msg)
        if notify is not None:
            notify(msg)

    return say


def render(input: str | Path, output: str | Path, *, size: str | tuple[int, int] | None = None,
           fov: float | None = None, crf: float = 20, preset: str = "medium", path: str | Path | None = None,
           trajectory_out: str | Path | None = None, plot: str | Path | None = None,
           saliency: str = "auto", weights: str | Path | None = None, cuts: bool = False,
           max_speed: float | None = None, overwrite: bool = False, device: str = "auto", yaw_offset: float = 0.0,
           foa_format: str = "auto", projection: str = "auto", stereo: str = "auto", stabilize: str = "auto",
           follow: list[str] | None = None, framing: bool = False, zoom: bool = False,
           progress: StageProgress | None = None, notify: Notify | None = None) -> RenderResult:
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
    stabilize : "auto" (level when the file records the camera's motion, else off), "off", "level"
        (horizon level) or "world" (the camera's turns held still too); see :mod:`pan360.stabilize`.
        The saliency, the path (and ``trajectory_out``, whose ``frame`` says so) and the view are all in
        that frame; a given ``path`` brings its own.
    follow : ``["TIME,YAW,PITCH", ...]``: follow the subject seen there (seconds, degrees in the output's
        frame) instead of the sound, from that time to the next entry's (:mod:`pan360.sources.follow`).
    zoom : narrow the FOV on one steady source, widen it for a spread scene or a fast pan
        (:func:`pan360.trajectory.zoom_path`; off by default, see bench/README.md).
    framing : tilt the camera so a face near the view is in frame with headroom, the source kept in view
        (:mod:`pan360.framing`; needs ``facenet-pytorch``).
    notify : called with each message for the user (also collected in the result's ``notes``).
    """
    check_options(size=size, fov=fov, max_speed=max_speed, yaw_offset=yaw_offset, crf=crf, preset=preset)
    early: list[str] = []
    files = output_files(input, {"-o": output, "--trajectory-out": trajectory_out, "--plot": plot},
                         overwrite=overwrite, path=path, weights=weights, notify=_collector(early, notify))
    with files:  # all outputs at once, or none
        a = analyse(input, size=size, fov=fov, path=path, saliency=saliency, weights=weights, cuts=cuts,
                    max_speed=max_speed, device=device, yaw_offset=yaw_offset, foa_format=foa_format,
                    projection=projection, stereo=stereo, stabilize=stabilize, follow=follow, framing=framing,
                    zoom=zoom, progress=progress, notify=notify)
        a.notes[:0] = early
        say = _collector(a.notes, notify)
        cam = a.path
        assert cam is not None  # analyse plans unless told not to
        if a.info.audio is None:
            say("the input has no audio: the output is silent")
        audio = output_audio(a.track, cam, foa_format, say, a.stabilization, yaw_offset)
        render_video(a.info, cam, files.temp(output), crf=crf, preset=preset, audio=audio, device=device,
                     stabilization=a.stabilization, progress=stage(progress, "render"))
        if trajectory_out is not None:
            save_path(cam, files.temp(trajectory_out))
        if plot is not None:
            visualize.plot_trajectory(files.temp(plot), cam, a.maps, title=Path(input).name)
    return RenderResult(Path(output), cam, a.source, a.notes)


def saliency(input: str | Path, output: str | Path, *, maps_out: str | Path | None = None,
             plot: str | Path | None = None, saliency: str = "auto", weights: str | Path | None = None,
             device: str = "auto", crf: float = 23, preset: str = "medium", max_width: int = 1920,
             overwrite: bool = False, yaw_offset: float = 0.0, foa_format: str = "auto",
             projection: str = "auto", stereo: str = "auto", progress: StageProgress | None = None,
             notify: Notify | None = None) -> SaliencyOutput:
    """Write the equirect video with its saliency as a colour heatmap (same duration, with its audio).

    ``maps_out`` writes the raw maps (NPZ: ``maps`` (T, H, W), ``times``, ``yaw``/``pitch`` of the
    grid's pixel centres, ``source``); ``plot`` writes the planned camera yaw over the saliency.
    The maps are in the picture's own axes (no stabilisation), as the heatmap lies over the picture.
    The heatmap's colour scale is shared by the whole clip (quiet stretches look quiet). ``progress``
    stages: "audio", "saliency", "trajectory" (with ``plot``), "heatmap".
    """
    check_options(yaw_offset=yaw_offset, crf=crf, preset=preset, max_width=max_width)
    early: list[str] = []
    files = output_files(input, {"-o": output, "--maps-out": maps_out, "--plot": plot}, overwrite=overwrite,
                         weights=weights, notify=_collector(early, notify))
    with files:  # all outputs at once, or none
        a = analyse(input, saliency=saliency, weights=weights, device=device, yaw_offset=yaw_offset,
                    foa_format=foa_format, projection=projection, stereo=stereo, stabilize="off",
                    plan=plot is not None, progress=progress, notify=notify)
        a.notes[:0] = early
        maps = a.maps
        assert maps is not None  # no camera path was given
        audio = output_audio(a.track, None, foa_format, _collector(a.notes, notify))
        visualize.write_heatmap_video(a.info, maps, files.temp(output), audio=audio, crf=crf, preset=preset,
                                      max_width=max_width, progress=stage(progress, "heatmap"))
        if maps_out is not None:
            visualize.save_maps(files.temp(maps_out), maps, a.info.frame_times, a.source)
        if plot is not None and a.path is not None:
            visualize.plot_trajectory(files.temp(plot), a.path, maps, title=Path(input).name)
    return SaliencyOutput(Path(output), maps, a.info.frame_times, a.source, a.notes)


def info(input: str | Path, *, projection: str = "auto", stereo: str = "auto") -> MediaInfo:
    """Probe ``input`` (see :func:`pan360.media.probe`)."""
    return probe(input, projection=projection, stereo=stereo)
