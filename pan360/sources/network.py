"""The ``net`` saliency source: the sound-attention network (:mod:`pan360.nn.model`) run per frame.

For each analysed video frame at time t:

1. **sound**: the model's window (``config.window`` s; 4 s for "small", 20 s for "vgg16") of mono audio
   centred on t — the W (omni) channel of FOA input, else the mean of the channels — resampled once to
   ``config.sample_rate``. Parts of the window beyond the clip's ends are zeros marked invalid (the
   model ignores conv8 steps that hear no real audio; see :func:`pan360.nn.inputs.sound_window`). Window
   centres are snapped to a grid of ``audio_hop`` s (0.1 s), so frames within one hop share one sound
   embedding (computed once): a 50 ms shift of a 4 s window changes nothing the network can use.
2. **picture**: the equirect frame (one eye) downscaled to the model input — ``input_height`` rows
   (default ``config.image_height``: 160 for "small"; the paper used 480x960 images) and the frame's
   own aspect, both multiples of 16 — by area averaging on the decoded YUV planes (a 4K frame is never
   converted to RGB at full size).
3. **attention** (H/16 x W/16, sums to 1) → mass per steradian of each cell → bilinear upsampling to
   the map grid (64 x 128) with horizontal wrap-around at the ±180° seam, renormalised so that
   Σ map · solid angle is exactly the frame's weight (below).

**Absolute scale.** Attention always sums to 1, even when nothing sounds. Each map is therefore scaled
by ``power x confidence``: ``power`` is the mean square of the mono signal in a 0.2 s Hann window
centred on the frame (full-scale² units, like the FOA maps' power: silence gives an all-zero map),
``confidence`` is the highest cosine similarity between the sound embedding and a grid cell, clipped
to [0, 1] (the network's own "I see the thing I hear"; no cell matching the sound gives ~0). So
Σ map · solid angle = power · confidence, and "nothing sounding" is a (near) zero map.

**Analysis rate.** On CUDA every frame is analysed (batched, autocast bf16/fp16). On CPU, frames are
analysed at :func:`cpu_rate` per second — 5 for the "small" model (every 6th frame at 30 fps), 2 for
the pretrained "lite0" (its 20 s sound windows are shared for 1 s, and every other analysed picture is
rolled by :data:`JITTER_PX` columns), 1 for the paper-size "vgg16" — and the maps of the frames in
between are linearly interpolated in time; skipped frames are still decoded (the codec needs them) but
never converted or resized. What that costs, measured: bench/README.md ("Network analysis speed").

Memory: the output maps (T x 64 x 128 float32, 32 KB per frame; none with ``sink``, which receives them
as they are made) plus one batch of small frames and the sound windows in hand (the audio is read window
by window: a streamed track is never held whole).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np
from numpy.typing import NDArray

from pan360 import sphere
from pan360.allocator import reuse_freed_memory
from pan360.errors import Pan360Error
from pan360.progress import Progress
from pan360.media import AudioStream, AudioTrack, MediaInfo
from pan360.signal import Resampled, Signal, as_signal

F32 = NDArray[np.float32]

#: Frames analysed per second on CPU (the rest are interpolated): "small" model, and anything bigger.
CPU_RATE = 5.0
CPU_RATE_LARGE = 1.0
#: Sound-window centres are snapped to this grid (s): frames within one hop share an embedding.
AUDIO_HOP = 0.1
#: Picture roll (columns of the model input) of every other analysed frame for wrapped equirect models:
#: half a stride-32 cell, one whole stride-16 cell (so the attention is rolled back exactly).
JITTER_PX = 16
#: Sound-window hop (s) for windows of 10 s or more (the pretrained SoundNet's 20 s).
LONG_WINDOW_HOP = 1.0
#: Frames analysed per second on CPU for the pretrained "lite0" model (≈0.2 CPU s a 512x1024 frame on
#: 2 cores, through :meth:`~pan360.nn.model.SoundLocalizer.for_inference`, one at a time, the heap reused).
CPU_RATE_LITE = 2.0
#: Seconds of the Hann window measuring the sound power that scales each map (as the FOA maps' window).
POWER_WINDOW = 0.2


@dataclass(frozen=True)
class NetworkPlan:
    """How a clip is analysed: device, model input size, frames analysed."""

    device: str
    input_size: tuple[int, int]  # (height, width) of the model input, multiples of 16
    analysed: NDArray[np.int64]  # indices of the frames the network sees (sorted, first and last included)
    rate: float | None  # analysed frames per second (None: every frame)


# ---------------------------------------------------------------------------------------- pieces
def input_size(eye_width: int, eye_height: int, height: int) -> tuple[int, int]:
    """(h, w) of the model input: ``height`` rounded to a multiple of 16 (>= 16) and the frame's aspect."""
    h = max(16, int(round(height / 16)) * 16)
    w = max(16, int(round(h * eye_width / eye_height / 16)) * 16)
    return h, w


