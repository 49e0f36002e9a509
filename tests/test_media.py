"""Media I/O: probing, frame decoding, audio, writing, atomic output.

Every clip is generated here with PyAV (small frames, a fraction of a second); real files from the
development media (conftest.py's ``shared_media``) are only read, and those tests skip when it is absent.
"""

from __future__ import annotations

import os
import struct
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import ffmpeg_exe

from pan360.errors import Pan360Error
from pan360.media import VideoWriter, atomic_output, iter_frames, probe, read_audio

# --------------------------------------------------------------------------------------------------
# clip generation


def _has_encoder(name: str) -> bool:
    try:
        av.Codec(name, "w")
        return True
    except Exception:
        return False


def _pattern(i: int, w: int, h: int) -> np.ndarray:
    """Frame i: brightness 20 + 12 i up to 240 (so order is visible after lossy coding), a moving bar."""
    img = np.full((h, w, 3), min(20 + 12 * i, 240), np.uint8)
    x = (i * 16) % w
    img[:, x : x + 8] = 255
    return img


def write_clip(
    path: Path,
    codec: str = "libx264",
    size: tuple[int, int] = (256, 128),
    pts: list[int] | None = None,
    time_base: Fraction = Fraction(1, 24),
    images: list[np.ndarray] | None = None,
    options: dict[str, str] | None = None,
    audio: tuple[np.ndarray, int, int] | None = None,
) -> None:
    """Encode frames at integer ``pts`` (in ``time_base``) with raw PyAV; optional PCM audio (x, rate, start pts)."""
    w, h = size
    pts = list(range(12)) if pts is None else pts
    images = images or [_pattern(i, w, h) for i in range(len(pts))]
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=Fraction(1, 1) / time_base if time_base.numerator == 1 else 25)
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    stream.codec_context.time_base = time_base
    stream.time_base = time_base
    stream.options = options or {}
    astream = None
    if audio is not None:
        astream = container.add_stream("pcm_s16le" if path.suffix != ".webm" else "libopus", rate=audio[1], layout="mono")
    for p, img in zip(pts, images):
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts, frame.time_base = p, time_base
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    if astream is not None:
        x, rate, start = audio
        pcm = (np.clip(x, -1, 1) * 32767).astype(np.int16)[None, :]
        for i in range(0, pcm.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, i : i + 1024]), format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start + i, Fraction(1, rate)
            for packet in astream.encode(frame):
                container.mux(packet)
        for packet in astream.encode(None):
            container.mux(packet)
    container.close()


# MP4 boxes of Google's spherical video v2 (st3d, sv3d), to test metadata without shared media.
def _box(tag: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), tag) + payload


def _fullbox(tag: bytes, payload: bytes) -> bytes:
    return _box(tag, b"\0\0\0\0" + payload)


def _children(data: bytearray, start: int, end: int):
    """(position, size, tag) of the boxes between ``start`` and ``end``."""
    while start + 8 <= end:
        size, tag = struct.unpack_from(">I4s", data, start)
        yield start, size, tag
        start += size


def inject_into_sample_entry(path: Path, entry: bytes, fields: int, extra: bytes) -> None:
    """Append boxes ``extra`` to the first ``entry`` sample entry (avc1, mp4a...) of a moov-at-end MP4.

    ``fields`` is the size of the entry's own fields before its child boxes (avc1 78, mp4a 28).
    """
    data = bytearray(path.read_bytes())
    moov = next(p for p, _, tag in _children(data, 0, len(data)) if tag == b"moov")
    for trak, size, tag in _children(data, moov + 8, moov + struct.unpack_from(">I", data, moov)[0]):
        if tag != b"trak":
            continue
        chain, start, end = [moov, trak], trak + 8, trak + size
        # (box, bytes of its own fields before its children): stsd has a count
        for want, skip in ((b"mdia", 0), (b"minf", 0), (b"stbl", 0), (b"stsd", 8), (entry, fields)):
            found = [(p, n) for p, n, t in _children(data, start, end) if t == want]
            if not found:
                break
            chain.append(found[0][0])
            start, end = found[0][0] + 8 + skip, found[0][0] + found[0][1]
        else:
            data[end:end] = extra  # the entry's last child; moov follows mdat, so no offset moves
            for pos in chain:
                struct.pack_into(">I", data, pos, struct.unpack_from(">I", data, pos)[0] + len(extra))
            path.write_bytes(bytes(data))
            return
    raise AssertionError(f"no {entry!r} sample entry in {path}")


