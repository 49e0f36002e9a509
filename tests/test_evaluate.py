"""cIoU / AUC against hand-computed cases and the concat-and-localize protocol."""

from __future__ import annotations

import wave
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from pan360.errors import Pan360Error
from pan360.nn.evaluate import (
    SMALL_OBJECT_THRESHOLD,
    _peak_inside,
    ciou,
    concat_and_localize,
    concat_gt,
    concat_plan,
    evaluate_pairs,
    half_share,
    success_and_auc,
)
from pan360.nn.inputs import preprocess_frames, sound_window
from pan360.nn.model import ModelConfig, SoundLocalizer
from pan360.nn.pairs import boxes_map


# ------------------------------------------------------------------------------ cIoU and AUC
def test_ciou_median_threshold_by_hand() -> None:
    # pred 15..0 row by row: normalised (15-k)/15, median (sorted index 8) = 8/15, so rows 0-1 are on.
    pred = (15 - np.arange(16)).reshape(4, 4)
    gt = np.zeros((4, 4))
    gt[:2, :2] = 1  # 4 cells, all inside the predicted rows
    assert ciou(pred, gt) == pytest.approx(4 / (4 + 4))  # 4 on-cells outside the gt
    assert ciou(-pred, gt) == 0.0  # the bottom half: no overlap


def test_ciou_consensus_values_and_given_threshold_by_hand() -> None:
    gt = np.array([[1, 1, 0.5, 0], [0.5, 0, 0, 0]])
    pred = np.array([[4, 3, 2, 1], [3.5, 0, 0, 0]])  # normalised: [[1 .75 .5 .25] [.875 0 0 0]]
    assert ciou(pred, gt) == pytest.approx(3 / 3)  # median 0.5: B covers all 4 gt cells (1+1+.5+.5 = 3 = ΣG)
    assert ciou(pred, gt, threshold=0.8) == pytest.approx(1.5 / 3)  # B = cells 1 and .875: 1 + 0.5
    assert ciou(pred, gt, threshold=0.2) == pytest.approx(3 / (3 + 1))  # B adds the .25 cell where G = 0


def test_ciou_resizes_prediction_bilinearly_by_hand() -> None:
    # 2x2 -> 4x4 with pixel-centre bilinear (cv2): separable weights a = [1, .75, .25, 0] from the hot corner,
    # so p = a_i a_j; the median (sorted index 8) is 0.1875: 8 cells on, the 4 gt cells among them.
    pred = np.array([[1.0, 0.0], [0.0, 0.0]])
    gt = np.zeros((4, 4))
    gt[:2, :2] = 1
    assert ciou(pred, gt) == pytest.approx(4 / (4 + 4))
    assert ciou(np.ones((3, 3)), gt) == pytest.approx(4 / 16)  # constant map: all on


def test_success_and_auc_by_hand() -> None:
    # Success rate over thresholds 0, .05, ..., 1: 1 at 0; .75 up to .30; .5 up to .50; .25 up to 1.
    # Trapezoids: .04375 + 5(.05)(.75) + .03125 + 3(.05)(.5) + .01875 + 9(.05)(.25) = .46875
    success, auc = success_and_auc([0.0, 0.52, 1.0, 0.32])
    assert success == pytest.approx(0.5)
    assert auc == pytest.approx(0.46875)
    assert success_and_auc([1.0, 1.0]) == (1.0, pytest.approx(1.0))
    assert success_and_auc([0.0]) == (0.0, pytest.approx(0.025))  # only the threshold-0 point
    with pytest.raises(Pan360Error):
        success_and_auc([])


def test_consensus_map_as_lvs() -> None:
    g = boxes_map([(0, 0, 128, 128), (0, 0, 256, 128)], 8, 8, 8 / 256, 8 / 256, annotators=2.0)
    assert g[0, 0] == 1.0 and g[0, 7] == 0.5 and g[7, 0] == 0.0  # overlap 2/2, one annotator 1/2
    assert g.sum() == pytest.approx(16 * 1.0 + 16 * 0.5)


