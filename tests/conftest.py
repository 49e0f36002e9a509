"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pan360.synthetic import Scene, SceneObject, write_scene

# ../shared/media next to the repository (present on the development machine, absent in a user's checkout).
SHARED_MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"


@pytest.fixture
def shared_media() -> Path:
    """The shared real-media folder; skips the test when it is absent."""
    if not SHARED_MEDIA.is_dir():
        pytest.skip("../shared/media is not available")
    return SHARED_MEDIA


def write_drum_clip(path: Path, *, width: int, height: int, duration: float, sounding_until: float) -> Path:
    """A 30 fps equirect clip with FOA: one drum (radius 20°) at yaw 60 on the horizon, sounding from
    0 s to ``sounding_until``, no noise (the network-source tests' scene)."""
    scene = Scene(width=width, height=height, fps=30.0, duration=duration,
                  objects=(SceneObject("drum", 60.0, 0.0, radius=20),), schedule=((0, 0.0, sounding_until),),
                  diffuse_noise_db=None, seed=2)
    write_scene(scene, path, preset="ultrafast")
    return path


def assert_python_ok(code: str) -> None:
    """Run ``code`` in a fresh interpreter (e.g. to see which modules an import pulls in); it must succeed."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 pictures, dB (inf when equal)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ffmpeg_exe() -> str:
    """The ffmpeg binary of imageio-ffmpeg (v360 is the geometry reference); skips the test without one."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    try:
        ff = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        pytest.skip("no ffmpeg binary")
    if not Path(ff).is_file():
        pytest.skip("no ffmpeg binary")
    return ff