def inject_spherical(path: Path, stereo_mode: int | None, projection: bytes, pose=(0.0, 0.0, 0.0)) -> None:
    """Add st3d (0 mono, 1 top-bottom, 2 left-right) and sv3d boxes to the avc1 entry of a moov-at-end MP4."""
    prhd = _fullbox(b"prhd", struct.pack(">iii", *(round(a * 65536) for a in pose)))
    proj = _fullbox(b"equi", bytes(16)) if projection == b"equi" else _fullbox(b"cbmp", bytes(8))
    extra = b"" if stereo_mode is None else _fullbox(b"st3d", bytes([stereo_mode]))
    extra += _box(b"sv3d", _fullbox(b"svhd", b"pan360\0") + _box(b"proj", prhd + proj))
    inject_into_sample_entry(path, b"avc1", 78, extra)


# --------------------------------------------------------------------------------------------------
# probe + decode across containers and codecs

MATRIX = [
    ("mp4", "libx264", {}),
    ("mov", "libx264", {}),
    ("mkv", "libx265", {"x265-params": "log-level=error"}),
    ("webm", "libvpx-vp9", {"deadline": "realtime", "cpu-used": "8"}),
    ("mkv", "libsvtav1", {"preset": "12"}),
]


@pytest.mark.parametrize("ext,codec,options", MATRIX, ids=[f"{e}-{c}" for e, c, _ in MATRIX])
def test_containers_and_codecs(tmp_path, ext, codec, options):
    if not _has_encoder(codec):
        pytest.skip(f"{codec} encoder is not in this PyAV build")
    path = tmp_path / f"clip.{ext}"
    write_clip(path, codec, options=options)
    info = probe(path)
    assert info.n_frames == 12
    assert info.frame_times[0] == 0.0
    np.testing.assert_allclose(info.frame_times, np.arange(12) / 24, atol=1.5e-3)  # WebM/MKV tick is 1 ms
    assert info.duration == pytest.approx(0.5, abs=2e-3)
    assert (info.width, info.height, info.eye_width, info.eye_height) == (256, 128, 256, 128)
    assert info.projection == "equirectangular" and info.projection_source == "assumed"
    assert info.stereo == "mono" and info.audio is None
    assert float(info.fps) == pytest.approx(24, rel=1e-3)

    frames = list(iter_frames(info, fmt="rgb24"))
    assert [t for t, _ in frames] == list(info.frame_times)
    means = [float(img[:, 128:].mean()) for _, img in frames]  # right half: no bar in the first 8 frames
    assert np.all(np.diff(means[:8]) > 5), means  # frames come in presentation order
    y, u, v = next(iter_frames(info, fmt="yuv420p"))[1]
    assert y.shape == (128, 256) and u.shape == (64, 128) and v.shape == (64, 128)
    assert y.dtype == np.uint8 and y.flags.c_contiguous and u.flags.c_contiguous


@pytest.mark.parametrize("pix_fmt", ["yuv444p", "yuv420p10le"])
def test_other_pixel_formats_are_converted(tmp_path, pix_fmt):
    path = tmp_path / f"{pix_fmt}.mkv"
    img = np.zeros((128, 256, 3), np.uint8)
    img[:, :, 0] = 200  # red
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 256, 128, pix_fmt
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format=pix_fmt)
            frame.pts = i
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    info = probe(path)
    assert info.pixel_format == pix_fmt
    planes = [d for _, d in iter_frames(info, fmt="yuv420p")]
    y, u, v = planes[0]
    assert len(planes) == 3 and y.shape == (128, 256) and u.shape == (64, 128) and y.dtype == np.uint8
    # BT.601 limited range red (200, 0, 0): Y ~ 16 + 0.257 * 200, V (Cr) well above 128
    assert abs(float(y.mean()) - (16 + 0.257 * 200)) < 4 and v.mean() > 180
    rgb = next(iter_frames(info, fmt="rgb24"))[1]
    assert abs(float(rgb[..., 0].mean()) - 200) < 6 and rgb[..., 1].mean() < 10


def test_video_writer_rejects_bad_arguments(tmp_path):
    with pytest.raises(Pan360Error, match="even"):
        VideoWriter(tmp_path / "odd.mp4", 65, 32)
    with pytest.raises(Pan360Error, match="1, 2, 4 or 6"):
        VideoWriter(tmp_path / "a.mp4", 64, 32, audio=np.zeros((3, 100), np.float32), sample_rate=48000)
    with pytest.raises(Pan360Error, match="must increase"):
        with VideoWriter(tmp_path / "b.mp4", 64, 32, preset="ultrafast") as w:
            w.write(np.zeros((32, 64, 3), np.uint8), 0.1)
            w.write(np.zeros((32, 64, 3), np.uint8), 0.1)


