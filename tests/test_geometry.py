"""Geometry: gnomonic rays, v360 rotations, remap tables, sizes (pan360.geometry)."""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest

from pan360 import geometry as geo
from pan360 import sphere
from pan360.errors import Pan360Error
from pan360.geometry import View
from tests.conftest import ffmpeg_exe


def view(yaw=0.0, pitch=0.0, roll=0.0, h_fov=90.0, w=1280, h=720) -> View:
    return View(yaw, pitch, roll, h_fov, geo.v_fov_for(h_fov, w, h))


def test_v_fov_for_square_pixels():
    assert geo.v_fov_for(90.0, 1280, 720) == pytest.approx(58.7155, abs=1e-3)
    assert geo.v_fov_for(90.0, 1000, 1000) == pytest.approx(90.0)
    v = geo.v_fov_for(75.0, 720, 1280)  # 9:16 portrait: taller than wide
    assert v > 75.0 and math.tan(math.radians(v) / 2) == pytest.approx(math.tan(math.radians(37.5)) * 1280 / 720)
    with pytest.raises(Pan360Error):
        geo.v_fov_for(180.0, 16, 9)


def test_native_width_and_default_size():
    # 2 tan(h/2) W / (2π): 3840 at 90° -> 1222; the anchors' 5760 at 65.5° -> ~1180.
    assert geo.native_output_width(3840, 90.0) == 1222
    assert abs(geo.native_output_width(5760, 65.5) - 1180) <= 2
    for in_w, fov in [(3840, 90.0), (1920, 75.0), (7680, 100.0), (640, 60.0)]:
        w, h = geo.default_output_size(in_w, fov)
        assert w % 2 == 0 and h % 2 == 0
        assert w <= max(16, geo.native_output_width(in_w, fov)) and w <= geo.DEFAULT_MAX_WIDTH
        assert w / h == pytest.approx(16 / 9, rel=0.02)


def test_rotation_matrix_is_a_rotation_and_validates_order():
    for order in ["ypr", "yrp", "pyr", "pry", "ryp", "rpy"]:
        r = geo.rotation_matrix(33.0, -21.0, 12.0, order)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0)
    with pytest.raises(Pan360Error):
        geo.rotation_matrix(0, 0, 0, "yyr")


@pytest.mark.parametrize("yaw,pitch", [(0, 0), (90, 0), (-90, 0), (180, 0), (40, -15), (-170, 60), (10, 89.5)])
def test_view_centre_looks_at_yaw_pitch(yaw, pitch):
    # For any roll, the image centre sees exactly (yaw, pitch): yaw positive right, pitch positive up.
    for roll in (0.0, 25.0, -60.0):
        y, p = geo.view_pixel_to_dir(639.5, 359.5, 1280, 720, view(yaw, pitch, roll))
        assert sphere.angular_distance(y, p, yaw, pitch) < 1e-9


def test_signs_right_is_right_and_up_is_up():
    v = view(0, 0)
    y_right, _ = geo.view_pixel_to_dir(1279, 359.5, 1280, 720, v)
    _, p_top = geo.view_pixel_to_dir(639.5, 0, 1280, 720, v)
    assert 44.9 < y_right < 45.0  # the last pixel centre, half a pixel inside the 45° edge
    assert p_top > 0
    # Positive roll (v360, checked against ffmpeg below): the camera rolls clockwise, its top edge tilts
    # to the right, so the top edge's centre sees a direction to the right; the picture turns the other way.
    yr, pr = geo.view_pixel_to_dir(639.5, 0, 1280, 720, view(0, 0, 20))
    assert yr > 0 and pr > 0


def test_pixel_direction_round_trip():
    rng = np.random.default_rng(1)
    for _ in range(20):
        v = View(*rng.uniform([-180, -89, -180, 30], [180, 89, 180, 120]), 0.0)
        v = View(v.yaw, v.pitch, v.roll, v.h_fov, geo.v_fov_for(v.h_fov, 640, 360))
        xs, ys = rng.uniform(-0.5, 639.5, 50), rng.uniform(-0.5, 359.5, 50)
        yaw, pitch = geo.view_pixel_to_dir(xs, ys, 640, 360, v)
        x2, y2, vis = geo.dir_to_view_pixel(yaw, pitch, 640, 360, v)
        assert vis.all()
        np.testing.assert_allclose(x2, xs, atol=1e-7)
        np.testing.assert_allclose(y2, ys, atol=1e-7)
    # Behind the camera: not visible, no coordinates.
    x, y, vis = geo.dir_to_view_pixel(180.0, 0.0, 640, 360, view(0, 0))
    assert not vis and np.isnan(x) and np.isnan(y)