def test_half_share_and_concat_gt() -> None:
    assert half_share(np.array([[3.0, 1.0]])) == pytest.approx(0.75)
    assert half_share(np.array([[1.0, 2.0, 1.0]])) == pytest.approx(0.5)  # middle column split
    gt = np.ones((4, 6))
    right = concat_gt(gt, on_left=False)
    assert right.shape == (4, 12) and np.all(right[:, 6:] == 1) and np.all(right[:, :6] == 0)
    plan = concat_plan(5, seed=1)
    assert len(plan) == 10 and all(c.left != c.right for c in plan)
    assert {c.sounding for c in plan[::2]} | {c.sounding for c in plan[1::2]} == set(range(5))
    assert sum(c.sounding == c.left for c in plan) == 5  # each image pair scored with both sounds


# --------------------------------------------------------------------- concat-and-localize
class ColourListener(nn.Module):
    """A hand-built localiser with the SoundLocalizer interface: it knows that a 300 Hz tone is the red
    square and a 2 kHz tone the green one. Grid vectors are the pooled redness/greenness, the sound
    embedding is the tone's power in two bands."""

    def __init__(self) -> None:
        super().__init__()
        self.config = ModelConfig.for_arch("small")

    def visual_grid(self, frames: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.avg_pool2d(frames, 16)
        red = torch.relu(pooled[:, 0] - pooled[:, 1])
        green = torch.relu(pooled[:, 1] - pooled[:, 0])
        return torch.stack([red, green], dim=1) + 1e-3

    def encode_sound(self, waveforms: torch.Tensor, valid: torch.Tensor | None = None):
        spec = torch.fft.rfft(waveforms).abs() ** 2
        f = torch.fft.rfftfreq(waveforms.shape[-1], 1 / self.config.sample_rate)
        h = torch.stack([spec[:, f < 1000].sum(1), spec[:, f >= 1000].sum(1)], dim=1)
        return h, h

    def localize(self, grid: torch.Tensor, h: torch.Tensor):
        v = nn.functional.normalize(grid.flatten(2), dim=1)
        q = nn.functional.normalize(h, dim=1)
        logits = torch.einsum("bcm,bc->bm", v, q)
        att = torch.softmax(50 * logits, dim=1).view(grid.shape[0], *grid.shape[2:])
        return att, logits.view_as(att)


def _tone_pairs(n: int, cfg: ModelConfig) -> list[dict]:
    rng = np.random.default_rng(0)
    h, w = cfg.image_height, cfg.image_width
    out = []
    for i in range(n):
        red = i % 2 == 0
        img = np.full((h, w, 3), 128, np.uint8)
        y, x = int(rng.integers(0, h - 48)), int(rng.integers(0, w - 48))
        img[y:y + 48, x:x + 48] = (220, 40, 40) if red else (40, 220, 40)
        gt = np.zeros((h, w))
        gt[y:y + 48, x:x + 48] = 1
        t = np.arange(int(cfg.sample_rate * 6)) / cfg.sample_rate
        tone = 0.3 * np.sin(2 * np.pi * (300 if red else 2000) * t).astype(np.float32)
        wav, valid = sound_window(tone, cfg.sample_rate, 3.0, cfg)
        out.append({"frame": preprocess_frames(img)[0], "waveform": torch.from_numpy(wav),
                    "valid": torch.from_numpy(valid), "gt_full": gt})
    return out


def test_concat_and_localize_constructed_case() -> None:
    model = ColourListener()
    pairs = _tone_pairs(8, model.config)
    rep = concat_and_localize(model, pairs, seed=3, device="cpu", threshold=SMALL_OBJECT_THRESHOLD)
    assert rep["n"] == 16 and rep["threshold"] == 0.5
    ws, wo = rep["with_sound"], rep["without_sound"]
    # Pairs of the same colour cannot be told apart by sound; pairs of different colours always can.
    plan = concat_plan(8, seed=3)
    distinct = np.mean([(c.left % 2) != (c.right % 2) for c in plan])
    assert ws["half_accuracy"] >= distinct and ws["half_accuracy_peak"] >= distinct
    assert wo["half_accuracy"] == pytest.approx(0.5)  # the same blind map for both sounds of a pair
    assert ws["ciou_success"] > wo["ciou_success"]
    assert 0 <= wo["auc"] <= ws["auc"] <= 1
    full = evaluate_pairs(model, pairs, device="cpu", threshold=SMALL_OBJECT_THRESHOLD)
    assert full["n"] == 8 and full["ciou_success"] == 1.0 and full["mean_ciou"] > 0.5
    # The median threshold switches half the picture on: with a 48x48 object in 160x320 cIoU <= 2 x 4.5 %.
    median = evaluate_pairs(model, pairs, device="cpu")
    assert median["threshold"] == "median" and median["mean_ciou"] <= 2 * 48 * 48 / (160 * 320) + 1e-9


def _pair_folder(root: Path, cfg: ModelConfig, n: int) -> Path:
    """A pair set in the Flickr-SoundNet layout (what train/make_dataset.py writes), one ambient pair."""
    for d in ("frames", "audio", "annotations"):
        (root / d).mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        img = (rng.random((cfg.image_height, cfg.image_width, 3)) * 255).astype(np.uint8)
        cv2.imwrite(str(root / "frames" / f"p{i}.jpg"), img)
        pcm = (rng.standard_normal(cfg.sample_rate * 2) * 3000).astype("<i2")
        with wave.open(str(root / "audio" / f"p{i}.wav"), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(cfg.sample_rate), w.writeframes(pcm.tobytes())
        if i < n - 1:
            mask = np.zeros((cfg.image_height, cfg.image_width), np.uint8)
            mask[20:60, 30 * i:30 * i + 60] = 1
            np.save(root / "annotations" / f"p{i}.npy", mask)
    return root


def test_real_model_on_a_pair_folder(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SoundLocalizer(arch="small")
    folder = _pair_folder(tmp_path / "pairs", model.config, 5)
    rep = evaluate_pairs(model, folder, device="cpu")
    assert rep["n"] == 4 and rep["unannotated"] == 1
    assert 0 <= rep["ciou_success"] <= 1 and 0 <= rep["auc"] <= 1
    cat = concat_and_localize(model, folder, device="cpu", withheld="zero")
    assert cat["n"] == 8 and cat["without_sound"]["half_accuracy"] == pytest.approx(0.5)
    with pytest.raises(Pan360Error):
        concat_and_localize(model, folder, withheld="nothing")


def test_evaluate_pairs_on_concatenated_folders_as_training_does(tmp_path: Path) -> None:
    """Training evaluates a ConcatDataset of pair folders on its first annotated pairs, in train mode."""
    from torch.utils.data import ConcatDataset

    from pan360.nn.pairs import PairFolderDataset

    torch.manual_seed(0)
    model = SoundLocalizer(arch="small").train()
    a = PairFolderDataset(_pair_folder(tmp_path / "a", model.config, 3), model.config, full_gt=True)
    b = PairFolderDataset(_pair_folder(tmp_path / "b", model.config, 4), model.config, full_gt=True)
    both = ConcatDataset([a, b])
    rep = evaluate_pairs(model, both, device="cpu", threshold=0.5)
    assert (rep["n"], rep["unannotated"]) == (5, 2)  # the last pair of each folder is ambient
    assert 0.0 <= rep["hit_rate"] <= 1.0 and model.training  # the caller's mode is kept
    first = evaluate_pairs(model, both, device="cpu", threshold=0.5, max_samples=2)
    alone = evaluate_pairs(model, a, device="cpu", threshold=0.5)  # a's 2 annotated pairs come first
    assert first["n"] == 2 and first["mean_ciou"] == pytest.approx(alone["mean_ciou"])
    # A map peaked inside the annotation is a hit; one peaked outside is not.
    gt = np.zeros((16, 32))
    gt[4:8, 8:16] = 1
    att = np.zeros((4, 8))
    att[1, 3] = 1
    assert _peak_inside(att, gt) == 1.0
    att = np.roll(att, 4, axis=1)
    assert _peak_inside(att, gt) == 0.0