def test_variable_frame_rate_timestamps(tmp_path):
    pts = [0, 40, 55, 130, 200, 210, 400, 433]  # milliseconds, deliberately irregular
    path = tmp_path / "vfr.mkv"
    write_clip(path, pts=pts, time_base=Fraction(1, 1000), options={"bf": "2"})
    info = probe(path)
    np.testing.assert_allclose(info.frame_times, np.array(pts) / 1000, atol=1e-9)
    got = [t for t, _ in iter_frames(info, fmt="yuv420p")]
    np.testing.assert_allclose(got, np.array(pts) / 1000, atol=1e-9)


def test_video_writer_vfr_audio_round_trip(tmp_path):
    """VFR times, exact count and duration, 4-channel order W, Y, Z, X, audio timing and interleaving."""
    rng = np.random.default_rng(1)
    times = np.cumsum(np.r_[0.0, rng.uniform(0.02, 0.09, 24)])
    duration = float(times[-1] + 0.05)
    sr = 48000
    t = np.arange(int(duration * sr)) / sr
    freqs = [300.0, 750.0, 1500.0, 3000.0]  # one tone per channel: W, Y, Z, X
    gate = (t >= 0.5).astype(np.float32)  # everything starts at 0.5 s: checks the audio timing
    audio = np.stack([0.3 * np.sin(2 * np.pi * f * t) * gate for f in freqs]).astype(np.float32)
    out = tmp_path / "out.mp4"
    progress_seen = []
    with VideoWriter(out, 256, 128, fps=25, duration=duration, crf=30, preset="ultrafast", audio=audio, sample_rate=sr) as w:
        for i, ti in enumerate(times):
            if i % 2:  # both input kinds: rgb24 arrays and yuv420p planes
                w.write(_pattern(i, 256, 128), ti)
            else:
                y = np.full((128, 256), 16 + 8 * i, np.uint8)
                w.write((y, np.full((64, 128), 128, np.uint8), np.full((64, 128), 128, np.uint8)), ti)
    info = probe(out)
    assert info.n_frames == len(times)
    np.testing.assert_allclose(info.frame_times, times, atol=2e-5)
    assert abs(info.duration - duration) < 0.05
    assert info.video_codec == "h264" and info.pixel_format == "yuv420p"
    assert info.audio is not None and info.audio.channels == 4 and info.audio.ambisonic == "ambix"
    assert len(list(iter_frames(info, progress=lambda d, n: progress_seen.append((d, n))))) == len(times)
    assert progress_seen[-1] == (len(times), len(times))

    track = read_audio(info)
    assert track.samples.dtype == np.float32 and track.channels == 4 and track.sample_rate == sr
    seg = track.samples[:, int(0.6 * sr) : int(0.6 * sr) + 8192]
    spectrum = np.abs(np.fft.rfft(seg, axis=1))
    peaks = np.fft.rfftfreq(8192, 1 / sr)[spectrum.argmax(axis=1)]
    np.testing.assert_allclose(peaks, freqs, atol=10)  # channel order survives the AAC round trip
    envelope = np.abs(track.samples[0])
    onset = np.argmax(envelope > 0.1) / sr
    assert onset == pytest.approx(0.5, abs=0.003)

    # faststart: moov before mdat; audio interleaved with video, not appended at the end
    head = out.read_bytes()[:4096]
    assert 0 <= head.find(b"moov") < head.find(b"mdat") or b"mdat" not in head
    with av.open(str(out)) as c:
        kinds = [p.stream.type for p in c.demux() if p.size]
    last_video = max(i for i, k in enumerate(kinds) if k == "video")
    assert sum(k == "audio" for k in kinds[:last_video]) > 0.5 * len(times)


def _smooth_ramp(i: int, w: int, h: int) -> np.ndarray:
    """A ramp drifting 2 px a frame: easy to predict, so x264 puts B-frames at the end of the stream."""
    x, y = np.arange(w)[None, :, None], np.arange(h)[:, None, None]
    return np.broadcast_to(((x + 2 * i) * 3 + y * 2) % 256, (h, w, 3)).astype(np.uint8)


