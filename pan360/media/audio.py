"""Decoding an audio track to float32 (channels, samples), aligned to the first video frame: whole
(:func:`read_audio`, an :class:`AudioTrack`) or on demand (:class:`AudioStream`, a signal that streams
long recordings through every stage without holding them).

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
from typing import Iterator

import av
import numpy as np
from numpy.typing import NDArray

from pan360.errors import Pan360Error
from pan360.signal import BLOCK, Signal, slice_padded
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
        _check_foa_track(self.channels, self.ambisonic, foa_format)
        return _first_order(self.samples, self.ambisonic, foa_format)  # a view for ambiX: no copy

    def mono(self, foa_format: str = "auto") -> NDArray[np.float32]:
        """(N,) mono signal, as every mono consumer (network inference and training) hears it: the W
        (omni) channel of FOA in SN3D, else the mean of the channels."""
        return _mono(self.samples, self.ambisonic, foa_format)


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


@dataclass(frozen=True)
class _Header:
    """What a decoder says before decoding: rate, channel count, layout name, ambisonic kind."""

    sample_rate: int
    channels: int
    layout: str
    ambisonic: str | None
    seconds: float  # the stream's (or container's) nominal duration, 0 when unknown


def _source(source: MediaInfo | str | Path) -> tuple[Path, float | None]:
    """(path, time of output sample 0 on the file's timeline: its first video frame, or None)."""
    if isinstance(source, MediaInfo):
        if source.audio is None:
            raise Pan360Error(f"{source.path.name} has no audio stream")
        return source.path, source.start_time
    path = Path(source)
    container = open_input(path)
    try:
        return path, _video_start(container, path)
    finally:
        container.close()


def _header(path: Path) -> _Header:
    container = open_input(path)
    try:
        stream = select_audio_stream(container)
        if stream is None:
            raise Pan360Error(f"{path.name} has no audio stream")
        ctx = stream.codec_context
        channels = int(ctx.channels)
        layout = ctx.layout.name if ctx.layout is not None else f"{channels} channels"
        seconds = float(stream.duration * stream.time_base) if stream.duration else (container.duration or 0) / 1e6
        return _Header(int(ctx.sample_rate), channels, layout,
                       ambisonic_kind(channels, layout, dict(stream.metadata)), seconds)
    finally:
        container.close()


def _aligned_blocks(path: Path, t0: float | None, channels: int,
                    progress: Progress | None = None) -> Iterator[NDArray[np.float32]]:
    """The decoded track as consecutive (channels, n) float32 blocks from output sample 0: zeros for a
    gap (or audio that starts after the first video frame), audio before sample 0 and overlaps dropped."""
    container = open_input(path)
    try:
        stream = select_audio_stream(container)
        sr = int(stream.codec_context.sample_rate)
        total = int(float(stream.duration * stream.time_base)) if stream.duration else 0
        placed = 0  # samples yielded so far
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
                while expected > placed:  # audio starts after the first video frame, or a gap
                    zeros = min(expected - placed, BLOCK)  # in blocks: a long gap is not one array
                    yield np.zeros((channels, zeros), np.float32)
                    placed += zeros
                keep = data[:, placed - expected :]  # drops audio before sample 0 and overlaps
                expected += data.shape[1]
                if keep.shape[1]:
                    yield keep
                    placed += keep.shape[1]
                if progress is not None and total:
                    progress(min(placed // sr, total), total)
        except av.error.FFmpegError as exc:
            if not placed:
                raise Pan360Error(f"cannot decode the audio of {path.name}: {exc.__class__.__name__}") from exc
    finally:
        container.close()


def read_audio(
    source: MediaInfo | str | Path,
    *,
    progress: Progress | None = None,
) -> AudioTrack:
    """Decode the whole audio track of a file into memory (for long recordings see :class:`AudioStream`).

    Parameters
    ----------
    source : a :class:`MediaInfo` from :func:`probe` (aligned to its first video frame), or a path
        (aligned to the first video frame if the file has video, else starting at the first sample).
    progress : optional callback (decoded seconds, total seconds), rounded to whole seconds.

    Raises
    ------
    Pan360Error : unreadable file or no audio stream.
    """
    path, t0 = _source(source)
    head = _header(path)
    samples = _decode_whole(path, t0, head, progress)
    assert samples is not None  # no size limit
    return AudioTrack(samples=samples, sample_rate=head.sample_rate, layout=head.layout, ambisonic=head.ambisonic)


def _decode_whole(path: Path, t0: float | None, head: _Header, progress: Progress | None = None,
                  limit: int | None = None) -> NDArray[np.float32] | None:
    """The whole aligned track in one buffer filled in place (a list of blocks joined at the end would
    hold it twice); None as soon as it exceeds ``limit`` bytes."""
    buf = _Growing(head.channels, int(head.seconds * head.sample_rate) + head.sample_rate)
    for block in _aligned_blocks(path, t0, head.channels, progress):
        buf.append(block)
        if limit is not None and buf.samples().nbytes > limit:
            return None
    return buf.samples()


#: Tracks up to this many bytes of float32 samples are decoded into memory once (:class:`AudioStream`).
IN_MEMORY_BYTES = 64 << 20  # ~87 s of 4-channel 48 kHz audio


class AudioStream(Signal):
    """A file's audio track as a :class:`~pan360.signal.Signal`, aligned as :func:`read_audio` aligns it.

    A track of at most ``in_memory_bytes`` (by its nominal duration) is decoded once, into memory, by
    :meth:`load`. A longer one is decoded on demand: each pass of reads in non-decreasing order of
    ``start`` decodes the file once from its beginning and keeps only the blocks of the range in hand
    (a read that goes back starts a new pass), so memory does not grow with the duration. ``length``
    is known once a pass has reached the end (else one decode-only pass finds it).
    Same attributes as :class:`AudioTrack`, but :meth:`foa` and :meth:`mono` are signals, not arrays.
    """

    def __init__(self, source: MediaInfo | str | Path, *, in_memory_bytes: int = IN_MEMORY_BYTES) -> None:
        self.path, self._t0 = _source(source)
        head = _header(self.path)
        self.sample_rate, self.channels = head.sample_rate, head.channels
        self.layout, self.ambisonic = head.layout, head.ambisonic
        self._head = head
        self._budget = in_memory_bytes
        # a track of unknown duration streams: it may be hours long
        self._in_memory = 0 < head.seconds * head.sample_rate * head.channels * 4 <= in_memory_bytes
        self._all: NDArray[np.float32] | None = None
        self._length: int | None = None
        self._pass: _Pass | None = None
        self.passes = 0  # decodes started (a measure for tests: reads in time order need one a pass)

    @property
    def in_memory(self) -> bool:
        """Whether the track is (to be) held in memory whole."""
        return self._in_memory

    def load(self, progress: Progress | None = None) -> AudioStream:
        """Decode a short track into memory now (nothing for a long one); returns self."""
        if self._in_memory and self._all is None:
            self.passes += 1
            self._all = _decode_whole(self.path, self._t0, self._head, progress, limit=2 * self._budget)
            if self._all is None:  # far longer than its header said: stream it
                self._in_memory = False
            else:
                self._length = int(self._all.shape[1])
        return self

    @property
    def length(self) -> int:
        if self._length is None and self._in_memory:
            self.load()
        if self._length is None:  # streamed (or found too long to load): one decode-only pass
            self.passes += 1
            self._length = sum(b.shape[1] for b in _aligned_blocks(self.path, self._t0, self.channels))
        return self._length

    def read(self, start: int, stop: int) -> NDArray[np.float32]:
        if self._in_memory:
            self.load()
        if self._all is not None:
            return slice_padded(self._all, 0, start, stop)
        if self._pass is None or max(start, 0) < self._pass.first:  # nothing before sample 0 to go back for
            self.passes += 1
            self._pass = _Pass(_aligned_blocks(self.path, self._t0, self.channels), self.channels)
        data, ended = self._pass.read(start, stop)
        if ended:
            self._length = self._pass.end
        return data

    def is_foa(self, foa_format: str = "auto") -> bool:
        """Whether the track is read as first-order ambisonics (:func:`pan360.media.probe.is_foa_layout`)."""
        return is_foa_layout(self.channels, self.ambisonic, foa_format)

    def foa(self, foa_format: str = "auto") -> Signal:
        """The ambiX (4, N) signal (as :meth:`AudioTrack.foa`)."""
        _check_foa_track(self.channels, self.ambisonic, foa_format)
        return self.map(lambda block: _first_order(block, self.ambisonic, foa_format), 4)

    def mono(self, foa_format: str = "auto") -> Signal:
        """The (1, N) mono signal (as :meth:`AudioTrack.mono`)."""
        return self.map(lambda block: _mono(block, self.ambisonic, foa_format)[None], 1)


class _Pass:
    """One decode of a stream from its start, holding the blocks from the last read's start on."""

    def __init__(self, blocks: Iterator[NDArray[np.float32]], channels: int) -> None:
        self._blocks, self._channels = blocks, channels
        self._held: list[NDArray[np.float32]] = []
        self.first = 0  # sample index of the first held sample
        self.end = 0  # one past the last decoded sample
        self._done = False

    def read(self, start: int, stop: int) -> tuple[NDArray[np.float32], bool]:
        """(samples start..stop-1 zero padded, whether the stream has ended); ``start`` >= :attr:`first`."""
        while self._held and self.first + self._held[0].shape[1] <= start:  # what no later read needs
            self.first += self._held.pop(0).shape[1]
        if self._held and self.first < start:
            self._held[0] = self._held[0][:, start - self.first:]
            self.first = start
        if not self._held:
            self.first = self.end
        while self.end < stop and not self._done:
            block = next(self._blocks, None)
            if block is None:
                self._done = True
                break
            if self.end + block.shape[1] <= start:  # skipped over: not kept
                self.end += block.shape[1]
                self.first = self.end
                continue
            self._held.append(block)
            self.end += block.shape[1]
        if not self._held:
            held = np.zeros((self._channels, 0), np.float32)
        elif len(self._held) == 1:
            held = self._held[0]
        else:
            held = np.concatenate(self._held, axis=1)
            self._held = [held]  # joined once: later reads of the same stretch slice it
        return slice_padded(held, self.first, start, stop), self._done


def _check_foa_track(channels: int, ambisonic: str | None, foa_format: str) -> None:
    if not (channels == 4 or is_foa_layout(channels, ambisonic, foa_format)):
        raise Pan360Error(f"spatial audio needs 4 channels (first-order ambisonics) or a track marked as "
                          f"ambisonic (--foa-format), this track has {channels}")
    is_foa_layout(4, ambisonic, foa_format)  # validates foa_format


def _first_order(samples: NDArray[np.float32], ambisonic: str | None, foa_format: str) -> NDArray[np.float32]:
    """ambiX (4, n) from the first 4 channels: FuMa converted (its W, 3 dB down, scaled by √2)."""
    first = samples[:4]
    if (ambisonic if foa_format == "auto" else foa_format) == "fuma":
        from pan360.spatial.ambisonics import fuma_to_ambix

        return fuma_to_ambix(first)
    return np.asarray(first, dtype=np.float32)  # a view: no copy


def _mono(samples: NDArray[np.float32], ambisonic: str | None, foa_format: str) -> NDArray[np.float32]:
    """(n,) mono: the W (omni) channel of FOA in SN3D, else the mean of the channels."""
    if is_foa_layout(samples.shape[0], ambisonic, foa_format):
        return np.ascontiguousarray(_first_order(samples, ambisonic, foa_format)[0])
    return np.ascontiguousarray(np.asarray(samples, dtype=np.float32).mean(axis=0))
