"""Device and mixed-precision resolution (pan360.device), as the renderer, the network and training use it."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
from conftest import assert_python_ok

from pan360 import device as devices
from pan360.device import amp_dtype, autocast, check_device, resolve_device
from pan360.errors import Pan360Error
from pan360.reproject import Renderer


def test_names_are_checked() -> None:
    for name in ("auto", "cpu", "cuda"):
        check_device(name)
    check_device("cuda:1", allow_index=True)
    for bad, allow in (("gpu", False), ("cuda:1", False), ("cuda:x", True), ("mps", True), ("", False)):
        with pytest.raises(Pan360Error, match="unknown device"):
            resolve_device(bad, allow_index=allow)


def test_resolution_with_and_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu") == "cpu"
    monkeypatch.setattr(devices, "cuda_available", lambda forced=True: False)
    assert resolve_device("auto") == "cpu"
    for name in ("cuda", "cuda:0"):
        with pytest.raises(Pan360Error, match=f"--device {name} was requested but no CUDA device is available"):
            resolve_device(name, allow_index=True)
    monkeypatch.setattr(devices, "cuda_available", lambda forced=True: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda") == "cuda"
    assert resolve_device("cuda:1", allow_index=True) == "cuda:1"


def test_renderer_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "cuda_available", lambda forced=True: False)
    assert (Renderer(64, 32, 16, 8).device, Renderer(64, 32, 16, 8).backend) == ("cpu", "opencv")
    assert Renderer(64, 32, 16, 8, backend="torch").backend == "torch"
    with pytest.raises(Pan360Error, match="no CUDA device"):
        Renderer(64, 32, 16, 8, device="cuda")
    with pytest.raises(Pan360Error, match="opencv backend runs on the CPU only"):
        Renderer(64, 32, 16, 8, device="cuda", backend="opencv")
    with pytest.raises(Pan360Error, match="unknown render backend"):
        Renderer(64, 32, 16, 8, backend="vulkan")


def test_quick_check_does_not_import_torch_without_a_driver() -> None:
    assert_python_ok("import sys, pan360.device as d; d._NVIDIA_DRIVER = ('/nonexistent/nvidia',); "
                     "assert d.resolve_device('auto', quick=True) == 'cpu'; assert 'torch' not in sys.modules")


def test_autocast_is_a_no_op_on_the_cpu() -> None:
    torch = pytest.importorskip("torch")
    for dev in ("cpu", torch.device("cpu")):
        assert isinstance(autocast(dev), nullcontext)
    assert isinstance(autocast("cuda", enabled=False), nullcontext)
    ctx = autocast("cpu")
    for _ in range(2):  # reusable, as the training loop and the network source use it
        with ctx:
            assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32


def test_autocast_on_cuda() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert amp_dtype() == expected
    with autocast("cuda:0"):
        a = torch.ones(8, 8, device="cuda")
        assert (a @ a).dtype == expected
