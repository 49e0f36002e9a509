"""`pan360 eval points`: hand-annotated source points against a camera path (hand-computed cases)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pan360.errors import Pan360Error
from pan360.metrics import load_annotated_points, nearest_frames, points_in_view
from pan360.paths import CameraPath, constant_path, save_path
from test_cli import assert_one_line_error

# 16:9 at h_fov 90: tan(v/2) = tan(45°)·9/16 → v_fov = 58.7155°, half 29.358°.
HALF_V = math.degrees(math.atan(9 / 16))


def still(yaw=0.0, pitch=0.0, roll=0.0, n=10, fps=10.0) -> CameraPath:
    return constant_path(np.arange(n) / fps, yaw, pitch, 90.0, 1280, 720, fps, roll=roll)


def moving(fps=4.0) -> CameraPath:
    """Frames at 0, 1/fps, ...; yaw 0, 60, 120, 180, -120 (one frame each), pitch 0."""
    yaw = np.array([0.0, 60.0, 120.0, 180.0, -120.0])
    n = len(yaw)
    return CameraPath(np.arange(n) / fps, yaw, np.zeros(n), np.zeros(n), np.full(n, 90.0),
                      np.full(n, 2 * HALF_V), 1280, 720, fps)


def rows(report):
    return [(p.in_view, p.angular_error) for p in report.points]


# ----------------------------------------------------------------------------------- function
def test_v_fov_of_the_path_is_the_16_9_one():
    assert still().v_fov[0] == pytest.approx(58.7155, abs=1e-3)
    assert HALF_V == pytest.approx(29.3578, abs=1e-3)


def test_still_camera_horizontal_and_vertical_edges():
    rep = points_in_view(still(), [[0.0, 40.0, 0.0], [0.1, 50.0, 0.0], [0.2, -40.0, 0.0], [0.3, 0.0, 30.0],
                                   [0.4, 0.0, -29.0], [0.5, 0.0, 0.0]])
    assert [p.in_view for p in rep.points] == [True, False, True, False, True, True]
    np.testing.assert_allclose([p.angular_error for p in rep.points], [40, 50, 40, 30, 29, 0], atol=1e-9)
    assert (rep.in_view, rep.total) == (4, 6)
    assert rep.share == pytest.approx(4 / 6)


def test_off_axis_points_use_the_image_plane_not_the_angles():
    # yaw 40, pitch 25: on the image plane right = tan 40 = 0.839 < 1 but up = tan 25 / cos 40 = 0.609 >
    # tan 29.36 = 0.5625, so out although 25 < 29.36; pitch 20 gives up = 0.475: in.
    rep = points_in_view(still(), [[0.0, 40.0, 25.0], [0.0, 40.0, 20.0]])
    assert [p.in_view for p in rep.points] == [False, True]
    expected = [math.degrees(math.acos(math.cos(math.radians(40)) * math.cos(math.radians(e)))) for e in (25, 20)]
    np.testing.assert_allclose([p.angular_error for p in rep.points], expected, atol=1e-9)
    assert expected[0] == pytest.approx(46.03, abs=0.01)


def test_pitched_camera():
    rep = points_in_view(still(pitch=30.0), [[0.0, 0.0, 50.0], [0.0, 0.0, 60.0], [0.0, 0.0, 0.0]])
    assert [p.in_view for p in rep.points] == [True, False, False]
    np.testing.assert_allclose([p.angular_error for p in rep.points], [20, 30, 30], atol=1e-9)


def test_across_the_seam():
    rep = points_in_view(still(yaw=170.0), [[0.0, -170.0, 0.0], [0.0, -150.0, 0.0], [0.0, -120.0, 0.0],
                                            [0.0, 130.0, 0.0], [0.0, 120.0, 0.0]])
    assert [p.in_view for p in rep.points] == [True, True, False, True, False]
    np.testing.assert_allclose([p.angular_error for p in rep.points], [20, 40, 70, 40, 50], atol=1e-9)


def test_rotate_adds_to_the_annotated_yaw_and_wraps():
    pts = [[0.0, 100.0, 0.0]]
    plain = points_in_view(still(), pts)
    assert rows(plain) == [(False, pytest.approx(100.0))]
    turned = points_in_view(still(), pts, rotate=-100.0)
    assert rows(turned) == [(True, pytest.approx(0.0, abs=1e-9))]
    assert turned.points[0].yaw == 0.0 and turned.rotate == -100.0
    # 170 + 20 = 190 → -170; 20° from a camera at 170 the short way round the seam.
    seam = points_in_view(still(yaw=170.0), [[0.0, 170.0, 0.0]], rotate=20.0)
    assert seam.points[0].yaw == pytest.approx(-170.0)
    assert rows(seam) == [(True, pytest.approx(20.0))]
    # Content moving right: a source that was at yaw -30 is seen at +10 after turning by 40.
    assert points_in_view(still(), [[0.0, -30.0, 5.0]], rotate=40.0).points[0].yaw == pytest.approx(10.0)


def test_nearest_frame_of_a_moving_camera():
    path = moving()  # frames at 0, 0.25, 0.5, 0.75, 1.0 s; yaw 0, 60, 120, 180, -120
    pts = [[0.37, 60.0, 0.0],    # nearest 0.25 (yaw 60): 0° off, in
           [0.38, 60.0, 0.0],    # nearest 0.5 (yaw 120): 60° off, out
           [0.125, 0.0, 0.0],    # tie between 0 and 0.25: the earlier frame
           [0.9, -170.0, 0.0],   # nearest 1.0 (yaw -120): 50° off, out
           [0.7, -170.0, 0.0]]   # nearest 0.75 (yaw 180): 10° off across the seam, in
    rep = points_in_view(path, pts)
    assert [p.frame for p in rep.points] == [1, 2, 0, 4, 3]
    assert [p.camera_yaw for p in rep.points] == [60.0, 120.0, 0.0, -120.0, 180.0]
    assert [p.in_view for p in rep.points] == [True, False, True, False, True]
    np.testing.assert_allclose([p.angular_error for p in rep.points], [0, 60, 0, 50, 10], atol=1e-9)


def test_roll_turns_the_frustum():
    # Rolled by 90°, the 90° h_fov is vertical: yaw 40 is beyond the 29.4° half-height, pitch 40 fits.
    pts = [[0.0, 40.0, 0.0], [0.0, 0.0, 40.0]]
    assert [p.in_view for p in points_in_view(still(), pts).points] == [True, False]
    rolled = points_in_view(still(roll=90.0), pts)
    assert [p.in_view for p in rolled.points] == [False, True]
    np.testing.assert_allclose([p.angular_error for p in rolled.points], [40, 40], atol=1e-9)
    assert rolled.points[0].camera_roll == 90.0


def test_time_span_allows_one_frame_and_no_more():
    path = still(n=10, fps=10.0)  # 0 .. 0.9 s
    assert list(nearest_frames(path, [-0.1, 0.0, 0.44, 0.46, 1.0])) == [0, 0, 4, 5, 9]
    for t in (-0.15, 1.05):
        with pytest.raises(Pan360Error, match="outside the trajectory's time span"):
            points_in_view(path, [[0.5, 0.0, 0.0], [t, 0.0, 0.0]])


@pytest.mark.parametrize("points, fragment", [
    (np.zeros((0, 3)), "no points"),
    ([[0.0, 1.0]], "[time, yaw, pitch]"),
    ([[0.0, math.nan, 0.0]], "non-finite"),
    ([[0.0, 0.0, 95.0]], "pitch"),
])
def test_bad_points(points, fragment):
    with pytest.raises(Pan360Error) as exc:
        points_in_view(still(), points)
    assert fragment in str(exc.value)


def test_as_dict_is_json():
    doc = points_in_view(still(), [[0.0, 40.0, 0.0], [0.1, 50.0, 0.0]], rotate=5.0).as_dict()
    doc = json.loads(json.dumps(doc))
    assert (doc["in_view"], doc["total"], doc["share"], doc["rotate"]) == (0, 2, 0.0, 5.0)
    assert doc["points"][0]["yaw"] == 45.0 and doc["points"][0]["in_view"] is False


# --------------------------------------------------------------------------------- annotations
def write_annotations(folder: Path, clips: dict | None = None) -> Path:
    clips = clips if clips is not None else {
        "drums": {"file": "drums.webm", "points": [[0.0, 40, 0], [0.5, 50, 0], [0.9, 0, 30], [0.3, 100, 0]],
                  "what": "test"},
        "quiet": {"file": "quiet.webm", "points": [[0.1, -3, -7]], "what": "test"},
    }
    f = folder / "annotations.json"
    f.write_text(json.dumps({"_about": "test points", "clips": clips}))
    return f


def test_load_annotated_points(tmp_path: Path):
    f = write_annotations(tmp_path)
    np.testing.assert_array_equal(load_annotated_points(f, "quiet"), [[0.1, -3, -7]])
    assert load_annotated_points(f, "drums").shape == (4, 3)
    with pytest.raises(Pan360Error, match="no clip 'nope' \\(known: drums, quiet\\)"):
        load_annotated_points(f, "nope")


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "is not valid JSON"),
    ('{"clips": []}', "'clips' object"),
    ('{"clips": {"a": {"points": []}}}', "no 'points' list"),
    ('{"clips": {"a": {"points": [[0, 1]]}}}', "point 0 must be [time, yaw, pitch]"),
    ('{"clips": {"a": {"points": [[0, 1, "x"]]}}}', "point 0 must be"),
    ('{"clips": {"a": {"points": [[0, 1, 91]]}}}', "pitch must be in [-90, 90]"),
])
def test_bad_annotations(tmp_path: Path, content: str, fragment: str):
    f = tmp_path / "a.json"
    f.write_text(content)
    with pytest.raises(Pan360Error) as exc:
        load_annotated_points(f, "a")
    assert fragment in str(exc.value)


def test_missing_annotations_file(tmp_path: Path):
    with pytest.raises(Pan360Error, match="cannot read annotations"):
        load_annotated_points(tmp_path / "none.json", "a")


# ------------------------------------------------------------------------------------------ CLI
def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pan360", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    traj = tmp_path / "path.json"
    save_path(still(n=10, fps=10.0), traj)  # yaw 0, pitch 0, 90° x 58.7°, 0 .. 0.9 s
    return traj, write_annotations(tmp_path)


def test_cli_prints_and_writes_json(files, tmp_path: Path):
    traj, ann = files
    out = tmp_path / "points.json"
    proc = run_cli("eval", "points", traj, ann, "--clip", "drums", "--json", out)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("in view: 1/4")
    assert len(lines) == 5
    assert [ln.split()[-1] for ln in lines[1:]] == ["in", "out", "out", "out"]
    assert "error  40.00°" in lines[1] and "error 100.00°" in lines[4]
    doc = json.loads(out.read_text())
    assert (doc["clip"], doc["in_view"], doc["total"], doc["rotate"]) == ("drums", 1, 4, 0.0)
    assert doc["share"] == pytest.approx(0.25)
    assert [p["in_view"] for p in doc["points"]] == [True, False, False, False]
    np.testing.assert_allclose([p["angular_error"] for p in doc["points"]], [40, 50, 30, 100], atol=1e-6)
    assert [p["frame"] for p in doc["points"]] == [0, 5, 9, 3]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_cli_rotate(files, tmp_path: Path):
    traj, ann = files
    proc = run_cli("eval", "points", traj, ann, "--clip", "drums", "--rotate", "-100")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    # yaw 40, 50, 0, 100 → -60, -50, -100, 0 (pitch 30 stays out): only the last one is in view.
    assert lines[0].startswith("in view: 1/4")
    assert lines[-1].split()[-1] == "in" and "error   0.00°" in lines[-1]


def test_cli_json_refuses_existing_and_inputs(files, tmp_path: Path):
    traj, ann = files
    out = tmp_path / "points.json"
    out.write_text("keep")
    assert_one_line_error(run_cli("eval", "points", traj, ann, "--clip", "drums", "--json", out), "already exists")
    assert out.read_text() == "keep"
    proc = run_cli("eval", "points", traj, ann, "--clip", "drums", "--json", out, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["total"] == 4
    for inp in (traj, ann):
        before = inp.read_bytes()
        assert_one_line_error(run_cli("eval", "points", traj, ann, "--clip", "drums", "--json", inp, "--overwrite"),
                              "same file as the input")
        assert inp.read_bytes() == before


def test_cli_bad_inputs_one_line(files, tmp_path: Path):
    traj, ann = files
    assert_one_line_error(run_cli("eval", "points", traj, ann, "--clip", "nope"), "no clip 'nope'", "drums, quiet")
    assert_one_line_error(run_cli("eval", "points", tmp_path / "none.json", ann, "--clip", "drums"),
                          "cannot read trajectory")
    assert_one_line_error(run_cli("eval", "points", traj, tmp_path / "none.json", "--clip", "drums"),
                          "cannot read annotations")
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    assert_one_line_error(run_cli("eval", "points", bad, ann, "--clip", "drums"), "is not valid JSON")
    assert_one_line_error(run_cli("eval", "points", traj, bad, "--clip", "drums"), "is not valid JSON")
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"version": 1, "fps": 10, "width": 1280, "height": 720, "frames": []}))
    assert_one_line_error(run_cli("eval", "points", empty, ann, "--clip", "drums"), "non-empty")
    late = write_annotations(tmp_path, {"late": {"file": "x", "points": [[0.5, 0, 0], [2.0, 0, 0]], "what": ""}})
    assert_one_line_error(run_cli("eval", "points", traj, late, "--clip", "late"),
                          "2 s is outside the trajectory's time span 0.000-0.900 s")
