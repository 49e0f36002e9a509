"""Long recordings stream: audio read range by range (pan360.signal, AudioStream) gives exactly what the
whole decoded track gives, and peak memory of a render does not grow with the audio's duration.

Clips are generated here (PyAV, ffmpeg-free); the memory test renders real files in a child process.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import write_drum_clip
from pan360.media import AudioStream, VideoWriter, probe, read_audio
from pan360.nn.inputs import resample_audio
from pan360.signal import ArraySignal, Resampled, Signal
from pan360.spatial import CameraStereo, camera_stereo, foa_energy_maps


@pytest.fixture(scope="module")
def drum(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s 128x64 equirect clip with FOA (AAC 4.0, 48 kHz)."""
    return write_drum_clip(tmp_path_factory.mktemp("drum") / "drum.mp4", width=128, height=64, duration=2.0,
                           sounding_until=1.5)


def offset_clip(path: Path) -> Path:
    """Video from 0.2 s, 3-channel PCM audio from 0 s with a 0.3 s hole at 1 s (alignment, gap zeros)."""
    sr = 16000
    container = av.open(str(path), "w")
    video = container.add_stream("libx264", rate=25)
    video.width, video.height, video.pix_fmt = 64, 32, "yuv420p"
    audio = container.add_stream("pcm_s16le", rate=sr, layout="2.1")
    rng = np.random.default_rng(3)
    for i in range(50):
        frame = av.VideoFrame.from_ndarray(np.full((32, 64, 3), 5 * i, np.uint8), format="rgb24")
        frame.pts, frame.time_base = 5 + i, Fraction(1, 25)
        for packet in video.encode(frame.reformat(format="yuv420p")):
            container.mux(packet)
    for packet in video.encode(None):
        container.mux(packet)
    for start in range(0, 3 * sr, 1000):
        if sr <= start < 1.3 * sr:
            continue
        block = (rng.uniform(-0.5, 0.5, (1000, 3)) * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(block, format="s16", layout="2.1")
        frame.sample_rate, frame.pts, frame.time_base = sr, start, Fraction(1, sr)
        for packet in audio.encode(frame):
            container.mux(packet)
    for packet in audio.encode(None):
        container.mux(packet)
    container.close()
    return path


@pytest.mark.parametrize("make", ["drum", "offset"])
def test_stream_reads_what_the_whole_track_holds(make: str, drum: Path, tmp_path: Path) -> None:
    path = drum if make == "drum" else offset_clip(tmp_path / "offset.mkv")
    info = probe(path)
    whole = read_audio(info)
    stream = AudioStream(info, in_memory_bytes=0)  # streamed however short
    assert not stream.in_memory
    assert (stream.sample_rate, stream.channels, stream.layout, stream.ambisonic) == \
        (whole.sample_rate, whole.channels, whole.layout, whole.ambisonic)
    n = whole.samples.shape[1]
    padded = np.pad(whole.samples, ((0, 0), (0, 2 * n)))
    # overlapping windows in time order: one decode for the whole walk
    for a in range(0, n + 5000, 7001):
        np.testing.assert_array_equal(stream.read(a, a + 20000), padded[:, a:a + 20000])
    assert stream.passes == 1
    assert stream.length == n and stream.passes == 1  # the walk reached the end: length known, no new pass
    np.testing.assert_array_equal(stream.read(-50, 10)[:, :50], 0)  # a read that goes back starts a new pass
    assert stream.passes == 2
    np.testing.assert_array_equal(np.concatenate([stream.read(a, min(a + 3000, n)) for a in range(0, n, 3000)],
                                                 axis=1), whole.samples)
    np.testing.assert_array_equal(stream.mono().read(100, 5000)[0], whole.mono()[100:5000])
    if whole.is_foa():
        np.testing.assert_array_equal(stream.foa("fuma").read(0, n), whole.foa("fuma"))
    if make == "offset":  # the hole decodes as zeros, 0.2 s of leading audio dropped (aligned to the video)
        hole = slice(int(0.85 * 16000), int(1.05 * 16000))
        assert not whole.samples[:, hole].any() and whole.samples[:, :hole.start].any()
    short = AudioStream(info)  # the default: a short track is decoded once, into memory
    assert short.in_memory
    np.testing.assert_array_equal(short.load().read(0, n), whole.samples)
    short.read(0, 10), short.read(5, 50)
    assert short.passes == 1
    lying = AudioStream(info)  # a track far longer than its header says stops loading and streams
    lying._budget = 1000
    assert lying.length == n and not lying.in_memory
    np.testing.assert_array_equal(lying.read(0, n), whole.samples)
    lying.read(n - 100, n)
    before = lying.passes
    for a in (-500, -400, -300, 0, 10):  # one new pass for going back; reads before sample 0 reuse it
        lying.read(a, a + 1000)
    assert lying.passes == before + 1


def test_resampled_ranges_equal_resampling_the_whole() -> None:
    x = np.random.default_rng(0).standard_normal(48000 * 3).astype(np.float32)
    for rate in (16000, 22050, 44100, 48000):
        whole = resample_audio(x, 48000, rate)
        sig = Resampled(ArraySignal(x, 48000), rate)
        assert sig.length == len(whole)
        for a, b in ((0, 1000), (777, 30001), (len(whole) - 500, len(whole) + 300), (-200, 100)):
            got = sig.read(a, b)[0]
            want = np.zeros(b - a, np.float32)
            lo, hi = max(a, 0), min(b, len(whole))
            want[lo - a:hi - a] = whole[lo:hi]
            np.testing.assert_array_equal(got, want, err_msg=f"{rate} Hz [{a}, {b})")


@pytest.mark.parametrize("loud", [False, True])
def test_camera_stereo_as_a_signal_equals_the_whole_track(loud: bool) -> None:
    rng = np.random.default_rng(1)
    foa = (rng.standard_normal((4, 48000 * 2)) * (0.9 if loud else 0.1)).astype(np.float32)
    t = np.arange(0, 2, 1 / 30)
    yaw, pitch, roll = np.linspace(150, 230, t.size), np.linspace(-10, 10, t.size), np.zeros(t.size)
    whole = camera_stereo(foa, 48000, t, yaw, pitch, roll=roll)
    sig = CameraStereo(ArraySignal(foa, 48000), t, yaw, pitch, roll=roll)
    assert (sig.gain < 1.0) == loud  # a loud track is brought down by one constant gain
    chunks = [sig.read(a, min(a + 1024, sig.length)) for a in range(0, sig.length, 1024)]
    np.testing.assert_array_equal(np.concatenate(chunks, axis=1), whole)


def test_foa_maps_of_a_stream_equal_those_of_the_array(drum: Path) -> None:
    info = probe(drum)
    whole = read_audio(info)
    stream = AudioStream(info, in_memory_bytes=0)
    times = info.frame_times
    want = foa_energy_maps(whole.foa(), whole.sample_rate, times, width=32, height=16)
    got = foa_energy_maps(stream.foa(), stream.sample_rate, times, width=32, height=16)
    np.testing.assert_array_equal(got, want)
    assert stream.passes == 2  # one decode to learn the length (once per stream), one for the maps
    foa_energy_maps(stream.foa(), stream.sample_rate, times, width=32, height=16)
    assert stream.passes == 2  # the 2 s track is one chunk of the maps: still held, not decoded again


class _Noise(Signal):
    """4-channel ambiX noise from one direction, made block by block (a long test track never held)."""

    def __init__(self, seconds: int, sample_rate: int = 48000) -> None:
        self.sample_rate, self.channels, self._n = sample_rate, 4, seconds * sample_rate

    @property
    def length(self) -> int:
        return self._n

    def read(self, start: int, stop: int) -> np.ndarray:
        rng = np.random.default_rng(start)
        w = rng.uniform(-0.3, 0.3, max(stop - start, 0)).astype(np.float32)
        return np.stack([w, 0.7 * w, 0 * w, 0.7 * w])  # W, Y, Z, X: yaw -45°


def long_clip(path: Path, seconds: int) -> Path:
    """A 64x32 1 fps video with ``seconds`` of 4-channel 48 kHz audio (AAC), written as it is made."""
    with VideoWriter(path, 64, 32, fps=1, duration=float(seconds), preset="ultrafast",
                     audio=_Noise(seconds), sample_rate=48000) as writer:
        for i in range(seconds):
            writer.write(np.full((32, 64, 3), 100, np.uint8), float(i))
    return path


def peak_rss_mib(*args: str | Path, env: dict[str, str] | None = None) -> float:
    """Peak RSS (MiB) of ``pan360 ARGS`` in a child process (read through a wrapper whose only child it
    is), with ``env`` added to this process's environment."""
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
    out = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "pan360", *map(str, args)],
                         check=True, capture_output=True, text=True, env={**os.environ, **(env or {})})
    return float(out.stdout.split()[-1])


