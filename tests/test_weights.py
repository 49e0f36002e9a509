"""Checkpoints: safetensors + JSON round trip, checksum, refusal of code-carrying pickles without
running them, training-state round trip, ImageNet VGG16 initialisation from a local file, and the
bundled weights (discovery without torch, name + SHA-256 pin)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shlex
import shutil
from pathlib import Path

import pytest
import torch
from conftest import assert_python_ok

import pan360.nn.weights as nn_weights
from pan360.errors import Pan360Error
from pan360.nn.model import SoundLocalizer
from pan360.nn.weights import (
    BUNDLED_NAME,
    BUNDLED_SHA256,
    bundled_weights,
    check_bundled,
    has_weights,
    load_imagenet_vgg16,
    load_model,
    load_network,
    load_training_state,
    read_checkpoint_meta,
    save_checkpoint,
    save_training_state,
)


class _Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def _outputs(model: SoundLocalizer) -> torch.Tensor:
    torch.manual_seed(5)
    frames = torch.randn(1, 3, 32, 64)
    wave = torch.randn(1, model.config.window_samples) * 0.1
    with torch.no_grad():
        return model.eval()(frames, wave).attention


@pytest.fixture
def model() -> SoundLocalizer:
    torch.manual_seed(0)
    return SoundLocalizer("small", mechanism=1, window=5.0)


def test_round_trip(tmp_path: Path, model: SoundLocalizer) -> None:
    old = os.umask(0o022)
    try:
        weights = save_checkpoint(tmp_path / "ckpt" / "step10", model, step=10, extra={"loss": 0.25})
    finally:
        os.umask(old)
    assert weights == tmp_path / "ckpt" / "step10.safetensors"
    assert sorted(p.name for p in weights.parent.iterdir()) == ["step10.json", "step10.safetensors"]
    for p in weights.parent.iterdir():  # shareable like any output (the umask's bits), not 0600 temp files
        assert p.stat().st_mode & 0o777 == 0o644, p
    doc = json.loads((tmp_path / "ckpt" / "step10.json").read_text())
    assert doc["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert doc["config"]["mechanism"] == 1 and doc["config"]["window"] == 5.0
    assert doc["step"] == 10 and doc["extra"] == {"loss": 0.25}
    assert read_checkpoint_meta(weights)["parameters"] == sum(p.numel() for p in model.parameters())
    for name in (weights, tmp_path / "ckpt" / "step10", tmp_path / "ckpt" / "step10.json"):
        loaded = load_model(name)
        assert loaded.config == model.config and not loaded.training
        assert torch.equal(_outputs(loaded), _outputs(model))


def test_checksum_mismatch_is_refused(tmp_path: Path, model: SoundLocalizer) -> None:
    weights = save_checkpoint(tmp_path / "m", model)
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF  # flip bits inside the last tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(Pan360Error, match="checksum"):
        load_model(weights)


def test_lone_safetensors_uses_its_header_config(tmp_path: Path, model: SoundLocalizer) -> None:
    weights = save_checkpoint(tmp_path / "m.safetensors", model)
    (tmp_path / "m.json").unlink()
    assert load_model(weights).config == model.config


def test_pt_state_dicts(tmp_path: Path, model: SoundLocalizer) -> None:
    torch.save({"config": model.config.to_dict(), "state_dict": model.state_dict()}, tmp_path / "a.pt")
    assert torch.equal(_outputs(load_model(tmp_path / "a.pt")), _outputs(model))
    torch.save(model.state_dict(), tmp_path / "b.pt")
    with pytest.raises(Pan360Error, match="no model config"):
        load_model(tmp_path / "b.pt")
    assert load_model(tmp_path / "b.pt", config=model.config).config == model.config


def test_code_carrying_pickles_are_refused_without_running(tmp_path: Path) -> None:
    # The payload is live: plain pickle runs it.
    live = tmp_path / "live_marker"
    pickle.loads(pickle.dumps(_Payload(live)))
    assert live.exists()

    marker = tmp_path / "marker"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Payload(marker)}, tmp_path / "evil.pt")
    with open(tmp_path / "raw.pth", "wb") as f:
        pickle.dump(_Payload(marker), f)
    with open(tmp_path / "fake.safetensors", "wb") as f:
        pickle.dump(_Payload(marker), f)
    for name in ("evil.pt", "raw.pth", "fake.safetensors"):
        with pytest.raises(Pan360Error):
            load_model(tmp_path / name)
    with pytest.raises(Pan360Error):
        load_training_state(tmp_path / "evil.pt")
    with pytest.raises(Pan360Error):
        load_imagenet_vgg16(SoundLocalizer("vgg16"), tmp_path / "raw.pth")
    assert not marker.exists()


def test_training_state_round_trip(tmp_path: Path, model: SoundLocalizer) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    out = model.train()(torch.randn(2, 3, 32, 64), torch.randn(2, model.config.window_samples) * 0.1)
    out.f_v.square().mean().backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "step": 7, "rng": torch.get_rng_state()}
    path = save_training_state(tmp_path / "state.pt", state)
    back = load_training_state(path)
    assert back["step"] == 7 and torch.equal(back["rng"], state["rng"])
    opt2 = torch.optim.Adam(model.parameters(), lr=1e-4)
    opt2.load_state_dict(back["optimizer"])
    for k, v in opt.state_dict()["state"].items():
        assert torch.equal(opt2.state_dict()["state"][k]["exp_avg"], v["exp_avg"])
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]  # no temporary files left


def test_imagenet_vgg16_from_a_local_torchvision_state_dict(tmp_path: Path) -> None:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(3)
    reference = torchvision.models.vgg16()  # random weights, torchvision's own layout
    path = tmp_path / "vgg16.pth"
    torch.save(reference.state_dict(), path)
    model = SoundLocalizer("vgg16")
    assert not torch.equal(model.visual[28].weight, reference.features[28].weight)
    load_imagenet_vgg16(model, path)
    for i in (0, 2, 14, 28):
        assert torch.equal(model.visual[i].weight, reference.features[i].weight)
        assert torch.equal(model.visual[i].bias, reference.features[i].bias)
    x = torch.randn(1, 3, 48, 80)
    with torch.no_grad():
        torch.testing.assert_close(model.visual_grid(x), reference.features[:30](x))
    with pytest.raises(Pan360Error, match="arch 'vgg16' only"):
        load_imagenet_vgg16(SoundLocalizer("small"), path)
    torch.save({"features.0.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(Pan360Error, match="not a torchvision VGG16"):
        load_imagenet_vgg16(model, tmp_path / "other.pth")
    with pytest.raises(Pan360Error, match="not found"):
        load_imagenet_vgg16(model, tmp_path / "missing.pth")


# ----------------------------------------------------------------------------- bundled weights
def test_bundled_weights_found_in_checkout_then_install_prefix(tmp_path: Path, monkeypatch) -> None:
    checkout, installed = tmp_path / "checkout", tmp_path / "share"
    installed.mkdir()
    for name in ("b.safetensors", "a.safetensors"):
        (installed / name).write_bytes(b"")
    monkeypatch.setattr(nn_weights, "WEIGHTS_DIRS", (checkout, installed))
    assert bundled_weights() == installed / "a.safetensors"  # first by name
    checkout.mkdir()
    (checkout / "z.safetensors").write_bytes(b"")
    assert bundled_weights() == checkout / "z.safetensors"  # the checkout wins


def test_bundled_discovery_does_not_import_torch() -> None:
    assert_python_ok("import sys, pan360.nn.weights as w; w.bundled_weights(); w.has_weights(None); "
                     "import pan360.nn; assert 'torch' not in sys.modules, 'torch imported'")


def test_bundled_checkpoints_match_their_pins() -> None:
    folder = nn_weights.WEIGHTS_DIRS[0]  # the checkout's weights/
    assert bundled_weights() == folder / BUNDLED_NAME and has_weights(None)
    for name in BUNDLED_SHA256:
        check_bundled(folder / name)  # the real files pass (hashed once per process)
        check_bundled(folder / name)


def test_changed_bundled_checkpoint_is_refused(tmp_path: Path, monkeypatch) -> None:
    real = nn_weights.WEIGHTS_DIRS[0] / "pan360-small-synth.safetensors"
    folder = tmp_path / "weights"
    folder.mkdir()
    copy = folder / real.name
    shutil.copyfile(real, copy)
    shutil.copyfile(real.with_suffix(".json"), copy.with_suffix(".json"))
    monkeypatch.setattr(nn_weights, "WEIGHTS_DIRS", (folder,))
    assert bundled_weights() == copy
    assert load_network().config.arch == "small"  # an unchanged copy loads
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte, same size
    copy.write_bytes(bytes(data))
    os.utime(copy, ns=(copy.stat().st_atime_ns, copy.stat().st_mtime_ns + 1_000_000_000))
    copy.with_suffix(".json").unlink()  # no JSON checksum either: only the pin can refuse it
    with pytest.raises(Pan360Error, match=r"changed or corrupted.*reinstall") as err:
        load_network()
    assert "\n" not in str(err.value)
    assert load_network(copy).config.arch == "small"  # a path given by the user is not pinned
    model = SoundLocalizer("small")
    assert load_network(model) is model
    (folder / "other.safetensors").write_bytes(b"")
    copy.unlink()
    with pytest.raises(Pan360Error, match="not a known bundled checkpoint"):
        load_network()
