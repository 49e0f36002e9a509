"""Training data for the sound-localisation network: frame / sound pairs from videos or pair folders.

Every dataset yields the sample dicts of :func:`pan360.nn.pairs.make_sample`.

Sources: :class:`VideoFolderDataset` (any videos, unsupervised; with FOA audio, teacher maps),
:class:`pan360.nn.pairs.PairFolderDataset` (Flickr-SoundNet layout with optional XML / JSON / exact-map
annotations), and any mix through :func:`open_datasets` (a ``ConcatDataset``). :func:`collate`, :func:`negative_indices` and
:func:`augment` build the batch. Mono is exactly what inference hears (:meth:`pan360.media.AudioTrack.mono`):
the W channel of ambisonic audio (FuMa's W scaled to SN3D), else the channel mean.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from pan360.errors import Pan360Error
from pan360.nn.inputs import resample_audio, sound_window
from pan360.nn.model import ModelConfig
from pan360.nn.pairs import PairFolderDataset, make_sample, resize_frame

VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")


# ----------------------------------------------------------------------------------- helpers
def teacher_grid(maps: np.ndarray, cfg: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """FOA energy maps (T, h, w) per steradian on the equirect map grid → (mass per model-grid cell
    (T, H/16, W/16), each summing to 1 (zeros where there is no power), direct power (T,)).

    Per-steradian values become mass per map pixel (times the pixel's solid angle,
    :func:`pan360.sphere.equirect_solid_angle`), which is then summed into the model's grid cells by
    area (``cv2.INTER_AREA``: a map row straddling two cells is split by its share of pixel rows,
    within 1 % of the exact solid angle from the 64x128 map), the cells being the 16x16 pixel blocks
    of the model input, as :func:`pan360.nn.pairs.grid_gt` does for annotations. The sum over the sphere is the
    window's direct-sound power (full-scale² of the W channel).
    """
    from pan360.sphere import equirect_solid_angle

    m = np.asarray(maps, dtype=np.float32)
    t, h, w = m.shape
    gh, gw = cfg.image_height // 16, cfg.image_width // 16
    big_h, big_w = cfg.image_height, cfg.image_width
    mass = m * equirect_solid_angle(w, h).astype(np.float32)[None]
    power = mass.reshape(t, -1).sum(axis=1, dtype=np.float64)
    out = np.zeros((t, gh, gw), np.float32)
    for k in range(t):
        if big_h == gh * 16 and big_w == gw * 16:  # the grid covers the whole frame (every preset)
            g = cv2.resize(mass[k], (gw, gh), interpolation=cv2.INTER_AREA)
        else:  # the grid covers the frame's top-left gh*16 x gw*16 pixels only
            dens = cv2.resize(m[k], (big_w, big_h), interpolation=cv2.INTER_LINEAR)
            px = dens * equirect_solid_angle(big_w, big_h).astype(np.float32)
            g = cv2.resize(px[: gh * 16, : gw * 16], (gw, gh), interpolation=cv2.INTER_AREA)
        total = float(g.sum())
        out[k] = g / total if total > 0 else 0.0
    return out, power


# ------------------------------------------------------------------------------ video folders
class _TeacherMaps:
    """The FOA teacher maps of one video's indexed frames (a cache entry: ``nbytes`` is its size)."""

    def __init__(self, frames: np.ndarray, grids: np.ndarray, power: np.ndarray, min_power: float) -> None:
        self.row = {int(j): k for k, j in enumerate(frames)}  # frame index → row of grids
        self.grids, self.power = grids, power
        self.ok = (power > min_power) & (grids.reshape(len(grids), -1).sum(axis=1) > 0)

    @property
    def nbytes(self) -> int:
        return int(self.grids.nbytes + self.power.nbytes + 64 * len(self.row))

    def get(self, j: int) -> np.ndarray | None:
        k = self.row[j]
        return self.grids[k] if self.ok[k] else None