@pytest.mark.parametrize("saliency", ["foa", "none"])
def test_render_memory_does_not_grow_with_the_audio(tmp_path: Path, saliency: str) -> None:
    """100 s against 300 s of 4-channel 48 kHz audio: 150 MB more as float32, the peak grows by far less.
    (Both are past the in-memory size of :class:`AudioStream` and past the FOA maps' largest chunk, the
    constant part of the peak.)"""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    clips = {seconds: long_clip(tmp_path / f"long{seconds}.mp4", seconds) for seconds in (100, 300)}

    # glibc raises its mmap threshold as large blocks are freed, and where the heap then fragments
    # varies from run to run: with it, identical renders of the 300 s clip peaked anywhere from 246 to
    # 318 MiB. A fixed threshold leaves the program's own growth (4 runs: 243-246 MiB at 300 s,
    # 226-232 at 100 s).
    fixed_threshold = {"MALLOC_MMAP_THRESHOLD_": str(4 << 20)}

    def peak(seconds: int) -> float:
        out = tmp_path / f"out{seconds}.mp4"
        mib = peak_rss_mib("render", clips[seconds], "-o", out, "--saliency", saliency, "--preset", "ultrafast",
                           "-q", "--overwrite", env=fixed_threshold)
        sound = read_audio(out)  # the output carries the whole track's sound
        assert sound.channels == 2 and abs(sound.duration - seconds) < 0.1
        assert np.abs(sound.samples[:, -48000:]).max() > 0.01
        return mib

    peaks = {seconds: peak(seconds) for seconds in clips}
    growth = peaks[300] - peaks[100]
    assert growth < 40, f"peak RSS {peaks[100]:.0f} MiB at 100 s, {peaks[300]:.0f} MiB at 300 s"
