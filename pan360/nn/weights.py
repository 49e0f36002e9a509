"""Checkpoints of the sound-attention network: safetensors weights plus a small JSON config.

``<name>.safetensors`` holds the tensors (no pickle, no code); ``<name>.json`` beside it holds the
:class:`ModelConfig`, metadata and the SHA-256 of the weights file, which :func:`load_model` checks.
A PyTorch ``.pt`` state dict is accepted only through ``torch.load(weights_only=True)``: a file that
would run code when unpickled is refused, without running it. Both files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from pan360.errors import Pan360Error
from pan360.nn.model import ModelConfig, SoundLocalizer, safe_torch_load

FORMAT = "pan360-sound-localizer"
FORMAT_VERSION = 1


#: Floating tensors of at least this many values (and 2+ dimensions) are stored as int8 by ``storage="int8"``.
INT8_MIN_SIZE = 4096
#: Suffix of the per-output-channel scale stored beside an int8 tensor.
INT8_SCALE = ".int8_scale"
STORAGES = ("float32", "float16", "int8")


def _stored(state: dict[str, torch.Tensor], storage: str) -> dict[str, torch.Tensor]:
    """The tensors as written for ``storage`` (see :func:`save_checkpoint`)."""
    if storage not in STORAGES:
        raise Pan360Error(f"storage must be one of {', '.join(STORAGES)}, not {storage!r}")
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        v = v.detach().to("cpu").contiguous()
        if storage == "float32" or not v.is_floating_point():
            out[k] = v
        elif storage == "int8" and v.ndim >= 2 and v.numel() >= INT8_MIN_SIZE:
            # Symmetric, per output channel (dim 0): every filter keeps its own range.
            rows = v.float().flatten(1)
            scale = (rows.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
            out[k] = torch.round(rows / scale[:, None]).clamp(-127, 127).to(torch.int8).view_as(v).contiguous()
            out[k + INT8_SCALE] = scale
        else:
            out[k] = v.half()
    return out


def _restored(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`_stored`: int8 tensors times their scales, everything floating as float32."""
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k.endswith(INT8_SCALE):
            continue
        scale = state.get(k + INT8_SCALE)
        if scale is not None:
            out[k] = (v.float().flatten(1) * scale.float()[:, None]).view(v.shape)
        else:
            out[k] = v.float() if v.is_floating_point() else v
    return out