class VideoFolderDataset(Dataset):
    """Pairs from videos: a frame and the mono window centred on its timestamp; with first-order
    ambisonic (FOA) audio also a soft attention target, the FOA energy map of the same moment.

    Frames are taken ``rate`` times per second of video (the nearest real frame). A video's audio is
    decoded once and cached (mono, at the model rate), and for FOA its teacher maps of every indexed
    frame are computed in that same pass and cached (a few KB per frame); frames are decoded by one
    sequential pass over the video that keeps every frame the index wants from it (resized to the
    model size). Everything lives in an LRU cache bounded by ``cache_mb`` (per data-loader worker).
    With a cache smaller than the data set, evicted videos are decoded again when next drawn:
    correct, only slower.

    **FOA as the teacher** (``foa_teacher``): the network hears the mono W channel, exactly as at
    inference (:meth:`pan360.media.AudioTrack.mono`); the ambiX signal
    (:meth:`pan360.media.AudioTrack.foa`, FuMa converted) gives
    :func:`pan360.spatial.foa_energy_maps` on the 64x128 map grid with a ``teacher_window`` s Hann
    window centred on the frame time, turned into mass per model-grid cell summing to 1
    (:func:`teacher_grid`). A frame whose window's direct power is at most ``teacher_min_power``
    (full-scale², W channel: silence) gets no target (unsupervised only). Such samples have
    ``teacher`` True; :meth:`annotated` still lists none (teacher maps are not cIoU ground truth).

    Parameters
    ----------
    paths : video files and/or folders (searched recursively for VIDEO_EXTS).
    cfg : the model config (input size, sample rate, window).
    rate : frames per second of video to draw pairs from.
    cache_mb : memory bound of the frame + audio + teacher-map cache.
    full_gt : accepted for symmetry with :class:`PairFolderDataset`; videos carry no annotation.
    foa_teacher : give FOA videos their teacher maps (False: every video sample is unsupervised).
    foa_format : "auto" (what probing says: 4 channels are ambiX unless tagged FuMa), or "ambix" /
        "fuma" to read every 4-channel track as that format (as ``pan360 render --foa-format``).
    teacher_window : seconds of the analysis window of the teacher maps.
    teacher_min_power : direct power at or below which a frame is silent (no teacher map).
    """

    def __init__(self, paths: str | Path | list, cfg: ModelConfig, *, rate: float = 1.0, cache_mb: float = 1024.0,
                 full_gt: bool = False, foa_teacher: bool = True, foa_format: str = "auto",
                 teacher_window: float = 1.0, teacher_min_power: float = 1e-7) -> None:
        from pan360.media import probe

        if foa_format not in ("auto", "ambix", "fuma"):
            raise Pan360Error(f"foa_format must be auto, ambix or fuma, not {foa_format!r}")
        if teacher_window <= 0:
            raise Pan360Error("teacher_window must be positive")
        files: list[Path] = []
        for p in [paths] if isinstance(paths, (str, Path)) else paths:
            p = Path(p)
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in VIDEO_EXTS) if p.is_dir() else [p]
        self.cfg, self.full_gt, self.cache_bytes = cfg, full_gt, int(cache_mb * 2**20)
        self.foa_teacher, self.foa_format = foa_teacher, foa_format
        self.teacher_window, self.teacher_min_power = float(teacher_window), float(teacher_min_power)
        self.infos, self.index, self.skipped, self.foa = [], [], [], []
        for f in files:
            try:
                info = probe(f)
            except Pan360Error as exc:
                self.skipped.append(f"{f}: {exc}")
                continue
            if info.audio is None:
                self.skipped.append(f"{f}: no audio")
                continue
            v = len(self.infos)
            self.infos.append(info)
            self.foa.append(info.audio.is_foa(foa_format))
            times = np.arange(0.5 / rate, info.duration, 1.0 / rate)
            ft = info.frame_times
            right = np.clip(np.searchsorted(ft, times), 0, len(ft) - 1)
            left = np.clip(right - 1, 0, len(ft) - 1)
            nearest = np.where(np.abs(ft[left] - times) <= np.abs(ft[right] - times), left, right)
            frames = np.unique(nearest)
            self.index += [(v, int(j)) for j in frames]
        if not self.index:
            raise Pan360Error(f"no usable video with audio in {', '.join(str(f) for f in files) or paths}")
        self._cache: OrderedDict = OrderedDict()
        self._cached = 0

    def __len__(self) -> int:
        return len(self.index)

    def annotated(self) -> list[int]:
        """Videos carry no hand annotation: no sample can be scored by cIoU (FOA teacher maps are targets
        for training, not ground truth)."""
        return []

    def has_teacher(self, v: int) -> bool:
        """Whether video ``v``'s samples get FOA teacher maps."""
        return self.foa_teacher and self.foa[v]

    def _put(self, key, value) -> None:
        self._cache[key] = value
        self._cached += value.nbytes
        while self._cached > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached -= old.nbytes

    def _get(self, key):
        value = self._cache.get(key)
        if value is not None:
            self._cache.move_to_end(key)
        return value

    def _decode_audio(self, v: int) -> tuple[np.ndarray, _TeacherMaps | None]:
        """One decode of video v's audio: the mono at the model rate and (FOA teacher) the maps of every
        indexed frame of v; both cached."""
        from pan360.media import read_audio
        from pan360.sources import MAP_SIZE
        from pan360.spatial import foa_energy_maps

        info = self.infos[v]
        track = read_audio(info)
        audio = resample_audio(track.mono(self.foa_format), track.sample_rate, self.cfg.sample_rate)
        teacher = None
        if track.samples.shape[0] != 4:  # probed as 4 channels, decoded otherwise: no teacher for it
            self.foa[v] = False
        if self.has_teacher(v):
            frames = np.array(sorted({j for vv, j in self.index if vv == v}), np.int64)
            h, w = MAP_SIZE  # the saliency maps' grid (2.8° cells), then summed into the model's cells
            maps = foa_energy_maps(track.foa(self.foa_format), track.sample_rate,
                                   info.frame_times[frames], width=w, height=h, window=self.teacher_window)
            grids, power = teacher_grid(maps, self.cfg)
            teacher = _TeacherMaps(frames, grids, power, self.teacher_min_power)
            self._put(("t", v), teacher)
        self._put(("a", v), audio)
        return audio, teacher

    def _decode_frames(self, v: int, need: int) -> np.ndarray:
        """One sequential pass over video v, caching every indexed frame of it; returns frame ``need``."""
        from pan360.media import equirect_picture, iter_frames

        wanted = {j for vv, j in self.index if vv == v}
        last, out = max(wanted), None
        for j, (_, rgb) in enumerate(iter_frames(self.infos[v], fmt="rgb24", threads=1)):
            if j in wanted:
                info = self.infos[v]
                if info.layout != "equirect":  # a cubemap: straight to the model's equirect size
                    rgb = equirect_picture(rgb, info.layout, (self.cfg.image_width, self.cfg.image_height))
                small = resize_frame(rgb, self.cfg)
                self._put(("f", v, j), small)
                out = small if j == need else out
            if j >= last:
                break
        return out

    def __getitem__(self, i: int) -> dict:
        v, j = self.index[i]
        info = self.infos[v]
        audio = self._get(("a", v))
        teacher = self._get(("t", v)) if self.has_teacher(v) else None
        if audio is None or (self.has_teacher(v) and teacher is None):
            audio, teacher = self._decode_audio(v)
        rgb = self._get(("f", v, j))
        if rgb is None:
            rgb = self._decode_frames(v, j)
        wave, valid = sound_window(audio, self.cfg.sample_rate, float(info.frame_times[j]), self.cfg)
        target = teacher.get(j) if teacher is not None else None
        return make_sample(rgb, wave, valid, None, f"video:{info.path}", True, self.cfg, self.full_gt, teacher=target)


