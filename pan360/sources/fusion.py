"""Fusion of the spatial-audio (FOA) map with the sound-attention network's map.

Rule: the network may *sharpen* the direction onto the visible object, it may never pull the camera
away from where the sound is. The FOA map says where sound energy arrives from (physics, reliable in
direction, ~20° wide and biased by reflections); the network says which visible thing in the picture
makes the heard sound (sharp on objects, but it can be fooled by look-alikes anywhere in the frame).
So the FOA map is the base, and the network only reweights it near the FOA peak:

    fused = foa · (1 + β · c · n)        then rescaled to the FOA map's total mass

- ``n`` in [0, 1] is the network map's *contrast*: (net - mean) / (max - mean), clipped at 0, with the
  mean solid-angle weighted over the sphere. A flat (undecided) or all-zero network map gives n = 0 and
  leaves the FOA map unchanged; only cells the network clearly prefers get a gain.
- ``c`` in [0, 1] is a cone around the FOA map's peak cell: 1 within ``cone/2`` degrees, a raised-cosine
  taper to 0 at ``cone`` degrees. Outside the cone the network has no say.
- β bounds the gain to [1, 1 + β].

**When the FOA field is diffuse, the network leads.** The FOA map's direction is only as good as the
share of the sound that arrives as one plane wave: its *directness* d = direct power / total power
(:class:`pan360.spatial.foa_map.DirectionTrack`, 1 s windows). Measured on the 19 real FOA clips of
the development media (0.5 s steps, median per clip): single visible sources 0.89-0.94 (guitar, flute,
handpan, tractor: FOA peak in view for 12/12 annotated points); reverberant music 0.66-0.69 (a
soprano in a church, a saxophone in a studio: 3/6, the lobe wanders with the room); ambience with
no one source 0.14-0.50 (underwater, surf on rocks, a park, a choir standing in a ring, a lake).
So the weight of the FOA rule is ω = clip((d - D_LOW) / (D_HIGH - D_LOW), 0, 1) with D_LOW = 0.3
and D_HIGH = 0.6: every annotated clip stays FOA-led (ω = 1 at its median), diffuse scenes hand
the camera to the network, and in between the two maps are mixed:

    fused = ω · fused_FOA + (1 - ω) · net · (mass_FOA / mass_net)

(``net`` rescaled to the FOA map's mass, so the absolute scale stays the FOA's). Without a
directness track (``directness=None``) ω = 1: the FOA rule alone, as before.

Guarantees when ω = 1 (per frame, tested): the fused map is zero wherever the FOA map is zero (a silent frame stays
silent, whatever the network sees); its peak lies within ``cone`` degrees of the FOA peak (outside the
cone fused = foa·k <= foa_max·k <= fused at the FOA peak, with k the common rescale factor) and on a
cell whose FOA value is at least foa_max / (1 + β), i.e. inside the FOA lobe; and the total mass
Σ map·solid angle equals the FOA map's, so the absolute scale (direct-sound power, which the planner
uses to tell silence from sound) is kept.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pan360 import sphere
from pan360.errors import Pan360Error

F32 = NDArray[np.float32]

#: Maximum extra gain the network adds: the fused peak keeps >= 1/(1+β) = 25 % of the FOA maximum,
#: which lets the network move the peak up to ~14° inside a typical FOA lobe (vMF κ = 40).
BETA = 3.0
#: Degrees around the FOA peak in which the network may reweight: the FOA map's own width (~21° FWHM)
#: plus the direction bias of real microphone arrays and reflections (~10°).
CONE = 30.0
#: Directness below which the network leads alone, and above which the FOA rule decides alone.
D_LOW = 0.3
D_HIGH = 0.6


def foa_weight(directness: ArrayLike, low: float = D_LOW, high: float = D_HIGH) -> NDArray[np.float64]:
    """ω (T,) in [0, 1]: the weight of the FOA rule for each frame's directness (see the module docstring)."""
    d = np.nan_to_num(np.asarray(directness, dtype=np.float64), nan=1.0)
    return np.clip((d - low) / max(high - low, 1e-9), 0.0, 1.0)


