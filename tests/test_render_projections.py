"""Rendering straight from cubemap / EAC frames (``Renderer(..., projection=...)``).

The cube frames are made by ffmpeg's v360 (``v360=e:eac`` etc.) from an equirect picture: a real
panorama from ../shared/media/equirect_images when it is there, else a smooth but detailed synthetic
picture defined on the sphere. A view rendered from the cube frame must match the same view rendered
from the equirect original, and v360's own ``v360=<layout>:flat`` rendering of the cube frame.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from pan360 import geometry as geo
from pan360 import projections as pj
from pan360 import reproject
from pan360 import sphere
from pan360.errors import Pan360Error
from pan360.geometry import View
from pan360.reproject import Renderer
from tests.conftest import ffmpeg_exe, psnr

SHARED_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "media" / "equirect_images"
W, H = 2048, 1024
# Cube frames 1.5x denser than the equirect (faces of 768 pixels against its 512 per 90°), so that
# v360's resampling into the layout adds little blur to the comparison.
CUBE_SIZES = {"eac": (2304, 1536), "c3x2": (2304, 1536), "c6x1": (4608, 768)}
# (yaw, pitch, roll, h_fov, output width): a face centre, a vertical face edge, a cube corner (35.26°
# up), a corner below with roll, near the zenith, across the back (yaw 180), a wide view down across
# the bottom face's edges (a wider output, so that it does not minify the equirect either).
VIEWS = [(0, 0, 0, 90, 640), (45, 0, 0, 90, 640), (45, 35.26, 0, 90, 640), (-135, -35, 15, 90, 640),
         (30, 80, 0, 90, 640), (180, 10, 0, 90, 640), (100, -45, -20, 100, 960)]
# Towards the nadir, where v360's conversion of the panorama into the layout itself loses detail (the
# equirect rows there are oversampled and v360 does not prefilter): judged against ffmpeg's own views.
NADIR = (100, -60, -20, 110, 960)


def view(yaw, pitch, roll=0.0, h_fov=90.0, w=640, h=360) -> View:
    return View(yaw, pitch, roll, h_fov, geo.v_fov_for(h_fov, w, h))




def synthetic_panorama(w: int, h: int) -> np.ndarray:
    """Smooth colours, gradients and gratings down to ~10 equator pixels, defined on the sphere (RGB)."""
    vec = sphere.equirect_vectors(w, h)
    rng = np.random.default_rng(5)
    img = 0.5 + 0.25 * vec  # gradients
    px = 2 * np.pi / w
    for c in range(3):
        for period in (200, 60, 23, 11):
            d = rng.normal(size=3)
            d /= np.linalg.norm(d)
            img[..., c] += 0.06 * np.sin((vec @ d) / (period * px) * 2 * np.pi + rng.uniform(0, 6))
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def to_i420(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, w = rgb.shape[:2]
    yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    return yuv[:h], yuv[h : h + h // 4].reshape(h // 2, w // 2), yuv[h + h // 4 :].reshape(h // 2, w // 2)


def _v360(ff: str, src: Path, filt: str, out: Path | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
    # gbrp: v360 works on planar RGB, so no YUV conversion touches the picture
    cmd = [ff, "-v", "error", "-y", "-i", str(src), "-vf", f"format=gbrp,{filt}"]
    if out is not None:
        subprocess.run(cmd + ["-pix_fmt", "rgb24", str(out)], check=True)
        img = cv2.imread(str(out))
        assert img is not None
        return img[..., ::-1].copy()
    raw = subprocess.run(cmd + ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    assert size is not None
    return np.frombuffer(raw, np.uint8).reshape(size[1], size[0], 3)


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> dict:
    """The equirect picture (RGB, W x H) and its cube layouts made by v360, with their PNG paths."""
    ff = ffmpeg_exe()
    tmp = tmp_path_factory.mktemp("render_projections")
    picture = None
    for name in ("pannellum_examplepano.jpg", "aframe_puydesancy.jpg"):
        path = SHARED_IMAGES / name
        if path.is_file() and (img := cv2.imread(str(path))) is not None:
            picture = cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA)[..., ::-1].copy()
            break
    if picture is None:
        picture = synthetic_panorama(W, H)
    png = tmp / "equirect.png"
    cv2.imwrite(str(png), picture[..., ::-1])
    out = {"equirect": picture, "ff": ff, "png": {"equirect": png}}
    for proj, (w, h) in CUBE_SIZES.items():
        out["png"][proj] = tmp / f"{proj}.png"
        out[proj] = _v360(ff, png, f"v360=e:{proj}:w={w}:h={h}", out["png"][proj])
        assert out[proj].shape == (h, w, 3)
    return out


# -- against the equirect original ------------------------------------------------------------------

@pytest.mark.parametrize("proj", sorted(CUBE_SIZES))
def test_cube_views_match_equirect_views(frames, proj):
    """The view from the cube frame against the view from the equirect frame it was made from.

    v360 reads its equirect input on its own grid (pan360.geometry, grid "v360"), so the equirect
    views are rendered on that grid too. No prefilter: the cube frame is denser than the equirect, so
    the two would box-filter different amounts; the views do not minify either source much.
    """
    src = frames[proj]
    eq_yuv, cube_yuv = to_i420(frames["equirect"]), to_i420(src)
    report = []
    for yaw, pitch, roll, fov, ow in VIEWS:
        oh = ow * 9 // 16
        v = view(yaw, pitch, roll, fov, ow, oh)
        eq = Renderer(W, H, ow, oh, device="cpu", grid="v360", prefilter=False)
        cube = Renderer(src.shape[1], src.shape[0], ow, oh, device="cpu", projection=proj, prefilter=False)
        rgb_db = psnr(cube.render_rgb(src, v), eq.render_rgb(frames["equirect"], v))
        a, b = cube.render_yuv420(*cube_yuv, v), eq.render_yuv420(*eq_yuv, v)
        y_db = psnr(a[0], b[0])
        uv_db = psnr(np.concatenate([a[1], a[2]]), np.concatenate([b[1], b[2]]))
        report.append(f"({yaw},{pitch},{roll},{fov}) rgb {rgb_db:.1f} Y {y_db:.1f} UV {uv_db:.1f}")
        assert min(rgb_db, y_db, uv_db) >= 35.0, report[-1]
    # Near the nadir: as close to the equirect view as ffmpeg's own flat view of the layout is to its
    # flat view of the equirect (what v360's layout conversion left), or >= 35 dB.
    yaw, pitch, roll, fov, ow = NADIR
    oh = ow * 9 // 16
    v = view(yaw, pitch, roll, fov, ow, oh)
    flat = f"flat:yaw={yaw}:pitch={pitch}:roll={roll}:h_fov={fov}:v_fov={v.v_fov}:w={ow}:h={oh}"
    ff_db = psnr(_v360(frames["ff"], frames["png"][proj], f"v360={proj}:{flat}", size=(ow, oh)),
                 _v360(frames["ff"], frames["png"]["equirect"], f"v360=e:{flat}", size=(ow, oh)))
    eq = Renderer(W, H, ow, oh, device="cpu", grid="v360", prefilter=False)
    cube = Renderer(src.shape[1], src.shape[0], ow, oh, device="cpu", projection=proj, prefilter=False)
    ours_db = psnr(cube.render_rgb(src, v), eq.render_rgb(frames["equirect"], v))
    report.append(f"nadir {NADIR[:4]} rgb {ours_db:.1f} (ffmpeg's {ff_db:.1f})")
    assert ours_db >= min(35.0, ff_db - 0.5), report[-1]
    print(proj, "; ".join(report))


# -- against ffmpeg's own rendering of the cube frame -------------------------------------------------

@pytest.mark.parametrize("proj", sorted(CUBE_SIZES))
def test_cube_views_match_v360_flat(frames, proj):
    """``v360=<layout>:flat`` of the same cube frame. For cube input pan360's source positions are
    v360's (tests/test_projections.py) and so is the output grid, so grid "v360" changes nothing here;
    the pictures differ at face edges (v360 takes the bilinear window from the neighbouring face, pan360
    clamps to the face's own pixels) and in v360's 14-bit weights."""
    src = frames[proj]
    report = []
    for yaw, pitch, roll, fov, ow in VIEWS:
        oh = ow * 9 // 16
        v = view(yaw, pitch, roll, fov, ow, oh)
        r = Renderer(src.shape[1], src.shape[0], ow, oh, device="cpu", projection=proj, prefilter=False)
        rv = Renderer(src.shape[1], src.shape[0], ow, oh, device="cpu", projection=proj, prefilter=False, grid="v360")
        vf = (f"v360={proj}:flat:yaw={yaw}:pitch={pitch}:roll={roll}:h_fov={fov}:v_fov={v.v_fov}"
              f":w={ow}:h={oh}")
        ref = _v360(frames["ff"], frames["png"][proj], vf, size=(ow, oh))
        ours = r.render_rgb(src, v)
        assert np.array_equal(ours, rv.render_rgb(src, v))
        report.append(f"({yaw},{pitch},{roll},{fov}) {psnr(ours, ref):.1f}")
        assert psnr(ours, ref) >= 45.0, report[-1]
    print(proj, "v360 flat:", "; ".join(report))


# -- the backends ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("proj", sorted(CUBE_SIZES))
def test_opencv_and_torch_agree(frames, proj):
    pytest.importorskip("torch")
    src = frames[proj]
    yuv = to_i420(src)
    for yaw, pitch, roll, fov in [(45, 35.26, 0, 90), (180, -70, 20, 100), (-100, 10, 0, 150)]:
        v = view(yaw, pitch, roll, fov, 320, 180)
        cpu = Renderer(src.shape[1], src.shape[0], 320, 180, device="cpu", projection=proj)
        tor = Renderer(src.shape[1], src.shape[0], 320, 180, device="cpu", backend="torch", projection=proj)
        a, b = cpu.render_rgb(src, v), tor.render_rgb(src, v)
        assert psnr(a, b) > 40.0 and np.abs(a.astype(int) - b.astype(int)).mean() < 1.0, (yaw, pitch)
        assert all(psnr(p, q) > 40.0 for p, q in zip(cpu.render_yuv420(*yuv, v), tor.render_yuv420(*yuv, v)))
        # the torch tables are exact: the OpenCV ones interpolate within MAX_TABLE_ERROR of them
        assert np.abs(cpu.tables(v) - tor.tables(v)).max() < reproject.MAX_TABLE_ERROR


# -- equirect is untouched ------------------------------------------------------------------------------

def test_equirect_path_is_unchanged():
    """projection="equirect" takes the longitude/latitude coarse tables and BORDER_WRAP, as before."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (512, 1024, 3), dtype=np.uint8)
    v = view(40, -15, 5, 90, 320, 180)
    r = Renderer(1024, 512, 320, 180, device="cpu", projection="equirect")
    assert r._cube == [] and len(r._coarse) == len(reproject.NODE_STEPS)
    coarse = reproject._CoarseTables(320, 180, reproject.NODE_STEPS[0])
    lon, lat = coarse.angles(v, "ypr", reproject.MAX_TABLE_ERROR * 2 * math.pi / 1024)
    ref = coarse.interpolate(lon, lat, (1024, 512), "centre", False)
    assert np.array_equal(r.tables(v), ref)
    out = cv2.remap(img, ref, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    assert np.array_equal(r.render_rgb(img, v), out)
    assert np.array_equal(Renderer(1024, 512, 320, 180, device="cpu").render_rgb(img, v), out)


# -- the coarse tables: exact cells at face edges ---------------------------------------------------------

def _face_of_position(proj: str, x: np.ndarray, y: np.ndarray, w: int, h: int, plane: tuple[int, int]) -> np.ndarray:
    """Face (c3x2/c6x1) whose pixel centres in a plane of a ``w x h`` frame span each position, -1 if
    none. The plane holds the frame scaled (a chroma plane, a box-downscaled frame); for the frame
    itself these are :func:`pan360.projections.face_bounds`."""
    pl = pj.face_placement(proj, w, h)
    out = np.full(x.shape, -1)
    for k, name in enumerate(pj.FACES):
        x0, x1 = pl.lo_x[k] * plane[0], pl.hi_x[k] * plane[0] - 1
        y0, y1 = pl.lo_y[k] * plane[1], pl.hi_y[k] * plane[1] - 1
        if plane == (w, h):
            b = pj.face_bounds(proj, name, w, h)
            assert (x0, x1, y0, y1) == pytest.approx((b[0], b[1] - 1, b[2], b[3] - 1), abs=1e-9)
        e = 1e-3  # the float32 table's rounding of the bounds
        out[(x >= x0 - e) & (x <= x1 + e) & (y >= y0 - e) & (y <= y1 + e)] = k
    return out


@pytest.mark.parametrize("proj,size", [("c3x2", (1536, 1024)), ("c3x2", (770, 515)), ("eac", (1536, 1024)),
                                       ("eac", (1535, 1022)), ("c6x1", (3072, 512))])
def test_coarse_tables_match_exact_tables(proj, size):
    """Cells across face edges and at cube corners are computed per pixel; every position agrees with
    the float64 per-pixel table within 0.1 source pixel, for the full and the half-size (chroma) plane
    and for a box-downscaled plane, and (c3x2, c6x1) lies on the direction's own face."""
    w, h = size
    r = Renderer(w, h, 640, 360, device="cpu", projection=proj)
    for v in [view(45, 0), view(45, 35.26), view(-135, -35, 15), view(180, 10), view(10, 89), view(30, 20, 0, 150)]:
        for plane, half in [((w, h), False), (((w + 1) // 2, (h + 1) // 2), True), ((round(w / 3), round(h / 3)), False)]:
            t = r.tables(v, plane, half)
            ref = r._cube[0].exact(v, "ypr", plane, half)
            assert t.shape == ref.shape
            assert np.abs(t - ref).max() < 0.1, (v, plane, half, np.abs(t - ref).max())
            if proj != "eac":  # no position (and so no bilinear tap) past its own face's pixel centres
                ow, oh = (320, 180) if half else (640, 360)
                rays = geo.camera_rays(ow, oh, v.h_fov, v.v_fov) @ geo.rotation_matrix(v.yaw, v.pitch, v.roll).T
                face, _, _ = pj.vec_to_face(rays)
                assert np.array_equal(_face_of_position(proj, t[..., 0], t[..., 1], w, h, plane), face)
    # a view straddling the front/right edge and a cube corner: exact cells of both kinds
    def prepared(v: View) -> tuple[reproject._CubeTables, dict]:
        for cube in r._cube:  # the first node step whose interpolation is accurate enough, as Renderer
            state = cube.prepare(v, "ypr", [(w, h)])
            if state is not None:
                return cube, state
        raise AssertionError("no coarse table")

    cube, state = prepared(view(45, 35.26))
    assert state["pair"][0].size > 50 and state["generic"][0].size >= 1
    assert 0 < cube.last_exact_cells < 0.1 * (cube.gw - 1) * (cube.gh - 1)
    cube, state = prepared(view(0, 0, 0, 60))  # inside one face: none
    assert cube.last_exact_cells == 0


def test_cube_views_across_edges_are_continuous():
    """A face-edge-crossing view of a picture smooth on the sphere has no seam: neighbouring output
    pixels differ as little across the face edges as elsewhere."""
    w, h = 1536, 1024
    dirs = pj.pixel_grid_dirs("c3x2", w, h)
    smooth = np.clip(128 + 100 * dirs[..., 0] + 20 * dirs[..., 2], 0, 255).astype(np.uint8)
    img = np.dstack([smooth] * 3)
    r = Renderer(w, h, 400, 300, device="cpu", projection="c3x2")
    for v in [view(45, 35.26, 0, 90, 400, 300), view(180, -45, 30, 90, 400, 300)]:
        out = r.render_rgb(img, v)[..., 0].astype(int)
        assert np.abs(np.diff(out, axis=1)).max() <= 3 and np.abs(np.diff(out, axis=0)).max() <= 3


# -- prefilter and arguments ------------------------------------------------------------------------------

def test_equirect_width_and_prefilter():
    assert pj.equirect_width("equirect", 3840, 1920) == 3840
    assert pj.equirect_width("c3x2", 2880, 1920) == 3840
    assert pj.equirect_width("c6x1", 5760, 960) == 3840
    assert pj.equirect_width("eac", 2884, 1924) == 3840
    # a one-pixel checkerboard seen minified 4x averages to grey with the prefilter, aliases without
    w, h = 3072, 2048
    board = ((np.indices((h, w)).sum(0) % 2) * 255).astype(np.uint8)
    img = np.dstack([board] * 3)
    v = view(20, 10, 0, 120, 256, 144)
    assert reproject.prefilter_factor(pj.equirect_width("c3x2", w, h), 256, 120) >= 3
    smooth = Renderer(w, h, 256, 144, device="cpu", projection="c3x2").render_rgb(img, v)
    raw = Renderer(w, h, 256, 144, device="cpu", projection="c3x2", prefilter=False).render_rgb(img, v)
    assert smooth.std() < 10 < raw.std()


def test_dir_to_layout_is_dir_to_pixel():
    rng = np.random.default_rng(2)
    vec = rng.normal(size=(5000, 3))
    for proj, (w, h) in [("eac", (770, 515)), ("c3x2", (770, 515)), ("c6x1", (1001, 170))]:
        face, X, Y = pj.dir_to_layout(vec, pj.face_placement(proj, w, h))
        x, y = pj.dir_to_pixel(vec, proj, w, h)
        np.testing.assert_allclose(X * w - 0.5, x, atol=1e-9)
        np.testing.assert_allclose(Y * h - 0.5, y, atol=1e-9)
        np.testing.assert_array_equal(face, pj.vec_to_face(vec)[0])


def test_projection_errors():
    with pytest.raises(Pan360Error):
        Renderer(600, 400, 64, 36, device="cpu", projection="cubemap")
    with pytest.raises(Pan360Error):
        pj.face_placement("equirect", 64, 32)
    r = Renderer(600, 400, 64, 36, device="cpu", projection="c3x2")
    with pytest.raises(Pan360Error):  # the whole cube frame is the input size
        r.render_rgb(np.zeros((400, 300, 3), np.uint8), view(0, 0, 0, 90, 64, 36))
