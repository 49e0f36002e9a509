"""bench/benchmark.py runs end to end on a small generated clip and reports consistent numbers."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import av
import pytest

REPO = Path(__file__).resolve().parents[1]


def test_benchmark_small_clip(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(REPO / "bench" / "benchmark.py"), "--seconds", "1", "--in-size", "960x480",
           "--fps", "12", "--size", "320x180", "--preset", "ultrafast", "--device", "cpu", "--moving",
           "--moving-seconds", "0.5", "--workdir", str(tmp_path), "--json", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
    res = json.loads(out.read_text())

    assert res["pan360_moving"]["frames"] == 12
    for name in ("ffmpeg_fixed", "ffmpeg_moving", "pan360_moving", "pan360_fixed", "floor_moving"):
        r = res[name]
        assert r["wall_s"] > 0 and r["cpu_s"] > 0 and r["peak_rss_mib"] > 0, name
    for key in ("ratio_wall", "ratio_cpu", "ratio_fixed_wall", "ratio_fixed_cpu", "floor_ratio_cpu"):
        assert math.isfinite(res[key]) and res[key] > 0, key
    # The floor replays the moving run's pictures, so it encodes the same bitstream.
    assert (tmp_path / "floor_moving.mp4").read_bytes() == (tmp_path / "pan360_moving.mp4").read_bytes()
    parts = res["ffmpeg_parts"]
    assert parts["decode_cpu_s"] > 0 and parts["x264_fixed_cpu_s"] > 0 and parts["x264_moving_cpu_s"] > 0
    assert parts["bound_ratio_cpu"] == pytest.approx(
        (parts["decode_cpu_s"] + parts["x264_moving_cpu_s"]) / res["ffmpeg_fixed"]["cpu_s"])
    assert not list(tmp_path.glob("*.yuv"))  # the raw pictures are not left behind
    # ffmpeg's x264 of pan360's raw moving pictures decodes to the path's frame count and size.
    with av.open(str(tmp_path / "x264_moving.mp4")) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 12 and (frames[0].width, frames[0].height) == (320, 180)
