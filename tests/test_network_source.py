"""The ``net`` and ``fused`` saliency sources: real inference (random "small" model) on generated clips."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

import pan360.nn.weights as nn_weights
import pan360.sources as sources
from pan360 import sphere
from pan360.errors import Pan360Error
from pan360.media import AudioTrack, iter_frames, probe, read_audio
from pan360.nn.model import SoundLocalizer
from pan360.nn.weights import save_checkpoint
from pan360.sources import SaliencyOptions
from pan360.sources.network import (analysis_indices, attention_to_maps, input_size, network_input_rgb, network_maps,
                                     window_power)
from conftest import write_drum_clip

AREA = sphere.equirect_solid_angle(128, 64)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s, 256x128, 30 fps, FOA: a drum on the right for 1 s, then silence (no noise)."""
    return write_drum_clip(tmp_path_factory.mktemp("net") / "scene.mp4", width=256, height=128, duration=2.0,
                           sounding_until=1.0)


class CountingLocalizer(SoundLocalizer):
    """The real model, counting the sound windows it encodes."""

    encoded = 0

    def encode_sound(self, waveforms, valid=None):
        self.encoded += waveforms.shape[0]
        return super().encode_sound(waveforms, valid)


@pytest.fixture(scope="module")
def model() -> CountingLocalizer:
    torch.manual_seed(0)
    return CountingLocalizer(arch="small")


def test_maps_of_a_clip_on_cpu(clip: Path, model: CountingLocalizer) -> None:
    info = probe(clip)
    track = read_audio(info)
    model.encoded = 0
    maps = network_maps(model, info, track, device="cpu")
    assert maps.shape == (60, 64, 128) and maps.dtype == np.float32 and np.all(maps >= 0)
    idx = analysis_indices(info.frame_times, 5.0)
    assert list(idx) == [0, 6, 12, 18, 24, 30, 36, 42, 48, 54, 59]
    assert model.encoded == len(idx)  # 0.2 s apart: no two frames share a sound window
    mass = (maps * AREA).sum(axis=(1, 2))
    power = window_power(track.mono(), track.sample_rate, info.frame_times)
    assert np.all(mass[idx] <= power[idx] * (1 + 1e-4))  # power x confidence, confidence <= 1
    sounding = power[idx] > 1e-4  # the drum's hits
    assert sounding.sum() >= 3 and np.all(mass[idx][sounding] > 0)
    assert np.all(maps[info.frame_times > 1.2] == 0)  # silence: nothing, whatever the picture shows
    # frames between analysed ones are linear in time between their maps
    assert np.allclose(maps[3], 0.5 * (maps[0] + maps[6]), rtol=1e-5, atol=1e-12)
    assert np.allclose(maps[8], (4 * maps[6] + 2 * maps[12]) / 6, rtol=1e-5, atol=1e-12)


def test_every_frame_shares_sound_embeddings(clip: Path, model: CountingLocalizer) -> None:
    info = probe(clip)
    track = read_audio(info)
    model.encoded = 0
    every = network_maps(model, info, track, device="cpu", rate=1000.0, batch_size=7)
    assert model.encoded == 21  # 60 frames over 2 s, windows snapped to 0.1 s: 0.0 ... 2.0
    sparse = network_maps(model, info, track, device="cpu", batch_size=3)
    idx = analysis_indices(info.frame_times, 5.0)
    assert np.allclose(every[idx], sparse[idx], rtol=1e-4, atol=1e-10)  # batching changes nothing


def test_attention_to_maps_direction_mass_and_seam() -> None:
    att = np.zeros((2, 10, 20))
    att[0, 3, 14] = 1.0  # one cell: yaw of column 14 = (14.5 / 20 - 0.5) * 360 = 81, pitch of row 3 = 27
    att[1, 5, 0] = att[1, 5, 19] = 0.5  # either side of the ±180° seam
    maps = attention_to_maps(att, np.array([2.0, 1.0]), (64, 128))
    assert (maps * AREA).sum(axis=(1, 2)) == pytest.approx([2.0, 1.0], rel=1e-6)
    yaw, pitch, _ = sphere.weighted_mean_direction(maps[0])
    assert sphere.angular_distance(yaw, pitch, 81.0, 27.0) < 3.0
    seam = maps[1]
    assert np.allclose(seam, seam[:, ::-1], rtol=1e-5)  # symmetric about the seam, wrapping round
    assert seam[:, 0].max() == pytest.approx(seam.max())  # the peak sits on the seam, not mid-frame
    assert seam[:, 64].max() == 0.0


