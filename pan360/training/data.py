"""Training data for the sound-localisation network: frame / sound pairs from videos or pair folders.

Every dataset yields samples (dicts) with

- ``frame``: float32 (3, H, W), ImageNet-normalised, at the model's input size (``ModelConfig``);
- ``waveform``: float32 (L,), the mono window of ``cfg.window`` seconds centred on the frame, and
  ``valid``: bool (L,), False where the window reaches past the clip (zeros, never looped);
- ``gt``: float32 (H/16, W/16) share of each grid cell covered by the annotation, or the FOA
  teacher map of a video with first-order ambisonic audio (mass per cell, sums to 1), or None
  (unsupervised sample); with ``full_gt=True`` also ``gt_full``: (H, W) map for cIoU (hand
  annotations only: a teacher map is never cIoU ground truth);
- ``teacher``: bool, ``gt`` is a soft FOA teacher map (trained with ``w_teacher``), not an annotation;
- ``group``: str, the video (or pair) the sound comes from: a negative must come from another group;
- ``equirect``: bool, the frame is a whole 360° equirect picture (a yaw roll is then an exact augmentation).

Sources: :class:`VideoFolderDataset` (any videos, unsupervised; with FOA audio, teacher maps), :class:`PairFolderDataset`
(Flickr-SoundNet layout with optional XML / JSON / exact-map annotations), and any mix through
:func:`open_datasets` (a ``ConcatDataset``). :func:`collate`, :func:`negative_indices` and
:func:`augment` build the batch. Mono is exactly what inference hears (:func:`pan360.saliency.network.mono_audio`):
the W channel of ambisonic audio (FuMa's W scaled to SN3D), else the channel mean.
"""

from __future__ import annotations

import json
import wave
import xml.etree.ElementTree as ET
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from pan360.errors import Pan360Error
from pan360.nn.model import IMAGENET_MEAN, IMAGENET_STD, ModelConfig, resample_audio, sound_window
from pan360.saliency import is_foa

VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
AUDIO_EXTS = (".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg")


# ----------------------------------------------------------------------------------- helpers
def mono_of(samples: np.ndarray, ambisonic: str | None, foa_format: str = "auto") -> np.ndarray:
    """(C, N) audio → (N,) mono as inference hears it (:func:`pan360.saliency.network.mono_audio`): the W
    channel of 4-channel ambisonic audio in SN3D (FuMa's W, 3 dB down, is scaled by √2 through
    :func:`pan360.saliency.foa_from_track`), else the mean over channels. ``foa_format`` ("ambix" /
    "fuma") forces a 4-channel track to be read as that format."""
    if samples.ndim == 1:
        return samples.astype(np.float32, copy=False)
    from pan360.media import AudioTrack
    from pan360.saliency.network import mono_audio

    return mono_audio(AudioTrack(samples=samples, sample_rate=1, layout="", ambisonic=ambisonic), foa_format)


def _read_pcm_wav(path: Path) -> tuple[np.ndarray, int] | None:
    """((C, N) float32, rate) of a plain 16-bit PCM wav through the standard library (fast); None otherwise."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2 or w.getcomptype() != "NONE":
                return None
            x = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, w.getnchannels())
            return np.ascontiguousarray(x.T, dtype=np.float32) / 32768.0, w.getframerate()
    except (wave.Error, EOFError, OSError):
        return None


def load_mono(path: Path, sample_rate: int, foa_format: str = "auto") -> np.ndarray:
    """Decode a media file's audio → mono float32 at ``sample_rate`` (16-bit wav directly, anything else
    through PyAV, :func:`pan360.media.read_audio`); mono as :func:`mono_of` (a 4-channel wav is ambiX
    W, as :func:`pan360.media.read_audio` would report it)."""
    pcm = _read_pcm_wav(path) if path.suffix.lower() == ".wav" else None
    if pcm is not None:
        from pan360.media.probe import ambisonic_kind

        x, rate = pcm
        return resample_audio(mono_of(x, ambisonic_kind(x.shape[0], "", {}), foa_format), rate, sample_rate)
    from pan360.media import read_audio

    track = read_audio(path)
    return resample_audio(mono_of(track.samples, track.ambisonic, foa_format), track.sample_rate, sample_rate)


def teacher_grid(maps: np.ndarray, cfg: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """FOA energy maps (T, h, w) per steradian on the equirect map grid → (mass per model-grid cell
    (T, H/16, W/16), each summing to 1 (zeros where there is no power), direct power (T,)).

    Per-steradian values become mass per map pixel (times the pixel's solid angle,
    :func:`pan360.sphere.equirect_solid_angle`), which is then summed into the model's grid cells by
    area (``cv2.INTER_AREA``: a map row straddling two cells is split by its share of pixel rows,
    within 1 % of the exact solid angle from the 64x128 map), the cells being the 16x16 pixel blocks
    of the model input, as :func:`grid_gt` does for annotations. The sum over the sphere is the
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


