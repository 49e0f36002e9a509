"""Drawing of the synthetic scenes on the equirect grid: background, and each class's shape and pattern."""

from __future__ import annotations

import numpy as np

from pan360 import sphere
from pan360.synthetic.scene import CLASSES, SceneObject


def draw_background(width: int, height: int, seed: int, vecs: np.ndarray) -> np.ndarray:
    """Sky/ground gradient, a 30° yaw/pitch grid (red meridian at yaw 0) and seamless noise."""
    yaw, pitch = sphere.equirect_angles(width, height)
    p = pitch[:, None, None]
    sky = np.array([150, 190, 235]) + (np.array([30, 60, 150]) - [150, 190, 235]) * (np.clip(p, 0, None) / 90) ** 0.7
    ground = np.array([120, 100, 70]) + (np.array([50, 70, 40]) - [120, 100, 70]) * (np.clip(-p, 0, None) / 90) ** 0.7
    img = np.where(p >= 0, sky, ground) * np.ones((1, width, 1))
    rng = np.random.default_rng([seed, 3])
    noise = np.zeros((height, width), np.float32)
    for _ in range(12):  # random plane waves in 3D: a texture with no seam and no pole pinch
        k = rng.standard_normal(3) * rng.uniform(3, 14)
        noise += np.cos(vecs @ k.astype(np.float32) + rng.uniform(0, 2 * np.pi))
    img *= (1 + 0.05 * noise)[..., None]
    lw = max(0.3, 1.2 * 360 / width)  # line half-width in degrees, at least about a pixel
    dy = np.abs((yaw[None, :] + 15) % 30 - 15) * np.cos(np.radians(p[..., 0]))
    dp = np.abs((p[..., 0] + 15) % 30 - 15) * np.ones((1, width))
    line = np.clip(1 - np.minimum(dy, dp) / lw, 0, 1)[..., None]
    front = np.clip(1 - np.abs(yaw)[None, :] * np.cos(np.radians(p[..., 0])) / lw, 0, 1)[..., None]
    img = img * (1 - 0.6 * line) + 0.6 * line * 30
    img = img * (1 - front) + front * np.array([200, 30, 30])
    return np.clip(img, 0, 255).astype(np.uint8)


def _shape(kind: str, phi: np.ndarray) -> np.ndarray:
    """Outline radius (fraction of the object radius) at polar angle phi (0 = right, π/2 = up)."""
    if kind == "bell":  # five-point star
        return 0.75 + 0.25 * np.cos(5 * (phi - np.pi / 2))
    if kind == "voice":  # square
        return 0.8 / np.maximum(np.abs(np.cos(phi)), np.abs(np.sin(phi)))
    if kind == "engine":  # hexagon
        return np.cos(np.pi / 6) / np.cos(np.mod(phi, np.pi / 3) - np.pi / 6)
    if kind == "bird":  # triangle pointing up
        return 0.5 / np.cos(np.mod(phi + np.pi / 2 + np.pi / 3, 2 * np.pi / 3) - np.pi / 3)
    return np.ones_like(phi)  # drum: disc


def _pattern(kind: str, d: np.ndarray, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """1 where the pattern darkens the class colour, 0 elsewhere (u right, v up, degrees)."""
    if kind == "drum":
        return np.floor(d / (r / 4)) % 2
    if kind == "bell":
        return (d > 0.55 * r).astype(np.float64)
    if kind == "voice":
        return np.floor(v / (r / 3)) % 2
    if kind == "engine":
        return (np.floor(u / (r / 2.5)) + np.floor(v / (r / 2.5))) % 2
    return (np.hypot(u - 0.25 * r, v - 0.15 * r) < 0.12 * r).astype(np.float64)  # bird: an eye


def draw_object(img: np.ndarray, vecs: np.ndarray, obj: SceneObject, yaw: float, pitch: float, level: float) -> None:
    """Draw one object in place, shape and pattern in its own tangent frame (exact on the sphere).

    ``level`` in [0, 1] is how loud it sounds now: it brightens the object and lights a halo.
    """
    h, w = img.shape[:2]
    r = obj.radius
    big = r * (1.3 if level > 0 else 1.05)
    y0 = max(0, int(np.floor((0.5 - (pitch + big) / 180) * h - 1)))
    y1 = min(h, int(np.ceil((0.5 - (pitch - big) / 180) * h + 1)))
    if abs(pitch) + big >= 89.0:
        cols = np.arange(w)
    else:  # yaw half-extent of a spherical cap of radius `big` centred at this pitch
        half = np.degrees(np.arcsin(min(1.0, np.sin(np.radians(big)) / np.cos(np.radians(pitch)))))
        xc = sphere.dir_to_pixel(yaw, pitch, w, h)[0]
        hw = half / 360 * w + 2
        cols = np.arange(w) if 2 * hw + 1 >= w else np.arange(int(xc - hw), int(np.ceil(xc + hw)) + 1) % w
    patch_v = vecs[y0:y1][:, cols]
    ya, pa = np.radians(yaw), np.radians(pitch)
    c = sphere.dir_to_vec(yaw, pitch)
    east = np.array([-np.sin(ya), -np.cos(ya), 0.0])  # direction of increasing yaw (image right)
    north = np.array([-np.sin(pa) * np.cos(ya), np.sin(pa) * np.sin(ya), np.cos(pa)])
    a, b, z = patch_v @ east.astype(np.float32), patch_v @ north.astype(np.float32), patch_v @ c.astype(np.float32)
    d = np.degrees(np.arctan2(np.hypot(a, b), z))  # exact angular distance to the centre
    phi = np.arctan2(b, a)
    u, v = d * np.cos(phi), d * np.sin(phi)
    pix = 360.0 / w
    edge = _shape(obj.kind, phi) * r
    alpha = np.clip((edge - d) / pix + 0.5, 0, 1)[..., None]
    col = np.asarray(CLASSES[obj.kind], np.float64)
    col = col + (255 - col) * 0.55 * level
    dark = (_pattern(obj.kind, d, u, v, r) * (d > 0.3 * r))[..., None]  # plain hub of the class colour
    fill = col * (1 - 0.45 * dark)
    patch = img[y0:y1][:, cols].astype(np.float64)
    if level > 0:
        halo = np.clip(1 - np.abs(d - edge * 1.16) / (0.1 * r + pix), 0, 1)[..., None] * level
        patch = patch * (1 - halo) + halo * np.array([255, 255, 210])
    patch = patch * (1 - alpha) + alpha * fill
    img[y0:y1, cols] = np.clip(patch + 0.5, 0, 255).astype(np.uint8)