def open_datasets(paths: list[str | Path], cfg: ModelConfig, *, rate: float = 1.0, cache_mb: float = 1024.0,
                  full_gt: bool = False, **video_options) -> Dataset:
    """One dataset from several sources: a folder with ``frames/`` and ``audio/`` is a pair folder,
    any other folder or file is read as videos (``video_options``: the FOA-teacher keywords of
    :class:`VideoFolderDataset`). Several sources are concatenated (semi-supervised when some are
    annotated and some not)."""
    parts: list[Dataset] = []
    videos: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise Pan360Error(f"training data not found: {p}")
        if p.is_dir() and (p / "frames").is_dir() and (p / "audio").is_dir():
            parts.append(PairFolderDataset(p, cfg, full_gt=full_gt))
        else:
            videos.append(p)
    if videos:
        parts.append(VideoFolderDataset(videos, cfg, rate=rate, cache_mb=cache_mb, full_gt=full_gt, **video_options))
    if not parts:
        raise Pan360Error("no training data given")
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


# ----------------------------------------------------------------------------------- batching
def collate(samples: list[dict]) -> dict:
    """Stack samples; missing ground truth becomes zeros with ``has_gt`` False; ``teacher`` (B,) says
    which ground truths are soft FOA teacher maps; groups become ids."""
    gts = [s["gt"] for s in samples]
    shape = next((g.shape for g in gts if g is not None), None)
    groups = [s["group"] for s in samples]
    ids = {g: k for k, g in enumerate(dict.fromkeys(groups))}
    h, w = samples[0]["frame"].shape[1] // 16, samples[0]["frame"].shape[2] // 16
    batch = {
        "frame": torch.stack([s["frame"] for s in samples]),
        "waveform": torch.stack([s["waveform"] for s in samples]),
        "valid": torch.stack([s["valid"] for s in samples]),
        "gt": torch.stack([g if g is not None else torch.zeros(shape or (h, w)) for g in gts]),
        "has_gt": torch.tensor([g is not None for g in gts]),
        "teacher": torch.tensor([g is not None and bool(s.get("teacher", False)) for g, s in zip(gts, samples)]),
        "group": torch.tensor([ids[g] for g in groups]),
        "equirect": torch.tensor([bool(s["equirect"]) for s in samples]),
    }
    if "gt_full" in samples[0]:
        batch["gt_full"] = [s["gt_full"] for s in samples]
    return batch