@pytest.mark.parametrize("n", [9, 12, 16])  # lengths whose last packet in decoding order is a B-frame
def test_each_packet_lasts_its_own_frame_interval(tmp_path, n):
    """Packet durations are display intervals, so the MP4 reports the true frame rate and the ffmpeg
    program decodes exactly the frames written. When the last packet in decoding order carried the end
    time instead, the file said 29.88 fps and ``ffmpeg -i OUT -f rawvideo`` duplicated a frame."""
    out = tmp_path / "d.mp4"
    with VideoWriter(out, 128, 64, fps=30, duration=n / 30, crf=23, preset="veryfast") as w:
        for i in range(n):
            w.write(_smooth_ramp(i, 128, 64), i / 30)
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        packets = [(p.pts, p.duration) for p in c.demux(s) if p.size]
        rate, tb = s.average_rate, s.time_base
    shown = sorted(packets)
    ends = [pts for pts, _ in shown[1:]] + [round(Fraction(n, 30) / tb)]
    assert [d for _, d in shown] == [end - pts for (pts, _), end in zip(shown, ends)]
    assert rate == 30
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(out), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                         check=True, capture_output=True).stdout
    assert len(raw) == n * 128 * 64


def test_ffmpeg_written_4ch_aac_reads_in_file_order(tmp_path):
    """A 4-channel WAV turned into AAC by the ffmpeg program reads back in the WAV's channel order."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    sr, n = 48000, 48000
    t = np.arange(n) / sr
    freqs = [300.0, 750.0, 1500.0, 3000.0]
    x = np.stack([0.3 * np.sin(2 * np.pi * f * t) for f in freqs]).astype(np.float32)
    wav = tmp_path / "in.wav"
    with av.open(str(wav), "w") as c:
        s = c.add_stream("pcm_s16le", rate=sr, layout="4.0")
        frame = av.AudioFrame.from_ndarray((x * 32767).astype(np.int16).T.reshape(1, -1).copy(), format="s16", layout="4.0")
        frame.sample_rate = sr
        for p in [*s.encode(frame), *s.encode(None)]:
            c.mux(p)
    m4a = tmp_path / "out.m4a"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True)
    track = read_audio(m4a)
    spectrum = np.abs(np.fft.rfft(track.samples[:, 4096 : 4096 + 8192], axis=1))
    np.testing.assert_allclose(np.fft.rfftfreq(8192, 1 / sr)[spectrum.argmax(axis=1)], freqs, atol=10)
    assert track.ambisonic == "ambix"


def test_audio_aligned_to_first_video_frame(tmp_path):
    """Video starting 0.2 s after the audio: sample 0 of the track is the first frame's instant."""
    sr = 16000
    x = np.zeros(sr, np.float32)
    x[int(0.5 * sr) :] = 0.5 * np.sin(2 * np.pi * 440 * np.arange(sr - int(0.5 * sr)) / sr)
    path = tmp_path / "late_video.mkv"
    write_clip(path, pts=[200 + 40 * i for i in range(10)], time_base=Fraction(1, 1000), audio=(x, sr, 0))
    info = probe(path)
    assert info.start_time == pytest.approx(0.2) and info.frame_times[0] == 0
    assert info.audio is not None and info.audio.channels == 1 and info.audio.ambisonic is None
    track = read_audio(info)
    assert np.argmax(np.abs(track.samples[0]) > 0.05) / sr == pytest.approx(0.3, abs=2e-3)
    assert track.duration == pytest.approx(0.8, abs=2e-3)
    assert np.array_equal(read_audio(path).samples, track.samples)  # a path aligns the same way


# --------------------------------------------------------------------------------------------------
# projection and stereo decisions


def test_16_9_eye_is_accepted_4_3_is_refused_unless_forced(tmp_path):
    wide, square = tmp_path / "wide.mp4", tmp_path / "four_three.mp4"
    write_clip(wide, size=(256, 144))
    write_clip(square, size=(192, 144))
    assert probe(wide).projection_source == "assumed"
    with pytest.raises(Pan360Error, match="--projection equirect"):
        probe(square)
    forced = probe(square, projection="equirect")
    assert (forced.projection, forced.projection_source) == ("equirectangular", "forced")


