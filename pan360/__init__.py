"""pan360: turn a 360° equirectangular video into a normal-field-of-view video that follows the sound.

Python API (the CLI's flags are these functions' keywords)::

    import pan360
    pan360.render("in.mp4", "out.mp4", size="1280x720", trajectory_out="path.json")
    pan360.saliency("in.mp4", "heatmap.mp4", maps_out="maps.npz")
    info = pan360.info("in.mp4")

Lower layers: :mod:`pan360.media` (decode/encode), :mod:`pan360.spatial` (ambisonics),
:mod:`pan360.saliency` (sources), :mod:`pan360.trajectory`, :mod:`pan360.paths`, :mod:`pan360.render`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["render", "saliency", "info", "Pan360Error", "__version__"]

from pan360.errors import Pan360Error


def __getattr__(name: str) -> Any:
    # The pipeline pulls in torch and OpenCV; import it only when the API is used.
    if name in ("render", "saliency", "info"):
        from pan360 import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'pan360' has no attribute {name!r}")