def negative_indices(group: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """For each item, a random other item of the batch from a different group (video).

    Returns (indices (B,), ok (B,) bool). An item whose batch holds no other group gets the next item
    (ok False): its triplet is then degenerate and should be masked out of the unsupervised loss.
    """
    b = len(group)
    scores = torch.rand(b, b, generator=generator)
    allowed = group[None, :] != group[:, None]
    scores = torch.where(allowed, scores, torch.full_like(scores, -1.0))
    idx = scores.argmax(dim=1)
    ok = allowed.any(dim=1)
    return torch.where(ok, idx, (torch.arange(b) + 1) % max(b, 1)), ok


def augment(batch: dict, generator: torch.Generator, cell: int = 16) -> dict:
    """Random horizontal flips (valid for mono sound) and, for equirect frames, random yaw rolls by whole
    grid cells (exact on a 360° frame); the ground truth (annotation or FOA teacher map alike) follows
    by the same number of cells. Works in place on the batch tensors.

    Grid cell c covers the frame's pixel columns [c·cell, (c+1)·cell). A roll needs the frame to be
    whole cells wide (else it is skipped: a partial cell cannot move exactly); a flip mirrors the
    gridded columns only (all of them when the width is whole cells), so cell c and cell gw-1-c swap
    exactly."""
    frames, gt = batch["frame"], batch["gt"]
    gw = gt.shape[-1]
    span = gw * cell
    can_roll = frames.shape[-1] == span  # a roll by whole cells moves the map exactly
    flips = torch.rand(len(frames), generator=generator) < 0.5
    shifts = torch.randint(0, max(gw, 1), (len(frames),), generator=generator)
    for i in range(len(frames)):
        if flips[i]:
            frames[i, ..., :span] = frames[i, ..., :span].flip(-1)
            gt[i] = gt[i].flip(-1)
        if can_roll and batch["equirect"][i] and shifts[i]:
            k = int(shifts[i])
            frames[i] = frames[i].roll(k * cell, dims=-1)
            gt[i] = gt[i].roll(k, dims=-1)
    return batch