def test_forced_stereo_selects_one_eye(tmp_path):
    top_bottom = np.zeros((256, 256, 3), np.uint8)
    top_bottom[:128, :, 0] = 220  # top eye red
    top_bottom[128:, :, 2] = 220  # bottom eye blue
    path = tmp_path / "tb.mp4"
    write_clip(path, size=(256, 256), pts=[0, 1, 2], images=[top_bottom] * 3)
    with pytest.raises(Pan360Error, match="--stereo top-bottom"):
        probe(path)  # a 1:1 frame without metadata is not equirect
    info = probe(path, stereo="top-bottom")
    assert (info.eye_width, info.eye_height, info.stereo_source) == (256, 128, "forced")
    _, img = next(iter_frames(info, fmt="rgb24"))
    assert img.shape == (128, 256, 3)
    assert img[..., 0].mean() > 180 and img[..., 2].mean() < 40

    side = np.zeros((128, 512, 3), np.uint8)
    side[:, :256, 1] = 200  # left eye green
    path = tmp_path / "sbs.mp4"
    write_clip(path, size=(512, 128), pts=[0, 1, 2], images=[side] * 3)
    info = probe(path, stereo="side-by-side")
    y, u, v = next(iter_frames(info, fmt="yuv420p"))[1]
    assert y.shape == (128, 256) and u.shape == (64, 128)
    _, img = next(iter_frames(info, fmt="rgb24"))
    assert img[..., 1].mean() > 160 and img[..., 0].mean() < 60


def test_spherical_v2_metadata(tmp_path):
    path = tmp_path / "tb_meta.mp4"
    write_clip(path, size=(256, 256), pts=[0, 1, 2])
    inject_spherical(path, 1, b"equi", pose=(30.5, -10.25, 2.0))
    info = probe(path)
    assert (info.projection, info.projection_source) == ("equirectangular", "metadata")
    assert (info.stereo, info.stereo_source, info.eye_height) == ("top-bottom", "metadata", 128)
    assert (info.yaw, info.pitch, info.roll) == (30.5, -10.25, 2.0)

    cube = tmp_path / "cube.mp4"
    write_clip(cube, size=(192, 128), pts=[0, 1, 2])
    inject_spherical(cube, None, b"cbmp")
    info = probe(cube)  # FFmpeg's cubemap is Google's 3x2 layout: v360's c3x2
    assert (info.projection, info.projection_source, info.layout) == ("c3x2", "metadata", "c3x2")
    assert info.equirect_size == (256, 128)  # 4 x 2 faces of 64 pixels
    assert probe(cube, projection="equirect").projection_source == "forced"
    eac = probe(cube, projection="eac")
    assert (eac.layout, eac.projection_source) == ("eac", "forced")
    plain = tmp_path / "plain32.mp4"  # 3:2 without metadata: refused, naming the layouts to force
    write_clip(plain, size=(192, 128), pts=[0, 1, 2])
    with pytest.raises(Pan360Error, match="--projection eac"):
        probe(plain)
    with pytest.raises(Pan360Error, match="unknown projection"):
        probe(plain, projection="mercator")
    with pytest.raises(Pan360Error, match="fisheye.*v360=dfisheye:e"):
        probe(plain, projection="dfisheye")


def _write_tones_clip(path: Path, metadata: dict[str, str] | None = None) -> list[float]:
    """A 1 s MP4 (moov at the end) with 4-channel AAC, one tone per channel; returns the tones (Hz)."""
    sr, freqs = 48000, [300.0, 750.0, 1500.0, 3000.0]
    t = np.arange(sr) / sr
    x = np.stack([0.3 * np.sin(2 * np.pi * f * t) for f in freqs]).astype(np.float32)
    with av.open(str(path), "w") as c:
        video = c.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 128, 64, "yuv420p"
        audio = c.add_stream("aac", rate=sr, layout="4.0")
        audio.metadata.update(metadata or {})
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((64, 128, 3), 20 * i, np.uint8), format="rgb24")
            frame.pts = i
            for p in video.encode(frame):
                c.mux(p)
        for i in range(0, sr, 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, i : i + 1024]), format="fltp", layout="4.0")
            frame.sample_rate, frame.pts = sr, i
            for p in audio.encode(frame):
                c.mux(p)
        for p in [*video.encode(None), *audio.encode(None)]:
            c.mux(p)
    return freqs


def test_spatial_audio_metadata(tmp_path):
    """An SA3D box (YouTube spatial audio: first order, ACN, SN3D) and a FuMa tag on generated files."""
    sa3d = tmp_path / "sa3d.mp4"
    freqs = _write_tones_clip(sa3d)
    # version 0, periphonic, order 1, ACN, SN3D, 4 channels mapped in file order
    inject_into_sample_entry(sa3d, b"mp4a", 28, _box(b"SA3D", struct.pack(">BBIBBI4I", 0, 0, 1, 0, 0, 4, 0, 1, 2, 3)))
    info = probe(sa3d)
    assert info.audio is not None and info.audio.ambisonic == "ambix"
    # FFmpeg reads the box, then takes AAC's own 4.0 layout: the channels must stay in file order.
    track = read_audio(info)
    spectrum = np.abs(np.fft.rfft(track.samples[:, 4096 : 4096 + 8192], axis=1))
    np.testing.assert_allclose(np.fft.rfftfreq(8192, 1 / 48000)[spectrum.argmax(axis=1)], freqs, atol=10)
    assert track.ambisonic == "ambix"

    fuma = tmp_path / "fuma.mp4"
    _write_tones_clip(fuma, {"handler_name": "FuMa B-format"})
    assert probe(fuma).audio.ambisonic == "fuma"
    assert read_audio(fuma).ambisonic == "fuma"


