"""The render loop: decode → reproject (:class:`pan360.reproject.Renderer`) → encode, overlapped in
threads with bounded queues, so memory does not grow with the duration."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from .errors import Pan360Error
from pan360.progress import Progress
from .reproject import Renderer


_DONE = object()
_QUEUE_FRAMES = 3  # frames in flight per queue: bounds memory whatever the duration (~12 MB per 4K frame)


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put unless the pipeline is stopping (a blocked put would otherwise hang on an error)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event) -> Any:
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return _DONE


def path_indices(path_times: NDArray[np.float64], frame_times: NDArray[np.float64]) -> NDArray[np.intp]:
    """Index of the camera-path entry nearest in time to each frame (the path normally has one per frame)."""
    pt = np.asarray(path_times, dtype=np.float64)
    ft = np.asarray(frame_times, dtype=np.float64)
    right = np.clip(np.searchsorted(pt, ft), 1, max(1, len(pt) - 1))
    left = right - 1
    if len(pt) == 1:
        return np.zeros(len(ft), dtype=np.intp)
    return np.where(np.abs(ft - pt[left]) <= np.abs(pt[right] - ft), left, right).astype(np.intp)


def render_video(
    info: Any,
    path: Any,
    output_path: Any,
    *,
    crf: float = 20,
    preset: str = "medium",
    audio: Any = None,
    device: str = "auto",
    grid: str = "centre",
    stabilization: Any = None,
    progress: Progress | None = None,
    stats: dict[str, float] | None = None,
) -> int:
    """Render ``info``'s video along camera ``path`` to an H.264/AAC MP4 at ``output_path``.

    Parameters
    ----------
    info : :class:`pan360.media.MediaInfo` of the input.
    path : :class:`pan360.paths.CameraPath`; its width/height is the output size. Frame ``i`` (at
        ``info.frame_times[i]``) is rendered with the path entry nearest in time.
    output_path : file written directly (the caller wraps it in :func:`pan360.media.atomic_output`).
    crf, preset : libx264 settings.
    audio : the final audio track: ``(samples, sample_rate)`` with samples a float32 (C, N) array or a
        :class:`~pan360.signal.Signal` (streamed to the encoder), a signal, or an object with ``samples``
        and ``sample_rate`` (e.g. :class:`pan360.media.AudioTrack`); None for no audio.
    device : "auto", "cpu" or "cuda" (see :class:`Renderer`).
    grid : source pixel grid, "centre" or "v360".
    stabilization : a :class:`pan360.stabilize.Stabilization` whose frame ``path`` is in; each view is
        composed with the camera's rotation at its frame, so the one reprojection also stabilises.
    progress : optional callback (frames done, total).
    stats : if given, filled with the busy seconds of each stage ("decode", "render", "encode") and
        the number of frames whose table was computed per pixel ("exact_tables").

    Decoding, rendering and encoding run in three threads joined by bounded queues, so the stages
    overlap (libavcodec, OpenCV and x264 release the GIL) and memory does not grow with the duration.
    The output has the input's frame count and frame times. Returns the number of frames written.
    """
    from .media import VideoWriter, iter_frames

    samples, rate = _audio_parts(audio)
    renderer = Renderer(info.eye_width, info.eye_height, int(path.width), int(path.height), device=device, grid=grid,
                        projection=info.layout)
    idx = path_indices(path.times, info.frame_times)
    views = [path.view(i) for i in idx]
    if stabilization is not None and stabilization.active:
        views = [stabilization.camera_view(n, v) for n, v in enumerate(views)]
    total = len(views)
    decoded: queue.Queue = queue.Queue(maxsize=_QUEUE_FRAMES)
    rendered: queue.Queue = queue.Queue(maxsize=_QUEUE_FRAMES)
    stop = threading.Event()
    errors: list[BaseException] = []
    written = [0]
    busy = {"decode": 0.0, "render": 0.0, "encode": 0.0}

    def decode() -> None:
        try:
            frames = iter_frames(info, fmt="yuv420p")
            while True:
                t0 = time.perf_counter()
                item = next(frames, _DONE)
                busy["decode"] += time.perf_counter() - t0
                if item is _DONE or not _put(decoded, item, stop):
                    break
            _put(decoded, _DONE, stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)
            stop.set()

    def encode() -> None:
        try:
            with VideoWriter(
                output_path, renderer.out_size[0], renderer.out_size[1], fps=info.fps, duration=info.duration,
                crf=crf, preset=preset, audio=samples, sample_rate=rate,
            ) as writer:
                while True:
                    item = _get(rendered, stop)
                    if item is _DONE:
                        if stop.is_set():
                            raise Pan360Error("rendering was interrupted")
                        break
                    t0 = time.perf_counter()
                    writer.write(item[1], item[0])
                    busy["encode"] += time.perf_counter() - t0
                    written[0] += 1
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=f, name=f"pan360-{f.__name__}", daemon=True) for f in (decode, encode)]
    for t in threads:
        t.start()
    # The three stages already keep the cores busy; OpenCV's own worker threads would only add
    # synchronisation (measured: ~15% more CPU per remap). Restored afterwards.
    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for n in range(total + 1):
            item = _get(decoded, stop)
            if item is _DONE:
                break
            if n == total:
                raise Pan360Error("the decoder delivered more frames than the probe counted")
            t, (y, u, v) = item
            t0 = time.perf_counter()
            frame = renderer.render_yuv420(y, u, v, views[n])
            busy["render"] += time.perf_counter() - t0
            if not _put(rendered, (t, frame), stop):
                break
            if progress is not None:
                progress(n + 1, total)
        _put(rendered, _DONE, stop)
    except BaseException:
        stop.set()
        raise
    finally:
        cv2.setNumThreads(cv_threads)
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    if stats is not None:
        stats.update(busy, exact_tables=float(renderer.exact_tables))
    return written[0]


def _audio_parts(audio: Any) -> tuple[Any, int | None]:
    """(samples or signal, rate) of the ``audio`` argument of :func:`render_video`."""
    from pan360.signal import Signal

    if audio is None:
        return None, None
    if isinstance(audio, Signal):
        return audio, audio.sample_rate
    if hasattr(audio, "samples") and hasattr(audio, "sample_rate"):
        return np.asarray(audio.samples, dtype=np.float32), int(audio.sample_rate)
    samples, rate = audio
    return samples, int(rate)