def analysis_indices(times: NDArray[np.float64], rate: float | None) -> NDArray[np.int64]:
    """Frames to analyse: all (``rate`` None) or the frames nearest to a ``1/rate`` s grid, always
    including the first and the last frame."""
    t = np.asarray(times, dtype=np.float64)
    n = len(t)
    if rate is None or n <= 2:
        return np.arange(n, dtype=np.int64)
    if rate <= 0:
        raise Pan360Error(f"analysis rate must be positive, got {rate:g}")
    grid = t[0] + np.arange(0.0, t[-1] - t[0] + 1e-9, 1.0 / rate)
    j = np.clip(np.searchsorted(t, grid), 1, n - 1)
    near = np.where(np.abs(t[j - 1] - grid) <= np.abs(t[j] - grid), j - 1, j)
    return np.unique(np.concatenate([[0], near, [n - 1]])).astype(np.int64)


def window_power(mono: NDArray[np.float32] | Signal, sample_rate: int, times: NDArray[np.float64],
                 window: float = POWER_WINDOW) -> NDArray[np.float64]:
    """(T,) mean square of ``mono`` ((N,), or a one-channel signal read in time order) in a Hann window of
    ``window`` s centred on each time (zeros outside the clip count as silence)."""
    x = as_signal(mono, sample_rate)
    n = x.length
    half = max(1, int(round(window * sample_rate / 2)))
    win = np.hanning(2 * half + 1)[1:-1] if 2 * half + 1 > 2 else np.ones(1)
    win = win / win.sum()
    out = np.empty(len(times))
    for i, t in enumerate(np.asarray(times, dtype=np.float64)):
        c = int(round(t * sample_rate))
        a, b = c - len(win) // 2, c - len(win) // 2 + len(win)
        lo, hi = max(a, 0), min(b, n)
        seg = np.asarray(x.read(lo, hi)[0], dtype=np.float64) if hi > lo else np.zeros(0)
        out[i] = float((seg * seg) @ win[lo - a:hi - a]) if hi > lo else 0.0
    return out


def _interp_matrix(n_out: int, n_in: int, wrap: bool) -> NDArray[np.float64]:
    """(n_out, n_in) linear interpolation between cell centres (edge-clamped, or periodic)."""
    pos = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    i0 = np.floor(pos).astype(np.int64)
    f = pos - i0
    m = np.zeros((n_out, n_in))
    if wrap:
        np.add.at(m, (np.arange(n_out), i0 % n_in), 1.0 - f)
        np.add.at(m, (np.arange(n_out), (i0 + 1) % n_in), f)
    else:
        np.add.at(m, (np.arange(n_out), np.clip(i0, 0, n_in - 1)), 1.0 - f)
        np.add.at(m, (np.arange(n_out), np.clip(i0 + 1, 0, n_in - 1)), f)
    return m


def attention_to_maps(attention: NDArray[Any], weight: NDArray[Any], map_size: tuple[int, int]) -> F32:
    """Attention grids (B, h, w) (each summing to 1) → maps (B, H, W) per steradian on the equirect map
    grid, with Σ map · solid angle = ``weight`` (B,) exactly.

    The attention is first turned into mass per steradian of its own cells (an equirect grid too),
    then upsampled bilinearly between cell centres, wrapping around horizontally at the ±180° seam.
    """
    a = np.maximum(np.asarray(attention, dtype=np.float64), 0.0)
    b, gh, gw = a.shape
    h, w = map_size
    density = a / sphere.equirect_solid_angle(gw, gh)[None]
    up = np.einsum("Hh,bhw,Ww->bHW", _interp_matrix(h, gh, False), density, _interp_matrix(w, gw, True),
                   optimize=True)
    mass = (up * sphere.equirect_solid_angle(w, h)[None]).sum(axis=(1, 2))
    scale = np.divide(np.asarray(weight, dtype=np.float64), mass, out=np.zeros(b), where=mass > 0)
    return (up * scale[:, None, None]).astype(np.float32)