# --------------------------------------------------------------------------------------------------
# bad input


def test_bad_inputs_raise_pan360error(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    audio_only = tmp_path / "audio.mka"
    with av.open(str(audio_only), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for p in [*s.encode(frame), *s.encode(None)]:
            c.mux(p)
    zero = tmp_path / "zero.mkv"  # a video stream without a single frame
    with av.open(str(zero), "w") as c:
        v = c.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 32, "yuv420p"
        s = c.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for p in [*s.encode(frame), *s.encode(None), *v.encode(None)]:
            c.mux(p)
    cases = {
        text: "not a",
        empty: "not a readable media file",
        tmp_path / "missing.mp4": "not found",
        tmp_path: "directory",
        audio_only: "no video stream",
        zero: "no frames",
    }
    for path, message in cases.items():
        with pytest.raises(Pan360Error, match=message) as err:
            probe(path)
        assert "\n" not in str(err.value)
    silent = tmp_path / "silent.mp4"
    write_clip(silent, pts=[0, 1])
    with pytest.raises(Pan360Error, match="no audio stream"):
        read_audio(silent)
    with pytest.raises(Pan360Error, match="no audio stream"):
        read_audio(probe(silent))
    with pytest.raises(Pan360Error, match="unknown stereo"):
        probe(silent, stereo="anaglyph")


# --------------------------------------------------------------------------------------------------
# atomic output


def test_atomic_output_success_and_failures(tmp_path):
    final = tmp_path / "result.mp4"
    with atomic_output(final) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".mp4" and tmp.name.startswith(".result.tmp-")
        tmp.write_text("done")
    assert final.read_text() == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.mp4"]

    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with atomic_output(final, overwrite=True) as tmp:
                tmp.write_text("partial")
                raise exc
        assert final.read_text() == "done"  # untouched
        assert sorted(p.name for p in tmp_path.iterdir()) == ["result.mp4"]  # no temporary left

    with pytest.raises(Pan360Error, match="already exists.*--overwrite"):
        with atomic_output(final):
            pass
    with atomic_output(final, overwrite=True) as tmp:
        tmp.write_text("again")
    assert final.read_text() == "again"


def test_atomic_output_refuses_input_and_missing_directory(tmp_path):
    source = tmp_path / "input.mp4"
    source.write_text("precious")
    link = tmp_path / "alias.mp4"
    os.symlink(source, link)
    for target in (source, link, tmp_path / "." / "input.mp4"):
        with pytest.raises(Pan360Error, match="same file as the input"):
            with atomic_output(target, overwrite=True, inputs=[source]):
                pass
    assert source.read_text() == "precious"
    with pytest.raises(Pan360Error, match="directory does not exist"):
        with atomic_output(tmp_path / "nowhere" / "out.mp4"):
            pass


def test_writer_failure_inside_atomic_output_leaves_nothing(tmp_path):
    final = tmp_path / "render.mp4"
    with pytest.raises(Pan360Error, match="frame must be"):
        with atomic_output(final) as tmp, VideoWriter(tmp, 64, 32, preset="ultrafast") as w:
            w.write(np.zeros((32, 64, 3), np.uint8), 0.0)
            w.write(np.zeros((10, 10, 3), np.uint8), 0.04)  # wrong size
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------
# real files (../shared/media)


def test_real_top_bottom_stereo_metadata(shared_media):
    path = shared_media / "real360" / "gvr_congo_TBstereo.mp4"
    info = probe(path)
    assert (info.projection, info.projection_source) == ("equirectangular", "metadata")
    assert (info.stereo, info.stereo_source) == ("top-bottom", "metadata")
    assert (info.width, info.height, info.eye_width, info.eye_height) == (1920, 1080, 1920, 540)
    assert info.n_frames == 300 and info.duration == pytest.approx(10.01, abs=0.01)
    y, u, v = next(iter_frames(info))[1]
    assert y.shape == (540, 1920) and u.shape == (270, 960)


def test_real_webm_spherical_metadata_and_plain_2to1(shared_media):
    meta = probe(shared_media / "real360_foa" / "sphere360gt_CBMUhxJC6TU_30.webm")  # 1920x1080 with sv3d
    assert (meta.projection_source, meta.eye_width, meta.eye_height) == ("metadata", 1920, 1080)
    plain = probe(shared_media / "real360_foa" / "sphere360gt_0FB9jMXMP8A_19.webm")  # 1920x960, none
    assert plain.projection_source == "assumed" and plain.stereo == "mono"
    assert plain.audio is not None and plain.audio.channels == 4 and plain.audio.ambisonic == "ambix"


def test_real_fuma_aac_channel_order(shared_media):
    """FuMa W, X, Y, Z in 4-channel AAC: channel 0 must be W.

    For any single plane wave, FuMa gives X² + Y² + Z² = 2 W² (W at -3 dB); the voice is recorded at
    one position at a time, so that relation holds per second for channel 0 and for no other.
    """
    track = read_audio(shared_media / "foa_audio" / "chapman_4ch_B_FuMaNorm_FuMaOrd_speech.mp4")
    x = track.samples.astype(np.float64)
    assert track.channels == 4 and track.sample_rate == 48000
    sr = track.sample_rate
    energies = np.array([(x[:, k : k + sr] ** 2).sum(axis=1) for k in range(0, x.shape[1] - sr, sr)])
    voiced = energies[energies.sum(axis=1) > 0.2 * np.median(energies.sum(axis=1))]
    ratio = voiced[:, 1:].sum(axis=1) / (2 * voiced[:, 0])
    assert np.median(np.abs(ratio - 1)) < 0.05
    rms = np.sqrt((x**2).mean(axis=1))
    assert rms.argmax() == 0


def test_real_vorbis_quad_channel_order(shared_media):
    """ambiX W, Y, Z, X in Vorbis quad: W is strongest; the guitarist in front makes X follow W."""
    track = read_audio(shared_media / "real360_foa" / "sphere360gt_0FB9jMXMP8A_19.webm")
    x = track.samples
    assert track.channels == 4 and track.layout == "quad"
    assert np.sqrt((x**2).mean(axis=1)).argmax() == 0
    assert np.corrcoef(x[0], x[3])[0, 1] > 0.5


def test_yuv_views_stay_valid_after_later_frames_decode(tmp_path):
    """iter_frames yields planes without copying: they must not be overwritten by later frames."""
    path = tmp_path / "v.mp4"
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (64, 128, 3), dtype=np.uint8) for _ in range(12)]
    with VideoWriter(path, 128, 64, fps=Fraction(12), duration=1.0, preset="ultrafast") as w:
        for i, f in enumerate(frames):
            w.write(f, i / 12)
    held = [planes for _, planes in iter_frames(probe(path, projection="equirect"))]
    with av.open(str(path)) as c:
        ref = [f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]
    assert len(held) == len(ref) == 12
    for (y, u, v), r in zip(held, ref):
        assert np.array_equal(y, r[:64]) and np.array_equal(u.ravel(), r[64:80].ravel()[: u.size])