def net_contrast(net_maps: ArrayLike) -> NDArray[np.float64]:
    """(T, H, W) contrast of network maps in [0, 1]: (m - mean) / (max - mean), clipped at 0.

    The mean is solid-angle weighted. A flat or all-zero map gives zeros.
    """
    m = np.nan_to_num(np.asarray(net_maps, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    m = np.maximum(m, 0.0)
    h, w = m.shape[-2:]
    area = sphere.equirect_solid_angle(w, h)
    mean = (m * area).sum(axis=(-2, -1), keepdims=True) / (area.sum() * w)
    top = m.max(axis=(-2, -1), keepdims=True)
    span = top - mean
    ok = span > 1e-12 * np.maximum(top, 1e-300)
    return np.where(ok, np.clip((m - mean) / np.where(ok, span, 1.0), 0.0, 1.0), 0.0)


def cone_weights(peak_vec: NDArray[np.float64], width: int, height: int, cone: float) -> NDArray[np.float64]:
    """(T, H, W) weights in [0, 1] around unit vectors ``peak_vec`` (T, 3): 1 within cone/2 degrees,
    raised-cosine taper to 0 at ``cone`` degrees."""
    vec = sphere.equirect_vectors(width, height)
    ang = np.degrees(np.arccos(np.clip(np.einsum("hwk,tk->thw", vec, peak_vec), -1.0, 1.0)))
    half = cone / 2.0
    taper = 0.5 * (1.0 + np.cos(np.pi * np.clip((ang - half) / max(cone - half, 1e-9), 0.0, 1.0)))
    return np.where(ang <= half, 1.0, np.where(ang < cone, taper, 0.0))


def fuse_maps(foa_maps: ArrayLike, net_maps: ArrayLike, *, beta: float = BETA, cone: float = CONE,
              directness: ArrayLike | None = None, chunk: int = 256, out: F32 | None = None) -> F32:
    """Fused saliency (T, H, W) float32 from FOA maps and network maps on the same grid and frames.

    Parameters
    ----------
    foa_maps : (T, H, W) non-negative FOA maps (direct-sound power per steradian).
    net_maps : (T, H, W) non-negative network maps (any absolute scale: only their contrast is used).
    beta : maximum extra gain of a cell the network prefers (>= 0).
    cone : degrees around each frame's FOA peak within which the network may reweight (> 0).
    directness : (T,) FOA directness per frame; None: the FOA rule alone (ω = 1).
    chunk : frames per block (bounds memory).
    out : (T, H, W) float32 array to write the result into; may be ``foa_maps`` itself (each block is
        read before it is written), which saves a third set of maps on long inputs.

    Returns
    -------
    float32 maps with the FOA maps' total mass per frame (see the module docstring for guarantees).
    """
    foa = np.asarray(foa_maps)
    net = np.asarray(net_maps)
    if foa.ndim != 3 or foa.shape != net.shape:
        raise Pan360Error(f"fusion needs FOA and network maps of one shape (T, H, W), got {foa.shape} and {net.shape}")
    if beta < 0 or not 0 < cone <= 180:
        raise Pan360Error(f"fusion: beta must be >= 0 and cone in (0, 180], got {beta:g}, {cone:g}")
    t, h, w = foa.shape
    omega = np.ones(t) if directness is None else foa_weight(directness)
    if omega.shape != (t,):
        raise Pan360Error(f"fusion: directness must have one value per frame ({t}), got {omega.shape}")
    area = sphere.equirect_solid_angle(w, h)
    vec = sphere.equirect_vectors(w, h).reshape(-1, 3)
    if out is None:
        out = np.empty((t, h, w), np.float32)
    elif out.shape != (t, h, w) or out.dtype != np.float32:
        raise Pan360Error(f"fusion: out must be float32 {(t, h, w)}, got {out.dtype} {out.shape}")
    for a in range(0, t, chunk):
        f = np.maximum(np.nan_to_num(foa[a:a + chunk].astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0), 0.0)
        peak = vec[np.argmax(f.reshape(len(f), -1), axis=1)]
        gain = 1.0 + beta * net_contrast(net[a:a + chunk]) * cone_weights(peak, w, h, cone)
        fused = f * gain
        before = (f * area).sum(axis=(1, 2))
        after = (fused * area).sum(axis=(1, 2))
        scale = np.divide(before, after, out=np.zeros_like(before), where=after > 0)
        fused = fused * scale[:, None, None]
        om = omega[a:a + chunk]
        if np.any(om < 1.0):
            n = np.maximum(np.nan_to_num(net[a:a + chunk].astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0), 0.0)
            n_mass = (n * area).sum(axis=(1, 2))
            n = n * np.divide(before, n_mass, out=np.zeros_like(before), where=n_mass > 0)[:, None, None]
            # A frame whose network map is empty keeps the FOA rule whatever the directness.
            om = np.where(n_mass > 0, om, 1.0)
            fused = om[:, None, None] * fused + (1.0 - om)[:, None, None] * n
        out[a:a + chunk] = fused
    return out
