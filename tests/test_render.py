"""Rendering: OpenCV and torch backends, agreement with ffmpeg v360, seam, poles, yuv420p, the pipeline."""

from __future__ import annotations

import subprocess
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from pan360 import geometry as geo
from pan360.errors import Pan360Error
from pan360.geometry import View
from pan360.rendering import render_video
from pan360.reproject import Renderer
from tests.conftest import psnr


def pattern(w: int, h: int) -> np.ndarray:
    """Smooth colourful equirect test picture with sharp lines and text (RGB uint8)."""
    x, y = np.meshgrid((np.arange(w) + 0.5) / w, (np.arange(h) + 0.5) / h)
    r = 128 + 100 * np.sin(2 * np.pi * 3 * x + 1) * np.cos(2 * np.pi * y)
    g = 128 + 100 * np.sin(2 * np.pi * (4 * y + 2 * x))
    b = 128 + 100 * np.cos(2 * np.pi * 7 * x) * np.sin(5 * np.pi * y)
    img = np.clip(np.dstack([r, g, b]), 0, 255).astype(np.uint8)
    img[(np.arange(h) % 64) < 3] = 255
    img[:, (np.arange(w) % 96) < 2] = 0
    cv2.putText(img, "pan360", (w // 2 - 200, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 4, (255, 255, 0), 8)
    return img



def view(yaw, pitch, roll=0.0, h_fov=90.0, w=1280, h=720) -> View:
    return View(yaw, pitch, roll, h_fov, geo.v_fov_for(h_fov, w, h))


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    img = pattern(2048, 1024)
    png = tmp_path_factory.mktemp("render") / "equirect.png"
    cv2.imwrite(str(png), img[..., ::-1])
    return img, png


@pytest.mark.parametrize(
    "yaw,pitch,roll,min_centre",
    [(40, -15, 0, 33.0), (-170, 60, 20, 26.0), (120, -89, -30, 26.0)],
)
def test_agrees_with_ffmpeg_v360(picture, yaw, pitch, roll, min_centre):
    ff = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()
    img, png = picture
    w, h = 1280, 720
    v = view(yaw, pitch, roll)
    vf = f"v360=e:flat:yaw={yaw}:pitch={pitch}:roll={roll}:h_fov=90:v_fov={v.v_fov}:w={w}:h={h}"
    raw = subprocess.run([ff, "-v", "error", "-i", str(png), "-vf", vf, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    ref = np.frombuffer(raw, np.uint8).reshape(h, w, 3)
    # v360's own source grid: the same sample positions, so nearly the same picture.
    same = Renderer(2048, 1024, w, h, device="cpu", grid="v360").render_rgb(img, v)
    assert psnr(same, ref) > 45.0
    # pan360's pixel-centre grid moves samples by < 0.5 source pixel: >= 30 dB on natural pictures,
    # lower on this test card's 2-pixel lines far from the centre column.
    own = Renderer(2048, 1024, w, h, device="cpu").render_rgb(img, v)
    assert psnr(own, ref) > min_centre


def test_opencv_and_torch_give_the_same_picture(picture):
    pytest.importorskip("torch")
    img = picture[0]
    for v, size in [(view(40, -15, 0, 90, 640, 360), (640, 360)), (view(-170, 60, 20, 75, 640, 360), (640, 360)),
                    (view(10, 89, 0, 90, 320, 320), (320, 320)), (view(0, 0, 0, 120, 256, 144), (256, 144))]:
        cpu = Renderer(2048, 1024, *size, device="cpu").render_rgb(img, v)
        tor = Renderer(2048, 1024, *size, device="cpu", backend="torch").render_rgb(img, v)
        assert psnr(cpu, tor) > 40.0, v
        assert np.abs(cpu.astype(int) - tor.astype(int)).mean() < 1.0


def test_coarse_tables_match_exact_tables():
    r = Renderer(3840, 1920, 1280, 720, device="cpu")
    for v in [view(40, -15), view(-179, 30, 10), view(100, 55), view(0, 0, 0, 120)]:
        t = r.tables(v)
        mx, my = geo.remap_tables(3840, 1920, 1280, 720, v)
        lat = np.radians(90.0 - (my + 0.5) * 180.0 / 1920)
        dx = np.abs(np.mod(t[..., 0] - mx + 1920, 3840) - 1920) * np.cos(lat)
        assert dx.max() < 0.1 and np.abs(t[..., 1] - my).max() < 0.1


def test_no_seam_at_180():
    # Left and right edges differ; rendering at yaw 180 must equal rendering the half-turned picture at yaw 0.
    w, h = 512, 256
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, w)[None, :]  # ramp: a jump from 255 to 0 at the seam
    img[..., 1] = (np.arange(h)[:, None] * 3) % 256
    rolled = np.roll(img, w // 2, axis=1)
    r = Renderer(w, h, 200, 100, device="cpu")
    a = r.render_rgb(img, view(180, 10, 0, 60, 200, 100))
    b = r.render_rgb(rolled, view(0, 10, 0, 60, 200, 100))
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    # On a picture that is continuous across the seam there is no discontinuity column at 180°.
    smooth = np.zeros((h, w), np.uint8)
    smooth[:] = (128 + 100 * np.cos(2 * np.pi * (np.arange(w) + 0.5) / w))[None, :].astype(np.uint8)
    out = r.render_rgb(np.dstack([smooth] * 3), view(180, 0, 0, 60, 200, 100))[..., 0].astype(int)
    assert np.abs(np.diff(out, axis=1)).max() <= 2


@pytest.mark.parametrize("pitch", [90.0, -90.0])
def test_pole_views(pitch):
    # A picture that depends on latitude only looks the same at the pole whatever the yaw: rings.
    w, h = 512, 256
    rows = (128 + 120 * np.cos(np.arange(h) * 0.7)).astype(np.uint8)
    img = np.dstack([np.repeat(rows[:, None], w, 1)] * 3)
    r = Renderer(w, h, 128, 128, device="cpu")
    out = r.render_rgb(img, view(0, pitch, 0, 90, 128, 128))
    assert r.exact_tables == 1  # the pole is in the frame: per-pixel table
    # Rotating the picture by 90° about its centre (= yaw by 90° at the pole) changes nothing.
    assert psnr(out, np.rot90(out)) > 30.0
    polar = rows[:2] if pitch > 0 else rows[-2:]  # the centre, 0.35° from the pole, shows the polar rows
    assert int(polar.min()) - 1 <= int(out[64, 64, 0]) <= int(polar.max()) + 1


def test_yuv420_and_rgb_paths_agree(picture):
    img = picture[0]
    yuv = cv2.cvtColor(img, cv2.COLOR_RGB2YUV_I420)  # (H*3/2, W): Y, then U and V quarter planes
    H, W = img.shape[:2]
    y, u, v = yuv[:H], yuv[H : H + H // 4].reshape(H // 2, W // 2), yuv[H + H // 4 :].reshape(H // 2, W // 2)
    r = Renderer(W, H, 640, 360, device="cpu")
    vw = view(-60, 20, 5, 80, 640, 360)
    oy, ou, ov = r.render_yuv420(y, u, v, vw)
    assert oy.shape == (360, 640) and ou.shape == ov.shape == (180, 320)
    ref = cv2.cvtColor(r.render_rgb(img, vw), cv2.COLOR_RGB2YUV_I420)
    assert psnr(oy, ref[:360]) > 40.0
    assert psnr(np.concatenate([ou.ravel(), ov.ravel()]), ref[360:].ravel()) > 35.0
    if pytest.importorskip("torch"):
        ty, tu, tv = Renderer(W, H, 640, 360, device="cpu", backend="torch").render_yuv420(y, u, v, vw)
        assert psnr(ty, oy) > 40.0 and psnr(tu, ou) > 40.0 and psnr(tv, ov) > 40.0


def test_prefilter_against_aliasing():
    # A one-pixel checkerboard seen minified 4x averages to grey with the prefilter, aliases without.
    w, h = 2048, 1024
    board = ((np.indices((h, w)).sum(0) % 2) * 255).astype(np.uint8)
    img = np.dstack([board] * 3)
    v = view(0, 0, 0, 120, 256, 144)
    assert geo.source_scale(w, 256, 120) > 3
    smooth = Renderer(w, h, 256, 144, device="cpu").render_rgb(img, v)
    raw = Renderer(w, h, 256, 144, device="cpu", prefilter=False).render_rgb(img, v)
    assert smooth.std() < 10 < raw.std()


def test_device_and_argument_errors():
    with pytest.raises(Pan360Error):
        Renderer(64, 32, 16, 8, device="gpu")
    with pytest.raises(Pan360Error):
        Renderer(64, 32, 16, 8, grid="corners")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        with pytest.raises(Pan360Error):
            Renderer(64, 32, 16, 8, device="cuda")
    r = Renderer(64, 32, 16, 8, device="cpu")
    with pytest.raises(Pan360Error):
        r.render_rgb(np.zeros((30, 64, 3), np.uint8), view(0, 0, 0, 90, 16, 8))


def _clip(path, w=256, h=128, n=30, fps=Fraction(25), audio=True):
    """A small equirect clip (moving bars) with a sine tone, written with PyAV."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"preset": "ultrafast"}
        as_ = c.add_stream("aac", rate=48000, layout="stereo") if audio else None
        for i in range(n):
            img = np.zeros((h, w, 3), np.uint8)
            img[:, (np.arange(w) + 4 * i) % 32 < 8] = (255, 128, 0)
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
        if as_ is not None:
            t = np.arange(int(48000 * n / fps)) / 48000
            tone = np.stack([np.sin(2 * np.pi * 440 * t)] * 2).astype(np.float32) * 0.3
            for k in range(0, tone.shape[1], 1024):
                f = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, k : k + 1024]), format="fltp", layout="stereo")
                f.sample_rate, f.pts = 48000, k
                for p in as_.encode(f):
                    c.mux(p)
            for p in as_.encode(None):
                c.mux(p)


def test_render_video_keeps_frames_times_and_audio(tmp_path):
    from pan360.media import probe, read_audio
    from pan360.paths import CameraPath

    src = tmp_path / "in.mp4"
    _clip(src)
    info = probe(src)
    t = info.frame_times
    n = len(t)
    path = CameraPath(t, np.linspace(170, 190, n), np.linspace(-10, 10, n), np.zeros(n), np.full(n, 90.0),
                      np.full(n, geo.v_fov_for(90, 160, 90)), 160, 90, float(info.fps))
    done = []
    out = tmp_path / "out.mp4"
    frames = render_video(info, path, out, preset="ultrafast", audio=read_audio(info), device="cpu",
                          progress=lambda d, total: done.append((d, total)))
    assert frames == n and done[-1] == (n, n)
    got = probe(out)
    assert (got.eye_width, got.eye_height) == (160, 90)
    np.testing.assert_allclose(got.frame_times, t, atol=1e-3)
    assert got.duration == pytest.approx(info.duration, abs=0.05)
    assert got.audio is not None


def test_render_video_errors_leave_no_thread_running(tmp_path):
    import threading

    from pan360.media import probe
    from pan360.paths import CameraPath

    src = tmp_path / "in.mp4"
    _clip(src, n=10, audio=False)
    info = probe(src)
    t = info.frame_times
    n = len(t)
    odd = CameraPath(t, np.zeros(n), np.zeros(n), np.zeros(n), np.full(n, 90.0), np.full(n, 60.0), 161, 91, 25.0)
    before = threading.active_count()
    with pytest.raises(Pan360Error):
        render_video(info, odd, tmp_path / "odd.mp4", device="cpu")
    assert threading.active_count() == before