def network_input_rgb(data: Any, size: tuple[int, int], layout: str = "equirect") -> NDArray[np.uint8]:
    """The network's picture: a decoded yuv420p frame (Y, U, V planes) downscaled (area) to (h, w), as RGB;
    a cubemap ``layout`` is mapped to equirect on the way (:func:`pan360.media.equirect_picture`)."""
    from pan360.media import equirect_picture

    h, w = size
    y, u, v = data
    ys = equirect_picture(y, layout, (w, h))
    us = equirect_picture(u, layout, (w // 2, h // 2))
    vs = equirect_picture(v, layout, (w // 2, h // 2))
    i420 = np.concatenate([ys.reshape(-1), us.reshape(-1), vs.reshape(-1)]).reshape(h * 3 // 2, w)
    return cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)  # limited-range BT.601, as swscale's default


# ----------------------------------------------------------------------------------- the source
def cpu_rate(model: Any) -> float:
    """Default analysed frames per second on CPU: :data:`CPU_RATE` for the "small" model,
    :data:`CPU_RATE_LITE` for "lite0", :data:`CPU_RATE_LARGE` for the paper-size "vgg16" (≈40x the
    cost per frame of "small")."""
    arch = getattr(model.config, "arch", "small")
    return {"small": CPU_RATE, "lite0": CPU_RATE_LITE}.get(arch, CPU_RATE_LARGE)


def plan_analysis(model: Any, info: MediaInfo, *, device: str = "auto", rate: float | None = None,
                  input_height: int | None = None) -> NetworkPlan:
    """Decide device, input size and analysed frames (see the module docstring for the defaults)."""
    from pan360.device import resolve_device

    device = resolve_device(device)
    if rate is None and device == "cpu":
        rate = cpu_rate(model)
    size = input_size(*info.equirect_size, input_height or model.config.image_height)
    return NetworkPlan(device, size, analysis_indices(info.frame_times, rate), rate)


def network_maps(model: Any, info: MediaInfo, track: AudioTrack | AudioStream | None, *, map_size: tuple[int, int] = (64, 128),
                 foa_format: str = "auto", device: str = "auto", rate: float | None = None,
                 input_height: int | None = None, batch_size: int | None = None, audio_hop: float = AUDIO_HOP,
                 sink: Callable[[int, F32], None] | None = None, rotations: NDArray[np.float64] | None = None,
                 progress: Progress | None = None) -> F32 | None:
    """Network saliency maps (T, H, W) float32 of every video frame (see the module docstring).

    Parameters
    ----------
    model : a :class:`pan360.nn.model.SoundLocalizer` (moved to ``device`` and put in eval mode here).
    info, track : the probed input and its audio, decoded (:func:`pan360.media.read_audio`) or streamed
        (:class:`pan360.media.AudioStream`); required: the network localises a sound.
    device : "auto" (CUDA when present), "cpu" or "cuda".
    rate : analysed frames per second; None: every frame on CUDA, :func:`cpu_rate` on CPU.
    input_height : model input rows (multiple of 16); None: ``model.config.image_height``.
    batch_size : frames per forward pass (None: 8; 1 for "lite0" on the CPU, whose 512x1024 activations
        are large: one picture at a time costs the same per picture there and holds half the memory).
    audio_hop : seconds; sound-window centres are snapped to this grid and their embeddings shared.
    progress : callback (frames done, total frames).
    sink : ``sink(first, maps)`` receives the maps of frames ``first, first + 1, ...`` in order, as soon as
        they are final, and nothing is kept (None is returned): a consumer such as the fusion then never
        holds the network's maps of a long input whole. Without it the maps are returned.
    rotations : (T, 3, 3) camera -> frame per video frame (:mod:`pan360.stabilize`): each analysed map is
        turned by its own frame's rotation before the frames in between are interpolated, so a source
        still in that frame stays still between analysed frames too.
    """
    import torch

    from pan360.device import autocast
    from pan360.media import iter_frames
    from pan360.nn.inputs import preprocess_frames, sound_window

    if track is None:
        raise Pan360Error("--saliency net needs an audio track: the network localises what it hears")
    plan = plan_analysis(model, info, device=device, rate=rate, input_height=input_height)
    cfg = model.config
    if batch_size is None:
        batch_size = 1 if cfg.arch == "lite0" and plan.device == "cpu" else 8
    # a signal read window by window (a streamed track is never held whole), at the model's rate
    mono = as_signal(track.mono(foa_format), track.sample_rate)
    mono_model = Resampled(mono, cfg.sample_rate)
    times = info.frame_times
    power = window_power(mono, track.sample_rate, times[plan.analysed])
    dev = torch.device(plan.device)
    model = model.for_inference().to(dev)  # eval mode, BatchNorms folded (see SoundLocalizer.for_inference)
    amp = autocast(plan.device)

    # Equirect input ("lite0", features wrapped at the seam): successive analysed frames see the picture
    # rolled by 0 and JITTER_PX columns, so the stride-32 classifier cells fall on two alignments and
    # the interpolation and the planner average over both (a test-time augmentation that costs nothing).
    jitter = getattr(cfg, "visual_pad", 0) > 0
    # A window of 10 s or more (SoundNet-8's conv8) barely changes in a second: share it wider.
    hop = audio_hop if cfg.window < 10 else max(audio_hop, LONG_WINDOW_HOP)
    total = info.n_frames
    out = np.zeros((total, *map_size), np.float32) if sink is None else None
    if sink is None:
        def sink(first: int, maps: F32) -> None:
            out[first:first + len(maps)] = maps
    prev: F32 | None = None  # the map of the last analysed frame written
    wanted = np.zeros(total, bool)
    wanted[plan.analysed] = True
    rank = np.full(total, -1, np.int64)
    rank[plan.analysed] = np.arange(len(plan.analysed))
    cache: dict[int, Any] = {}  # snapped window centre (in hops) -> h (1, 512) on the device
    batch_idx: list[int] = []
    batch_rgb: list[NDArray[np.uint8]] = []
    last = -1  # the last analysed frame written

    def embed(keys: list[int]) -> None:
        todo = [k for k in dict.fromkeys(keys) if k not in cache]
        if not todo:
            return
        waves, valid = zip(*(sound_window(mono_model, cfg.sample_rate, k * hop, cfg) for k in todo))
        wv = torch.from_numpy(np.stack(waves)).to(dev)
        vm = torch.from_numpy(np.stack(valid)).to(dev)
        f_s, h = model.encode_sound(wv, vm)
        for k, fs_row, row in zip(todo, f_s.float(), h.float()):
            cache[k] = (fs_row, row)

    def flush() -> None:
        nonlocal last, prev
        if not batch_idx:
            return
        keys = [int(round(times[i] / hop)) for i in batch_idx]
        with torch.inference_mode(), amp:
            embed(keys)
            frames = torch.from_numpy(np.stack(batch_rgb)).to(dev)
            visual = model.visual_features(preprocess_frames(frames))
            f_s = torch.stack([cache[k][0] for k in keys])
            att, logits = model.localize(visual.grid, torch.stack([cache[k][1] for k in keys]),
                                         model.sound_prior(f_s, visual))
        att_np = att.float().cpu().numpy()
        if jitter:  # undo each frame's picture roll on its attention (a whole number of grid cells)
            cells = [JITTER_PX * (rank[i] % 2) * att_np.shape[-1] // plan.input_size[1] for i in batch_idx]
            att_np = np.stack([np.roll(a, -c, axis=-1) for a, c in zip(att_np, cells)])
        if cfg.arch == "lite0":  # its attention leads with the prior: the cosine says nothing of confidence
            conf = np.ones(len(batch_idx))
        else:
            conf = np.clip(logits.float().flatten(1).max(dim=1).values.cpu().numpy(), 0.0, 1.0)
        maps = attention_to_maps(att_np, power[rank[batch_idx]] * conf, map_size)
        if rotations is not None:
            from pan360.stabilize import rotate_maps

            maps = rotate_maps(maps, rotations[batch_idx])
        for i, m in zip(batch_idx, maps):
            if last >= 0 and i - last > 1:  # frames skipped in between: linear in time
                t0, t1 = times[last], times[i]
                f = ((times[last + 1:i] - t0) / (t1 - t0) if t1 > t0 else np.full(i - last - 1, 0.5))
                sink(last + 1, ((1 - f)[:, None, None] * prev + f[:, None, None] * m).astype(np.float32))
            sink(i, m[None])
            last, prev = i, m
        for k in [k for k in cache if k < keys[-1] - 1]:  # centres only grow: keep memory bounded
            del cache[k]
        batch_idx.clear()
        batch_rgb.clear()
        if progress is not None:
            progress(last + 1, total)

    # On the CPU the activations' pages are reused rather than faulted in afresh layer after layer
    # (pan360.allocator: ~1 M page faults, a fifth of a default render's CPU time, without).
    with reuse_freed_memory() if plan.device == "cpu" else nullcontext():
        for i, (_, data) in enumerate(iter_frames(info, fmt="yuv420p")):
            if not wanted[i]:
                continue
            batch_idx.append(i)
            rgb = network_input_rgb(data, plan.input_size, info.layout)
            if jitter:
                rgb = np.roll(rgb, JITTER_PX * (rank[i] % 2), axis=1)
            batch_rgb.append(rgb)
            if len(batch_idx) >= batch_size:
                flush()
        flush()
    if last < total - 1:  # the decoder stopped short of the probed frame count: no map there
        sink(last + 1, np.zeros((total - 1 - last, *map_size), np.float32))
    return out
