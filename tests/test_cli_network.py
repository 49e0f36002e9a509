"""`pan360 train` on a folder of generated clips, then `pan360 render --weights` and `pan360 eval` with what it wrote."""

from __future__ import annotations

import csv
import math
import json
from pathlib import Path

import pytest

from pan360.media import probe
from pan360.synthetic import random_scene, write_ground_truth, write_scene
from test_cli import run_cli


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    for seed in range(3):
        scene = random_scene(700 + seed, width=320, height=160, duration=3.0, n_objects=3)
        gt = write_scene(scene, folder / f"clip{seed}.mp4", preset="ultrafast")
        write_ground_truth(gt, folder.parent / f"truth{seed}.json")
    return folder


def test_train_then_render_with_the_checkpoint(clips: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_cli("train", clips, "--out", run, "--arch", "small", "--steps", "12", "--batch-size", "6", "--lr", "1e-3",
            "--video-rate", "4", "--set", "num_workers=0", "--set", "log_every=1", "--set", "checkpoint_every=6",
            "--quiet")
    model = run / "model.safetensors"
    assert model.exists() and (run / "model.json").exists() and (run / "losses.png").exists()
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert len(rows) == 12
    losses = [float(r["loss"]) for r in rows]
    assert all(map(math.isfinite, losses))

    # the network source uses exactly this checkpoint; FOA input + weights → fused by default
    out, traj = tmp_path / "net.mp4", tmp_path / "net.json"
    proc = run_cli("render", clips / "clip0.mp4", "-o", out, "--weights", model, "--saliency", "net",
                   "--size", "256x144", "--preset", "ultrafast", "--trajectory-out", traj)
    assert "saliency: net" in proc.stderr
    assert probe(out, projection="equirect").n_frames == probe(clips / "clip0.mp4").n_frames
    proc = run_cli("render", clips / "clip0.mp4", "-o", tmp_path / "fused.mp4", "--weights", model,
                   "--size", "256x144", "--preset", "ultrafast")
    assert "saliency: fused" in proc.stderr

    # pan360 eval trajectory against the scene's truth
    scores = tmp_path / "scores.json"
    run_cli("eval", "trajectory", traj, clips.parent / "truth0.json", "--json", scores)
    doc = json.loads(scores.read_text())["trajectory"]
    assert 0.0 <= doc["in_view"] <= 1.0


def test_weights_that_would_run_code_are_refused(clips: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    import pickle

    class Payload:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    evil.write_bytes(pickle.dumps({"state_dict": Payload()}))
    proc = run_cli("render", clips / "clip0.mp4", "-o", tmp_path / "o.mp4", "--weights", evil, "--saliency", "net",
                   check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert not marker.exists()