def grid_gt(full: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """(H, W) annotation map in [0, 1] → (H/16, W/16) share of each grid cell it covers (area average)."""
    gh, gw = cfg.image_height // 16, cfg.image_width // 16
    m = full.astype(np.float32)
    if m.shape != (cfg.image_height, cfg.image_width):
        m = cv2.resize(m, (cfg.image_width, cfg.image_height), interpolation=cv2.INTER_AREA)
    return cv2.resize(m[: gh * 16, : gw * 16], (gw, gh), interpolation=cv2.INTER_AREA)


def boxes_map(boxes: list[list[float]], height: int, width: int, sx: float, sy: float, annotators: float) -> np.ndarray:
    """Consensus map (height, width): boxes (x0, y0, x1, y1) scaled by (sx, sy), summed, / annotators, ≤ 1.

    Box corners are truncated to integers like the LVS code (ANCHORS §2.3).
    """
    g = np.zeros((height, width), np.float32)
    for x0, y0, x1, y1 in boxes:
        a, b = int(x0 * sx), int(y0 * sy)
        c, d = int(x1 * sx), int(y1 * sy)
        g[max(b, 0) : max(d, 0), max(a, 0) : max(c, 0)] += 1.0
    return np.minimum(g / annotators, 1.0)


def read_flickr_xml(path: Path) -> list[list[float]]:
    """Boxes (xmin, ymin, xmax, ymax) on the 256x256 frame from a Senocak / Flickr-SoundNet XML file.

    Each ``<bbox>`` is read by child tag names when present; otherwise like the LVS / EZ-VSL code: the
    first child element is skipped and the next four are xmin, ymin, xmax, ymax. Several annotators
    give several boxes.
    """
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise Pan360Error(f"cannot read annotation {path.name}: {exc}") from None
    boxes = []
    for bbox in root.iter("bbox"):
        named = {c.tag.lower(): c.text for c in bbox}
        if all(k in named for k in ("xmin", "ymin", "xmax", "ymax")):
            vals = [named[k] for k in ("xmin", "ymin", "xmax", "ymax")]
        else:
            vals = [c.text for c in list(bbox)[1:5]]
        try:
            box = [float(v) for v in vals]
        except (TypeError, ValueError):
            raise Pan360Error(f"{path.name}: a <bbox> without 4 numeric coordinates") from None
        if len(box) == 4:
            boxes.append(box)
    return boxes


_MEAN = np.array(IMAGENET_MEAN, np.float32) * 255.0
_INV_STD = 1.0 / (np.array(IMAGENET_STD, np.float32) * 255.0)


def _normalise(rgb: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) → float32 (3, H, W), ImageNet mean/std (as ``preprocess_frames``, in numpy: cheaper
    per sample in a data-loader worker)."""
    x = (rgb.astype(np.float32) - _MEAN) * _INV_STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def _sample(rgb: np.ndarray, wave: np.ndarray, valid: np.ndarray, full: np.ndarray | None, group: str,
            equirect: bool, cfg: ModelConfig, full_gt: bool, teacher: np.ndarray | None = None) -> dict:
    """Assemble one sample; ``rgb`` is already at the model size. ``teacher``: a soft FOA map on the model
    grid (the sample then has no hand annotation: ``full`` is None)."""
    if teacher is not None:
        gt = torch.from_numpy(np.ascontiguousarray(teacher, dtype=np.float32))
    else:
        gt = None if full is None else torch.from_numpy(grid_gt(full, cfg))
    s = {
        "frame": _normalise(rgb),
        "waveform": torch.from_numpy(wave),
        "valid": torch.from_numpy(valid),
        "gt": gt,
        "teacher": teacher is not None,
        "group": group,
        "equirect": equirect,
    }
    if full_gt:
        s["gt_full"] = None if full is None else torch.from_numpy(full.astype(np.float32))
    return s


def _resize(rgb: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    if rgb.shape[:2] == (cfg.image_height, cfg.image_width):
        return rgb
    return cv2.resize(rgb, (cfg.image_width, cfg.image_height), interpolation=cv2.INTER_AREA)


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
    inference (:func:`pan360.saliency.network.mono_audio`); the ambiX signal
    (:func:`pan360.saliency.foa_from_track`, FuMa converted) gives
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
            self.foa.append(is_foa(info.audio.channels, info.audio.ambisonic, foa_format))
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
        from pan360.saliency import MAP_SIZE, foa_from_track
        from pan360.saliency.network import mono_audio
        from pan360.spatial import foa_energy_maps

        info = self.infos[v]
        track = read_audio(info)
        audio = resample_audio(mono_audio(track, self.foa_format), track.sample_rate, self.cfg.sample_rate)
        teacher = None
        if track.samples.shape[0] != 4:  # probed as 4 channels, decoded otherwise: no teacher for it
            self.foa[v] = False
        if self.has_teacher(v):
            frames = np.array(sorted({j for vv, j in self.index if vv == v}), np.int64)
            h, w = MAP_SIZE  # the saliency maps' grid (2.8° cells), then summed into the model's cells
            maps = foa_energy_maps(foa_from_track(track, self.foa_format), track.sample_rate,
                                   info.frame_times[frames], width=w, height=h, window=self.teacher_window)
            grids, power = teacher_grid(maps, self.cfg)
            teacher = _TeacherMaps(frames, grids, power, self.teacher_min_power)
            self._put(("t", v), teacher)
        self._put(("a", v), audio)
        return audio, teacher

    def _decode_frames(self, v: int, need: int) -> np.ndarray:
        """One sequential pass over video v, caching every indexed frame of it; returns frame ``need``."""
        from pan360.media import iter_frames

        wanted = {j for vv, j in self.index if vv == v}
        last, out = max(wanted), None
        for j, (_, rgb) in enumerate(iter_frames(self.infos[v], fmt="rgb24", threads=1)):
            if j in wanted:
                small = _resize(rgb, self.cfg)
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
        return _sample(rgb, wave, valid, None, f"video:{info.path}", True, self.cfg, self.full_gt, teacher=target)


# ------------------------------------------------------------------------------- pair folders
class PairFolderDataset(Dataset):
    """Image / sound pairs in the Flickr-SoundNet layout: ``root/frames/<stem>.jpg`` + ``root/audio/<stem>.wav``.

    The frame is the centre of its sound file, so the window is centred on the file's middle.
    Annotations (any may be absent; the first found per stem wins):

    1. ``root/annotations/<stem>.npy``: an exact map (any size, values in [0, 1]) of the frame;
    2. ``root/annotations/<stem>.xml``: Senocak / Flickr XML boxes on a 256x256 frame, several
       annotators → consensus (sum / 2, clipped at 1, as LVS / EZ-VSL);
    3. ``root/annotations.json``: ``{stem: [[x0, y0, x1, y1], ...]}`` in pixels of the original image
       → union of the boxes.

    A stem without any is unsupervised. ``root/dataset.json`` (written by ``train/make_dataset.py``)
    may say ``"equirect": true``. ``stems`` restricts the set (e.g. a test list).
    """

    def __init__(self, root: str | Path, cfg: ModelConfig, *, stems: list[str] | None = None,
                 full_gt: bool = False) -> None:
        self.root, self.cfg, self.full_gt = Path(root), cfg, full_gt
        frames = {f.stem: f for f in sorted((self.root / "frames").glob("*")) if f.suffix.lower() in IMAGE_EXTS}
        audio = {f.stem: f for f in sorted((self.root / "audio").glob("*")) if f.suffix.lower() in AUDIO_EXTS}
        keep = sorted(set(frames) & set(audio))
        if stems is not None:
            keep = [s for s in keep if s in set(stems)]
        if not keep:
            raise Pan360Error(f"no frame/audio pairs (frames/<stem>.jpg + audio/<stem>.wav) in {self.root}")
        self.stems, self.frames, self.audio = keep, frames, audio
        ann = self.root / "annotations.json"
        try:
            self.boxes = json.loads(ann.read_text()) if ann.exists() else {}
        except (OSError, ValueError) as exc:
            raise Pan360Error(f"cannot read {ann}: {exc.__class__.__name__}") from None
        meta = self.root / "dataset.json"
        self.equirect = bool(json.loads(meta.read_text()).get("equirect", False)) if meta.exists() else False

    def __len__(self) -> int:
        return len(self.stems)

    def annotated(self) -> list[int]:
        """Indices of the supervised pairs (without loading them)."""
        return [i for i, s in enumerate(self.stems) if self.has_annotation(s)]

    def has_annotation(self, stem: str) -> bool:
        """True when the pair is supervised."""
        a = self.root / "annotations"
        return (a / f"{stem}.npy").exists() or (a / f"{stem}.xml").exists() or bool(self.boxes.get(stem))

    def annotation(self, stem: str, orig_hw: tuple[int, int]) -> np.ndarray | None:
        """(H, W) annotation map at the model input size, or None."""
        h, w = self.cfg.image_height, self.cfg.image_width
        npy, xml = self.root / "annotations" / f"{stem}.npy", self.root / "annotations" / f"{stem}.xml"
        if npy.exists():
            m = np.load(npy, allow_pickle=False).astype(np.float32)
            return m if m.shape == (h, w) else cv2.resize(m, (w, h), interpolation=cv2.INTER_AREA)
        if xml.exists():
            return boxes_map(read_flickr_xml(xml), h, w, w / 256.0, h / 256.0, annotators=2.0)
        if self.boxes.get(stem):
            return boxes_map(self.boxes[stem], h, w, w / orig_hw[1], h / orig_hw[0], annotators=1.0)
        return None

    def __getitem__(self, i: int) -> dict:
        stem = self.stems[i]
        bgr = cv2.imread(str(self.frames[stem]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise Pan360Error(f"cannot read image {self.frames[stem]}")
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        audio = load_mono(self.audio[stem], self.cfg.sample_rate)
        wave, valid = sound_window(audio, self.cfg.sample_rate, len(audio) / 2 / self.cfg.sample_rate, self.cfg)
        full = self.annotation(stem, rgb.shape[:2])
        return _sample(_resize(rgb, self.cfg), wave, valid, full, f"pair:{self.root}:{stem}", self.equirect,
                       self.cfg, self.full_gt)


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