@pytest.mark.parametrize("in_w,in_h", [(2048, 1024), (1920, 1080), (1000, 700)])
def test_remap_table_matches_sphere_pixels_any_aspect(in_w, in_h):
    # Every output pixel samples the source pixel that sphere.dir_to_pixel gives for its direction.
    v = view(100.0, 30.0, 45.0, 100.0, 320, 180)
    mx, my = geo.remap_tables(in_w, in_h, 320, 180, v)
    xs, ys = np.meshgrid(np.arange(320), np.arange(180))
    yaw, pitch = geo.view_pixel_to_dir(xs, ys, 320, 180, v)
    px, py = sphere.dir_to_pixel(yaw, pitch, in_w, in_h)
    dx = np.abs(np.mod(mx - px + in_w / 2, in_w) - in_w / 2)
    assert dx.max() < 1e-3 and np.abs(my - py).max() < 1e-3
    # yaw 90 at the view centre lands on the column at 3/4 of the width whatever the aspect.
    cx, cy = geo.remap_tables(in_w, in_h, 2, 2, View(90.0, 0.0, 0.0, 1.0, 1.0))
    assert cx.mean() == pytest.approx(0.75 * in_w - 0.5, abs=1e-3)
    assert cy.mean() == pytest.approx(0.5 * in_h - 0.5, abs=1e-3)


def test_remap_table_rows_clamped_at_poles():
    mx, my = geo.remap_tables(512, 256, 64, 64, View(0.0, 90.0, 0.0, 90.0, 90.0))
    assert my.min() >= 0.0 and np.isfinite(mx).all()
    assert (mx >= -0.5).all() and (mx < 512 - 0.5).all()


# -- agreement with ffmpeg v360: sample positions measured with coordinate-ramp images ------------


def _v360_positions(ff, in_w, in_h, opts, ow, oh):
    """Where v360 samples: render 16-bit ramps x*k and y*k; bilinear sampling of a ramp is exact."""
    k = 65535 // max(in_w, in_h)
    out = []
    for ramp in (np.arange(in_w)[None, :].repeat(in_h, 0), np.arange(in_h)[:, None].repeat(in_w, 1)):
        cmd = [ff, "-v", "error", "-f", "rawvideo", "-pix_fmt", "gray16le", "-s", f"{in_w}x{in_h}", "-i", "-",
               "-vf", f"v360=e:flat:{opts}:w={ow}:h={oh}", "-f", "rawvideo", "-pix_fmt", "gray16le", "-"]
        raw = subprocess.run(cmd, input=(ramp * k).astype("<u2").tobytes(), capture_output=True, check=True).stdout
        # v360's bilinear weights sum to 16385 / 2**14 (libavfilter/vf_v360.c): undo that gain.
        out.append(np.frombuffer(raw, "<u2").reshape(oh, ow) * (16384 / 16385) / k)
    return out


@pytest.mark.parametrize(
    "in_w,in_h,yaw,pitch,roll,h_fov,rorder",
    [
        (1000, 500, 40, -15, 0, 90, "ypr"),
        (1000, 700, 40, -15, 20, 90, "ypr"),
        (1000, 700, 40, -15, -20, 90, "ypr"),
        (1000, 700, -170, 60, 20, 75, "ypr"),
        (1000, 700, -170, 60, 20, 75, "rpy"),
        (1000, 700, 30, 20, 40, 75, "pyr"),
        (1920, 1080, 100, 30, 45, 100, "ypr"),
    ],
)
def test_sample_positions_match_ffmpeg_v360(in_w, in_h, yaw, pitch, roll, h_fov, rorder):
    ff = ffmpeg_exe()
    ow, oh = 96, 54
    vf = geo.v_fov_for(h_fov, ow, oh)
    opts = f"yaw={yaw}:pitch={pitch}:roll={roll}:h_fov={h_fov}:v_fov={vf}:rorder={rorder}"
    sx, sy = _v360_positions(ff, in_w, in_h, opts, ow, oh)
    v = View(yaw, pitch, roll, h_fov, vf)
    mx, my = geo.remap_tables(in_w, in_h, ow, oh, v, rorder, grid="v360")
    ok = (mx > 1) & (mx < in_w - 2) & (my > 1) & (my < in_h - 2)  # away from the seam and the pole rows
    assert ok.mean() > 0.8
    # v360 computes in float32 and quantises its bilinear weights: agreement to ~0.1 source pixel.
    assert np.abs(sx - mx)[ok].max() < 0.15
    assert np.abs(sy - my)[ok].max() < 0.15
    # pan360's own pixel-centre grid differs from v360's by at most half a source pixel.
    cx, cy = geo.remap_tables(in_w, in_h, ow, oh, v, rorder)
    assert np.abs(np.mod(cx - mx + in_w / 2, in_w) - in_w / 2).max() <= 0.5 + 1e-3
    assert np.abs(cy - my).max() <= 0.5 + 1e-3
