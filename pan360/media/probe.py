"""What is in a media file: streams, frame times, projection, stereo mode and audio layout.

Frame times come from demuxed packet timestamps (no decoding), so probing a long 4K file is cheap;
only the first video frame is decoded, because FFmpeg delivers the spherical and stereo-3D metadata
(v1 XML, v2 ``st3d``/``sv3d``, Matroska ``Projection``/``StereoMode``) as side data of decoded frames.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray

from pan360.errors import Pan360Error
from pan360.projections import PROJECTIONS, equirect_width

STEREO_MODES = ("mono", "top-bottom", "side-by-side")

# enum AVSphericalProjection (libavutil/spherical.h, FFmpeg 8).
_SPHERICAL_PROJECTIONS = {
    0: "equirectangular",
    1: "cubemap",
    2: "equirectangular-tile",
    3: "half-equirectangular",
    4: "rectilinear",
    5: "fisheye",
    6: "parametric-immersive",
}
# enum AVStereo3DType (libavutil/stereo3d.h); 8 (AV_STEREO3D_UNSPEC) means "unknown".
_STEREO3D_TYPES = {
    0: "mono",
    1: "side-by-side",
    2: "top-bottom",
    3: "frame-sequence",
    4: "checkerboard",
    5: "side-by-side-quincunx",
    6: "lines",
    7: "columns",
}
#: A timestamp this far (s) before the latest one, or one seen before, is a clock that started again
#: (B-frame reordering moves timestamps back by a few frames and never repeats one).
_RESTART_SECONDS = 5.0
# Width/height range of a full-sphere equirect picture assumed without metadata (1920x1080 is 1.78).
_PLAUSIBLE_ASPECT = (1.7, 2.1)


@dataclass(frozen=True)
class AudioInfo:
    """The audio stream used by pan360 (the default/best one of the file).

    ``ambisonic`` is "ambix" (ACN/SN3D), "fuma" or None; a 4-channel stream without spatial-audio
    metadata is "ambix" (docs/CONVENTIONS.md).
    """

    codec: str
    sample_rate: int
    channels: int
    layout: str
    ambisonic: str | None
    stream_index: int

    def is_foa(self, foa_format: str = "auto") -> bool:
        """Whether this stream is read as first-order ambisonics (:func:`is_foa_layout`)."""
        return is_foa_layout(self.channels, self.ambisonic, foa_format)


@dataclass(frozen=True, eq=False)
class MediaInfo:
    """Everything pan360 needs to know about an input video.

    Times are seconds. ``frame_times`` (float64, (T,)) are the presentation times of every video frame in
    display order, relative to the first one (``frame_times[0] == 0``); ``start_time`` is that first
    frame's time on the file's own timeline (audio is aligned to it). ``frame_pts`` are the same instants
    as integer timestamps in ``time_base`` units. ``eye_width``/``eye_height`` describe the picture
    after choosing one eye of a stereo frame (top half for top-bottom, left half for side-by-side), in
    its ``projection``: "equirectangular", or a cubemap layout named as ffmpeg v360 names it ("eac",
    "c3x2", "c6x1"; :attr:`layout` gives v360's name in every case). ``yaw``/``pitch``/``roll``
    (degrees) are the initial view pose from the metadata.
    """

    path: Path
    format_name: str
    video_codec: str
    pixel_format: str
    width: int
    height: int
    eye_width: int
    eye_height: int
    fps: Fraction
    frame_times: NDArray[np.float64]
    frame_pts: NDArray[np.int64]
    time_base: Fraction
    start_time: float
    duration: float
    projection: str
    projection_source: str
    stereo: str
    stereo_source: str
    yaw: float
    pitch: float
    roll: float
    video_stream_index: int
    audio: AudioInfo | None
    #: Degrees the container asks players to turn the decoded picture (display matrix), 0 when none.
    display_rotation: float = 0.0

    @property
    def n_frames(self) -> int:
        """Number of video frames."""
        return int(self.frame_times.shape[0])

    @property
    def layout(self) -> str:
        """The picture's layout by ffmpeg v360's name (:data:`pan360.projections.PROJECTIONS`)."""
        return "equirect" if self.projection == "equirectangular" else self.projection

    @property
    def equirect_size(self) -> tuple[int, int]:
        """(width, height) of the equirect picture with the resolution of this one: the picture itself
        when equirect, else 4 x 2 cube faces (even sides)."""
        if self.layout == "equirect":
            return self.eye_width, self.eye_height
        w = equirect_width(self.layout, self.eye_width, self.eye_height)
        w = max(4, 4 * int(round(w / 4)))
        return w, w // 2


def open_input(path: str | Path) -> av.container.InputContainer:
    """Open a media file for reading, turning every failure into a one-line Pan360Error."""
    p = Path(path)
    if not p.exists():
        raise Pan360Error(f"input not found: {p}")
    if p.is_dir():
        raise Pan360Error(f"input is a directory, not a media file: {p}")
    try:
        container = av.open(str(p), "r")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise Pan360Error(f"cannot read {p.name}: not a readable media file ({exc.__class__.__name__})") from exc
    # FFmpeg opens some text files as subtitles (lrc) or ANSI art (tty): never a user's media file.
    if not (container.streams.video or container.streams.audio) or container.format.name == "tty":
        container.close()
        raise Pan360Error(f"cannot read {p.name}: not a media file")
    return container


def select_video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """The main video stream, ignoring cover art (attached pictures); None when there is none."""
    candidates = [
        s
        for s in container.streams.video
        if not (int(s.disposition) & int(av.stream.Disposition.attached_pic))
    ]
    if not candidates:
        return None
    defaults = [s for s in candidates if int(s.disposition) & int(av.stream.Disposition.default)]
    return (defaults or candidates)[0]


def select_audio_stream(container: av.container.InputContainer) -> av.audio.stream.AudioStream | None:
    """The default audio stream (else the first one); None when there is none."""
    streams = list(container.streams.audio)
    if not streams:
        return None
    defaults = [s for s in streams if int(s.disposition) & int(av.stream.Disposition.default)]
    return (defaults or streams)[0]


#: How a 4-channel track is read: "auto" (its metadata, else ambiX), or forced to "ambix" / "fuma".
FOA_FORMATS = ("auto", "ambix", "fuma")


def is_foa_layout(channels: int, ambisonic: str | None, foa_format: str = "auto") -> bool:
    """Whether audio is read as first-order ambisonics: 4 or more channels that probing recognised as
    ambisonic (:func:`ambisonic_kind`: metadata, or any 4 channels by convention), or that ``foa_format``
    says are. Beyond 4 channels (higher-order, or mixed-order like an 8-channel ACN 0-7 recording) the
    first 4 are the first-order part in both channel orders (ACN W, Y, Z, X; FuMa W, X, Y, Z). The one
    rule for inference and training alike."""
    if foa_format not in FOA_FORMATS:
        raise Pan360Error(f"unknown FOA format {foa_format!r}; use {', '.join(FOA_FORMATS)}")
    return channels >= 4 and (ambisonic is not None or foa_format != "auto")


def ambisonic_kind(channels: int, layout: str, metadata: dict[str, str]) -> str | None:
    """"ambix", "fuma" or None for an audio stream.

    FFmpeg reports an ``SA3D`` box (YouTube spatial audio, ACN/SN3D only) as an "ambisonic 1" layout;
    a tag mentioning FuMa marks FuMa; otherwise 4 channels means ambiX by convention.
    """
    tags = " ".join(f"{k}={v}" for k, v in metadata.items()).lower()
    if "fuma" in tags or "furse" in tags:
        return "fuma"
    if layout.startswith("ambisonic") or "ambix" in tags:
        return "ambix"
    return "ambix" if channels == 4 else None


def _audio_info(stream: av.audio.stream.AudioStream) -> AudioInfo:
    ctx = stream.codec_context
    channels = int(ctx.channels)
    layout = ctx.layout.name if ctx.layout is not None else f"{channels} channels"
    return AudioInfo(
        codec=ctx.name,
        sample_rate=int(ctx.sample_rate),
        channels=channels,
        layout=layout,
        ambisonic=ambisonic_kind(channels, layout, dict(stream.metadata)),
        stream_index=stream.index,
    )


def _first_frame_side_data(stream, packets) -> tuple[bytes | None, bytes | None, float]:
    """Raw (AVSphericalMapping, AVStereo3D) side data of the first decodable frame, if any, and its
    display rotation (degrees, 0 without a display matrix)."""
    for packet in [*packets, None]:  # None drains the decoder's delay
        try:
            frames = stream.codec_context.decode(packet)
        except av.error.FFmpegError:
            continue  # a broken leading packet; the next keyframe may still decode
        for frame in frames:
            spherical = stereo3d = None
            for sd in frame.side_data:
                name = str(sd.type).rsplit(".", 1)[-1].upper()
                if name == "SPHERICAL":
                    spherical = bytes(sd)
                elif name == "STEREO3D":
                    stereo3d = bytes(sd)
            return spherical, stereo3d, float(getattr(frame, "rotation", 0) or 0)
    return None, None, 0.0


def _demux_video(path: Path, container, stream) -> tuple[NDArray[np.int64], int, bytes | None, bytes | None, float]:
    """Sorted pts of every displayed video frame, the last frame's duration, and the first frame's metadata."""
    pts: list[int] = []
    durations: dict[int, int] = {}
    head: list = []  # first packets, decoded afterwards for the metadata side data
    n_missing = 0
    latest = 0  # the latest timestamp so far (packets come in decoding order)
    restart = int(_RESTART_SECONDS / stream.time_base) if stream.time_base else 0
    try:
        for packet in container.demux(stream):
            if packet.size == 0 or packet.is_discard:  # flush packets / frames an edit list hides
                continue
            t = packet.pts if packet.pts is not None else packet.dts
            if t is None:
                n_missing += 1
                continue
            if pts and (int(t) < latest - restart or int(t) in durations):
                # a spliced or concatenated stream (e.g. MPEG-TS) whose clock starts again: its frames
                # would share timestamps with earlier ones and be lost
                raise Pan360Error(
                    f"{path.name}: the video timestamps start again at {float(t * stream.time_base):.2f} s after "
                    f"{float(latest * stream.time_base):.2f} s (a spliced stream); remux it first, e.g. "
                    f"ffmpeg -i {path.name} -c copy fixed.mp4")
            pts.append(int(t))
            latest = max(latest, int(t))
            durations[int(t)] = int(packet.duration or 0)
            if len(head) < 64:
                head.append(packet)
    except av.error.FFmpegError as exc:
        if not pts:
            raise Pan360Error(f"cannot read {path.name}: {exc.__class__.__name__} while reading video packets") from exc
    if n_missing and not pts:
        raise Pan360Error(f"{path.name}: video packets carry no timestamps; remux the file (e.g. to MKV) first")
    if not pts:
        raise Pan360Error(f"{path.name}: the video stream has no frames (zero length)")
    spherical, stereo3d, rotation = _first_frame_side_data(stream, head)
    arr = np.sort(np.asarray(pts, dtype=np.int64))  # repeated timestamps were refused above
    return arr, durations.get(int(arr[-1]), 0), spherical, stereo3d, rotation


def _parse_spherical(raw: bytes | None) -> tuple[str | None, tuple[float, float, float]]:
    """(projection, (yaw, pitch, roll) degrees) from an AVSphericalMapping; (None, zeros) when absent.

    Layout (FFmpeg 8): int projection; int32 yaw, pitch, roll (16.16 fixed point);
    uint32 bound_left, bound_top, bound_right, bound_bottom (0.32 fixed point); uint32 padding.
    """
    if raw is None or len(raw) < 16:
        return None, (0.0, 0.0, 0.0)
    proj, yaw, pitch, roll = struct.unpack_from("<iiii", raw, 0)
    pose = (yaw / 65536.0, pitch / 65536.0, roll / 65536.0)
    bounds = struct.unpack_from("<IIII", raw, 16) if len(raw) >= 32 else (0, 0, 0, 0)
    name = _SPHERICAL_PROJECTIONS.get(proj, f"unknown projection {proj}")
    if name == "equirectangular-tile":
        # a "tile" with no cropped border covers the whole sphere: plain equirect
        name = "equirectangular" if not any(bounds) else "equirectangular-tile (part of the sphere)"
    return name, pose


def _parse_stereo3d(raw: bytes | None) -> str | None:
    """Stereo mode from an AVStereo3D (None when absent or unspecified)."""
    if raw is None or len(raw) < 4:
        return None
    return _STEREO3D_TYPES.get(struct.unpack_from("<i", raw, 0)[0])


def _choose_stereo(path: Path, meta_stereo: str | None, stereo: str) -> tuple[str, str]:
    if stereo != "auto":
        if stereo not in STEREO_MODES:
            raise Pan360Error(f"unknown stereo mode {stereo!r}; use auto, {', '.join(STEREO_MODES)}")
        return stereo, "forced"
    if meta_stereo is None:
        return "mono", "assumed"
    if meta_stereo not in STEREO_MODES:
        raise Pan360Error(
            f"{path.name}: {meta_stereo} stereo is not supported; give the layout with --stereo "
            f"({', '.join(STEREO_MODES)}) to read it as one of those"
        )
    return meta_stereo, "metadata"


_FORCED = ("auto", "equirect", "equirectangular") + PROJECTIONS[1:]


def _choose_projection(
    path: Path, meta_proj: str | None, eye_w: int, eye_h: int, projection: str
) -> tuple[str, str]:
    if projection in ("dfisheye", "fisheye") or meta_proj == "fisheye":
        raise Pan360Error(
            f"{path.name}: fisheye pictures are not read by pan360 (the lens' field of view and centre are not in the "
            f"file); convert first, e.g. ffmpeg -i {path.name} -vf v360=dfisheye:e:ih_fov=190:iv_fov=190 equirect.mp4")
    if projection not in _FORCED:
        raise Pan360Error(f"unknown projection {projection!r}; use auto, {', '.join(PROJECTIONS)}")
    if projection in ("equirect", "equirectangular"):
        return "equirectangular", "forced"
    if projection != "auto":
        min_w, min_h = {"eac": (16, 8), "c3x2": (6, 4), "c6x1": (12, 2)}[projection]
        if eye_w < min_w or eye_h < min_h:
            raise Pan360Error(f"{path.name}: a {eye_w}x{eye_h} picture is too small for the {projection} layout")
        return projection, "forced"
    if meta_proj is not None:
        if meta_proj == "cubemap":  # FFmpeg's cubemap is Google's 3x2 layout, v360's c3x2
            return "c3x2", "metadata"
        if meta_proj != "equirectangular":
            raise Pan360Error(
                f"{path.name} is not equirectangular (metadata says {meta_proj}); pan360 reads equirect and the "
                f"cubemaps {', '.join(PROJECTIONS[1:])} (force one with --projection)"
            )
        return meta_proj, "metadata"
    aspect = eye_w / eye_h
    if not _PLAUSIBLE_ASPECT[0] <= aspect <= _PLAUSIBLE_ASPECT[1]:
        hint = ("--projection eac (YouTube's equi-angular cubemap) or c3x2" if abs(aspect - 1.5) < 0.05
                else "--projection c6x1" if abs(aspect - 6.0) < 0.2 else "--projection equirect")
        raise Pan360Error(
            f"{path.name} has no spherical metadata and its {eye_w}x{eye_h} picture (aspect {aspect:.2f}) "
            f"does not look like a full-sphere equirectangular frame; say what it is with {hint} "
            "(or give --stereo top-bottom/side-by-side for stereo)"
        )
    return "equirectangular", "assumed"


def _last_frame_duration(
    stream_end: int | None, last_pts: int, packet_duration: int, time_base: Fraction, typical: float
) -> float:
    """How long the last frame is shown (seconds).

    The stream's own end (MP4 edit list / track duration, MPEG-TS) is the authority: in MP4 the last
    frame's packet duration is a decoding-time delta, which is not its display time when B-frames
    reorder a variable-rate stream. It is trusted unless absurd (non-positive or far longer than a
    frame); then the packet duration, then the typical frame interval.
    """
    limit = max(10.0 * typical, 1.0)
    if stream_end is not None:
        candidate = (stream_end - last_pts) * float(time_base)
        if 0 < candidate <= limit:
            return candidate
    if packet_duration > 0:
        return packet_duration * float(time_base)
    return typical


def _fps(rates, frame_times: NDArray[np.float64]) -> Fraction:
    for rate in rates:
        if rate is not None and rate > 0:
            return Fraction(rate)
    if len(frame_times) > 1 and frame_times[-1] > 0:
        return Fraction((len(frame_times) - 1) / frame_times[-1]).limit_denominator(100_000)
    return Fraction(25)


def _refuse_gopro_max(path: Path, container: av.container.InputContainer) -> None:
    """A GoPro MAX ``.360`` file holds the sphere as two EAC strips in two video streams: refused on one line
    (read as one stream it would be half a sphere)."""
    videos = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
    if path.suffix.lower() == ".360" or (len(videos) == 2 and all("GoPro" in s.metadata.get("handler_name", "")
                                                                   for s in videos)):
        raise Pan360Error(
            f"{path.name} is a GoPro MAX .360 file (two EAC video streams): pan360 does not read that layout yet; "
            "export an equirect MP4 first (GoPro Player does)")


def probe(path: str | Path, *, projection: str = "auto", stereo: str = "auto") -> MediaInfo:
    """Describe a 360° video file.

    Parameters
    ----------
    path : the input file (any container FFmpeg reads).
    projection : "auto" (metadata, else assume equirect when the eye aspect is plausible), or a layout
        by ffmpeg v360's name to force it whatever the metadata says: "equirect", "eac", "c3x2", "c6x1".
    stereo : "auto" (metadata, else mono), or "mono", "top-bottom", "side-by-side" to force a layout.

    Raises
    ------
    Pan360Error : unreadable file, no video stream, zero frames, or a picture that is not a full-sphere
        equirectangular frame (unless forced).
    """
    p = Path(path)
    container = open_input(p)
    try:
        vstream = select_video_stream(container)
        if vstream is None:
            raise Pan360Error(f"{p.name} has no video stream")
        _refuse_gopro_max(p, container)
        astream = select_audio_stream(container)
        audio = _audio_info(astream) if astream is not None else None
        ctx = vstream.codec_context
        width, height = int(ctx.width), int(ctx.height)
        if width <= 0 or height <= 0:
            raise Pan360Error(f"{p.name}: the video stream has no picture size")
        time_base = Fraction(vstream.time_base)
        pts, last_dur, raw_sph, raw_s3d, rotation = _demux_video(p, container, vstream)
        format_name = container.format.name
        codec_name = ctx.name
        pix_fmt = ctx.format.name if ctx.format is not None else "unknown"
        rates = (vstream.average_rate, vstream.guessed_rate, vstream.base_rate)
        stream_end = None
        if vstream.duration and vstream.duration > 0:
            start = vstream.start_time if vstream.start_time is not None else int(pts[0])
            stream_end = int(start + vstream.duration)
        stream_index = vstream.index
    finally:
        container.close()

    meta_proj, pose = _parse_spherical(raw_sph)
    stereo_mode, stereo_source = _choose_stereo(p, _parse_stereo3d(raw_s3d), stereo)
    eye_w = width // 2 if stereo_mode == "side-by-side" else width
    eye_h = height // 2 if stereo_mode == "top-bottom" else height
    proj, proj_source = _choose_projection(p, meta_proj, eye_w, eye_h, projection)

    times = (pts - pts[0]).astype(np.float64) * float(time_base)
    fps = _fps(rates, times)
    typical = float(np.median(np.diff(times))) if len(times) > 1 else 1.0 / float(fps)
    last = _last_frame_duration(stream_end, int(pts[-1]), last_dur, time_base, typical)
    duration = float(times[-1] + last)
    if duration <= 0:
        raise Pan360Error(f"{p.name}: the video has zero length")
    times.setflags(write=False)
    pts.setflags(write=False)
    return MediaInfo(
        path=p,
        format_name=format_name,
        video_codec=codec_name,
        pixel_format=pix_fmt,
        width=width,
        height=height,
        eye_width=eye_w,
        eye_height=eye_h,
        fps=fps,
        frame_times=times,
        frame_pts=pts,
        time_base=time_base,
        start_time=float(pts[0] * time_base),
        duration=duration,
        projection=proj,
        projection_source=proj_source,
        stereo=stereo_mode,
        stereo_source=stereo_source,
        yaw=pose[0],
        pitch=pose[1],
        roll=pose[2],
        video_stream_index=stream_index,
        audio=audio,
        display_rotation=rotation,
    )
