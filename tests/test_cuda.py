"""The CUDA paths against the CPU ones: rendering, network inference (mixed precision), training (AMP).

Skipped without a CUDA device (the development and CI machines have none); run on a GPU machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

from pan360 import geometry as geo  # noqa: E402
from pan360.media import probe, read_audio  # noqa: E402
from pan360.nn.model import SoundLocalizer  # noqa: E402
from pan360.nn.weights import load_model  # noqa: E402
from pan360.paths import CameraPath  # noqa: E402
from pan360.rendering import render_video  # noqa: E402
from pan360.reproject import Renderer  # noqa: E402
from pan360.sources.network import network_maps, plan_analysis  # noqa: E402
from conftest import psnr, write_drum_clip  # noqa: E402



def _view(yaw: float, pitch: float, roll: float, h_fov: float, w: int, h: int) -> geo.View:
    return geo.View(yaw, pitch, roll, h_fov, geo.v_fov_for(h_fov, w, h))


@pytest.fixture(scope="module")
def scene_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s, 512x256: a drum at yaw 60 sounding throughout."""
    return write_drum_clip(tmp_path_factory.mktemp("cuda") / "scene.mp4", width=512, height=256, duration=3.0,
                           sounding_until=3.0)


def test_auto_device_renders_on_cuda_like_the_cpu() -> None:
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(128, 60, (1024, 2048, 3)), 0, 255).astype(np.uint8)
    img = np.ascontiguousarray(np.repeat(np.repeat(img[::8, ::8], 8, 0), 8, 1))  # smooth-ish blocks
    for v, size in [(_view(40, -15, 0, 90, 640, 360), (640, 360)), (_view(-179, 70, 10, 100, 480, 480), (480, 480)),
                    (_view(0, 0, 0, 30, 256, 144), (256, 144))]:
        gpu = Renderer(2048, 1024, *size)
        assert (gpu.device, gpu.backend) == ("cuda", "torch")
        cpu = Renderer(2048, 1024, *size, device="cpu").render_rgb(img, v)
        assert psnr(cpu, gpu.render_rgb(img, v)) > 40.0, v
        y, u, vv = img[..., 0].copy(), img[::2, ::2, 1].copy(), img[::2, ::2, 2].copy()
        a = Renderer(2048, 1024, *size, device="cpu").render_yuv420(y, u, vv, v)
        b = gpu.render_yuv420(y, u, vv, v)
        assert all(psnr(p, q) > 40.0 for p, q in zip(a, b)), v


def test_render_video_on_cuda(scene_clip: Path, tmp_path: Path) -> None:
    info = probe(scene_clip)
    n = len(info.frame_times)
    yaw = np.linspace(-170, 170, n)
    path = CameraPath(info.frame_times, yaw, np.zeros(n), np.zeros(n), np.full(n, 90.0),
                      np.full(n, geo.v_fov_for(90.0, 320, 180)), 320, 180, float(info.fps))
    outs = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.mp4"
        assert render_video(info, path, out, crf=10, preset="ultrafast", device=device) == n
        with av.open(str(out)) as c:
            outs[device] = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(outs["cpu"]) == len(outs["cuda"]) == n
    assert min(psnr(a, b) for a, b in zip(outs["cpu"], outs["cuda"])) > 35.0


def test_network_maps_on_cuda_with_mixed_precision(scene_clip: Path) -> None:
    torch.manual_seed(0)
    model = SoundLocalizer(arch="small")
    info = probe(scene_clip)
    track = read_audio(info)
    plan = plan_analysis(model, info, device="auto")
    assert plan.device.startswith("cuda") and plan.rate is None  # every frame on CUDA
    gpu = network_maps(model, info, track, device="cuda")
    cpu = network_maps(model.float(), info, track, device="cpu", rate=None)
    assert gpu.shape == cpu.shape == (len(info.frame_times), 64, 128)
    assert np.isfinite(gpu).all()
    # Each map is the attention scaled by the window's sound power and the network's confidence
    # (its highest cosine, clipped at 0). An untrained network's cosines are near 0, so on the
    # half-padded windows at the clip's start bf16 rounds a few of them to <= 0: those maps are 0 on
    # CUDA (seen on an H200: frames 0-4 of 90). Every other map must keep its shape.
    both = (cpu.reshape(len(cpu), -1).max(axis=1) > 0) & (gpu.reshape(len(gpu), -1).max(axis=1) > 0)
    assert both.mean() > 0.8
    corr = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(cpu[both], gpu[both])]
    assert min(corr) > 0.98, min(corr)  # bf16/fp16 autocast against fp32


def test_training_with_amp_on_cuda(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
    import make_dataset

    from pan360.training import train

    data = tmp_path / "data"
    make_dataset.main([str(data), "--n", "16", "--width", "128", "--height", "64", "--window", "4",
                       "--sample-rate", str(SoundLocalizer(arch="small").config.sample_rate),
                       "--supervised-fraction", "1", "--ambient-fraction", "0", "--render-scale", "1"])
    out = tmp_path / "run"
    final = train(data=[str(data)], out_dir=str(out), model={"image_height": 64, "image_width": 128},
                  batch_size=8, lr=1e-3, num_workers=0, augment=False, log_every=1, checkpoint_every=10,
                  steps=20, seed=1, eval_data=[str(data)], eval_every=10, device="cuda", amp=True)
    log = (out / "log.csv").read_text().splitlines()
    losses = np.array([float(r.split(",")[1]) for r in log[1:]])
    assert len(losses) == 20 and np.isfinite(losses).all()
    assert losses[-5:].mean() < losses[:5].mean()
    model = load_model(final, device="cpu")  # a checkpoint written on CUDA loads on the CPU
    assert next(model.parameters()).device.type == "cpu"
