"""The Python API: the functions stay functions whatever was imported, and ``import pan360`` stays light."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

import pan360
from conftest import write_drum_clip


def test_api_functions_survive_importing_the_internals(tmp_path: Path) -> None:
    clip = write_drum_clip(tmp_path / "in.mp4", width=256, height=128, duration=1.0, sounding_until=0.6)
    # the internals of every stage, imported before and between the calls
    import pan360.pipeline  # noqa: F401
    import pan360.rendering  # noqa: F401
    import pan360.sources  # noqa: F401
    import pan360.sources.fusion  # noqa: F401
    import pan360.sources.network  # noqa: F401
    from pan360 import analyse, info, render, saliency  # noqa: F401

    for name in pan360.API:
        assert callable(getattr(pan360, name)), name
    results = [pan360.render(clip, tmp_path / f"r{i}.mp4", size="64x36", saliency="foa", overwrite=True)
               for i in range(2)]
    import pan360.sources.network  # noqa: F401,F811 - importing again binds nothing over the API

    assert pan360.saliency is pan360.pipeline.saliency and pan360.render is pan360.pipeline.render
    heat = [pan360.saliency(clip, tmp_path / f"s{i}.mp4", saliency="foa", max_width=128, overwrite=True)
            for i in range(2)]
    assert all(r.output.is_file() and r.saliency_source == "foa" for r in results)
    assert np.array_equal(results[0].path.yaw, results[1].path.yaw)
    assert all(h.output.is_file() for h in heat) and np.array_equal(heat[0].maps, heat[1].maps)
    assert pan360.info(clip).n_frames == len(results[0].path)
    a = pan360.analyse(clip, size="64x36", saliency="foa")
    assert np.array_equal(a.path.yaw, results[0].path.yaw) and np.array_equal(a.maps, heat[0].maps)


def test_import_pan360_does_not_import_torch_or_the_pipeline() -> None:
    code = ("import sys, json, pan360; pan360.__version__; "
            "print(json.dumps([m for m in ('torch', 'cv2', 'av', 'pan360.pipeline') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_no_submodule_shadows_an_api_name() -> None:
    package = Path(pan360.__file__).parent
    taken = {p.stem for p in package.glob("*.py")} | {p.name for p in package.iterdir() if p.is_dir()}
    assert not taken & set(pan360.API)
