"""Input layouts (pan360.projections): equirect, eac, c3x2, c6x1 against ffmpeg's v360.

The layouts' ground truth is ffmpeg's v360 itself, measured two ways with coordinate ramps (16-bit
pictures whose value is the pixel's column or row; bilinear sampling of a ramp returns the sampled
position): where v360 *reads* a layout (``v360=<layout>:e``) and which direction v360 *writes* to each
pixel of a layout (``v360=e:<layout>``). A real picture then goes equirect -> layout (ffmpeg) ->
equirect (:func:`to_equirect`) and must come back close to the original.
"""

from __future__ import annotations

import itertools
import math
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from pan360 import geometry as geo
from pan360 import projections as pj
from pan360 import sphere
from pan360.errors import Pan360Error
from tests.conftest import ffmpeg_exe

CUBES = ("eac", "c3x2", "c6x1")

# The layouts as this test expects them (v360's defaults): (columns, rows, face -> (column, row)).
SLOTS = {
    "c3x2": (3, 2, {"r": (0, 0), "l": (1, 0), "u": (2, 0), "d": (0, 1), "f": (1, 1), "b": (2, 1)}),
    "c6x1": (6, 1, {"r": (0, 0), "l": (1, 0), "u": (2, 0), "d": (3, 0), "f": (4, 0), "b": (5, 0)}),
    "eac": (3, 2, {"l": (0, 0), "f": (1, 0), "r": (2, 0), "d": (0, 1), "b": (1, 1), "u": (2, 1)}),
}
# Face centres (x forward, y left, z up) and the world directions seen towards the picture's right and
# bottom: upright faces; EAC turns its bottom row so the strip down-back-up is continuous.
NORMAL = {"f": (1, 0, 0), "b": (-1, 0, 0), "l": (0, 1, 0), "r": (0, -1, 0), "u": (0, 0, 1), "d": (0, 0, -1)}
UPRIGHT = {
    "f": ((0, -1, 0), (0, 0, -1)), "r": ((-1, 0, 0), (0, 0, -1)), "b": ((0, 1, 0), (0, 0, -1)),
    "l": ((1, 0, 0), (0, 0, -1)), "u": ((0, -1, 0), (1, 0, 0)), "d": ((0, -1, 0), (-1, 0, 0)),
}
EAC_TURNED = {"d": ((-1, 0, 0), (0, 1, 0)), "b": ((0, 0, 1), (0, 1, 0)), "u": ((1, 0, 0), (0, 1, 0))}
SIZES = {"equirect": [(1024, 512), (1920, 1080)], "eac": [(768, 512), (770, 515)],
         "c3x2": [(768, 512), (770, 515)], "c6x1": [(1536, 256), (1001, 170)]}


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def orientation(proj: str, face: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return EAC_TURNED[face] if proj == "eac" and face in EAC_TURNED else UPRIGHT[face]


def face_extent(proj: str, face: str, w: int, h: int) -> tuple[float, float, float, float]:
    """Continuous extent (x0, x1, y0, y1) of a face's picture, OpenCV pixel coordinates."""
    cols, rows, slots = SLOTS[proj]
    c, r = slots[face]
    if proj == "eac":  # v360: a 2-pixel pad at the frame's left/right and at each row's top/bottom
        span = (w - 4) / 3
        return 2 + c * span - 0.5, 2 + (c + 1) * span - 0.5, r * h / 2 + 1.5, (r + 1) * h / 2 - 2.5
    return (math.ceil(c * w / cols) - 0.5, math.ceil((c + 1) * w / cols) - 0.5,
            math.ceil(r * h / rows) - 0.5, math.ceil((r + 1) * h / rows) - 0.5)


def angle(a, b) -> np.ndarray:
    return np.radians(sphere.vec_angle(a, b))


def special_directions() -> np.ndarray:
    """Face centres, edge and corner directions of the cube, the ±180° seam and the poles."""
    s = [(x, y, z) for x in (-1, 0, 1) for y in (-1, 0, 1) for z in (-1, 0, 1) if (x, y, z) != (0, 0, 0)]
    edges = [(1, 1, t) for t in (-0.7, 0.2, 1)] + [(-1, t, 1) for t in (-1, 0.5)] + [(t, -1, -1) for t in (0.3, -0.9)]
    seam = sphere.dir_to_vec(180.0, np.array([-89.9, -45.0, -30.0, 0.0, 35.26, 60.0, 89.9]))
    return np.concatenate([unit(s), unit(edges), seam, [[0, 0, 1.0], [0, 0, -1.0]]])


# -- layout: where each face is and which way up -----------------------------------------------------

@pytest.mark.parametrize("proj", CUBES)
def test_face_centres_and_orientation(proj):
    w, h = SIZES[proj][0]
    for face, n in NORMAL.items():
        x0, x1, y0, y1 = face_extent(proj, face, w, h)
        x, y = pj.dir_to_pixel(np.array(n, float), proj, w, h)
        assert x == pytest.approx((x0 + x1) / 2, abs=1e-9) and y == pytest.approx((y0 + y1) / 2, abs=1e-9)
        right, down = orientation(proj, face)
        xr, yr = pj.dir_to_pixel(unit(np.add(n, np.multiply(0.2, right))), proj, w, h)
        xd, yd = pj.dir_to_pixel(unit(np.add(n, np.multiply(0.2, down))), proj, w, h)
        assert xr - x > 10 and abs(yr - y) < 1e-9, (face, xr - x, yr - y)
        assert yd - y > 10 and abs(xd - x) < 1e-9, (face, xd - x, yd - y)


@pytest.mark.parametrize("proj", CUBES)
def test_face_bounds(proj):
    w, h = SIZES[proj][1]
    owner = np.zeros((h, w), int)
    for face in pj.FACES:
        x0, x1, y0, y1 = pj.face_bounds(proj, face, w, h)
        owner[y0:y1, x0:x1] += 1
        # every pixel centre inside the bounds sees a direction on that face (EAC pads: its neighbours)
        xs, ys = np.meshgrid(np.arange(x0, x1), np.arange(y0, y1))
        seen, _, _ = pj.vec_to_face(pj.pixel_to_dir(xs, ys, proj, w, h))
        share = np.mean(seen == pj.FACES.index(face))
        assert share == 1.0 if proj != "eac" else share > 0.97
        if proj != "eac":
            assert (x0 - 0.5, x1 - 0.5, y0 - 0.5, y1 - 0.5) == face_extent(proj, face, w, h)
    assert (owner == 1).all()  # the faces tile the frame
    with pytest.raises(Pan360Error):
        pj.face_bounds("equirect", "f", w, h)


# -- agreement with ffmpeg v360, measured with coordinate ramps -------------------------------------


def _v360_positions(ff: str, in_w: int, in_h: int, vf: str, ow: int, oh: int) -> list[np.ndarray]:
    """Source (x, y) v360 samples for each output pixel: filter 16-bit ramps of x and of y."""
    k = 65535 // max(in_w, in_h)
    out = []
    for ramp in (np.arange(in_w)[None, :].repeat(in_h, 0), np.arange(in_h)[:, None].repeat(in_w, 1)):
        cmd = [ff, "-v", "error", "-f", "rawvideo", "-pix_fmt", "gray16le", "-s", f"{in_w}x{in_h}", "-i", "-",
               "-vf", vf, "-f", "rawvideo", "-pix_fmt", "gray16le", "-"]
        raw = subprocess.run(cmd, input=(ramp * k).astype("<u2").tobytes(), capture_output=True, check=True).stdout
        # v360's bilinear weights sum to 16385 / 2**14 (libavfilter/vf_v360.c): undo that gain.
        out.append(np.frombuffer(raw, "<u2").reshape(oh, ow) * (16384 / 16385) / k)
    return out


@pytest.mark.parametrize("proj,w,h", [(p, *s) for p in CUBES for s in SIZES[p]])
def test_dir_to_pixel_is_where_v360_reads(proj, w, h):
    """``v360=<layout>:e``: the layout position v360 samples for each equirect output pixel."""
    ff = ffmpeg_exe()
    ow, oh = 360, 180
    sx, sy = _v360_positions(ff, w, h, f"v360={proj}:e:w={ow}:h={oh}", ow, oh)
    # v360 writes an equirect frame on pan360's pixel-centre grid (checked with v360=e:e and the
    # known v360 input grid of pan360.geometry), so its output pixels see sphere.equirect_vectors.
    mx, my = pj.dir_to_pixel(sphere.equirect_vectors(ow, oh), proj, w, h)
    if proj == "eac":  # v360 clamps its window to the frame, nothing else
        ok = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    else:  # away from face edges, where v360 fetches the window from the neighbouring face
        ok = np.zeros(mx.shape, bool)
        face, _, _ = pj.vec_to_face(sphere.equirect_vectors(ow, oh))
        for k, name in enumerate(pj.FACES):
            x0, x1, y0, y1 = pj.face_bounds(proj, name, w, h)
            ok |= (face == k) & (mx >= x0) & (mx <= x1 - 1) & (my >= y0) & (my <= y1 - 1)
    assert ok.mean() > 0.9
    err = np.hypot(sx - mx, sy - my)[ok]
    assert np.median(err) < 0.03 and err.max() < 0.15, (np.median(err), err.max())  # v360 is float32


@pytest.mark.parametrize("proj,w,h", [(p, *s) for p in CUBES for s in SIZES[p]])
def test_pixel_to_dir_is_what_v360_writes(proj, w, h):
    """``v360=e:<layout>``: the equirect position v360 samples for every layout pixel, pads included."""
    ff = ffmpeg_exe()
    in_w, in_h = 1000, 500
    sx, sy = _v360_positions(ff, in_w, in_h, f"v360=e:{proj}:w={w}:h={h}", w, h)
    yaw, pitch = sphere.vec_to_dir(pj.pixel_grid_dirs(proj, w, h))
    # v360 reads an equirect input on its own grid (pan360.geometry, grid "v360").
    mx, my = geo.angles_to_source(np.radians(yaw), np.radians(pitch), in_w, in_h, grid="v360")
    ok = (mx > 1) & (mx < in_w - 2) & (my > 1) & (my < in_h - 2)  # away from the seam and the pole rows
    assert ok.mean() > 0.99
    err = np.hypot(sx - mx, sy - my)[ok]
    assert np.median(err) < 0.03 and err.max() < 0.15, (np.median(err), err.max())


# -- round trips, frame coverage, seams ---------------------------------------------------------------

@pytest.mark.parametrize("proj,w,h", [(p, *s) for p in pj.PROJECTIONS for s in SIZES[p]])
def test_direction_round_trip_and_inside_frame(proj, w, h):
    rng = np.random.default_rng(3)
    vec = np.concatenate([unit(rng.normal(size=(20000, 3))), special_directions()])
    x, y = pj.dir_to_pixel(vec, proj, w, h)
    assert np.all((x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5))
    back = pj.pixel_to_dir(x, y, proj, w, h)
    np.testing.assert_allclose(np.linalg.norm(back, axis=-1), 1.0, atol=1e-12)
    assert angle(back, vec).max() < 1e-8


@pytest.mark.parametrize("proj,w,h", [(p, *s) for p in pj.PROJECTIONS for s in SIZES[p]])
def test_pixel_centres_round_trip(proj, w, h):
    xs, ys = np.meshgrid(np.arange(w, dtype=float), np.arange(h, dtype=float))
    vec = pj.pixel_to_dir(xs, ys, proj, w, h)
    x, y = pj.dir_to_pixel(vec, proj, w, h)
    if proj == "eac":  # pad pixels see the neighbouring face: they map back onto that face
        pads = np.zeros((h, w), bool)
        pads[:, :2] = pads[:, -2:] = True
        for r in (0, 1):  # each row's top and bottom 2 pixels (rows as v360 splits them)
            yy = ys + 0.5 - r * h / 2
            pads |= (yy >= 0) & (yy < h / 2) & ((yy < 2) | (yy > h / 2 - 2))
        xs, ys, x, y, vec = xs[~pads], ys[~pads], x[~pads], y[~pads], vec[~pads]
    moved = np.abs(x - xs) + np.abs(y - ys) > 1e-6
    if moved.any():
        # Only a pixel centre exactly on a cube edge (an odd EAC size puts some there) may come back
        # at the edge's other place in the frame, seeing the same direction.
        assert proj == "eac" and moved.mean() < 0.002
        _, u, w_ = pj.vec_to_face(vec[moved])
        np.testing.assert_allclose(np.maximum(np.abs(u), np.abs(w_)), 1.0, atol=1e-12)
        assert angle(pj.pixel_to_dir(x[moved], y[moved], proj, w, h), vec[moved]).max() < 1e-9
    np.testing.assert_allclose(x[~moved], xs[~moved], atol=1e-6)
    np.testing.assert_allclose(y[~moved], ys[~moved], atol=1e-6)


def _cube_edges() -> list[tuple[str, str]]:
    return [(a, b) for i, a in enumerate(pj.FACES) for b in pj.FACES[i + 1:] if np.dot(NORMAL[a], NORMAL[b]) == 0]


@pytest.mark.parametrize("proj", CUBES)
def test_seams_map_to_adjacent_pixels_of_the_right_faces(proj):
    """Directions a hair either side of each of the 12 cube edges (and 8 corners) land on the right
    face, at its border, and the pixels on both sides are neighbours on the sphere."""
    w, h = SIZES[proj][1]
    pitch = 2.0 / (min(w / SLOTS[proj][0], h / SLOTS[proj][1]) - 4)  # a pixel's angle, upper bound
    edges = _cube_edges()
    assert len(edges) == 12
    cases = []
    for a, b in edges:
        axis = np.cross(NORMAL[a], NORMAL[b])
        for t in (-0.999, -0.6, 0.0, 0.35, 0.999):
            cases.append(((a, b), unit(np.add(NORMAL[a], NORMAL[b]) + t * axis)))
    for corner in [(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]:
        faces = tuple(f for f, n in NORMAL.items() if np.dot(n, corner) == 1)
        cases.append((faces, unit(corner)))
    for faces, edge in cases:
        sides = [unit(edge + 1e-7 * np.asarray(NORMAL[f])) for f in faces]
        pixels = []
        for f, v in zip(faces, sides):
            x, y = pj.dir_to_pixel(v, proj, w, h)
            x0, x1, y0, y1 = face_extent(proj, f, w, h)
            assert x0 - 1e-9 <= x <= x1 + 1e-9 and y0 - 1e-9 <= y <= y1 + 1e-9, (proj, f, faces, x, y)
            assert min(x - x0, x1 - x, y - y0, y1 - y) < 1e-3  # at the face's border
            assert angle(pj.pixel_to_dir(x, y, proj, w, h), v) < 1e-8
            # the nearest pixel centre of that face
            i = np.clip(np.round(x), math.ceil(x0), math.floor(x1))
            j = np.clip(np.round(y), math.ceil(y0), math.floor(y1))
            pixels.append(pj.pixel_to_dir(i, j, proj, w, h))
        for p in pixels:
            assert angle(p, edge) < pitch
        for p, q in itertools.combinations(pixels, 2):
            assert angle(p, q) < 1.5 * pitch


def test_equirect_is_the_projects_grid():
    w, h = 1920, 1080
    yaw, pitch = np.array([-179.0, -30.0, 0.0, 45.0, 179.9]), np.array([-89.0, -10.0, 0.0, 20.0, 89.0])
    x, y = pj.dir_to_pixel(sphere.dir_to_vec(yaw, pitch), "equirect", w, h)
    ex, ey = sphere.dir_to_pixel(yaw, pitch, w, h)
    np.testing.assert_allclose(x, ex, atol=1e-9)
    np.testing.assert_allclose(y, ey, atol=1e-9)
    np.testing.assert_allclose(pj.pixel_grid_dirs("equirect", 64, 32), sphere.equirect_vectors(64, 32), atol=1e-12)


def test_rejects_unknown_projection():
    with pytest.raises(Pan360Error):
        pj.dir_to_pixel(np.array([1.0, 0, 0]), "cubemap", 10, 10)
    with pytest.raises(Pan360Error):
        pj.pixel_to_dir(0.0, 0.0, "c1x6", 10, 60)
    with pytest.raises(Pan360Error):
        pj.to_equirect(np.zeros((2, 2, 2, 2), np.uint8), "eac", 8, 4)


# -- a real picture: equirect -> layout (ffmpeg) -> equirect (to_equirect) ---------------------------

def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def spherical_picture(vec: np.ndarray, equator_px: float) -> np.ndarray:
    """A colourful picture defined on the sphere, sampled at directions ``vec`` (H, W, 3): RGB uint8.

    Smooth colours, three gratings of period 10 equator pixels, and 48 blocks of text-like glyphs
    (5x7-ish random bits, cells of 4 pixels, edges ~1.5 pixels wide), some on the cube's corners and
    edges, the poles and the ±180° seam. ``equator_px`` is one equator pixel in radians. Defined on the
    sphere, so its detail is the same everywhere (an equirect row near a pole is not sharper).
    """
    rng = np.random.default_rng(7)
    img = 0.5 + 0.3 * vec
    for c in range(3):
        a = unit(rng.normal(size=3))
        img[..., c] += 0.12 * np.sin((vec @ a) / (10 * equator_px) * 2 * np.pi + c)
    fixed = unit([[0, 0, 1], [0, 0, -1], [-1, 0, 0], [1, 1, 1], [1, -1, 0], [-1, 1, -1], [0, 1, 1], [1, 0, -1]])
    centres = np.concatenate([fixed, unit(rng.normal(size=(40, 3)))])
    helper = np.where(np.abs(centres[:, 2:]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])
    e1 = unit(np.cross(centres, helper))
    e2 = np.cross(centres, e1)
    near = np.argmax(vec @ centres.T, axis=-1)  # each pixel draws the glyph block nearest to it
    depth = np.einsum("hwk,hwk->hw", vec, centres[near])
    cell = 4.0 * equator_px
    rows, cols = 11, 17  # glyph bits, with an empty border
    ga = np.einsum("hwk,hwk->hw", vec, e1[near]) / depth / cell + cols / 2 - 0.5
    gb = np.einsum("hwk,hwk->hw", vec, e2[near]) / depth / cell + rows / 2 - 0.5
    bits = rng.integers(0, 2, size=(len(centres), rows, cols)).astype(np.float64)
    bits[:, [0, -1], :] = 0.0
    bits[:, :, [0, -1]] = 0.0
    flat = bits.reshape(len(centres), -1)
    ia, ib = np.floor(ga).astype(int), np.floor(gb).astype(int)
    inside = (ia >= 0) & (ia < cols - 1) & (ib >= 0) & (ib < rows - 1)
    ia, ib = np.clip(ia, 0, cols - 2), np.clip(ib, 0, rows - 2)
    fa, fb = ga - ia, gb - ib

    def bit(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return flat[near, i * cols + j]

    level = ((1 - fa) * (1 - fb) * bit(ib, ia) + fa * (1 - fb) * bit(ib, ia + 1)
             + (1 - fa) * fb * bit(ib + 1, ia) + fa * fb * bit(ib + 1, ia + 1))
    ink = np.where(inside, _smoothstep(0.3, 0.7, level), 0.0)[..., None]  # soft glyph edges
    colour = rng.uniform(0.0, 1.0, size=(len(centres), 3))[near]
    img = img * (1.0 - 0.85 * ink) + 0.85 * ink * colour
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def ws_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR over the sphere of two equirect pictures: each pixel weighted by its solid angle."""
    h, w = a.shape[:2]
    weight = sphere.equirect_solid_angle(w, h)[..., None] * np.ones((1, w, 1))
    err = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = np.sum(weight * err) / (np.sum(weight) * a.shape[2])
    return float(10.0 * np.log10(255.0**2 / mse))


W, H = 1024, 512
OUT_SIZES = {"eac": (768, 512), "c3x2": (768, 512), "c6x1": (1536, 256)}


@pytest.fixture(scope="module")
def equirect_picture(tmp_path_factory) -> tuple[np.ndarray, Path]:
    """(reference picture on pan360's grid, PNG of the same spherical picture on v360's input grid).

    v360 reads an equirect frame on a grid stretched by 1/W against pan360's (see pan360.geometry):
    fed pan360's picture, its cubemap would be shifted by up to half a pixel before any layout is
    involved. Sampling the spherical picture where v360 reads keeps that out of the comparison.
    """
    px = 2 * np.pi / W
    reference = spherical_picture(sphere.equirect_vectors(W, H), px)
    ax, bx, ay, by = geo.source_affine(W, H, "v360")
    lon, lat = (np.arange(W) - bx) / ax, (np.arange(H) - by) / ay
    for_v360 = spherical_picture(sphere.dir_to_vec(np.degrees(lon)[None, :], np.degrees(lat)[:, None]), px)
    png = tmp_path_factory.mktemp("projections") / "equirect.png"
    cv2.imwrite(str(png), for_v360)  # channel order is irrelevant: every step keeps it
    return reference, png


def _v360(ff: str, src: Path, dst: Path, filt: str) -> np.ndarray:
    # gbrp: v360 works on planar RGB, so no YUV conversion touches the picture.
    subprocess.run([ff, "-v", "error", "-y", "-i", str(src), "-vf", f"format=gbrp,{filt}", "-pix_fmt", "rgb24",
                    str(dst)], check=True)
    img = cv2.imread(str(dst))
    assert img is not None
    return img


@pytest.mark.parametrize("proj", CUBES)
def test_picture_round_trip_through_ffmpeg(proj, equirect_picture, tmp_path):
    ff = ffmpeg_exe()
    reference, png = equirect_picture
    w, h = OUT_SIZES[proj]
    layout = _v360(ff, png, tmp_path / f"{proj}.png", f"v360=e:{proj}:w={w}:h={h}")
    ffmpeg_back = _v360(ff, tmp_path / f"{proj}.png", tmp_path / "back.png", f"v360={proj}:e:w={W}:h={H}")
    ours = pj.to_equirect(layout, proj, W, H)
    assert ours.shape == reference.shape and ours.dtype == np.uint8
    # Over the whole sphere, nothing excluded (poles and seam included).
    ours_db, ffmpeg_db, agree_db = ws_psnr(ours, reference), ws_psnr(ffmpeg_back, reference), ws_psnr(ours, ffmpeg_back)
    print(f"{proj}: to_equirect {ours_db:.2f} dB, ffmpeg's inverse {ffmpeg_db:.2f} dB, between them {agree_db:.2f} dB")
    assert ours_db >= 35.0
    assert ffmpeg_db >= 35.0
    assert ours_db >= ffmpeg_db - 0.5
    assert agree_db >= 45.0


def test_to_equirect_keeps_equirect_and_dtypes():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(64, 128, 3), dtype=np.uint8)
    np.testing.assert_array_equal(pj.to_equirect(img, "equirect", 128, 64), img)
    grey = rng.random((96, 144), dtype=np.float32)
    out = pj.to_equirect(grey, "c3x2", 64, 32)
    assert out.shape == (32, 64) and out.dtype == np.float32
    four = rng.integers(0, 65535, size=(96, 144, 4), dtype=np.uint16)
    assert pj.to_equirect(four, "eac", 64, 32).shape == (32, 64, 4)
    mx, my = pj.equirect_tables("c6x1", 600, 100, 64, 32)
    assert mx.dtype == np.float32 and not mx.flags.writeable and my.shape == (32, 64)
