"""Decoding one eye of a 360° video with its timestamps, and writing H.264 + AAC (MP4, M4V, MOV, MKV).

All decoding and encoding happens in process through PyAV.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import cv2
import numpy as np
from numpy.typing import NDArray

from pan360.errors import Pan360Error
from pan360.options import check_x264
from pan360.progress import Progress
from pan360.signal import Signal, as_signal
from pan360.media.probe import MediaInfo, open_input

Planes = tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.uint8]]
FrameData = NDArray[np.uint8] | Planes

_FULL_RANGE = 2  # AVCOL_RANGE_JPEG


def _plane(frame: av.VideoFrame, index: int, rows: int, cols: int) -> NDArray[np.uint8]:
    """Top-left rows x cols of one plane, as a strided view without a copy.

    The view keeps the plane (and so the decoded frame's ref-counted buffer) alive, so the decoder
    cannot reuse the memory under it; skipping the copy saves ~2 ms per 4K frame.
    """
    plane = frame.planes[index]
    buf = np.frombuffer(plane, dtype=np.uint8, count=plane.line_size * plane.height)
    return buf.reshape(plane.height, plane.line_size)[:rows, :cols]


def _eye_yuv420p(frame: av.VideoFrame, eye_w: int, eye_h: int) -> Planes:
    # Cropping planes directly avoids converting (both eyes of) a big frame when it is already yuv420p.
    if frame.format.name != "yuv420p" or frame.color_range == _FULL_RANGE:
        frame = frame.reformat(format="yuv420p", dst_color_range="MPEG")
    cw, ch = (eye_w + 1) // 2, (eye_h + 1) // 2
    return _plane(frame, 0, eye_h, eye_w), _plane(frame, 1, ch, cw), _plane(frame, 2, ch, cw)


def _eye_rgb24(frame: av.VideoFrame, eye_w: int, eye_h: int) -> NDArray[np.uint8]:
    rgb = frame.to_ndarray(format="rgb24")
    if rgb.shape[0] == eye_h and rgb.shape[1] == eye_w:
        return rgb
    return np.ascontiguousarray(rgb[:eye_h, :eye_w])


#: Most source pixels per output pixel a cubemap picture is remapped with for the analysis: it is
#: remapped (bilinear) at up to this multiple of the wanted size, then area-averaged down.
_ANALYSIS_OVERSAMPLE = 4


def equirect_picture(image: NDArray, layout: str, size: tuple[int, int]) -> NDArray:
    """An (H, W) or (H, W, C) picture in ``layout`` (v360's name) as an equirect picture of ``size`` (w, h).

    equirect is only resized (area); a cubemap is mapped once at about its own resolution (up to
    :data:`_ANALYSIS_OVERSAMPLE` times ``size``, :func:`pan360.projections.to_equirect`) and then
    area-averaged, so a big frame mapped to a small analysis grid does not alias.
    """
    from pan360.projections import equirect_width, to_equirect

    w, h = size
    if layout == "equirect":
        if (image.shape[1], image.shape[0]) == (w, h):
            return image
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    k = int(min(_ANALYSIS_OVERSAMPLE, max(1, round(equirect_width(layout, image.shape[1], image.shape[0]) / w))))
    big = to_equirect(image, layout, w * k, h * k)
    return big if k == 1 else cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA)


def iter_frames(
    info: MediaInfo,
    *,
    fmt: str = "yuv420p",
    threads: int = 0,
    progress: Progress | None = None,
) -> Iterator[tuple[float, FrameData]]:
    """Decode the selected eye of every video frame, in display order.

    Parameters
    ----------
    info : from :func:`probe`; decides the stream, the eye (top half for top-bottom, left half for
        side-by-side) and the frames to yield.
    fmt : "yuv420p" yields a tuple of uint8 planes (row-strided views) Y (H, W), U and V (ceil(H/2), ceil(W/2))
        in limited range; "rgb24" yields an (H, W, 3) uint8 array.
    threads : decoder threads, 0 = automatic.
    progress : optional callback (frames done, total).

    Yields
    ------
    (time, data) with time in seconds relative to the first frame, exactly ``info.frame_times`` in order:
    a frame the decoder fails to deliver is replaced by the previous picture so that the count and the
    timestamps always match the probe.
    """
    if fmt not in ("yuv420p", "rgb24"):
        raise Pan360Error(f"unknown frame format {fmt!r}; use yuv420p or rgb24")
    convert = _eye_yuv420p if fmt == "yuv420p" else _eye_rgb24
    expected = info.frame_pts
    total = len(expected)
    position = {int(p): i for i, p in enumerate(expected)}
    container = open_input(info.path)
    try:
        stream = container.streams[info.video_stream_index]
        stream.codec_context.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        index = 0
        last: FrameData | None = None
        # AVI stores decoding times only: its frames come out of the decoder with shuffled pts.
        by_pts = info.format_name != "avi"
        try:
            for frame in container.decode(stream):
                i = position.get(int(frame.pts)) if by_pts and frame.pts is not None else None
                if i is None or i < index:
                    # A timestamp the probe does not know, or one going backwards: from here on
                    # count frames instead (decoders emit them in display order).
                    by_pts, i = False, index
                if i >= total:
                    break
                data = convert(frame, info.eye_width, info.eye_height)
                while index < i:  # frames the decoder dropped: hold the previous picture
                    yield float(info.frame_times[index]), last if last is not None else data
                    index += 1
                yield float(info.frame_times[index]), data
                index += 1
                last = data
                if progress is not None:
                    progress(index, total)
        except av.error.FFmpegError as exc:
            if last is None:
                raise Pan360Error(f"cannot decode {info.path.name}: {exc.__class__.__name__}") from exc
        if last is None:
            raise Pan360Error(f"cannot decode any video frame of {info.path.name}")
        while index < total:  # truncated stream: hold the last picture to keep the frame count
            yield float(info.frame_times[index]), last
            index += 1
        if progress is not None:
            progress(total, total)
    finally:
        container.close()


#: The channel counts AAC output carries, with the FFmpeg layout each is written as.
AAC_LAYOUTS = {1: "mono", 2: "stereo", 4: "4.0", 6: "5.1"}


def aac_writable(samples: NDArray[np.float32] | Signal) -> tuple[NDArray[np.float32] | Signal, str | None]:
    """``samples`` ((C, N) array or signal) as AAC can carry them: unchanged for the channel counts of
    :data:`AAC_LAYOUTS`, else the first two channels, with a note for the user saying so (else None)."""
    channels = samples.channels if isinstance(samples, Signal) else samples.shape[0]
    if channels in AAC_LAYOUTS:
        return samples, None
    note = f"{channels}-channel audio cannot be written as AAC; keeping the first two channels"
    if isinstance(samples, Signal):
        return samples.map(lambda block: block[:2], 2), note
    return np.ascontiguousarray(samples[:2]), note


#: The containers pan360 writes H.264 + AAC into, by output extension (FFmpeg muxer names).
CONTAINERS = {".mp4": "mp4", ".m4v": "ipod", ".mov": "mov", ".mkv": "matroska"}


def container_for(path: str | Path) -> str:
    """The FFmpeg muxer for an output named ``path`` (:data:`CONTAINERS`); a one-line Pan360Error for
    any other extension (WebM, for one, cannot carry H.264/AAC: it needs VP8/VP9 and Opus/Vorbis)."""
    ext = Path(path).suffix.lower()
    if ext in CONTAINERS:
        return CONTAINERS[ext]
    why = ": WebM needs VP8/VP9 video and Opus/Vorbis audio" if ext == ".webm" else ""
    raise Pan360Error(f"cannot write a video named {Path(path).name}{why}; pan360 writes H.264 + AAC as "
                      f"{', '.join(CONTAINERS)}")


class VideoWriter:
    """H.264 (libx264, yuv420p) with optional AAC audio, written frame by frame, in the container the
    extension names (:func:`container_for`: MP4, M4V, MOV or Matroska).

    Parameters
    ----------
    path : output file (normally the temporary path of :func:`atomic_output`); MP4/M4V/MOV with faststart.
    width, height : frame size in pixels (even numbers, a yuv420p requirement).
    fps : nominal frame rate (stream metadata and x264 rate control); the real timing comes from the
        times given to :meth:`write`, so variable frame rate is preserved.
    duration : end time of the video in seconds (the last frame lasts until then); None = the last
        frame lasts as long as the one before it.
    crf, preset : x264 quality and speed.
    audio : float32 (channels, samples) or a :class:`~pan360.signal.Signal` (read in time order as the
        video advances), sample 0 at time 0, or None; 1, 2, 4 or 6 channels. Audio beyond
        the video's end is dropped. 4 channels are written with the AAC "4.0" layout in the given order,
        which FFmpeg-based readers (and :func:`read_audio`) return in that same order.
    sample_rate : audio sample rate (Hz), required with ``audio``.
    audio_layout : override the FFmpeg layout name used for the audio.
    audio_bitrate : bits per second; default 64 kb/s per channel.
    time_base : timestamp resolution of the video stream (seconds per tick).

    Use as a context manager: the file is finalised on a clean exit; on an exception the encoders are
    closed without flushing (the caller's :func:`atomic_output` then deletes the partial file).
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        *,
        fps: Fraction | float = Fraction(30),
        duration: float | None = None,
        crf: float = 20,
        preset: str = "medium",
        audio: NDArray[np.float32] | Signal | None = None,
        sample_rate: int | None = None,
        audio_layout: str | None = None,
        audio_bitrate: int | None = None,
        time_base: Fraction = Fraction(1, 90000),
    ) -> None:
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise Pan360Error(f"output size must be positive even numbers for yuv420p, got {width}x{height}")
        check_x264(crf, preset)
        self.width, self.height = int(width), int(height)
        self._tb = Fraction(time_base)
        self._duration = duration
        self._fps = Fraction(fps).limit_denominator(1_000_000)
        # read chunk by chunk as the video advances: a streamed signal is never held whole
        self._audio: Signal | None = None
        if audio is not None:
            if sample_rate is None or sample_rate <= 0 or not (isinstance(audio, Signal) or np.ndim(audio) == 2):
                raise Pan360Error("audio must be a (channels, samples) array or a signal, with a sample rate")
            self._audio = as_signal(audio, sample_rate)
            channels = self._audio.channels
            audio_layout = audio_layout or AAC_LAYOUTS.get(channels)
            if audio_layout is None:
                raise Pan360Error(f"cannot write {channels}-channel audio as AAC (1, 2, 4 or 6 channels)")
        try:
            fmt = container_for(path)
            options = {} if fmt == "matroska" else {"movflags": "+faststart"}
            self._container = av.open(str(path), "w", format=fmt, options=options)
        except (av.error.FFmpegError, OSError) as exc:
            raise Pan360Error(f"cannot write {path}: {exc}") from exc
        self._video = self._container.add_stream("libx264", rate=self._fps)
        ctx = self._video.codec_context
        ctx.width, ctx.height, ctx.pix_fmt = self.width, self.height, "yuv420p"
        ctx.time_base = self._tb
        ctx.framerate = self._fps
        ctx.thread_count = 0  # x264 picks its own thread count...
        ctx.thread_type = "AUTO"  # ...with frame threads (PyAV's default, SLICE, makes x264 use sliced threads)
        self._video.time_base = self._tb
        self._video.options = {"crf": f"{crf:g}", "preset": preset}
        self._astream = None
        if self._audio is not None:
            self._sr = int(sample_rate)
            self._astream = self._container.add_stream("aac", rate=self._sr, layout=audio_layout)
            self._astream.codec_context.bit_rate = audio_bitrate or 64_000 * self._audio.channels
            self._astream.time_base = Fraction(1, self._sr)
        self._audio_pos = 0  # next audio sample to encode
        self._last_pts: int | None = None
        self._last_interval: int | None = None
        self._pending: list[av.Packet] = []  # video packets whose duration is not known yet
        self._durations: dict[int, int] = {}
        self.frames_written = 0
        self._closed = False

    # -- video -------------------------------------------------------------------------------------
    def _to_frame(self, data: FrameData) -> av.VideoFrame:
        if isinstance(data, tuple):
            y, u, v = (np.asarray(p, dtype=np.uint8) for p in data)
            h, w = self.height, self.width
            if y.shape != (h, w) or u.shape != (h // 2, w // 2) or v.shape != (h // 2, w // 2):
                raise Pan360Error(f"yuv420p planes do not match the {w}x{h} output")
            # Each plane copied once, straight into the frame's own buffer (from_ndarray of the stacked
            # planes made three copies: the stack, its bytes, the frame).
            frame = av.VideoFrame(w, h, "yuv420p")
            for plane, data in zip(frame.planes, (y, u, v)):
                rows = np.frombuffer(plane, dtype=np.uint8, count=plane.line_size * plane.height)
                rows.reshape(plane.height, plane.line_size)[:, : plane.width] = data
            return frame
        arr = np.asarray(data)
        if arr.shape != (self.height, self.width, 3) or arr.dtype != np.uint8:
            raise Pan360Error(f"frame must be uint8 ({self.height}, {self.width}, 3), got {arr.dtype} {arr.shape}")
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24").reformat(format="yuv420p")

    def _mux_video(self, packets: list[av.Packet]) -> None:
        # x264 leaves packet durations at 0. Each packet gets its own frame's display interval (the last
        # frame's runs to the end): the muxer ends the track at the largest pts + duration, and the
        # stts sum gives players and ffmpeg the average frame rate.
        self._pending.extend(packets)
        ready = [p for p in self._pending if p.pts in self._durations]
        self._pending = [p for p in self._pending if p.pts not in self._durations]
        for p in ready:
            p.duration = self._durations.pop(p.pts)
            self._container.mux(p)

    def write(self, data: FrameData, time: float) -> None:
        """Encode one frame shown at ``time`` seconds (strictly increasing), rgb24 array or yuv420p planes."""
        pts = round(time / self._tb)
        if self._last_pts is not None and pts <= self._last_pts:
            raise Pan360Error(f"frame times must increase (got {time:.6f} s after {float(self._last_pts * self._tb):.6f} s)")
        frame = self._to_frame(data)
        frame.pts, frame.time_base = pts, self._tb
        self._write_audio_until(pts * self._tb)  # audio up to this instant goes before the frame
        if self._last_pts is not None:
            self._last_interval = pts - self._last_pts
            self._durations[self._last_pts] = self._last_interval
        self._last_pts = pts
        self._mux_video(self._video.encode(frame))
        self.frames_written += 1

    # -- audio -------------------------------------------------------------------------------------
    def _write_audio_until(self, t: Fraction | float, final: bool = False) -> None:
        if self._astream is None:
            return
        end = min(self._audio.length, int(round(float(t) * self._sr)))
        chunk = 1024  # the AAC frame size
        while self._audio_pos < end and (final or end - self._audio_pos >= chunk):
            stop = min(self._audio_pos + chunk, end)
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(self._audio.read(self._audio_pos, stop)),
                format="fltp",
                layout=self._astream.codec_context.layout.name,
            )
            frame.sample_rate, frame.pts, frame.time_base = self._sr, self._audio_pos, Fraction(1, self._sr)
            for p in self._astream.encode(frame):
                self._container.mux(p)
            self._audio_pos = stop

    # -- finishing ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Flush both encoders and finalise the file (moov atom moved to the front)."""
        if self._closed:
            return
        self._closed = True
        if self._last_pts is None:
            self._container.close()
            raise Pan360Error("no video frame was written")
        if self._duration is not None:
            end = round(self._duration / self._tb)
        else:
            end = self._last_pts + (self._last_interval or round(1 / (self._fps * self._tb)))
        self._durations[self._last_pts] = max(1, end - self._last_pts)
        self._write_audio_until(end * self._tb, final=True)
        if self._astream is not None:
            for p in self._astream.encode(None):
                self._container.mux(p)
        self._mux_video(self._video.encode(None))
        for p in self._pending:  # cannot happen with x264, kept so that no frame is ever lost
            self._container.mux(p)
        self._container.close()

    def abort(self) -> None:
        """Close the file without flushing the encoders (after an error)."""
        if not self._closed:
            self._closed = True
            try:
                self._container.close()
            except av.error.FFmpegError:
                pass

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
