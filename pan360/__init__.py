"""pan360: turn a 360° equirectangular video into a normal-field-of-view video that follows the sound.

Python API (the CLI's flags are these functions' keywords)::

    import pan360
    pan360.render("in.mp4", "out.mp4", size="1280x720", trajectory_out="path.json")
    pan360.sources("in.mp4", "heatmap.mp4", maps_out="maps.npz")
    info = pan360.info("in.mp4")
    analysis = pan360.analyse("in.mp4")  # info, audio, maps and camera path; nothing written

The stages, in the order the data flows: :mod:`pan360.media` (probe, decode, encode, the camera's
motion metadata), :mod:`pan360.stabilize` (the frame everything after lives in: camera, level or
world), :mod:`pan360.sources` (saliency sources: spatial audio in :mod:`pan360.spatial`, the network in
:mod:`pan360.nn`), :mod:`pan360.trajectory` (the camera path, :mod:`pan360.paths`),
:mod:`pan360.rendering` (reprojection of equirect or cubemap frames, :mod:`pan360.reproject`,
:mod:`pan360.projections`); :mod:`pan360.pipeline` joins them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
#: The API functions, served from :mod:`pan360.pipeline`. No submodule may take one of these names:
#: importing it would bind the module on the package in the function's place.
API = ("analyse", "render", "saliency", "info")
__all__ = [*API, "Pan360Error", "__version__"]

from pan360.errors import Pan360Error


def __getattr__(name: str) -> Any:
    # The pipeline pulls in OpenCV, SciPy and (for the network) torch: import it only when the API is used.
    if name in API:
        from pan360 import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'pan360' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *API})
