"""Cubemap input end to end: a clip converted by ffmpeg v360 to eac / c3x2 / c6x1 is probed, analysed
and rendered like its equirect original (pan360.media.probe, equirect_picture, pipeline)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from pan360 import pipeline
from pan360.errors import Pan360Error
from pan360.media import equirect_picture, iter_frames, probe
from tests.conftest import ffmpeg_exe, psnr, write_drum_clip

LAYOUTS = ("eac", "c3x2", "c6x1")



@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """The equirect original (768x384, FOA, a drum at yaw 60) and its three cubemap conversions."""
    ff = ffmpeg_exe()
    d = tmp_path_factory.mktemp("cube")
    out = {"equirect": write_drum_clip(d / "e.mp4", width=768, height=384, duration=1.0, sounding_until=1.0)}
    for layout in LAYOUTS:
        f = d / f"{layout}.mp4"
        size = ":w=580:h=384" if layout == "eac" else ""  # YouTube's EAC: 3:2 faces plus v360's 2-pixel pads
        subprocess.run([ff, "-v", "error", "-i", str(out["equirect"]), "-vf", f"v360=e:{layout}{size}", "-c:v", "libx264",
                        "-crf", "8", "-preset", "ultrafast", "-c:a", "copy", str(f)], check=True)
        out[layout] = f
    return out


def test_probe_refuses_a_guess_and_takes_the_layout(clips):
    with pytest.raises(Pan360Error, match="--projection eac"):  # 3:2: eac or c3x2, the user says which
        probe(clips["c3x2"])
    with pytest.raises(Pan360Error, match="--projection c6x1"):
        probe(clips["c6x1"])
    for layout in LAYOUTS:
        info = probe(clips[layout], projection=layout)
        assert (info.layout, info.projection_source) == (layout, "forced")
        w, h = info.equirect_size
        assert w == 2 * h and abs(w - 768) <= 0.1 * 768  # about the original's resolution


@pytest.mark.parametrize("layout", LAYOUTS)
def test_analysis_pictures_match_the_equirect_original(clips, layout):
    orig = next(iter_frames(probe(clips["equirect"]), fmt="rgb24"))[1]
    cube = next(iter_frames(probe(clips[layout], projection=layout), fmt="rgb24"))[1]
    for size in ((256, 128), (128, 64)):  # the network's input, the map grid
        a = equirect_picture(orig, "equirect", size)
        b = equirect_picture(cube, layout, size)
        assert b.shape == a.shape and psnr(a, b) > 30.0


@pytest.mark.parametrize("layout", LAYOUTS)
def test_cubemap_renders_the_view_of_the_equirect_original(clips, layout, tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"version": 1, "fps": 30, "width": 320, "height": 180, "frames": [
        {"time": 0.0, "yaw": 60.0, "pitch": 10.0, "h_fov": 90.0},
        {"time": 1.0, "yaw": 150.0, "pitch": -40.0, "h_fov": 90.0}]}))
    outs = {}
    for name, proj in (("equirect", "auto"), (layout, layout)):
        outs[name] = tmp_path / f"{name}.mp4"
        pipeline.render(clips[name], outs[name], path=path, projection=proj, preset="ultrafast", crf=10)
    with av.open(str(outs["equirect"])) as a, av.open(str(outs[layout])) as b:
        fa = [f.to_ndarray(format="rgb24") for f in a.decode(a.streams.video[0])]
        fb = [f.to_ndarray(format="rgb24") for f in b.decode(b.streams.video[0])]
        assert b.streams.audio[0].channels == 2  # the FOA became camera-following stereo, as for equirect
    assert len(fa) == len(fb) == 30
    worst = min(psnr(x, y) for x, y in zip(fa, fb))
    assert worst >= 35.0, worst


def test_cubemap_saliency_heatmap_and_foa_path(clips, tmp_path):
    eq = pipeline.analyse(clips["equirect"], saliency="foa")
    cube = pipeline.analyse(clips["c3x2"], saliency="foa", projection="c3x2")
    np.testing.assert_array_equal(cube.path.yaw, eq.path.yaw)  # the sound is the same, so is the path
    assert (cube.path.width, cube.path.height) == (eq.path.width, eq.path.height)
    out = tmp_path / "heat.mp4"
    pipeline.saliency(clips["c3x2"], out, saliency="foa", projection="c3x2", preset="ultrafast")
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert (s.codec_context.width, s.codec_context.height) == probe(clips["c3x2"], projection="c3x2").equirect_size
