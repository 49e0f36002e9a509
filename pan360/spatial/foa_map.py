"""Training-free directional sound-energy maps from first-order ambisonics (FOA).

Method: energy- and diffuseness-weighted pseudo-intensity directions (DirAC-style analysis),
accumulated into a von Mises-Fisher (vMF) smoothed histogram on the equirect grid.

1. STFT of the ambiX channels (Hann, ~21 ms frames, 50 % overlap), bins in ``band`` only
   (100 Hz-8 kHz by default: where speech and music carry their energy; below, room modes and wind
   rumble dominate, above, noise and aliasing of real microphone arrays).
2. Per time-frequency bin: pseudo-intensity I = Re(conj(W)·(X, Y, Z)) and energy
   E = (|W|^2 + |X|^2 + |Y|^2 + |Z|^2) / 2. In SN3D a plane wave s from unit direction u gives
   I = |s|^2·u and E = |s|^2, so I points *at* the source; an ideal diffuse field gives I -> 0.
3. I and E are averaged over ~0.1 s x 5 bins; the diffuseness ψ = 1 - |Ī| / Ē (0 for one plane wave,
   1 for diffuse sound) and the bin's direct-sound power E·(1 - ψ) become the weight of the bin's
   direction Ī/|Ī|.
4. The weighted directions of every bin in the analysis window (Hann, ``window`` seconds centred on
   each frame time) are splatted bilinearly onto the grid and smoothed with a normalised vMF
   kernel on the sphere.

Why this rather than the steered-response power (SRP) of first-order beams: an SRP map of one source
is a cardioid-squared lobe over half the sphere and diffuse noise or reverberation adds a floor of
the same order, so contrast is low and two sources merge into one lobe between them. Intensity
directions are per bin, so sources that dominate different bins stay separate, the map is as sharp
as the vMF kernel, and the diffuseness weight removes most of the reverberant and noise energy
instead of spreading it into the map.

Limits: coherent early reflections arriving within one STFT frame (a floor reflection a few ms after
the direct sound) pull the direction toward them (measured: ~8° with a real concert-hall response),
and a sustained tone in a reverberant room excites a steady room-mode field whose intensity is not
diffuse but points elsewhere, so per-frame peaks of such music scatter (~20° median in that hall;
the clip-average stays within ~10°). Speech-like and broadband sources, and outdoor scenes, are not
affected this way.

Scale (absolute, never normalised per frame): a map is in **direct-sound power per steradian**.
Summed over the sphere (map x pixel solid angle) it gives the estimated direct (non-diffuse) power
of the window in ``band``, in full-scale^2 units of the W (omni) channel: a plane-wave sine of
amplitude A in W contributes A^2/2. A silent window gives a zero map, diffuse noise a low, nearly
flat one, and a loud source a tall peak, so a planner can tell "nothing sounds" from "loud source".

Directions follow pan360 conventions: map yaw = audio yaw + ``yaw_offset``, audio yaw = -azimuth.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pan360.errors import Pan360Error
from pan360.progress import Progress
from pan360.signal import Signal, as_signal, box_smooth
from pan360.sphere import equirect_angles, equirect_solid_angle, equirect_vectors, vec_to_dir

__all__ = ["foa_energy_maps", "foa_direction_track", "map_peaks", "DirectionTrack"]

F32 = NDArray[np.float32]
_BAND = (100.0, 8000.0)
_KAPPA = 40.0  # vMF concentration: FWHM ≈ 21°, ~ the spread of intensity directions in a room
# I and E are averaged over ~0.1 s x 5 bins (~230 Hz at 48 kHz) before taking directions and the
# diffuseness: enough samples that diffuse noise reads as diffuse (ψ ≈ 0.75 rather than ≈ 0.5) and
# that a tonal source's few bins do not each follow their own room mode, short enough not to blur a
# source switch by more than a frame.
_SMOOTH_S = 0.1
_FREQ_SMOOTH = 5
_STFT_BLOCK = 128  # STFT frames transformed at once
_CHUNK_ENTRIES = 1 << 21  # window entries (video frames x STFT frames x bins) per chunk: bounds memory


@dataclass(frozen=True)
class DirectionTrack:
    """Dominant sound direction per video frame.

    yaw, pitch: degrees (pan360 convention, map frame incl. yaw offset) of the map's peak.
    peak: map value at the peak (direct power per steradian). direct_power: the map's integral over
    the sphere. total_power: in-band power of the window (W channel, full-scale^2). directness:
    direct_power / total_power in [0, 1] (1: one dry plane wave; ~0: diffuse noise or silence).
    """

    times: NDArray[np.float64]
    yaw: NDArray[np.float64]
    pitch: NDArray[np.float64]
    peak: NDArray[np.float64]
    direct_power: NDArray[np.float64]
    total_power: NDArray[np.float64]

    @property
    def directness(self) -> NDArray[np.float64]:
        tp = self.total_power
        return np.divide(self.direct_power, tp, out=np.zeros_like(tp), where=tp > 0).clip(0.0, 1.0)


@lru_cache(maxsize=8)
def _vmf_kernel_hat(width: int, height: int, kappa: float) -> NDArray[np.float64]:
    """Real FFT along yaw of the vMF kernel between grid rows: (yaw frequencies kept, H_out, H_in).

    The kernel only depends on the two pitches and the yaw difference, so smoothing is a circular
    convolution along yaw (FFT) and a dense H x H mix per yaw frequency: exact on the sphere, seam
    and poles included. Normalised as a density per steradian, exp(κ(cosθ-1))·κ/(2π(1-e^(-2κ))).
    """
    _, pitch = equirect_angles(width, height)
    p = np.radians(pitch)
    dphi = 2.0 * np.pi * np.arange(width) / width
    cos_t = (np.sin(p)[:, None, None] * np.sin(p)[None, :, None]
             + np.cos(p)[:, None, None] * np.cos(p)[None, :, None] * np.cos(dphi)[None, None, :])
    norm = kappa / (2.0 * np.pi * -np.expm1(-2.0 * kappa))
    k = norm * np.exp(kappa * (cos_t - 1.0))
    # The kernel is even in the yaw difference, so its spectrum is real; yaw frequencies where it
    # is below 1e-6 of its peak are dropped (about half of them at κ = 40), halving the cost.
    spec = np.fft.rfft(k, axis=2).real.transpose(2, 0, 1)
    strength = np.abs(spec).max(axis=(1, 2))
    keep = int(np.nonzero(strength > 1e-6 * strength.max())[0].max()) + 1
    return np.ascontiguousarray(spec[:keep])


def _smooth_on_sphere(hist: NDArray[np.float64], kappa: float) -> F32:
    """vMF smoothing of histograms (T, H, W) of power per pixel into densities per steradian."""
    t, h, w = hist.shape
    khat = _vmf_kernel_hat(w, h, float(kappa))
    spec = np.fft.rfft(hist, axis=2)[:, :, :khat.shape[0]].transpose(2, 1, 0)  # (K, H, T)
    ri = np.concatenate([spec.real, spec.imag], axis=2)  # real matmul on stacked re/im: half the flops
    mixed = khat @ ri
    out_spec = (mixed[:, :, :t] + 1j * mixed[:, :, t:]).transpose(2, 1, 0)
    out = np.fft.irfft(out_spec, n=w, axis=2)
    return np.maximum(out, 0.0).astype(np.float32)


def _stft(foa: Signal, f0: int, f1: int, nfft: int, hop: int, window: NDArray[np.float64],
          k0: int, k1: int) -> NDArray[np.complex64]:
    """Spectra (4, f1-f0, k1-k0) of STFT frames f0..f1-1; frame f is centred on sample f·hop."""
    start = f0 * hop - nfft // 2
    stop = (f1 - 1) * hop + nfft - nfft // 2
    seg = foa.read(start, stop)  # zeros outside the track
    frames = np.lib.stride_tricks.sliding_window_view(seg, nfft, axis=1)[:, ::hop]
    win = window.astype(np.float32)
    out = np.empty((4, frames.shape[1], k1 - k0), np.complex64)
    # a block of frames at a time, keeping only the band: the windowed frames and full spectra of a
    # whole chunk would be ~6x the band's spectra (each frame's transform is the same either way)
    for b in range(0, frames.shape[1], _STFT_BLOCK):
        out[:, b:b + _STFT_BLOCK] = np.fft.rfft(frames[:, b:b + _STFT_BLOCK] * win, axis=2)[:, :, k0:k1]
    return out


def _analyse(foa: ArrayLike | Signal, sample_rate: float, frame_times: ArrayLike, *, width: int, height: int,
             window: float, yaw_offset: float, band: tuple[float, float], kappa: float,
             progress: Progress | None) -> Iterator[tuple[NDArray[np.intp], F32, NDArray[np.float64]]]:
    """Yield (frame indices, maps (Tc, H, W), total in-band power (Tc,)) chunk by chunk."""
    # scipy here, not at the top: importing it costs ~0.3 CPU s, which a render along a given path,
    # or any job without FOA maps, never needs
    from scipy import sparse

    times = np.asarray(frame_times, dtype=np.float64).ravel()
    if sample_rate <= 0 or not np.all(np.isfinite(times)):
        raise Pan360Error("FOA maps need a positive sample rate and finite frame times")
    if not isinstance(foa, Signal) and np.ndim(foa) != 2:
        raise Pan360Error(f"FOA maps need 4-channel ambiX audio shaped (4, N), got shape {np.shape(foa)}")
    x = as_signal(foa, sample_rate)  # read window by window: a streamed track is never held whole
    if x.channels != 4:
        raise Pan360Error(f"FOA maps need 4-channel ambiX audio shaped (4, N), got {x.channels} channels")
    if width < 2 or height < 2 or window <= 0:
        raise Pan360Error("FOA map size must be at least 2x2 and the analysis window positive")
    total = times.size
    if total == 0:
        return
    order = np.argsort(times, kind="stable")

    nfft = int(2 ** round(np.log2(0.0213 * sample_rate)))  # ~21 ms: 1024 at 44.1/48 kHz
    hop = nfft // 2
    dt = hop / float(sample_rate)
    win = np.hanning(nfft + 1)[:-1]  # periodic Hann: constant overlap-add at 50 %
    scale = 2.0 / (nfft * np.sum(win**2))  # |bin|^2 -> power (one-sided Parseval)
    k0 = max(1, int(np.ceil(band[0] * nfft / sample_rate)))
    k1 = min(nfft // 2, int(np.floor(band[1] * nfft / sample_rate)) + 1)
    if k1 <= k0:
        raise Pan360Error(f"analysis band {band} Hz is empty at {sample_rate} Hz")
    nbins = k1 - k0
    n_frames = x.length // hop + 1  # frame centres 0, hop, ... up to the last sample
    smooth_t = max(3, int(round(_SMOOTH_S / dt)) | 1)
    margin = smooth_t // 2

    half = window / 2.0
    span = int(np.floor(window / dt)) + 2  # most STFT frames a window can cover
    chunk = max(1, min(256, _CHUNK_ENTRIES // (span * nbins)))
    # A chunk's STFT runs from its first window to its last: at a low frame rate 256 frames would be
    # minutes of audio, so a chunk also ends where its windows would span more than this many seconds.
    max_seconds = max(4 * span, _CHUNK_ENTRIES // (8 * nbins)) * dt
    sorted_times = times[order]
    npix = width * height

    c1 = 0
    while c1 < total:
        c0 = c1
        c1 = min(c0 + chunk, int(np.searchsorted(sorted_times, sorted_times[c0] + max_seconds, side="right")))
        c1 = max(c1, c0 + 1)
        idx = order[c0:c1]
        tc = times[idx]
        lo = np.ceil((tc - half) / dt).astype(np.int64)
        hi = np.floor((tc + half) / dt).astype(np.int64)
        empty = hi < lo
        lo[empty] = hi[empty] = np.round(tc[empty] / dt).astype(np.int64)
        lo, hi = np.clip(lo, 0, n_frames - 1), np.clip(hi, 0, n_frames - 1)
        fr = lo[:, None] + np.arange(span)[None, :]  # (Tc, span) candidate frames
        inside = fr <= hi[:, None]
        m = np.where(inside, np.cos(np.pi * (fr * dt - tc[:, None]) / window) ** 2, 0.0)
        msum = m.sum(axis=1, keepdims=True)
        flat = (msum[:, 0] <= 1e-12)
        m[flat] = inside[flat]  # window narrower than a hop: plain average of its frames
        m /= m.sum(axis=1, keepdims=True)
        fr = np.minimum(fr, hi[:, None])

        fa, fb = int(lo.min()), int(hi.max()) + 1
        ea, eb = max(fa - margin, 0), min(fb + margin, n_frames)
        s = _stft(x, ea, eb, nfft, hop, win, k0, k1)
        w_, y_, z_, x_ = s[0], s[1], s[2], s[3]
        energy = 0.5 * scale * (np.abs(w_) ** 2 + np.abs(x_) ** 2 + np.abs(y_) ** 2 + np.abs(z_) ** 2)
        wc = np.conj(w_)
        inten = [scale * (wc * c).real for c in (x_, y_, z_)]  # points at the source in SN3D
        # the energy and the three intensities smoothed together (the same values as one at a time)
        smoothed = box_smooth(np.stack([energy, *inten]), (1, smooth_t, _FREQ_SMOOTH))
        e_s, i_s = smoothed[0], list(smoothed[1:])
        i_norm = np.sqrt(i_s[0] ** 2 + i_s[1] ** 2 + i_s[2] ** 2)
        directness = np.divide(i_norm, e_s, out=np.zeros_like(e_s), where=e_s > 0).clip(0.0, 1.0)
        weight = (energy * directness)[fa - ea:fb - ea]  # direct power E·(1-ψ) per bin
        yaw, pitch = vec_to_dir(np.stack(i_s, axis=-1)[fa - ea:fb - ea])
        cx = (((yaw + yaw_offset) / 360.0 + 0.5) % 1.0) * width - 0.5  # continuous pixel coordinates
        cy = np.clip((0.5 - pitch / 180.0) * height - 0.5, 0.0, height - 1.0)
        x0, y0 = np.floor(cx), np.minimum(np.floor(cy), height - 2)
        fx, fy = cx - x0, cy - y0
        x0 = x0.astype(np.int64) % width
        x1 = (x0 + 1) % width  # wraps across the ±180° seam
        y0 = y0.astype(np.int64)

        # Bilinear splat of each bin's direct power onto its 4 nearest cells (no quantisation bias)
        # as a sparse (STFT frame x cell) matrix; the Hann-weighted window sums are then one sparse
        # product (video frame x STFT frame) @ (STFT frame x cell).
        nf = fb - fa
        rows = np.broadcast_to(np.arange(nf)[:, None], weight.shape)
        cells, vals = [], []
        for dy, wy in ((0, 1.0 - fy), (1, fy)):
            for xx, wx in ((x0, 1.0 - fx), (x1, fx)):
                cells.append(((y0 + dy) * width + xx).ravel())
                vals.append((weight * wy * wx).ravel())
        splat = sparse.csr_matrix((np.concatenate(vals), (np.tile(rows.ravel(), 4), np.concatenate(cells))),
                                  shape=(nf, npix))
        rel = fr - fa
        win_m = sparse.csr_matrix((m.ravel(), (np.repeat(np.arange(idx.size), span), rel.ravel())),
                                  shape=(idx.size, nf))
        hist = (win_m @ splat).toarray().reshape(idx.size, height, width)
        band_power = energy[fa - ea:fb - ea].sum(axis=1)
        yield idx, _smooth_on_sphere(hist, kappa), (m * band_power[rel]).sum(axis=1)
        if progress is not None:
            progress(c1, total)


def foa_energy_maps(foa: ArrayLike | Signal, sample_rate: float, frame_times: ArrayLike, *, width: int = 128,
                    height: int = 64, window: float = 0.2, yaw_offset: float = 0.0,
                    band: tuple[float, float] = _BAND, kappa: float = _KAPPA,
                    progress: Progress | None = None) -> F32:
    """Directional sound-energy maps, one per video frame, on the equirect grid.

    Parameters
    ----------
    foa : (4, N) ambiX SN3D audio (convert FuMa / N3D first), an array or a :class:`~pan360.signal.Signal`
        (read in time order, window by window: a streamed track is never held whole).
    sample_rate : Hz.
    frame_times : (T,) video frame times in seconds (any spacing: VFR is fine).
    width, height : map size; pixel centres as :func:`pan360.sphere.equirect_angles`.
    window : seconds; Hann analysis window centred on each frame time (0.2 s: a new source takes
        over the map within ~0.1 s of its onset, and successive 30 fps maps share 80 % of their
        audio so they do not flicker).
    yaw_offset : degrees added to every audio yaw (map yaw = audio yaw + yaw_offset), for cameras
        whose FOA front is not the video centre.
    band : (low, high) Hz of the analysed bins.
    kappa : vMF concentration of the smoothing kernel (40: about 21° full width at half maximum).
    progress : optional callback (frames done, total frames).

    Returns
    -------
    (T, height, width) float32, non-negative, in direct-sound power per steradian (see the module
    docstring); maps are in the order of ``frame_times``.
    """
    times = np.asarray(frame_times, dtype=np.float64).ravel()
    out = np.zeros((times.size, height, width), dtype=np.float32)
    for idx, maps, _ in _analyse(foa, sample_rate, times, width=width, height=height, window=window,
                                 yaw_offset=yaw_offset, band=band, kappa=kappa, progress=progress):
        out[idx] = maps
    return out


def map_peaks(maps: ArrayLike, radius: float = 15.0) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                                              NDArray[np.float64]]:
    """Peak direction of each map (T, H, W): (yaw, pitch, peak value).

    The direction is the solid-angle-weighted mean direction of the map within ``radius`` degrees
    of its highest cell, which refines the peak beyond the grid's ~2.8° cells and is seam- and pole-safe.
    """
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim == 2:
        m = m[None]
    t, h, w = m.shape
    vec = equirect_vectors(w, h).reshape(-1, 3)
    area = np.broadcast_to(equirect_solid_angle(w, h), (h, w)).ravel()
    flat = m.reshape(t, -1)
    top = np.argmax(flat, axis=1)
    centre = vec[top]
    for _ in range(2):  # re-centre once: a disc around the top cell's centre is lopsided by < 1 cell
        near = (centre @ vec.T) >= np.cos(np.radians(radius))  # (T, P)
        s = np.einsum("tp,pk->tk", np.where(near, flat * area, 0.0), vec)
        norm = np.linalg.norm(s, axis=1, keepdims=True)
        centre = np.where(norm > 0, s / np.where(norm > 0, norm, 1.0), vec[top])
    s = centre
    yaw, pitch = vec_to_dir(s)
    return yaw, pitch, flat[np.arange(t), top]


def foa_direction_track(foa: ArrayLike | Signal, sample_rate: float, frame_times: ArrayLike, *, width: int = 128,
                        height: int = 64, window: float = 0.2, yaw_offset: float = 0.0,
                        band: tuple[float, float] = _BAND, kappa: float = _KAPPA,
                        progress: Progress | None = None) -> DirectionTrack:
    """Dominant direction per frame with its strength, without keeping the maps (same keywords as
    :func:`foa_energy_maps`)."""
    times = np.asarray(frame_times, dtype=np.float64).ravel()
    n = times.size
    yaw, pitch, peak, direct, tot = (np.zeros(n) for _ in range(5))
    h, w = height, width
    area = equirect_solid_angle(w, h)
    for idx, maps, band_power in _analyse(foa, sample_rate, times, width=w, height=h, window=window,
                                          yaw_offset=yaw_offset, band=band, kappa=kappa, progress=progress):
        yaw[idx], pitch[idx], peak[idx] = map_peaks(maps)
        direct[idx] = (maps * area).sum(axis=(1, 2))
        tot[idx] = band_power
    return DirectionTrack(times, yaw, pitch, peak, direct, tot)
