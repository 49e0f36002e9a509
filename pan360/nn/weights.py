"""Checkpoints of the sound-attention network: safetensors weights plus a small JSON config, and the
bundled checkpoints that ship with pan360.

``<name>.safetensors`` holds the tensors (no pickle, no code); ``<name>.json`` beside it holds the
:class:`ModelConfig`, metadata and the SHA-256 of the weights file, which :func:`load_model` checks.
A PyTorch ``.pt`` state dict is accepted only through ``torch.load(weights_only=True)``: a file that
would run code when unpickled is refused, without running it. Both files are written atomically.

**Bundled weights** (:func:`bundled_weights`, :func:`load_network`) are looked up in
:data:`WEIGHTS_DIRS` and pinned by name and SHA-256 (:data:`BUNDLED_SHA256`): a bundled file that was
changed or corrupted is refused. A checkpoint given by path (``--weights``) is not pinned.
Finding the bundled weights does not import torch: torch, safetensors and :mod:`pan360.nn.model`
are imported by the functions that read or write tensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pan360.errors import Pan360Error

if TYPE_CHECKING:
    import torch

    from pan360.nn.model import ModelConfig, SoundLocalizer

FORMAT = "pan360-sound-localizer"
FORMAT_VERSION = 1

#: Where bundled network weights live, searched in order: a checkout's ``weights/`` (editable
#: installs, running from the repository) and ``<prefix>/share/pan360/weights`` (``pip install .``).
WEIGHTS_DIRS = (Path(__file__).resolve().parents[2] / "weights", Path(sys.prefix) / "share" / "pan360" / "weights")
#: The default checkpoint's name (weights/README.md); other bundled files are used when it is absent.
BUNDLED_NAME = "pan360-lite0.safetensors"
#: SHA-256 of every bundled checkpoint, by file name: the bundled weights are these files or nothing.
BUNDLED_SHA256 = {
    "pan360-lite0.safetensors": "b08951b863f8345eb5ef687fb0d5dd2704b5f10f9d7555f008081b800c0eb28d",
    "pan360-small-synth.safetensors": "fdbf2dc0f21ab6f05d2193c216e208649f7fdcf7386947908ab5b2516cf45e5d",
}

#: Floating tensors of at least this many values (and 2+ dimensions) are stored as int8 by ``storage="int8"``.
INT8_MIN_SIZE = 4096
#: Suffix of the per-output-channel scale stored beside an int8 tensor.
INT8_SCALE = ".int8_scale"
STORAGES = ("float32", "float16", "int8")


# ------------------------------------------------------------------------------ bundled weights
def bundled_weights() -> Path | None:
    """The bundled network checkpoint: :data:`BUNDLED_NAME`, else the first ``*.safetensors`` (by name),
    in the first of :data:`WEIGHTS_DIRS` that has one, or None."""
    for folder in WEIGHTS_DIRS:
        found = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
        if found:
            return next((f for f in found if f.name == BUNDLED_NAME), found[0])
    return None


def has_weights(weights: Any) -> bool:
    """Whether the network can run: ``weights`` given (a path or a model), or bundled weights present."""
    return weights is not None or bundled_weights() is not None


#: (path, size, mtime, inode) → SHA-256 of the bundled files already checked in this process.
_DIGESTS: dict[tuple[str, int, int, int], str] = {}


def check_bundled(path: Path) -> None:
    """Refuse a bundled checkpoint whose name or SHA-256 is not in :data:`BUNDLED_SHA256` (hashed once
    per process while the file's size and modification time stay the same)."""
    expected = BUNDLED_SHA256.get(path.name)
    if expected is None:
        raise Pan360Error(f"{path} is not a known bundled checkpoint: pass it with --weights, or reinstall pan360")
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _DIGESTS:
        _DIGESTS[key] = _sha256(path)
    if _DIGESTS[key] != expected:
        raise Pan360Error(f"the bundled checkpoint {path} does not match its SHA-256 (file changed or "
                          f"corrupted): reinstall pan360")


def load_network(weights: Any = None) -> SoundLocalizer:
    """A :class:`pan360.nn.model.SoundLocalizer`: ``weights`` itself when it is a model, else loaded (on the
    CPU) from a checkpoint path, else the bundled checkpoint (checked by :func:`check_bundled`)."""
    if weights is not None and not isinstance(weights, (str, Path)):
        return weights
    path = weights if weights is not None else bundled_weights()
    if path is None:
        raise Pan360Error("the network needs trained weights: pass --weights CHECKPOINT (see pan360 train)")
    if weights is None:
        check_bundled(path)
    return load_model(path, device="cpu")


# ---------------------------------------------------------------------------------- checkpoints
def _stored(state: dict[str, torch.Tensor], storage: str) -> dict[str, torch.Tensor]:
    """The tensors as written for ``storage`` (see :func:`save_checkpoint`)."""
    import torch

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


def checkpoint_files(weights: Any) -> list[Path]:
    """The files a ``weights`` argument reads: a checkpoint's weights and the JSON beside them (the
    bundled checkpoint's for None); [] for a loaded model. Callers keep outputs off them."""
    if weights is None:
        weights = bundled_weights()
    if not isinstance(weights, (str, Path)):
        return []
    p = Path(weights)
    return [p, p.with_suffix(".json")] if p.suffix in (".pt", ".pth") else [p, *_paths(p)]


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
    from safetensors.torch import save_file

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
    from pan360.nn.model import ModelConfig, SoundLocalizer

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
    import torch
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

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
    import torch

    target = Path(path)
    _atomic_write(target, lambda tmp: torch.save(state, tmp))
    return target


def load_training_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read what :func:`save_training_state` wrote (``weights_only=True``; code-carrying files are refused)."""
    obj = safe_torch_load(Path(path))
    if not isinstance(obj, dict):
        raise Pan360Error(f"{path} is not a training state")
    return obj


def safe_torch_load(path: str | os.PathLike[str]) -> Any:
    """``torch.load`` restricted to tensors and plain containers (``weights_only=True``).

    A file whose unpickling would call anything else (code) is refused before that call happens.
    """
    import torch

    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it was not written with
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise Pan360Error(f"file not found: {path}") from None
    except Exception:  # the restricted unpickler raises before calling any disallowed global
        raise Pan360Error(
            f"refusing to load {path}: it is not a plain tensor file (unpickling it could run code)"
        ) from None


def load_imagenet_vgg16(model: SoundLocalizer, state_dict_path: str | Any) -> None:
    """Initialise the visual stream from a local torchvision VGG16 state-dict file (never downloads).

    The file is what ``torch.save(torchvision.models.vgg16(weights=...).state_dict(), path)`` writes
    (e.g. ``vgg16-397923af.pth`` from torchvision's cache); it is read with ``weights_only=True``.
    """
    if model.config.arch != "vgg16":
        raise Pan360Error(f"ImageNet VGG16 weights fit arch 'vgg16' only, not {model.config.arch!r}")
    sd = safe_torch_load(state_dict_path)
    if not isinstance(sd, dict):
        raise Pan360Error(f"{state_dict_path} is not a state dict")
    own = model.visual.state_dict()
    picked = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
    picked = {k: v for k, v in picked.items() if k in own}
    if set(picked) != set(own) or any(picked[k].shape != own[k].shape for k in own):
        raise Pan360Error(f"{state_dict_path} is not a torchvision VGG16 state dict")
    model.visual.load_state_dict(picked)
