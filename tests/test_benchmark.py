"""bench/benchmark.py runs end to end on tiny generated clips (``--quick``) and reports consistent numbers."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import psnr

REPO = Path(__file__).resolve().parents[1]


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="gray") for f in c.decode(video=0)]


def test_benchmark_quick_light_and_4k(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(REPO / "bench" / "benchmark.py"), "--quick", "--sections", "light,4k", "--device", "cpu", "--runs", "2",
           "--workdir", str(tmp_path), "--json", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
    res = json.loads(out.read_text())
    for section in ("light", "4k"):
        sec = res[section]
        assert sec["frames"] == 30 and sec["size"] == "320x180"
        for name, r in sec["measured"].items():
            assert r["wall_s"] > 0 and r["cpu_s"] > 0 and r["peak_rss_mib"] > 0 and len(r["runs"]) == 2, name
        targets = {r["name"]: r["target"] for r in sec["ratios"]}
        assert targets["pan360 render --path, moving path / floor of its pictures"] == 1.05
        for r in sec["ratios"]:
            assert math.isfinite(r["cpu"]) and r["cpu"] > 0 and r["pass"] in (True, False, None), r["name"]
            assert r["pass"] is None or r["pass"] == (r["cpu"] <= r["target"])
            assert r["cpu_range"][0] <= r["cpu"] <= r["cpu_range"][1], r["name"]  # the median of the rounds' ratios
        # A floor is summed round by round (its ratio pairs each round with that round's floor).
        m, floor = sec["measured"], sec["derived"]["floor"]["fixed"]
        for i, run in enumerate(floor["runs"]):
            parts = [("ffmpeg decode of the clip (-f null)", 1), ("ffmpeg x264 of pan360's fixed pictures", 1),
                     ("ffmpeg reading a raw picture file back", -1)]
            if "ffmpeg AAC of the track" in m:
                parts += [("ffmpeg AAC of the track", 1), ("ffmpeg reading the wav back", -1)]
            assert math.isclose(run["cpu_s"], sum(g * m[k]["runs"][i]["cpu_s"] for k, g in parts)), i
        pan = m["pan360 render --path, fixed view"]["runs"]
        by_round = sorted(p["cpu_s"] / f["cpu_s"] for p, f in zip(pan, floor["runs"]))
        fixed = next(r for r in sec["ratios"] if r["name"] == "pan360 render --path, fixed view / floor of its pictures")
        assert fixed["cpu_range"] == pytest.approx(by_round) and fixed["cpu"] == pytest.approx(sum(by_round) / 2)
        # The floor's x264 encodes exactly the pictures the CLI rendered: both encodes decode alike.
        for kind in ("fixed", "moving"):
            ours, theirs = _frames(tmp_path / "out" / f"{section}_pan360_{kind}.mp4"), _frames(
                tmp_path / "out" / f"{section}_x264_{kind}.mp4")
            assert len(ours) == len(theirs) == 30 and ours[0].shape == (180, 320)
            assert min(psnr(a, b) for a, b in zip(ours, theirs)) > 40.0
    targets = {r["name"]: r["target"] for r in res["4k"]["ratios"]}
    assert targets["pan360 render --path, moving path / ffmpeg fixed view"] == 1.15
    assert not list(tmp_path.rglob("*.yuv")) and not list(tmp_path.rglob("*.wav"))  # raw files removed
