"""Where torch work runs, decided in one place: the device (:func:`resolve_device`) and the mixed
precision used on it (:func:`autocast`, :func:`amp_dtype`).

Devices are named as on the command line: "auto" (CUDA when present, else the CPU), "cpu", "cuda",
and, where a caller allows it, "cuda:N". Rendering on the CPU needs no torch at all, so the CUDA check
can skip importing torch (about a second) on a machine without an NVIDIA driver (:func:`cuda_available`).
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from pan360.errors import Pan360Error

if TYPE_CHECKING:
    import torch

#: Device names every caller accepts; "cuda:N" is accepted where ``allow_index`` says so.
DEVICES = ("auto", "cpu", "cuda")
#: Files present on a machine with an NVIDIA driver (checked before importing torch to ask CUDA).
_NVIDIA_DRIVER = ("/proc/driver/nvidia/version", "/dev/nvidiactl")


def cuda_available(forced: bool = True) -> bool:
    """``torch.cuda.is_available()``; with ``forced`` False, False without importing torch on a machine
    with no NVIDIA driver (and False when torch is not installed: the CPU paths that ask need none)."""
    if not forced and not any(os.path.exists(p) for p in _NVIDIA_DRIVER):
        return False
    try:
        import torch
    except ImportError:  # torch is a dependency, but rendering on the CPU does not need it
        return False
    return bool(torch.cuda.is_available())


def _is_indexed_cuda(device: str) -> bool:
    prefix, _, index = device.partition(":")
    return prefix == "cuda" and index.isdigit()


def check_device(device: str, *, allow_index: bool = False) -> None:
    """Refuse a device name that is not one of :data:`DEVICES` (or "cuda:N" with ``allow_index``)."""
    if device in DEVICES or (allow_index and _is_indexed_cuda(device)):
        return
    choices = "auto, cpu, cuda or cuda:N" if allow_index else "auto, cpu or cuda"
    raise Pan360Error(f"unknown device {device!r}; use {choices}")


def resolve_device(device: str, *, allow_index: bool = False, quick: bool = False) -> str:
    """The device to run on: "auto" → "cuda" when CUDA is available, else "cpu"; "cpu"; "cuda" (and
    "cuda:N" with ``allow_index``) when CUDA is available.

    ``quick``: "auto" does not import torch on a machine without an NVIDIA driver (:func:`cuda_available`).
    Raises :class:`Pan360Error` for an unknown name or a CUDA device on a machine without CUDA.
    """
    check_device(device, allow_index=allow_index)
    if device == "cpu":
        return "cpu"
    if device == "auto":
        return "cuda" if cuda_available(forced=not quick) else "cpu"
    if not cuda_available():
        raise Pan360Error(f"--device {device} was requested but no CUDA device is available")
    return device


def _is_cuda(device: str | torch.device) -> bool:
    return (device if isinstance(device, str) else device.type).split(":")[0] == "cuda"


def amp_dtype() -> torch.dtype:
    """The autocast dtype on CUDA: bfloat16 where the GPU supports it, else float16 (which needs a
    gradient scaler in training)."""
    import torch

    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: str | torch.device, enabled: bool = True) -> AbstractContextManager[Any]:
    """Mixed precision for forward passes on ``device``: ``torch.autocast`` with :func:`amp_dtype` on
    CUDA, a no-op context on the CPU (or when not ``enabled``). The context can be entered repeatedly."""
    if not enabled or not _is_cuda(device):
        return nullcontext()
    import torch

    return torch.autocast("cuda", dtype=amp_dtype())
