"""The sound-attention network: grid sizes, embedding sizes, attention, both mechanisms, the sound
stream's receptive fields and honest edge handling, windows, determinism and parameter counts."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from scipy.signal import resample_poly

from pan360.errors import Pan360Error
from pan360.nn.inputs import preprocess_frames, resample_audio, sound_window
from pan360.nn.model import (
    ModelConfig,
    SoundLocalizer,
    conv8_receptive_fields,
    conv8_steps,
    min_window_samples,
)

SR = 22050


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def small() -> SoundLocalizer:
    torch.manual_seed(0)
    return SoundLocalizer("small").eval()


def test_small_grid_and_embedding_sizes(small: SoundLocalizer) -> None:
    wave = torch.randn(2, small.config.window_samples) * 0.1
    with torch.no_grad():
        for h, w in [(160, 320), (480, 960), (64, 64), (100, 200)]:
            out = small(torch.randn(2, 3, h, w), wave)
            assert out.attention.shape == (2, h // 16, w // 16)
            assert out.logits.shape == (2, h // 16, w // 16)
            assert out.f_v.shape == (2, 1000) and out.f_s.shape == (2, 1000)
            assert out.h.shape == (2, 512) and out.z.shape == (2, 512)
            torch.testing.assert_close(out.attention.sum(dim=(1, 2)), torch.ones(2))
            assert (out.attention > 0).all()


def test_vgg16_paper_model() -> None:
    torch.manual_seed(0)
    model = SoundLocalizer("vgg16").eval()
    cfg = model.config
    assert (cfg.window, cfg.sample_rate, cfg.image_height, cfg.image_width) == (20.0, 22050, 320, 320)
    assert conv8_steps(cfg.window_samples, cfg) == 4  # 20 s → 4 conv8 steps (ANCHORS §3)
    # torchvision's VGG16 conv layers hold 14,714,688 parameters.
    assert _count(model.visual) == 14_714_688
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 128), torch.randn(1, cfg.window_samples) * 0.1)
        grid = model.visual_grid(torch.randn(1, 3, 64, 128))
    assert grid.shape == (1, 512, 4, 8) and (grid >= 0).all()  # conv5_3 after its ReLU
    assert out.attention.shape == (1, 4, 8)
    assert out.f_s.shape == (1, 1000) and out.f_v.shape == (1, 1000) and out.h.shape == (1, 512)
    torch.testing.assert_close(out.attention.sum(), torch.tensor(1.0))
    print(f"\nparameters: vgg16 {_count(model):,}, small {_count(SoundLocalizer('small')):,}")


def test_soundnet8_minimum_input_is_9_5_s() -> None:
    cfg = ModelConfig()
    n = min_window_samples(cfg)
    assert n / SR == pytest.approx(9.5, abs=0.01)
    assert conv8_steps(n, cfg) == 1 and conv8_steps(n - 1, cfg) == 0
    assert conv8_steps(10 * SR, cfg) == 1 and conv8_steps(5 * SR, cfg) == 0


def test_windows_too_short_for_conv8_are_refused() -> None:
    with pytest.raises(Pan360Error, match="no conv8 step"):
        ModelConfig(window=5.0)
    with pytest.raises(Pan360Error, match="no conv8 step"):
        ModelConfig.for_arch("small", window=2.0)
    cfg = ModelConfig.for_arch("small")
    assert conv8_steps(cfg.window_samples, cfg) == 3


def test_conv8_receptive_fields_match_the_network(small: SoundLocalizer) -> None:
    # Changing a sample changes conv8 step j exactly when the sample lies in step j's receptive field.
    cfg = small.config
    x = torch.randn(1, 1, cfg.window_samples)
    starts, ends = conv8_receptive_fields(3, cfg)
    assert np.all(np.diff(starts) == 16384)  # total stride of the "small" stream
    j, lo, hi = 1, int(starts[1]), int(ends[1])
    assert 0 < lo and hi < cfg.window_samples
    with torch.no_grad():
        base = small.sound(x)[0, :, j]
        for idx, inside in [(lo - 1, False), (lo, True), (hi - 1, True), (hi, False)]:
            y = x.clone()
            y[0, 0, idx] += 50.0
            changed = not torch.equal(small.sound(y)[0, :, j], base)
            assert changed == inside, (idx, inside)


def test_mechanisms_cosine_relu_and_attention(small: SoundLocalizer) -> None:
    torch.manual_seed(1)
    m1 = SoundLocalizer("small", mechanism=1).eval()
    m2 = SoundLocalizer("small", mechanism=2).eval()
    m2.load_state_dict(m1.state_dict())
    frames = torch.randn(2, 3, 160, 320)
    wave = torch.randn(2, m1.config.window_samples) * 0.1
    with torch.no_grad():
        o1, o2 = m1(frames, wave), m2(frames, wave)
        grid = m1.visual_grid(frames)
    cos = torch.nn.functional.cosine_similarity(grid, o1.h[:, :, None, None], dim=1)
    torch.testing.assert_close(o1.logits, cos, atol=1e-5, rtol=1e-5)
    assert (cos < 0).any() and (cos > 0).any()
    torch.testing.assert_close(o2.logits, cos.clamp_min(0), atol=1e-5, rtol=1e-5)
    assert (o2.logits[cos < 0] == 0).all()
    scale = m1.config.logit_scale
    for out in (o1, o2):
        expect = torch.softmax(scale * out.logits.flatten(1), dim=1).view_as(out.attention)
        torch.testing.assert_close(out.attention, expect)
        z = (out.attention[:, None] * grid).sum(dim=(2, 3))  # Σ α_i v_i, un-normalised v
        torch.testing.assert_close(out.z, z, atol=1e-4, rtol=1e-4)
    # Identical sound and frames: the mechanisms differ only where some cosine is negative.
    assert not torch.allclose(o1.attention, o2.attention)


def test_localize_points_at_the_matching_cell(small: SoundLocalizer) -> None:
    grid = torch.rand(1, 512, 3, 4)
    h = torch.zeros(1, 512)
    h[0, 7] = 1.0
    grid[0, :, 2, 1] = 0.0
    grid[0, 7, 2, 1] = 5.0  # the only cell parallel to h
    att, logits = small.localize(grid, h)
    assert logits[0, 2, 1] == pytest.approx(1.0)
    assert att[0].argmax() == 2 * 4 + 1
    assert att.sum().item() == pytest.approx(1.0)


def test_paper_preset_has_no_temperature_and_learned_scale_trains() -> None:
    assert ModelConfig().logit_scale == 1.0 and not ModelConfig().learn_logit_scale
    model = SoundLocalizer("small", learn_logit_scale=True, logit_scale=5.0)
    assert float(model.current_logit_scale.detach()) == pytest.approx(5.0)
    out = model(torch.randn(2, 3, 32, 64), torch.randn(2, model.config.window_samples) * 0.1)
    (out.attention.max(dim=2).values.sum()).backward()
    assert model.log_logit_scale.grad is not None and model.log_logit_scale.grad != 0


def test_encode_sound_weights_conv8_steps_by_real_audio(small: SoundLocalizer) -> None:
    cfg = small.config
    n = cfg.window_samples
    torch.manual_seed(2)
    wave = torch.randn(2, n) * 0.1
    valid = torch.zeros(2, n, dtype=torch.bool)
    valid[0] = True
    valid[1, n // 2 :] = True  # a window centred on the clip's first sample: its first half is padding
    wave[1, : n // 2] = 0.0
    with torch.no_grad():
        f_s, h = small.encode_sound(wave, valid)
        feats = small.sound(wave[:, None] * cfg.input_scale)
        f_plain, _ = small.encode_sound(wave)
    # Fully valid: the paper's plain global average pooling.
    torch.testing.assert_close(f_s[0], feats[0].mean(dim=1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(f_plain[0], f_s[0])
    # Half valid: step j weighs |RF_j ∩ real| / |RF_j ∩ input|, computed here sample by sample.
    starts, ends = conv8_receptive_fields(feats.shape[-1], cfg)
    w = []
    for s, e in zip(starts, ends):
        s, e = max(int(s), 0), min(int(e), n)
        w.append(valid[1, s:e].float().sum().item() / (e - s))
    w = torch.tensor(w)
    assert (w > 0).all() and (w < 1).any()
    torch.testing.assert_close(f_s[1], (feats[1] * w).sum(dim=1) / w.sum(), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(f_s[1], f_plain[1])
    # Lengths (a valid prefix) give the same as the equivalent mask.
    f_len, _ = small.encode_sound(wave[:1], torch.tensor([n]))
    torch.testing.assert_close(f_len[0], f_s[0])
    assert h.shape == (2, 512)


def test_encode_sound_short_inputs_and_silence(small: SoundLocalizer) -> None:
    cfg = small.config
    short = torch.randn(1, SR) * 0.1  # 1 s: shorter than one conv8 receptive field
    need = min_window_samples(cfg)
    padded = torch.nn.functional.pad(short, (0, need - SR))
    mask = torch.zeros(1, need, dtype=torch.bool)
    mask[0, :SR] = True
    with torch.no_grad():
        f_short, _ = small.encode_sound(short)
        f_pad, _ = small.encode_sound(padded, mask)
        f_none, _ = small.encode_sound(torch.zeros(1, cfg.window_samples), torch.zeros(1, cfg.window_samples))
        f_zero, _ = small.encode_sound(torch.zeros(1, cfg.window_samples))
    torch.testing.assert_close(f_short, f_pad)
    torch.testing.assert_close(f_none, f_zero)  # no real audio at all: the embedding of silence
    assert torch.isfinite(f_none).all()


def test_sound_window_edges_and_short_clips() -> None:
    cfg = ModelConfig.for_arch("small")
    n = cfg.window_samples
    clip = np.random.default_rng(0).standard_normal(3 * SR).astype(np.float32)
    wave, valid = sound_window(clip, SR, 1.5, cfg)  # centred on a 3 s clip: 0.5 s padding each side
    assert wave.shape == valid.shape == (n,)
    assert valid.sum() == 3 * SR and not valid[: SR // 2 - 1].any() and valid[SR // 2 + 1]
    np.testing.assert_array_equal(wave[valid], clip)
    assert (wave[~valid] == 0).all()
    wave, valid = sound_window(clip, SR, 0.0, cfg)  # first frame: the first half is outside the clip
    assert valid.sum() == 2 * SR and not valid[: n // 2].any() and valid[n // 2 :].all()
    np.testing.assert_array_equal(wave[n // 2 :], clip[: n // 2])
    wave, valid = sound_window(clip[: SR // 2], SR, 0.25, cfg)  # 0.5 s clip, never looped
    assert valid.sum() == SR // 2 and np.count_nonzero(wave) > 0.9 * (SR // 2)
    wave, valid = sound_window(clip, SR, 60.0, cfg)  # far outside the clip
    assert not valid.any() and not wave.any()
    with pytest.raises(Pan360Error):
        sound_window(np.zeros((2, 100), np.float32), SR, 0.0, cfg)


@pytest.mark.parametrize("rate, up, down", [(48000, 147, 320), (16000, 441, 320), (44100, 1, 2)])
def test_sound_window_resamples_on_the_clip_grid(rate: int, up: int, down: int) -> None:
    cfg = ModelConfig.for_arch("small")
    t = np.arange(10 * rate) / rate
    clip = (np.sin(2 * np.pi * 440 * t) * np.exp(-t / 4)).astype(np.float32)
    whole = resample_poly(clip, up, down)  # → 22.05 kHz, the whole clip at once
    np.testing.assert_allclose(resample_audio(clip, rate, SR), whole, atol=1e-6)
    wave, valid = sound_window(clip, rate, 5.0, cfg)  # only the window's stretch is resampled
    m0 = int(round((5.0 - cfg.window / 2) * SR))
    assert valid.all()
    np.testing.assert_allclose(wave, whole[m0 : m0 + len(wave)], atol=2e-3)
    wave, valid = sound_window(clip, rate, 9.0, cfg)  # runs past the end
    assert valid.sum() == len(whole) - int(round(7.0 * SR))
    np.testing.assert_allclose(wave[valid], whole[int(round(7.0 * SR)) :], atol=2e-3)


def test_bfloat16_autocast_keeps_attention_normalised(small: SoundLocalizer) -> None:
    gen = torch.Generator().manual_seed(1)
    frames = torch.randn(2, 3, 64, 128, generator=gen)
    wave = torch.randn(2, small.config.window_samples, generator=gen) * 0.1
    with torch.no_grad():
        ref = small(frames, wave)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = small(frames, wave)
    assert low.attention.dtype == torch.float32
    torch.testing.assert_close(low.attention.sum(dim=(1, 2)), torch.ones(2))
    # bf16 keeps ~3 significant digits: cosines off by ~4e-3, times the logit scale 10, move each
    # attention value by up to ~5 % (measured over 20 seeds: at most 0.009 on maps of mean 0.016).
    torch.testing.assert_close(low.attention, ref.attention, atol=1.5e-2, rtol=0.1)


def test_preprocess_frames() -> None:
    rgb = np.zeros((2, 48, 96, 3), np.uint8)
    rgb[..., 0] = 255
    x = preprocess_frames(rgb)
    assert x.shape == (2, 3, 48, 96) and x.dtype == torch.float32
    torch.testing.assert_close(x[0, :, 0, 0], torch.tensor([(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225]))
    assert preprocess_frames(rgb[0], size=(32, 64)).shape == (1, 3, 32, 64)
    with pytest.raises(Pan360Error):
        preprocess_frames(np.zeros((4, 4), np.uint8))


def test_config_round_trip_and_validation() -> None:
    cfg = ModelConfig.for_arch("small", mechanism=1, window=6.0)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert ModelConfig.from_dict({"arch": "small"}) == ModelConfig.for_arch("small")
    assert SoundLocalizer.from_config(cfg).config == cfg
    for bad in ({"arch": "resnet"}, {"mechanism": 3}, {"colour": 1}):
        with pytest.raises(Pan360Error):
            ModelConfig.from_dict(bad)


def test_determinism_with_seeds() -> None:
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = SoundLocalizer("small")
        frames = torch.randn(2, 3, 32, 64)
        wave = torch.randn(2, model.config.window_samples) * 0.1
        outs.append(model.eval()(frames, wave))
    for name in ("attention", "f_v", "f_s", "h"):
        assert torch.equal(getattr(outs[0], name), getattr(outs[1], name))


def test_small_forward_backward_timing() -> None:
    torch.manual_seed(0)
    model = SoundLocalizer("small").train()
    frames = torch.randn(8, 3, 160, 320)
    wave = torch.randn(8, model.config.window_samples) * 0.1
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        out = model(frames, wave)
        (out.f_v.square().mean() + out.attention.amax(dim=(1, 2)).mean()).backward()
        times.append(time.perf_counter() - t0)
    assert all(p.grad is not None for p in model.visual.parameters())
    print(f"\nsmall fwd+bwd, batch 8, 160x320, {model.config.window:g} s audio: {min(times):.3f} s (best of 3)")
