"""Generated scenes: drawing on the sphere, FOA direction, schedule, determinism and the written MP4."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from pan360 import sphere
from pan360.errors import Pan360Error
from pan360.synthetic import (
    CLASSES,
    Scene,
    SceneObject,
    ground_truth,
    random_scene,
    render_scene,
    saliency_maps,
    write_ground_truth,
    write_scene,
)

W, H = 256, 128


def _first_frame(scene: Scene) -> np.ndarray:
    frames, _, _ = render_scene(scene)
    return next(frames)


def _static(kind: str, yaw: float, pitch: float, *, radius: float = 15.0, sounding: bool = False,
            duration: float = 0.5, **kw) -> Scene:
    obj = SceneObject(kind, yaw, pitch, radius=radius)
    sched = ((0, 0.0, duration),) if sounding else ()
    return Scene(width=W, height=H, fps=10, duration=duration, objects=(obj,), schedule=sched, **kw)


@pytest.mark.parametrize(
    ("kind", "yaw", "pitch"),
    [("drum", 0.0, 0.0), ("bell", 179.0, 10.0), ("voice", -179.5, -20.0), ("engine", 45.0, 72.0),
     ("bird", -120.0, -80.0), ("drum", 180.0, 85.0)],
)
def test_object_centre_pixel_has_class_colour(kind: str, yaw: float, pitch: float) -> None:
    img = _first_frame(_static(kind, yaw, pitch))
    x, y = sphere.dir_to_pixel(yaw, pitch, W, H)
    got = img[int(np.clip(np.round(y), 0, H - 1)), int(np.round(x)) % W].astype(int)
    assert np.abs(got - np.array(CLASSES[kind])).max() <= 3


@pytest.mark.parametrize(("yaw", "pitch"), [(180.0, 0.0), (-175.0, 30.0), (90.0, 78.0), (0.0, -90.0)])
def test_disc_is_round_on_the_sphere(yaw: float, pitch: float) -> None:
    """Every pixel well inside the drum's angular radius is drum-coloured, every pixel well outside
    is untouched background: the shape is drawn on the sphere, across the seam and at the poles."""
    r = 15.0
    img = _first_frame(_static("drum", yaw, pitch, radius=r)).astype(int)
    bg = _first_frame(Scene(width=W, height=H, fps=10, duration=0.5)).astype(int)
    py, pp = sphere.equirect_angles(W, H)
    d = sphere.angular_distance(py[None, :], pp[:, None], yaw, pitch)
    base = np.array(CLASSES["drum"])
    is_drum = (np.abs(img - base).max(-1) <= 3) | (np.abs(img - base * 0.55).max(-1) <= 3)
    pix = 180.0 / H
    assert is_drum[d < r - 1.5 * pix].all()
    assert (img[d > r + 1.5 * pix] == bg[d > r + 1.5 * pix]).all()
    assert d.min() < r - 1.5 * pix  # the inner region is not empty


def test_sounding_object_visibly_changes() -> None:
    idle = _first_frame(_static("engine", 30.0, 0.0)).astype(float)
    loud = _first_frame(_static("engine", 30.0, 0.0, sounding=True)).astype(float)
    py, pp = sphere.equirect_angles(W, H)
    inside = sphere.angular_distance(py[None, :], pp[:, None], 30.0, 0.0) < 10
    assert loud[inside].mean() > idle[inside].mean() + 25


def _intensity_direction(foa: np.ndarray) -> tuple[float, float]:
    """Pseudo-intensity mean W·(X, Y, Z) of ambiX: the direction the sound comes from (cross-check)."""
    w, y, z, x = foa.astype(np.float64)
    yaw, pitch = sphere.vec_to_dir(np.array([np.mean(w * x), np.mean(w * y), np.mean(w * z)]))
    return float(yaw), float(pitch)


@pytest.mark.parametrize(("kind", "yaw", "pitch"), [("voice", 100.0, 20.0), ("drum", -150.0, -25.0), ("bird", 179.0, 5.0),
                                              ("bell", -60.0, 30.0), ("engine", 0.0, -10.0)])
def test_foa_points_at_the_sounding_object(kind: str, yaw: float, pitch: float) -> None:
    _, foa, _ = render_scene(_static(kind, yaw, pitch, sounding=True, duration=1.0, diffuse_noise_db=-3.0))
    assert foa.shape == (4, 48000) and foa.dtype == np.float32
    assert sphere.angular_distance(*_intensity_direction(foa), yaw, pitch) < 3.0


@pytest.mark.parametrize(("kind", "yaw", "pitch"), [("drum", -150.0, -25.0), ("bird", 179.0, 5.0)])
def test_foa_with_reverb_still_points_near_broadband_objects(kind: str, yaw: float, pitch: float) -> None:
    """Reflections come from elsewhere: they bias a plain intensity average a little, no more."""
    dry = render_scene(_static(kind, yaw, pitch, sounding=True, duration=1.0, diffuse_noise_db=None))[1]
    wet = render_scene(_static(kind, yaw, pitch, sounding=True, duration=1.0, diffuse_noise_db=None, reverb=True))[1]
    assert np.mean((wet - dry) ** 2) > 0.05 * np.mean(dry**2)  # the reverb is really there
    assert sphere.angular_distance(*_intensity_direction(wet), yaw, pitch) < 10.0


def test_foa_follows_a_moving_source() -> None:
    obj = SceneObject("engine", -170.0, 10.0, yaw_rate=-30.0, pitch_amp=8.0, pitch_period=2.0)
    scene = Scene(width=W, height=H, fps=10, duration=2.0, objects=(obj,), schedule=((0, 0.0, 2.0),),
                  diffuse_noise_db=-3.0)
    _, foa, gt = render_scene(scene)
    for i in range(0, 20, 4):  # 0.1 s windows: the source moves 3° in each
        a, b = i * 4800, (i + 1) * 4800
        yaw, pitch = obj.direction((a + b) / 2 / 48000)
        assert sphere.angular_distance(*_intensity_direction(foa[:, a:b]), yaw, pitch) < 10.0
        assert abs(gt.object_yaw[i, 0] - sphere.wrap_yaw(-170.0 - 30.0 * i / 10)) < 1e-9


def test_foa_map_finds_the_sounding_object_frame_by_frame() -> None:
    """pan360's own FOA analysis tracks the scheduled source through a switch and a moving source."""
    from pan360.spatial.foa_map import foa_direction_track

    objs = (SceneObject("voice", 100.0, 20.0, seed=1),
            SceneObject("bird", -60.0, -10.0, yaw_rate=25.0, pitch_amp=5.0, pitch_period=2.0, seed=2))
    scene = Scene(width=W, height=H, fps=10, duration=3.0, objects=objs, schedule=((0, 0.0, 1.5), (1, 1.5, 3.0)),
                  diffuse_noise_db=-3.0, seed=5)
    _, foa, gt = render_scene(scene)
    track = foa_direction_track(foa, scene.sample_rate, gt.times)
    err = sphere.angular_distance(track.yaw, track.pitch, gt.yaw, gt.pitch)
    far = np.abs(gt.times - 1.5) > 0.3
    assert np.median(err[far]) < 5.0 and np.percentile(err[far], 90) < 10.0


