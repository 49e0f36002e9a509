"""Progress reporting, one convention for the whole package.

Every long step takes an optional ``progress(done, total)`` callback (:data:`Progress`); the public
API (:mod:`pan360.pipeline`) takes a ``progress(stage, done, total)`` callback (:data:`StageProgress`)
and hands each step its own :func:`stage` of it. Units are the step's own (frames, seconds, steps).
"""

from __future__ import annotations

from collections.abc import Callable

#: ``progress(done, total)`` of one step.
Progress = Callable[[int, int], None]
#: ``progress(stage, done, total)`` of a whole job; stages: "audio", "saliency", "trajectory",
#: "render", "heatmap", "train", "eval", "concat".
StageProgress = Callable[[str, int, int], None]


def stage(progress: StageProgress | None, name: str) -> Progress | None:
    """The :data:`Progress` of stage ``name`` of a job's ``progress`` (None stays None)."""
    if progress is None:
        return None
    return lambda done, total: progress(name, done, total)


def offset(progress: Progress | None, start: int, total: int) -> Progress | None:
    """The :data:`Progress` of one part of a step that reports ``start + done`` of ``total`` overall."""
    if progress is None:
        return None
    return lambda done, _: progress(start + done, total)