def test_frame_conversion_matches_the_decoder(clip: Path) -> None:
    info = probe(clip)
    yuv = next(iter(iter_frames(info, fmt="yuv420p")))[1]
    rgb = next(iter(iter_frames(info, fmt="rgb24")))[1]
    size = input_size(info.eye_width, info.eye_height, 64)
    assert size == (64, 128)
    ours = network_input_rgb(yuv, size).astype(int)
    ref = cv2.resize(rgb, (128, 64), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(ours - ref).mean() < 4.0  # OpenCV's BT.601 rounds ~1 level brighter than swscale
    assert input_size(1920, 1080, 160) == (160, 288) and input_size(3840, 1920, 150) == (144, 288)


def test_mono_and_power() -> None:
    x = np.random.default_rng(0).standard_normal((4, 4800)).astype(np.float32)
    assert np.array_equal(AudioTrack(x, 48000, "quad", "ambix").mono(), x[0])
    assert np.allclose(AudioTrack(x[:2], 48000, "stereo", None).mono(), x[:2].mean(axis=0))
    fuma = AudioTrack(x, 48000, "quad", "fuma").mono()
    assert np.allclose(fuma, x[0] * np.sqrt(2), rtol=1e-5)  # FuMa W is -3 dB
    assert np.allclose(AudioTrack(x, 48000, "quad", "ambix").mono("fuma"), fuma)  # the format forced
    assert np.allclose(AudioTrack(x, 48000, "4 channels", None).mono(), x.mean(axis=0))  # not ambisonic
    sine = np.sin(np.arange(48000) * 2 * np.pi * 440 / 48000).astype(np.float32)
    assert window_power(sine, 48000, np.array([0.5])) == pytest.approx([0.5], rel=1e-2)
    assert window_power(sine, 48000, np.array([5.0])) == [0.0]


def test_sources_registered(clip: Path, model: CountingLocalizer, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(nn_weights, "WEIGHTS_DIRS", (tmp_path / "no-weights",))
    info = probe(clip)
    assert sources.choose_source(info) == ("foa", None)
    assert sources.choose_source(info, SaliencyOptions(weights=model)) == ("fused", None)
    with pytest.raises(Pan360Error, match="weights"):
        sources.choose_source(info, SaliencyOptions("net"))
    ckpt = save_checkpoint(tmp_path / "ckpt", model)
    track = read_audio(info)
    net = sources.compute_saliency("net", info, track, SaliencyOptions(weights=ckpt, device="cpu"))
    direct = network_maps(model, info, track, device="cpu")
    assert np.allclose(net, direct, rtol=1e-4, atol=1e-10)  # the checkpoint is the same model
    foa = sources.compute_saliency("foa", info, track)
    seen: list[tuple[int, int]] = []
    fused = sources.compute_saliency("fused", info, track, SaliencyOptions(weights=model, device="cpu"),
                                      progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (120, 120) and all(t == 120 for _, t in seen)
    assert fused.shape == foa.shape and np.all(fused[foa == 0] == 0)
    mass = lambda m: (m * AREA).sum(axis=(1, 2))  # noqa: E731
    assert np.allclose(mass(fused), mass(foa), rtol=1e-4)
    # stereo input: auto picks the network when it has weights, nothing otherwise
    stereo = tmp_path / "stereo.mp4"
    with av.open(str(clip)) as src, av.open(str(stereo), "w") as dst:
        v_in = src.streams.video[0]
        v_out = dst.add_stream("libx264", rate=30)
        v_out.width, v_out.height, v_out.pix_fmt = 256, 128, "yuv420p"
        a_out = dst.add_stream("aac", rate=48000, layout="stereo")
        for frame in src.decode(v_in):
            for p in v_out.encode(frame.reformat(format="yuv420p")):
                dst.mux(p)
        tone = (0.2 * np.sin(np.arange(96000) * 2 * np.pi * 300 / 48000)).astype(np.float32)
        af = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        af.sample_rate = 48000
        for p in a_out.encode(af):
            dst.mux(p)
        for s in (v_out, a_out):
            for p in s.encode(None):
                dst.mux(p)
    sinfo = probe(stereo)
    src, note = sources.choose_source(sinfo, SaliencyOptions(weights=model))
    assert src == "net" and "not spatial" in note and "network alone" in note
    src, note = sources.choose_source(sinfo)
    assert src == "none" and "weights" in note
    with pytest.raises(Pan360Error, match="4-channel"):
        sources.choose_source(sinfo, SaliencyOptions("fused", weights=model))
    maps = sources.compute_saliency("net", sinfo, read_audio(sinfo), SaliencyOptions(weights=model, device="cpu"))
    assert maps.shape == (sinfo.n_frames, 64, 128) and (maps[30] * AREA).sum() > 0
