"""Pictures of what pan360 decided: saliency heatmap videos, trajectory plots, raw map files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from pan360.media import MediaInfo, VideoWriter, equirect_picture, iter_frames
from pan360.progress import Progress
from pan360.paths import CameraPath
from pan360.sphere import equirect_angles, equirect_solid_angle

HEATMAP_OPACITY = 0.65  # opacity of the colour where saliency is at the clip's reference level


def map_scale(maps: NDArray[np.floating]) -> float:
    """One colour-scale reference for a whole clip: a high percentile of its map values.

    A shared scale keeps silence dark and loud sources bright; a percentile instead of the maximum
    stops one transient from washing out the rest.
    """
    m = np.asarray(maps, dtype=np.float32)
    if m.size == 0:
        return 1.0
    peaks = m.reshape(m.shape[0], -1).max(axis=1)
    ref = float(np.percentile(peaks, 95)) if peaks.size else 0.0
    return ref if ref > 0 else 1.0


def overlay_heatmap(frame: NDArray[np.uint8], saliency_map: NDArray[np.floating], scale: float) -> NDArray[np.uint8]:
    """Blend a saliency map (H', W' equirect, any grid) over an rgb24 equirect frame of any size."""
    h, w = frame.shape[:2]
    level = np.clip(np.asarray(saliency_map, dtype=np.float32) / scale, 0.0, 1.0)
    level = cv2.resize(level, (w, h), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1]
    alpha = (HEATMAP_OPACITY * np.sqrt(level))[..., None]  # sqrt: faint energy still shows a tint
    out = frame.astype(np.float32) * (1.0 - alpha) + colour.astype(np.float32) * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def write_heatmap_video(info: MediaInfo, maps: NDArray[np.floating], output: str | Path, *,
                        audio: tuple[Any, int] | None = None, crf: float = 23,
                        preset: str = "medium", max_width: int = 1920, progress: Progress | None = None) -> None:
    """The equirect video (one eye, at most ``max_width`` wide) with the maps as a heatmap overlay.

    Same frames and times as the input. ``audio``: ``(samples, sample_rate)`` to write with it (samples
    a (C, N) array or a :class:`~pan360.signal.Signal`, streamed to the encoder; channels AAC can carry,
    :func:`pan360.media.aac_writable`), or None.
    """
    scale = map_scale(maps)
    w, h = info.equirect_size
    if w > max_width:
        h = int(round(h * max_width / w))
        w = max_width
    w, h = w - w % 2, h - h % 2
    samples, rate = audio if audio is not None else (None, None)
    n = info.n_frames
    with VideoWriter(output, w, h, fps=info.fps, duration=info.duration, crf=crf, preset=preset, audio=samples,
                     sample_rate=rate) as writer:
        for i, (t, rgb) in enumerate(iter_frames(info, fmt="rgb24")):
            rgb = equirect_picture(rgb, info.layout, (w, h))
            writer.write(overlay_heatmap(rgb, maps[min(i, n - 1)], scale), t)
            if progress is not None:
                progress(i + 1, n)


def save_maps(file: str | Path, maps: NDArray[np.floating], times: NDArray[np.floating], source: str) -> None:
    """Raw maps as NPZ: ``maps`` (T, H, W) float32, ``times`` (T,) s, grid ``yaw`` (W,) / ``pitch`` (H,) °."""
    m = np.asarray(maps, dtype=np.float32)
    yaw, pitch = equirect_angles(m.shape[2], m.shape[1])
    with open(file, "wb") as f:  # a file object: np.savez would append ".npz" to a temporary name
        np.savez_compressed(f, maps=m, times=np.asarray(times, dtype=np.float64), yaw=yaw, pitch=pitch,
                            source=np.array(source))


def _yaw_profile(maps: NDArray[np.floating]) -> NDArray[np.float64]:
    """Saliency per yaw column (T, W): each map summed over pitch with solid-angle weights."""
    m = np.asarray(maps, dtype=np.float64)
    return (m * equirect_solid_angle(m.shape[2], m.shape[1])).sum(axis=1)


def _break_wraps(t: NDArray[np.floating], yaw: NDArray[np.floating]) -> tuple[NDArray, NDArray]:
    """Insert NaN where yaw wraps across ±180 so the line is not drawn across the plot."""
    jump = np.abs(np.diff(yaw)) > 180.0
    tt = np.insert(np.asarray(t, dtype=np.float64), np.nonzero(jump)[0] + 1, np.nan)
    yy = np.insert(np.asarray(yaw, dtype=np.float64), np.nonzero(jump)[0] + 1, np.nan)
    return tt, yy


def plot_trajectory(file: str | Path, path: CameraPath, maps: NDArray[np.floating] | None = None, *,
                    title: str = "") -> None:
    """PNG: camera yaw (and pitch) against time, over the saliency's yaw profile when maps are given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_yaw, ax_pitch) = plt.subplots(2, 1, figsize=(10, 6), sharex=True,
                                           gridspec_kw={"height_ratios": [3, 1]})
    t0, t1 = float(path.times[0]), float(path.times[-1]) if len(path) > 1 else float(path.times[0]) + 1.0
    if maps is not None and np.asarray(maps).size:
        prof = _yaw_profile(maps)
        ax_yaw.imshow(prof.T, origin="lower", aspect="auto", cmap="inferno", extent=(t0, t1, -180, 180),
                      vmin=0.0, vmax=max(float(np.percentile(prof, 99.5)), 1e-12), interpolation="nearest")
    tt, yy = _break_wraps(path.times, path.yaw)
    half = path.h_fov / 2.0
    ax_yaw.plot(tt, yy, color="cyan", lw=1.8, label="camera yaw")
    for sign in (-1.0, 1.0):
        te, ye = _break_wraps(path.times, ((path.yaw + sign * half + 180.0) % 360.0) - 180.0)
        ax_yaw.plot(te, ye, color="cyan", lw=0.6, ls="--")
    ax_yaw.set_ylim(-180, 180)
    ax_yaw.set_yticks(range(-180, 181, 45))
    ax_yaw.set_ylabel("yaw (°, + right)")
    ax_yaw.legend(loc="upper right", fontsize=8)
    ax_yaw.set_title(title + ("  —  saliency (by yaw) and camera" if maps is not None else "  —  camera path"))
    ax_pitch.plot(path.times, path.pitch, color="tab:blue", lw=1.2)
    ax_pitch.set_ylim(-90, 90)
    ax_pitch.set_ylabel("pitch (°)")
    ax_pitch.set_xlabel("time (s)")
    ax_pitch.grid(alpha=0.3)
    fig.tight_layout()
    with open(file, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