def _paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(weights file, JSON file) for a stem or either file's name."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.parent / (p.name + ".safetensors"), p.parent / (p.name + ".json")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write(target: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``target``, then rename it into place
    (:func:`pan360.media.atomic_output`: permissions follow the umask, nothing left on failure)."""
    from pan360.media.output import atomic_output

    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(target, overwrite=True) as tmp:
        write(tmp)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: SoundLocalizer,
    *,
    step: int | None = None,
    extra: dict[str, Any] | None = None,
    storage: str = "float32",
) -> Path:
    """Write ``<name>.safetensors`` and ``<name>.json``; returns the weights file's path.

    ``storage``: "float32"; "float16" (floating tensors halved); "int8" (weight matrices and kernels of
    :data:`INT8_MIN_SIZE` values or more as int8 with one float32 scale per output channel, the rest
    float16: a quarter of the file). Loading always gives float32 tensors back.

    ``path`` is a stem (``ckpt/step100``) or either file's name. ``extra`` is any JSON-serialisable
    metadata (losses, data description...). The JSON is written last, so a crash in between leaves a
    checksum that no longer matches and the pair is refused rather than half-loaded.
    """
    weights, meta = _paths(path)
    state = _stored(model.state_dict(), storage)
    config = model.config.to_dict()
    # The config also goes into the safetensors header, so the weights file alone is loadable.
    header = {"format": FORMAT, "pan360_config": json.dumps(config)}
    _atomic_write(weights, lambda tmp: save_file(state, str(tmp), metadata=header))
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config,
        "weights": weights.name,
        "sha256": _sha256(weights),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "step": step,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "extra": extra or {},
    }
    try:
        text = json.dumps(doc, indent=2) + "\n"
    except TypeError as exc:
        raise Pan360Error(f"checkpoint metadata is not JSON-serialisable: {exc}") from None
    _atomic_write(meta, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return weights


def read_checkpoint_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON document written beside a checkpoint's weights."""
    _, meta = _paths(path)
    try:
        doc = json.loads(meta.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Pan360Error(f"checkpoint config not found: {meta}") from None
    except (OSError, ValueError) as exc:
        raise Pan360Error(f"cannot read checkpoint config {meta}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise Pan360Error(f"{meta} is not a pan360 checkpoint config")
    return doc


def _build(config: dict[str, Any], state: dict[str, torch.Tensor], source: Path, device: str) -> SoundLocalizer:
    model = SoundLocalizer.from_config(ModelConfig.from_dict(config))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise Pan360Error(f"{source} does not fit its model config: {str(exc).splitlines()[0]}") from None
    return model.to(device).eval()


def load_model(
    path: str | os.PathLike[str], device: str | torch.device = "cpu", config: ModelConfig | None = None
) -> SoundLocalizer:
    """Load a checkpoint, in eval mode, on ``device``.

    ``path``: a stem, ``.safetensors`` or ``.json`` of :func:`save_checkpoint` (the SHA-256 in the JSON
    is checked; a lone ``.safetensors`` uses the config in its header), or a ``.pt``/``.pth`` file
    holding a state dict or ``{"config": ..., "state_dict": ...}``, read with ``weights_only=True``.
    ``config`` overrides the stored config (needed for a bare ``.pt`` state dict without a JSON).
    """
    p = Path(path)
    if p.suffix in (".pt", ".pth"):
        obj = safe_torch_load(p)
        stored = None
        if isinstance(obj, dict) and "state_dict" in obj:
            stored, obj = obj.get("config"), obj["state_dict"]
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise Pan360Error(f"{p} does not hold a state dict")
        if config is None and stored is None and p.with_suffix(".json").is_file():
            stored = read_checkpoint_meta(p.with_suffix(""))["config"]
        if config is None and not isinstance(stored, dict):
            raise Pan360Error(f"{p} has no model config (give one, or put its .json beside it)")
        return _build(config.to_dict() if config else stored, obj, p, str(device))

    weights, meta = _paths(p)
    if not weights.is_file():
        raise Pan360Error(f"checkpoint weights not found: {weights}")
    stored = None
    if meta.is_file():
        doc = read_checkpoint_meta(meta)
        if doc.get("sha256") != _sha256(weights):
            raise Pan360Error(f"{weights} does not match the checksum in {meta.name} (corrupt or replaced)")
        stored = doc.get("config")
    try:
        state = _restored(load_file(str(weights), device="cpu"))
        if stored is None:
            with safe_open(str(weights), framework="pt") as f:
                header = f.metadata() or {}
            stored = json.loads(header["pan360_config"]) if "pan360_config" in header else None
    except (SafetensorError, OSError, ValueError) as exc:
        raise Pan360Error(f"cannot read {weights}: not a safetensors file ({exc})") from None
    if config is None and not isinstance(stored, dict):
        raise Pan360Error(f"{weights} has no model config (no {meta.name} and none in its header)")
    return _build(config.to_dict() if config else stored, state, weights, str(device))


def save_training_state(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Atomically save resume state (optimizer/scheduler ``state_dict()``s, step, RNG tensors...).

    Only tensors and plain Python containers/numbers/strings may go in: :func:`load_training_state`
    reads it back with ``weights_only=True``.
    """
    target = Path(path)
    _atomic_write(target, lambda tmp: torch.save(state, tmp))
    return target


def load_training_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read what :func:`save_training_state` wrote (``weights_only=True``; code-carrying files are refused)."""
    obj = safe_torch_load(Path(path))
    if not isinstance(obj, dict):
        raise Pan360Error(f"{path} is not a training state")
    return obj