def test_higher_order_ambisonics_uses_its_first_order_part(tmp_path: Path) -> None:
    """16 channels (third-order ACN/SN3D) said to be ambisonic (--foa-format ambix): the first 4 channels
    are the FOA, the camera finds the source in them, and the output is camera-following stereo."""
    import sys
    import wave

    from pan360.paths import load_path
    from pan360.spatial import encode_foa

    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    sr, seconds = 48000, 2
    rng = np.random.default_rng(3)
    hoa = np.zeros((16, sr * seconds), np.float32)
    hoa[:4] = encode_foa(0.3 * rng.standard_normal(sr * seconds).astype(np.float32), 70.0, 0.0)
    hoa[4:] = 0.05 * rng.standard_normal((12, sr * seconds))  # higher orders: not read
    pcm = tmp_path / "hoa.wav"
    with wave.open(str(pcm), "wb") as w:
        w.setnchannels(16)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.clip(hoa.T, -1, 1) * 32767).astype("<i2").tobytes())
    src = tmp_path / "hoa.mkv"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                    f"testsrc=size=128x64:rate=10:duration={seconds}", "-i", str(pcm), "-c:v", "libx264",
                    "-c:a", "pcm_s16le", str(src)], check=True)
    assert probe(src).audio.channels == 16 and not probe(src).audio.is_foa()  # no metadata: not spatial
    out, traj = tmp_path / "out.mp4", tmp_path / "t.json"
    proc = subprocess.run([sys.executable, "-m", "pan360", "render", str(src), "-o", str(out), "--projection",
                           "equirect", "--size", "128x72", "--foa-format", "ambix", "--saliency", "foa",
                           "--trajectory-out", str(traj)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "16-channel ambisonics: its first-order part (the first 4 channels) is used" in proc.stderr
    path = load_path(traj)
    assert abs(float(np.median(path.yaw[len(path) // 2:])) - 70.0) < 15.0
    played = read_audio(out)
    assert played.samples.shape[0] == 2
    left, right = np.sqrt((played.samples ** 2).mean(axis=1))
    assert min(left, right) > 0.01  # both ears hear it: the camera looks at the source


@pytest.mark.parametrize("channels, layout, codec", [(8, "7.1", "flac"), (16, "hexadecagonal", "pcm_s16le")])
def test_many_channel_audio_decodes_in_order_and_renders(tmp_path: Path, channels: int, layout: str,
                                                         codec: str) -> None:
    """8 and 16 channels: PyAV's to_ndarray segfaults on such frames; the planes are read directly."""
    import sys

    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    src = tmp_path / f"a{channels}.mkv"
    tones = " | ".join(f"0.2*sin({200 * (c + 1)}*2*PI*t)" for c in range(channels)).replace(" ", "")
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                    "testsrc=size=128x64:rate=10:duration=2", "-f", "lavfi", "-i",
                    f"aevalsrc={tones}:c={layout}:s=48000:d=2", "-c:v", "libx264", "-c:a", codec, str(src)],
                   check=True)
    track = read_audio(src)
    assert track.samples.shape[0] == channels
    spectrum = np.abs(np.fft.rfft(track.samples[:, :48000], axis=1))
    freqs = np.fft.rfftfreq(48000, 1 / 48000)
    # each channel keeps its own tone: the order of the channels is the file's
    np.testing.assert_allclose(freqs[spectrum.argmax(axis=1)], 200 * (np.arange(channels) + 1), atol=1)
    out = tmp_path / "out.mp4"
    proc = subprocess.run([sys.executable, "-m", "pan360", "render", str(src), "-o", str(out), "-q",
                           "--projection", "equirect", "--size", "128x72"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    played = read_audio(out)
    assert played.samples.shape[0] == 2 and np.abs(played.samples).max() > 0.05  # the first two channels, audible


def test_spliced_stream_with_restarting_clock_is_refused(tmp_path: Path) -> None:
    """Two MPEG-TS segments joined byte for byte: the second one's timestamps repeat the first's, which
    would silently merge half the frames away; refused on one line, with the remux that fixes it."""
    import sys

    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    parts = []
    for i in range(2):
        part = tmp_path / f"p{i}.ts"
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                        "testsrc=size=128x64:rate=10:duration=2", "-c:v", "libx264", "-f", "mpegts", str(part)],
                       check=True)
        parts.append(part.read_bytes())
    spliced = tmp_path / "spliced.ts"
    spliced.write_bytes(b"".join(parts))
    proc = subprocess.run([sys.executable, "-m", "pan360", "info", str(spliced), "--projection", "equirect"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "timestamps start again" in proc.stderr and "ffmpeg -i spliced.ts -c copy" in proc.stderr
    fixed = tmp_path / "fixed.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(spliced), "-c", "copy", str(fixed)],
                   check=True)
    assert probe(fixed, projection="equirect").n_frames == 40  # the suggested remux keeps every frame


def test_display_rotation_is_reported_and_refused(tmp_path: Path) -> None:
    """A display matrix (players turn the picture) is shown by info and refused by render, with the remux
    that removes it; without one, nothing changes."""
    import sys

    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    ff = imageio_ffmpeg.get_ffmpeg_exe()
    plain, rotated = tmp_path / "plain.mp4", tmp_path / "rot.mp4"
    subprocess.run([ff, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=128x64:rate=10:duration=1", "-c:v",
                    "libx264", str(plain)], check=True)
    subprocess.run([ff, "-v", "error", "-display_rotation", "90", "-i", str(plain), "-c", "copy", str(rotated)],
                   check=True)
    assert probe(plain, projection="equirect").display_rotation == 0
    assert abs(probe(rotated, projection="equirect").display_rotation) == 90
    cli = [sys.executable, "-m", "pan360"]
    shown = subprocess.run([*cli, "info", str(rotated), "--projection", "equirect"], capture_output=True, text=True)
    assert shown.returncode == 0 and "rotation" in shown.stdout
    out = tmp_path / "out.mp4"
    proc = subprocess.run([*cli, "render", str(rotated), "-o", str(out), "--projection", "equirect", "-q"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "display matrix" in proc.stderr and "-display_rotation 0" in proc.stderr and not out.exists()