def test_diffuse_noise_level_matches_request() -> None:
    quiet = render_scene(_static("bell", 10.0, 0.0, sounding=True, duration=1.0, diffuse_noise_db=None))[1]
    noisy = render_scene(_static("bell", 10.0, 0.0, sounding=True, duration=1.0, diffuse_noise_db=-3.0))[1]
    noise = noisy - quiet
    ratio_db = 10 * np.log10(np.mean(noise[0] ** 2) / np.mean(quiet[0] ** 2))
    assert abs(ratio_db + 3.0) < 0.5
    # diffuse: the noise carries (almost) no net direction, unlike the source
    w, y, z, x = noise.astype(np.float64)
    assert np.linalg.norm([np.mean(w * x), np.mean(w * y), np.mean(w * z)]) < 0.1 * np.mean(w * w)


def test_random_scene_is_deterministic() -> None:
    a, b, c = random_scene(7, width=W, height=H, duration=2.0), random_scene(7, width=W, height=H, duration=2.0), \
        random_scene(8, width=W, height=H, duration=2.0)
    assert a == b and a != c
    fa, foa_a, _ = render_scene(a)
    fb, foa_b, _ = render_scene(b)
    assert np.array_equal(foa_a, foa_b)
    assert all(np.array_equal(x, y) for x, y in zip(fa, fb))


