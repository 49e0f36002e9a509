"""Checks of the numeric options, frame sizes and x264 settings, shared by the pipeline, the path
files and the CLI. Each raises a one-line :class:`Pan360Error` naming the option, before any work."""

from __future__ import annotations

import math

from pan360.errors import Pan360Error

#: Output frame sides in pixels (``--size`` and the width/height of a ``--path`` file alike).
MIN_SIDE, MAX_SIDE = 16, 8192
#: x264's presets, fastest first (``x264 --help``).
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")
#: x264's CRF range for 8-bit output (yuv420p).
CRF_RANGE = (0.0, 51.0)


def check_number(value: float, name: str, *, low: float | None = None, high: float | None = None,
                 above: bool = False) -> float:
    """``value`` as a float, or a Pan360Error unless it is finite and within [low, high]
    (``above``: strictly greater than ``low``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise Pan360Error(f"{name} must be a number, got {value!r}") from None
    if not (math.isfinite(v) and (low is None or (v > low if above else v >= low)) and (high is None or v <= high)):
        bounds = ([f"{'above' if above else 'at least'} {low:g}"] if low is not None else []) + \
            ([f"at most {high:g}"] if high is not None else [])
        within = f" ({' and '.join(bounds)})" if bounds else ""
        raise Pan360Error(f"{name} must be a finite number{within}, got {v:g}")
    return v


def check_frame_size(width: int, height: int, where: str) -> None:
    """Output frame sides: :data:`MIN_SIDE` .. :data:`MAX_SIDE` pixels, even (H.264 yuv420p)."""
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise Pan360Error(f"{where} {width}x{height}: each side must be between {MIN_SIDE} and {MAX_SIDE} pixels")
    if width % 2 or height % 2:
        raise Pan360Error(f"{where} {width}x{height}: width and height must be even (H.264 yuv420p)")


def check_x264(crf: float, preset: str) -> None:
    """``--crf`` within x264's range and ``--preset`` one of x264's (checked before decoding starts)."""
    check_number(crf, "--crf", low=CRF_RANGE[0], high=CRF_RANGE[1])
    if preset not in X264_PRESETS:
        raise Pan360Error(f"--preset {preset!r} is not an x264 preset ({', '.join(X264_PRESETS)})")
