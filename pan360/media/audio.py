"""Decoding a whole audio track to float32 (channels, samples), aligned to the first video frame.

Channel order is the order FFmpeg decodes, returned untouched (no FuMa conversion, no remix). For
4-channel AAC (channel configuration 4, decoded as layout "4.0") that is the order the ambisonic
channels were meant in: checked on real files, where FFmpeg's output is W, X, Y, Z for the FuMa
test recording ``chapman_4ch_B_FuMaNorm_FuMaOrd_speech.mp4`` (channel 0 obeys the FuMa plane-wave
relation X² + Y² + Z² = 2 W² to within 1 %, and the announced positions come out on the expected
grid) and W, Y, Z, X for ``datavized_beach-ambisonic.mp4`` (Y = W, X = 0). Undoing FFmpeg's AAC
channel-element reordering would put W in second place, so it is not undone; files written by
ffmpeg (and by :class:`~pan360.media.video.VideoWriter`) read back in the order they were written.
Vorbis "quad" keeps its order too (the W channel of the real WebM clips is channel 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray

from pan360.errors import Pan360Error
from pan360.progress import Progress
from pan360.media.probe import (
    MediaInfo,
    ambisonic_kind,
    is_foa_layout,
    open_input,
    select_audio_stream,
    select_video_stream,
)

# Jitter between a frame's timestamp and the running sample count below this is ignored;
# a larger difference is a real gap (zeros) or overlap (dropped samples).
_RESYNC_SECONDS = 0.02

_INT_SCALE = {"s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


@dataclass(frozen=True, eq=False)
class AudioTrack:
    """A decoded audio track.

    ``samples`` is float32 (channels, N) in the file's channel order, nominally within [-1, 1];
    sample 0 is at the time of the first video frame (or of the first audio sample for a file
    without video). ``ambisonic`` is "ambix", "fuma" or None, as reported, never converted.
    """

    samples: NDArray[np.float32]
    sample_rate: int
    layout: str
    ambisonic: str | None

    @property
    def channels(self) -> int:
        """Number of channels."""
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.samples.shape[1] / self.sample_rate

    def is_foa(self, foa_format: str = "auto") -> bool:
        """Whether the track is read as first-order ambisonics (:func:`pan360.media.probe.is_foa_layout`)."""
        return is_foa_layout(self.channels, self.ambisonic, foa_format)

    def foa(self, foa_format: str = "auto") -> NDArray[np.float32]:
        """The ambiX (ACN/SN3D) (4, N) signal of a 4-channel track, or the first-order part (the first 4
        channels) of a higher-order one (:meth:`is_foa`): FuMa is converted (its W, 3 dB down, is scaled
        by √2); ``foa_format`` ("ambix" / "fuma") overrides the metadata."""
        if not (self.channels == 4 or self.is_foa(foa_format)):
            raise Pan360Error(f"spatial audio needs 4 channels (first-order ambisonics) or a track marked as "
                              f"ambisonic (--foa-format), this track has {self.channels}")
        is_foa_layout(4, self.ambisonic, foa_format)  # validates foa_format
        first = self.samples[:4]
        if (self.ambisonic if foa_format == "auto" else foa_format) == "fuma":
            from pan360.spatial.ambisonics import fuma_to_ambix

            return fuma_to_ambix(first)
        return np.asarray(first, dtype=np.float32)  # a view: no copy of the whole track

    def mono(self, foa_format: str = "auto") -> NDArray[np.float32]:
        """(N,) mono signal, as every mono consumer (network inference and training) hears it: the W
        (omni) channel of FOA in SN3D, else the mean of the channels."""
        if self.is_foa(foa_format):
            return np.ascontiguousarray(self.foa(foa_format)[0])
        return np.ascontiguousarray(np.asarray(self.samples, dtype=np.float32).mean(axis=0))


#: NumPy dtypes of FFmpeg's sample formats (planar ones end in "p").
_DTYPES = {"u8": np.uint8, "s16": np.int16, "s32": np.int32, "s64": np.int64, "flt": np.float32, "dbl": np.float64}


def _frame_array(frame: av.AudioFrame) -> np.ndarray:
    """(channels, samples) in the frame's own sample type, read from its planes.

    PyAV's ``AudioFrame.to_ndarray`` crashes the interpreter (segfault) on frames of 8 or more
    channels, so the plane buffers are read directly (each may be padded past its samples)."""
    base = frame.format.name.rstrip("p")
    if base not in _DTYPES:
        raise Pan360Error(f"unsupported audio sample format {frame.format.name!r}")
    dtype = np.dtype(_DTYPES[base])
    channels, n = len(frame.layout.channels), frame.samples
    if frame.format.is_planar:
        return np.stack([np.frombuffer(memoryview(p), dtype=dtype, count=n) for p in frame.planes[:channels]])
    packed = np.frombuffer(memoryview(frame.planes[0]), dtype=dtype, count=n * channels)
    return packed.reshape(n, channels).T


def _to_float(frame: av.AudioFrame) -> NDArray[np.float32]:
    """(channels, samples) float32 from any sample format, without touching the channel order."""
    arr = _frame_array(frame)
    base = frame.format.name.rstrip("p")
    if base in ("flt", "dbl"):
        return arr.astype(np.float32, copy=False)
    if base == "u8":
        return ((arr.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    return (arr.astype(np.float64) / _INT_SCALE[base]).astype(np.float32)


class _Growing:
    """(channels, n) float32 samples appended in place; the capacity grows by half when exceeded."""

    def __init__(self, channels: int, capacity: int) -> None:
        self._data = np.empty((channels, max(capacity, 1)), np.float32)
        self._n = 0

    def _reserve(self, extra: int) -> None:
        need = self._n + extra
        if need > self._data.shape[1]:
            grown = np.empty((self._data.shape[0], max(need, self._data.shape[1] * 3 // 2)), np.float32)
            grown[:, :self._n] = self._data[:, :self._n]
            self._data = grown

    def append(self, block: NDArray[np.float32]) -> None:
        self._reserve(block.shape[1])
        self._data[:, self._n:self._n + block.shape[1]] = block
        self._n += block.shape[1]

    def append_zeros(self, count: int) -> None:
        self._reserve(count)
        self._data[:, self._n:self._n + count] = 0.0
        self._n += count

    def samples(self) -> NDArray[np.float32]:
        """The samples so far: a view (each channel contiguous; the whole array too when the capacity
        was exact), not a copy."""
        return self._data[:, :self._n]


def _video_start(container, path: Path) -> float | None:
    """Time of the first displayed video frame (from packet timestamps), None without video."""
    vstream = select_video_stream(container)
    if vstream is None:
        return None
    first = None
    for packet in container.demux(vstream):
        t = packet.pts if packet.pts is not None else packet.dts
        if packet.size and not packet.is_discard and t is not None:
            first = t if first is None else min(first, t)
    if first is None:
        return None
    return float(first * vstream.time_base)


def read_audio(
    source: MediaInfo | str | Path,
    *,
    progress: Progress | None = None,
) -> AudioTrack:
    """Decode the whole audio track of a file.

    Parameters
    ----------
    source : a :class:`MediaInfo` from :func:`probe` (aligned to its first video frame), or a path
        (aligned to the first video frame if the file has video, else starting at the first sample).
    progress : optional callback (decoded seconds, total seconds), rounded to whole seconds.

    Raises
    ------
    Pan360Error : unreadable file or no audio stream.
    """
    if isinstance(source, MediaInfo):
        path, t0 = source.path, source.start_time
        if source.audio is None:
            raise Pan360Error(f"{path.name} has no audio stream")
    else:
        path = Path(source)
        container = open_input(path)
        try:
            t0 = _video_start(container, path)
        finally:
            container.close()

    container = open_input(path)
    try:
        stream = select_audio_stream(container)
        if stream is None:
            raise Pan360Error(f"{path.name} has no audio stream")
        ctx = stream.codec_context
        sr = int(ctx.sample_rate)
        channels = int(ctx.channels)
        total = int(float(stream.duration * stream.time_base)) if stream.duration else 0
        # one buffer filled in place (a list of blocks joined at the end would hold the track twice)
        seconds = float(stream.duration * stream.time_base) if stream.duration else (container.duration or 0) / 1e6
        buf = _Growing(channels, int(seconds * sr) + sr)
        placed = 0  # samples in the output so far
        expected: int | None = None  # where the next decoded sample belongs (relative to sample 0)
        start = None if t0 is None else round(t0 * sr)  # absolute sample index of output sample 0
        resync = int(_RESYNC_SECONDS * sr)
        try:
            for frame in container.decode(stream):
                data = _to_float(frame)
                if data.shape[0] != channels:  # a mid-stream layout change cannot be one array
                    raise Pan360Error(f"{path.name}: the audio channel count changes mid-stream")
                if frame.pts is not None:
                    at = round(float(frame.pts * Fraction(frame.time_base)) * sr)
                    start = at if start is None else start
                    # trust the timestamp only for a real gap or overlap, not for rounding jitter
                    if expected is None or abs(at - start - expected) > resync:
                        expected = at - start
                expected = expected or 0
                if expected > placed:  # audio starts after the first video frame, or a gap
                    buf.append_zeros(expected - placed)
                    placed = expected
                keep = data[:, placed - expected :]  # drops audio before sample 0 and overlaps
                expected += data.shape[1]
                if keep.shape[1]:
                    buf.append(keep)
                    placed += keep.shape[1]
                if progress is not None and total:
                    progress(min(placed // sr, total), total)
        except av.error.FFmpegError as exc:
            if not placed:
                raise Pan360Error(f"cannot decode the audio of {path.name}: {exc.__class__.__name__}") from exc
        layout = ctx.layout.name if ctx.layout is not None else f"{channels} channels"
        kind = ambisonic_kind(channels, layout, dict(stream.metadata))
    finally:
        container.close()
    return AudioTrack(samples=buf.samples(), sample_rate=sr, layout=layout, ambisonic=kind)