@pytest.mark.parametrize("seed", range(12))
def test_random_schedule_properties(seed: int) -> None:
    scene = random_scene(seed, width=W, height=H, duration=12.0, ambient_prob=0.3 if seed % 2 else 0.0)
    gt = ground_truth(scene)
    assert 3 <= len(scene.objects) <= 5
    assert len({o.kind for o in scene.objects}) == len(scene.objects)
    assert any(o.yaw_rate != 0 for o in scene.objects)
    assert (gt.active.sum(axis=1) <= 1).all()  # one sounding at a time
    assert np.all(np.abs(gt.object_pitch) <= 35.0)
    segs = sorted(scene.schedule, key=lambda s: s[1])
    for (k0, s0, e0), (k1, s1, e1) in zip(segs, segs[1:]):
        assert e0 <= s1 + 1e-9 and 2.5 - 1e-6 <= e0 - s0 <= 4.0 + 1e-6
        if abs(e0 - s1) < 1e-9:
            assert k0 != k1
    far = sphere.angular_distance(gt.object_yaw[0, segs[0][0]], gt.object_pitch[0, segs[0][0]],
                                  gt.object_yaw[0, segs[1][0]], gt.object_pitch[0, segs[1][0]])
    assert far > 120.0  # the first switch asks for a fast pan
    # switch times are exactly where the per-frame sounding index changes
    changes = gt.times[1:][np.diff(gt.sounding) != 0]
    assert len(changes) == len(gt.switch_times)
    assert np.all(np.abs(changes - np.asarray(gt.switch_times)) <= 1 / scene.fps)
    on = gt.sounding >= 0
    assert np.allclose(gt.yaw[on], gt.object_yaw[on, gt.sounding[on]]) and np.isnan(gt.yaw[~on]).all()


def test_ambient_only_stretches() -> None:
    scene = random_scene(4, width=W, height=H, duration=20.0, ambient_prob=1.0, diffuse_noise_db=None)
    gt = ground_truth(scene)
    silent = gt.sounding == -1
    assert silent.any() and (~silent).any()
    assert not silent[gt.times < 5.0].any()  # the first two segments always sound
    _, foa, _ = render_scene(scene)
    w = foa[0].astype(np.float64)
    spf = scene.sample_rate / scene.fps
    per_frame = np.array([np.mean(w[int(i * spf):int((i + 1) * spf)] ** 2) for i in range(len(gt.times))])
    near = np.min(np.abs(gt.times[:, None] - np.asarray(gt.switch_times)[None, :]), axis=1) < 0.1
    assert per_frame[silent & ~near].max() < 1e-9  # without diffuse noise an ambient stretch is silent
    assert np.mean(per_frame[~silent & ~near]) > 1e-3


def test_saliency_maps_are_the_sounding_disc() -> None:
    obj = (SceneObject("drum", 170.0, 20.0, radius=12.0), SceneObject("bell", -40.0, 0.0, radius=12.0))
    scene = Scene(width=W, height=H, fps=10, duration=1.0, objects=obj, schedule=((1, 0.0, 0.5),))
    gt = ground_truth(scene)
    maps = saliency_maps(gt, 128, 64)
    assert maps.shape == (10, 64, 128) and maps.dtype == np.float32
    assert maps[5:].sum() == 0  # nobody sounds after 0.5 s
    yaw, pitch, conc = sphere.weighted_mean_direction(maps[0])
    assert sphere.angular_distance(yaw, pitch, -40.0, 0.0) < 1.0 and conc > 0.95
    area = float((maps[0] * sphere.equirect_solid_angle(128, 64)).sum())
    cap = 2 * np.pi * (1 - np.cos(np.radians(12.0)))
    assert abs(area / cap - 1) < 0.1


def test_invalid_scene_is_refused() -> None:
    with pytest.raises(Pan360Error):
        render_scene(Scene(width=W, height=H, objects=(SceneObject("tuba", 0.0, 0.0),)))
    with pytest.raises(Pan360Error):
        render_scene(Scene(width=W, height=H, objects=(SceneObject("drum", 0.0, 0.0),), schedule=((3, 0.0, 1.0),)))


def test_write_scene_mp4_and_truth(tmp_path) -> None:
    scene = random_scene(3, width=W, height=H, fps=30, duration=1.0)
    out = tmp_path / "scene.mp4"
    gt = write_scene(scene, out, crf=28, preset="ultrafast")
    with av.open(str(out)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert (v.codec_context.width, v.codec_context.height) == (W, H)
        assert a.codec_context.channels == 4
        n = sum(1 for _ in c.decode(video=0))
    assert n == 30 == len(gt.times)
    js = tmp_path / "truth.json"
    write_ground_truth(gt, js)
    doc = json.loads(js.read_text())
    assert len(doc["frames"]) == 30 and doc["frames"][0]["sounding"] == int(gt.sounding[0])
    assert doc["switch_times"] == [round(s, 4) for s in gt.switch_times]
