"""The command line end to end, on clips generated here (real encode/decode, real subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pan360.media import VideoWriter, probe
from pan360.nn.weights import bundled_weights
from pan360.paths import load_path
from pan360.synthetic import Scene, SceneObject, write_scene


def run_cli(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "pan360", *map(str, args)], capture_output=True, text=True,
                          timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"pan360 {' '.join(map(str, args))} failed:\n{proc.stderr}")
    return proc


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    for f in fragments:
        assert f in err, err


@pytest.fixture(scope="module")
def foa_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """4 s, 1920x960, 30 fps, FOA audio: a drum on the right, then a bell behind-left."""
    scene = Scene(width=1920, height=960, fps=30.0, duration=4.0,
                  objects=(SceneObject("drum", 60.0, 0.0), SceneObject("bell", -120.0, 10.0)),
                  schedule=((0, 0.0, 2.0), (1, 2.0, 4.0)), diffuse_noise_db=-6.0, seed=3)
    path = tmp_path_factory.mktemp("clip") / "scene.mp4"
    gt = write_scene(scene, path, preset="ultrafast")
    return path, gt


def test_help_lists_commands() -> None:
    out = run_cli("--help").stdout
    for cmd in ("render", "saliency", "info"):
        assert cmd in out


@pytest.mark.parametrize("command", ["render", "saliency"])
def test_flags_are_the_api_keywords(command: str) -> None:
    """Every keyword of the pipeline function is a flag of its command, with the same default."""
    import inspect

    from pan360 import cli, pipeline

    ns = cli.build_parser().parse_args([command, "in.mp4", "-o", "out.mp4"])
    assert ns.func is getattr(cli, command) and (ns.input, ns.output) == (Path("in.mp4"), Path("out.mp4"))
    params = inspect.signature(getattr(pipeline, command)).parameters
    for name, param in params.items():
        if name in ("input", "output", "progress", "notify"):
            continue
        assert hasattr(ns, name), f"pipeline.{command}({name}=...) has no flag"
        assert getattr(ns, name) == param.default, (name, getattr(ns, name), param.default)
    flags = set(vars(ns)) - {"command", "func", "parser", "quiet", "debug"}
    assert flags <= set(params), flags - set(params)


def test_info(foa_clip) -> None:
    out = run_cli("info", foa_clip[0]).stdout
    assert "1920x960" in out
    assert "equirect" in out
    assert "ambiX" in out
    assert "120" in out  # frames


def test_render_end_to_end(foa_clip, tmp_path: Path) -> None:
    clip, gt = foa_clip
    out, traj, plot = tmp_path / "out.mp4", tmp_path / "path.json", tmp_path / "path.png"
    run_cli("render", clip, "-o", out, "--size", "640x360", "--preset", "ultrafast", "--trajectory-out", traj,
            "--plot", plot, "--quiet")
    src, res = probe(clip), probe(out, projection="equirect")
    assert res.n_frames == src.n_frames == 120
    assert abs(res.duration - src.duration) <= 0.05
    assert (res.eye_width, res.eye_height) == (640, 360)
    with av.open(str(out)) as c:
        assert c.streams.audio and c.streams.audio[0].codec_context.channels == 2
        assert c.streams.video[0].codec_context.name == "h264"
    doc = json.loads(traj.read_text())
    assert doc["version"] == 1 and len(doc["frames"]) == 120
    assert (doc["width"], doc["height"]) == (640, 360)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the camera looks at the drum (yaw 60) early and at the bell (yaw -120) late
    yaw = np.array([f["yaw"] for f in doc["frames"]])
    assert abs(((yaw[30] - 60 + 180) % 360) - 180) < 30
    assert abs(((yaw[-1] + 120 + 180) % 360) - 180) < 30


def test_path_round_trip(foa_clip, tmp_path: Path) -> None:
    """--trajectory-out then --path renders the same pictures."""
    clip, _ = foa_clip
    a, b, traj = tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "a.json"
    run_cli("render", clip, "-o", a, "--size", "320x180", "--preset", "ultrafast", "--crf", "10",
            "--trajectory-out", traj, "-q")
    run_cli("render", clip, "-o", b, "--path", traj, "--preset", "ultrafast", "--crf", "10", "-q")
    pa = load_path(traj)
    with av.open(str(a)) as ca, av.open(str(b)) as cb:
        fa = [f.to_ndarray(format="rgb24").astype(np.int16) for f in ca.decode(video=0)]
        fb = [f.to_ndarray(format="rgb24").astype(np.int16) for f in cb.decode(video=0)]
    assert len(fa) == len(fb) == len(pa)
    for x, y in zip(fa[::10], fb[::10]):
        assert np.abs(x - y).mean() < 1.0


def test_saliency_heatmap(foa_clip, tmp_path: Path) -> None:
    clip, _ = foa_clip
    out, maps = tmp_path / "heat.mp4", tmp_path / "maps.npz"
    run_cli("saliency", clip, "-o", out, "--maps-out", maps, "--max-width", "640", "--preset", "ultrafast", "-q")
    res = probe(out)
    assert res.n_frames == 120 and res.eye_width == 640
    assert res.audio is not None and res.audio.channels == 4
    z = np.load(maps)
    assert z["maps"].shape == (120, 64, 128) and z["times"].shape == (120,)
    # the map's peak is at the drum's column early on
    col = int(np.argmax(z["maps"][30].max(axis=0)))
    assert abs(z["yaw"][col] - 60) < 10


def test_existing_output_refused_then_overwritten(foa_clip, tmp_path: Path) -> None:
    clip, _ = foa_clip
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    proc = run_cli("render", clip, "-o", out, "--size", "320x180", check=False)
    assert_one_line_error(proc, "--overwrite")
    assert out.read_bytes() == b"keep me"
    run_cli("render", clip, "-o", out, "--size", "320x180", "--preset", "ultrafast", "--overwrite", "-q")
    assert probe(out, projection="equirect").n_frames == 120


def test_input_is_never_the_output(foa_clip, tmp_path: Path) -> None:
    clip, _ = foa_clip
    before = clip.read_bytes()
    proc = run_cli("render", clip, "-o", clip, "--overwrite", check=False)
    assert_one_line_error(proc, "same file")
    assert clip.read_bytes() == before


@pytest.mark.parametrize("content, fragment", [
    (None, "not found"),
    (b"this is not a video\n" * 10, ""),
    (b"", ""),
])
def test_bad_input_one_line(tmp_path: Path, content: bytes | None, fragment: str) -> None:
    src = tmp_path / "bad.mp4"
    if content is not None:
        src.write_bytes(content)
    for cmd in (["info", src], ["render", src, "-o", tmp_path / "o.mp4"], ["saliency", src, "-o", tmp_path / "h.mp4"]):
        proc = run_cli(*cmd, check=False)
        assert_one_line_error(proc, fragment)
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "h.mp4").exists()


def test_debug_shows_traceback(tmp_path: Path) -> None:
    src = tmp_path / "bad.mp4"
    src.write_bytes(b"junk")
    proc = run_cli("info", src, "--debug", check=False)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def _plain_clip(path: Path, *, width: int = 512, height: int = 256, seconds: float = 1.0,
                channels: int | None = 2) -> Path:
    rate = 48000
    n = int(seconds * 30)
    audio = None
    if channels:
        t = np.arange(int(seconds * rate)) / rate
        audio = np.tile((0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), (channels, 1))
    yy, xx = np.mgrid[0:height, 0:width]
    with VideoWriter(path, width, height, fps=Fraction(30), duration=n / 30, preset="ultrafast", audio=audio,
                     sample_rate=rate if channels else None) as w:
        for i in range(n):
            img = np.stack([(xx * 255 // width), (yy * 255 // height), np.full_like(xx, 8 * i % 256)], -1)
            w.write(img.astype(np.uint8), i / 30)
    return path


def test_no_audio_renders_with_note(tmp_path: Path) -> None:
    clip = _plain_clip(tmp_path / "silent.mp4", channels=None)
    out = tmp_path / "out.mp4"
    proc = run_cli("render", clip, "-o", out, "--size", "256x144", "--preset", "ultrafast")
    assert "no audio" in proc.stderr
    res = probe(out)
    assert res.n_frames == 30 and res.audio is None


def test_stereo_audio_passes_through_and_foa_request_is_refused(tmp_path: Path) -> None:
    clip = _plain_clip(tmp_path / "stereo.mp4", channels=2)
    out = tmp_path / "out.mp4"
    proc = run_cli("render", clip, "-o", out, "--size", "256x144", "--preset", "ultrafast")
    assert "not spatial" in proc.stderr  # the user is told why (network alone, or no saliency)
    assert ("saliency: net" if bundled_weights() else "saliency: none") in proc.stderr
    assert probe(out).audio.channels == 2
    proc = run_cli("render", clip, "-o", tmp_path / "o2.mp4", "--saliency", "foa", check=False)
    assert_one_line_error(proc, "4-channel")


def test_non_equirect_refused_unless_forced(tmp_path: Path) -> None:
    clip = _plain_clip(tmp_path / "flat.mp4", width=320, height=240, channels=None)
    proc = run_cli("render", clip, "-o", tmp_path / "o.mp4", check=False)
    assert_one_line_error(proc, "equirect")
    run_cli("render", clip, "-o", tmp_path / "o.mp4", "--projection", "equirect", "--size", "128x72",
            "--preset", "ultrafast", "-q")
    assert probe(tmp_path / "o.mp4").n_frames == 30


@pytest.mark.parametrize("size", ["360x640", "400x400"])
def test_other_aspects(foa_clip, tmp_path: Path, size: str) -> None:
    out = tmp_path / "o.mp4"
    run_cli("render", foa_clip[0], "-o", out, "--size", size, "--fov", "60", "--preset", "ultrafast", "-q")
    w, h = map(int, size.split("x"))
    res = probe(out, projection="equirect")  # an NFoV output is not equirect: force to read its size
    assert (res.eye_width, res.eye_height) == (w, h)
