"""Every way a run can end (issue 11, cases 3-9), for real: files generated here, real child processes,
real signals, concurrent runs, read-only directories (a read-only tmpfs in a private mount namespace,
since root ignores permissions). Each case: a one-line message and a non-zero exit, or a correct
result; no traceback, no partial or temporary file, every input byte-identical."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from conftest import write_drum_clip
from pan360 import cli, pipeline
from pan360.errors import Pan360Error
from pan360.media import probe
from pan360.media.output import OutputSet
from pan360.nn.weights import bundled_weights

PAN360 = [sys.executable, "-m", "pan360"]
FAST = ["--saliency", "foa", "--preset", "ultrafast"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s, 128x64, 30 fps, FOA: a drum at yaw 60."""
    return write_drum_clip(tmp_path_factory.mktemp("clip") / "in.mp4", width=128, height=64, duration=2.0,
                           sounding_until=2.0)


@pytest.fixture
def work(tmp_path: Path, clip: Path) -> Path:
    """A folder holding a copy of the clip (in.mp4), a 2 s trajectory (path.json) and a 12 s truth."""
    shutil.copy(clip, tmp_path / "in.mp4")
    frames = [{"index": i, "time": i / 30, "yaw": 60.0, "pitch": 0.0, "h_fov": 90.0} for i in range(60)]
    (tmp_path / "path.json").write_text(json.dumps({"version": 1, "fps": 30, "width": 320, "height": 180,
                                                    "frames": frames}))
    truth = [{"time": i / 30, "yaw": 60.0, "pitch": 0.0} for i in range(360)]
    (tmp_path / "truth.json").write_text(json.dumps({"frames": truth, "switch_times": []}))
    return tmp_path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def pan360(*args: str | Path, cwd: Path, prefix: list[str] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, *PAN360, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode != 0, proc.stderr
    err = proc.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for f in fragments:
        assert f in err, err


def hidden(folder: Path) -> list[str]:
    """Temporaries and claims left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def in_process(*args: str | Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """``pan360 ARGS`` through the console-script entry point in this process: (exit code, stderr)."""
    argv = sys.argv
    sys.argv = ["pan360", *map(str, args)]
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = argv
    return code, capsys.readouterr().err.strip()


def _can_mount() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o ro tmpfs /mnt"], capture_output=True).returncode == 0


def read_only(folder: Path) -> list[str]:
    """A command prefix that runs the command with ``folder`` a read-only (empty) filesystem."""
    if not _can_mount():
        pytest.skip("cannot mount a read-only tmpfs here (unshare -m)")
    folder.mkdir(exist_ok=True)
    return ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o ro tmpfs '{folder}' && exec \"$@\"", "sh"]


def _default_sighup() -> None:
    # The child starts with SIGHUP's default action even when the tests run under nohup (which ignores
    # it, and pan360 rightly leaves an ignored SIGHUP ignored).
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def start_render(work: Path, out: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([*PAN360, "render", "in.mp4", "-o", out, *extra], cwd=work, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, preexec_fn=_default_sighup)


def wait_for_temporary(proc: subprocess.Popen, work: Path, out: str, *, started: bool = False) -> Path:
    """The child's temporary output once it exists (``started``: once the encoder has written to it)."""
    stem, ext = os.path.splitext(out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        tmps = list(work.glob(f".{stem}.tmp-{proc.pid}-*{ext}"))
        if tmps and (not started or tmps[0].stat().st_size > 0):
            return tmps[0]
        time.sleep(0.005)
    pytest.fail(f"no temporary output appeared (exit {proc.poll()}): {proc.stderr.read() if proc.stderr else ''}")


# ---------------------------------------------------------------------------------------- case 3
def test_eval_json_never_replaces_an_input_and_bad_directories_are_one_line(work: Path) -> None:
    before = snapshot(work)
    for target in ("truth.json", "path.json"):
        proc = pan360("eval", "trajectory", "path.json", "truth.json", "--json", target, "--overwrite", cwd=work)
        assert_one_line_error(proc, "same file as the input")
    assert_one_line_error(pan360("eval", "trajectory", "path.json", "truth.json", "--json", "nowhere/s.json",
                                 cwd=work), "directory does not exist")
    assert_one_line_error(pan360("eval", "points", "path.json", "truth.json", "--clip", "x", "--json",
                                 "path.json", "--overwrite", cwd=work), "same file as the input")
    ro = work / "ro"
    proc = pan360("eval", "trajectory", "path.json", "truth.json", "--json", "ro/s.json", cwd=work,
                  prefix=read_only(ro))
    assert_one_line_error(proc, "Read-only file system")
    ro.rmdir()
    assert snapshot(work) == before and hidden(work) == []
    # an existing file needs --overwrite, then the scores are written
    (work / "s.json").write_text("keep")
    assert_one_line_error(pan360("eval", "trajectory", "path.json", "truth.json", "--json", "s.json", cwd=work),
                          "already exists")
    assert (work / "s.json").read_text() == "keep"
    proc = pan360("eval", "trajectory", "path.json", "truth.json", "--json", "s.json", "--overwrite", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((work / "s.json").read_text())["trajectory"]["frames"] == 60
    # case 9: the 2 s path against 12 s of truth is scored with a one-line warning
    assert proc.stderr.strip().startswith("note: the trajectory covers 0.00-1.97 s but the truth 0.00-11.97 s")
    assert len(proc.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------- case 4
def test_weights_and_their_json_are_inputs(work: Path) -> None:
    src = bundled_weights()
    if src is None:
        pytest.skip("no bundled weights")
    shutil.copy(src, work / "ck.safetensors")
    shutil.copy(src.with_suffix(".json"), work / "ck.json")
    before = snapshot(work)
    for flag, target in (("--plot", "ck.json"), ("--trajectory-out", "ck.safetensors"), ("-o", "ck.json")):
        args = ["render", "in.mp4", *FAST, "--weights", "ck.safetensors", "--overwrite"]
        args += [flag, target] if flag == "-o" else ["-o", "out.mp4", flag, target]
        assert_one_line_error(pan360(*args, cwd=work), "same file as the input", "--weights")
    # the stem or the JSON name the same pair
    assert_one_line_error(pan360("saliency", "in.mp4", "-o", "h.mp4", *FAST, "--weights", "ck", "--maps-out",
                                 "ck.safetensors", "--overwrite", cwd=work), "same file as the input")
    assert snapshot(work) == before and hidden(work) == []


def test_outputs_must_differ_from_each_other(work: Path) -> None:
    with pytest.raises(Pan360Error, match="name the same file"):
        pipeline.render(work / "in.mp4", work / "o.mp4", trajectory_out=work / "t.json", plot=work / "./t.json")
    assert hidden(work) == [] and not (work / "o.mp4").exists()


# ---------------------------------------------------------------------------------------- case 5
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_clean_up_like_ctrl_c(work: Path, sig: signal.Signals) -> None:
    before = snapshot(work)
    proc = start_render(work, "out.mp4", *FAST, "--size", "640x360", "--preset", "slower", "--trajectory-out",
                        "t.json")
    wait_for_temporary(proc, work, "out.mp4", started=True)  # the encoder is running
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    lines = err.strip().splitlines()
    assert lines == [f"terminated by {sig.name}: nothing was written"], err
    assert snapshot(work) == before and hidden(work) == []


def test_temporaries_of_a_killed_run_are_removed_by_the_next(work: Path) -> None:
    proc = start_render(work, "out.mp4", *FAST, "--size", "640x360", "--preset", "slower")
    tmp = wait_for_temporary(proc, work, "out.mp4")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert tmp.exists()  # what SIGKILL leaves (with the stale claim)
    done = pan360("render", "in.mp4", "-o", "out.mp4", *FAST, cwd=work)
    assert done.returncode == 0, done.stderr
    notes = [ln for ln in done.stderr.splitlines() if ln.startswith("note: removed")]
    assert len(notes) == 1 and tmp.name in notes[0] and "killed" in notes[0], done.stderr
    assert hidden(work) == [] and probe(work / "out.mp4", projection="equirect").n_frames == 60


# ---------------------------------------------------------------------------------------- case 6
def test_a_failing_side_output_leaves_no_video(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ro = work / "ro"
    proc = pan360("render", "in.mp4", "-o", "out.mp4", *FAST, "--trajectory-out", "ro/t.json", cwd=work,
                  prefix=read_only(ro))
    assert_one_line_error(proc, "Read-only file system")
    ro.rmdir()
    assert not (work / "out.mp4").exists() and hidden(work) == []

    def broken_plot(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pipeline.visualize, "plot_trajectory", broken_plot)
    for job in (lambda: pipeline.render(work / "in.mp4", work / "out.mp4", plot=work / "p.png",
                                        trajectory_out=work / "t.json", saliency="foa", preset="ultrafast"),
                lambda: pipeline.saliency(work / "in.mp4", work / "out.mp4", plot=work / "p.png",
                                          maps_out=work / "m.npz", saliency="foa", preset="ultrafast")):
        with pytest.raises(OSError, match="No space"):
            job()
        assert sorted(p.name for p in work.iterdir()) == ["in.mp4", "path.json", "truth.json"]


# ---------------------------------------------------------------------------------------- case 7
def test_a_second_run_to_the_same_output_refuses(work: Path) -> None:
    first = start_render(work, "out.mp4", *FAST, "-q")
    wait_for_temporary(first, work, "out.mp4")
    first.send_signal(signal.SIGSTOP)  # holds its claim while the second one starts
    try:
        second = pan360("render", "in.mp4", "-o", "out.mp4", *FAST, "--overwrite", cwd=work)
    finally:
        first.send_signal(signal.SIGCONT)
    assert_one_line_error(second, f"another pan360 run (PID {first.pid}) is writing out.mp4", "refusing")
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert probe(work / "out.mp4", projection="equirect").n_frames == 60 and hidden(work) == []


def test_claims_are_exclusive_and_released(tmp_path: Path) -> None:
    out = tmp_path / "x.json"
    first = OutputSet()
    first.add_output(out, "--json")
    with first:
        second = OutputSet()
        second.add_output(out, "--json")
        with pytest.raises(Pan360Error, match="another pan360 run"):
            with second:
                pass
        first.temp(out).write_text("{}")
    assert out.read_text() == "{}" and hidden(tmp_path) == []


# ---------------------------------------------------------------------------------------- case 8
def test_path_file_sizes_are_bounded_like_size(work: Path, capsys: pytest.CaptureFixture) -> None:
    doc = json.loads((work / "path.json").read_text())
    for w, h, fragment in ((10**9, 10**9, "between 16 and 8192"), (8194, 720, "between 16 and 8192"),
                           (641, 360, "even")):
        (work / "big.json").write_text(json.dumps({**doc, "width": w, "height": h}))
        code, err = in_process("render", work / "in.mp4", "-o", work / "out.mp4", "--path", work / "big.json",
                               capsys=capsys)
        assert code == 1 and fragment in err and len(err.splitlines()) == 1, err
    code, err = in_process("render", work / "in.mp4", "-o", work / "out.mp4", "--size", "8194x720", capsys=capsys)
    assert code == 1 and "between 16 and 8192" in err
    assert not (work / "out.mp4").exists() and hidden(work) == []


# ---------------------------------------------------------------------------------------- case 9
@pytest.mark.parametrize("args, fragment", [
    (["--max-speed", "nan"], "--max-speed must be a finite number"),
    (["--max-speed", "0"], "--max-speed"),
    (["--yaw-offset", "nan"], "--yaw-offset must be a finite number"),
    (["--yaw-offset", "inf"], "--yaw-offset"),
    (["--crf", "99"], "--crf must be a finite number (at least 0 and at most 51)"),
    (["--crf", "-1"], "--crf"),
    (["--crf", "nan"], "--crf"),
    (["--preset", ""], "not an x264 preset"),
    (["--preset", "nonsense"], "not an x264 preset"),
    (["--fov", "nan"], "field of view"),
])
def test_render_options_are_checked_before_any_work(work: Path, capsys: pytest.CaptureFixture, args: list[str],
                                                     fragment: str) -> None:
    t0 = time.perf_counter()
    code, err = in_process("render", work / "in.mp4", "-o", work / "out.mp4", *args, capsys=capsys)
    assert code == 1 and err.startswith("error:") and fragment in err and len(err.splitlines()) == 1, err
    assert time.perf_counter() - t0 < 5
    assert not (work / "out.mp4").exists() and hidden(work) == []


@pytest.mark.parametrize("args, fragment", [
    (["saliency", "in.mp4", "-o", "h.mp4", "--max-width", "0"], "--max-width"),
    (["saliency", "in.mp4", "-o", "h.mp4", "--crf", "nan"], "--crf"),
    (["saliency", "in.mp4", "-o", "h.mp4", "--preset", "nonsense"], "x264 preset"),
    (["eval", "trajectory", "path.json", "truth.json", "--margin", "nan"], "--margin must be a finite number"),
    (["eval", "trajectory", "path.json", "truth.json", "--margin", "-1"], "--margin"),
    (["eval", "points", "path.json", "truth.json", "--clip", "c", "--rotate", "nan"], "--rotate"),
    (["eval", "pairs", ".", "--threshold", "nan"], "--threshold must be a number in (0, 1)"),
    (["train", "in.mp4", "--out", "run", "--lr", "nan"], "lr must be a finite number"),
    (["train", "in.mp4", "--out", "run", "--video-rate", "0"], "video_rate"),
])
def test_other_numeric_options(work: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
                               args: list[str], fragment: str) -> None:
    monkeypatch.chdir(work)
    before = snapshot(work)
    code, err = in_process(*args, capsys=capsys)
    assert code == 1 and fragment in err and len(err.splitlines()) == 1, err
    assert snapshot(work) == before and hidden(work) == [] and not (work / "run").exists()


@pytest.mark.parametrize("args, fragment", [
    (["render"], "required: INPUT, -o/--output"),
    (["render", "in.mp4"], "required: -o/--output"),
    (["render", "in.mp4", "-o", "o.mp4", "--bogus"], "unrecognized arguments: --bogus"),
    (["render", "in.mp4", "-o", "o.mp4", "extra"], "unrecognized arguments: extra"),
    (["render", "in.mp4", "-o", "o.mp4", "--over"], "unrecognized arguments: --over"),  # no abbreviations
    (["render", "in.mp4", "-o", "o.mp4", "--saliency", "loud"], "argument --saliency: invalid choice: 'loud'"),
    (["saliency", "in.mp4", "-o", "o.mp4", "--max-width", "wide"], "argument --max-width: invalid int value"),
    (["eval", "trajectory", "a.json"], "required: TRUTH"),
    (["eval", "frob"], "invalid choice: 'frob'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture, args: list[str], fragment: str) -> None:
    code, err = in_process(*args, capsys=capsys)
    assert code == 2 and err.startswith("error:") and len(err.splitlines()) == 1, err
    assert fragment.lower() in err.lower() and "--help" in err


def test_help_still_works() -> None:
    for args in (["--help"], ["render", "--help"], ["eval", "trajectory", "--help"]):
        proc = subprocess.run([*PAN360, *args], capture_output=True, text=True)
        assert proc.returncode == 0 and "Usage" in proc.stdout, proc.stderr
    # Defaults written in brackets reach the reader (a markup-rendering help once swallowed them).
    render_help = subprocess.run([*PAN360, "render", "--help"], capture_output=True, text=True).stdout
    assert "[default: 16:9" in " ".join(render_help.split()) and "[default: medium]" in render_help
    bare = subprocess.run(PAN360, capture_output=True, text=True)
    assert bare.returncode == 2 and "render" in bare.stdout


def test_output_extension_names_the_container(work: Path) -> None:
    for name, container in (("out.mkv", "matroska"), ("out.mov", "mov")):
        proc = pan360("render", "in.mp4", "-o", name, *FAST, "-q", cwd=work)
        assert proc.returncode == 0, proc.stderr
        with av.open(str(work / name)) as c:
            assert container in c.format.name
            assert c.streams.video[0].codec_context.name == "h264" and c.streams.audio
    before = snapshot(work)
    for name, fragment in (("out.webm", "WebM needs VP8/VP9"), ("out.txt", "cannot write a video named out.txt"),
                           ("out", "cannot write a video named out")):
        assert_one_line_error(pan360("render", "in.mp4", "-o", name, *FAST, cwd=work), fragment)
    assert snapshot(work) == before and hidden(work) == []


def test_refused_training_leaves_no_run_folder(work: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = in_process("train", work / "missing", "--out", work / "runs" / "x", "--steps", "2", capsys=capsys)
    assert code == 1 and "not found" in err and len(err.splitlines()) == 1, err
    assert not (work / "runs").exists()


def test_interrupted_training_names_its_checkpoints(work: Path) -> None:
    pytest.importorskip("torch")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
    import make_dataset

    make_dataset.main([str(work / "data"), "--n", "4", "--width", "128", "--height", "64", "--window", "4",
                       "--supervised-fraction", "1", "--ambient-fraction", "0", "--render-scale", "1"])
    proc = subprocess.Popen([*PAN360, "train", "data", "--out", "run", "--steps", "100000", "--batch-size", "4",
                             "--set", "checkpoint_every=1", "--set", "num_workers=0", "--set",
                             'model={"image_height": 64, "image_width": 128}', "-q"],
                            cwd=work, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(list((work / "run" / "checkpoints").glob("step_*.train.pt"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().startswith("interrupted: checkpoints up to step_") and "--resume run" in err, err
    ckpt = work / "run" / "checkpoints"
    for pt in ckpt.glob("*.train.pt"):  # no orphan: each training state has its weights
        assert pt.with_name(pt.name.replace(".train.pt", ".safetensors")).exists()
    assert not [p for p in ckpt.iterdir() if p.name.startswith(".")]
