"""Frame / sound pairs in the Flickr-SoundNet layout (:class:`PairFolderDataset`), what evaluation reads,
and the pieces every data set of the network shares: mono audio as inference hears it
(:func:`mono_of`, :func:`load_mono`), annotation maps (:func:`read_flickr_xml`, :func:`boxes_map`,
:func:`grid_gt`) and the sample dict (:func:`make_sample`).

Every data set of the network yields samples (dicts) with

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
"""

from __future__ import annotations

import json
import wave
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from pan360.errors import Pan360Error
from pan360.nn.inputs import IMAGENET_MEAN, IMAGENET_STD, resample_audio, sound_window

if TYPE_CHECKING:
    from pan360.nn.model import ModelConfig

IMAGE_EXTS = (".jpg", ".jpeg", ".png")
AUDIO_EXTS = (".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg")


def mono_of(samples: np.ndarray, ambisonic: str | None, foa_format: str = "auto") -> np.ndarray:
    """(C, N) audio → (N,) mono as inference hears it (:meth:`pan360.media.AudioTrack.mono`): the W
    channel of 4-channel ambisonic audio in SN3D (FuMa's W, 3 dB down, is scaled by √2 through
    :meth:`pan360.media.AudioTrack.foa`), else the mean over channels. ``foa_format`` ("ambix" /
    "fuma") forces a 4-channel track to be read as that format."""
    if samples.ndim == 1:
        return samples.astype(np.float32, copy=False)
    from pan360.media import AudioTrack

    return AudioTrack(samples=samples, sample_rate=1, layout="", ambisonic=ambisonic).mono(foa_format)


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



def grid_gt(full: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """(H, W) annotation map in [0, 1] → (H/16, W/16) share of each grid cell it covers (area average)."""
    gh, gw = cfg.image_height // 16, cfg.image_width // 16
    m = full.astype(np.float32)
    if m.shape != (cfg.image_height, cfg.image_width):
        m = cv2.resize(m, (cfg.image_width, cfg.image_height), interpolation=cv2.INTER_AREA)
    return cv2.resize(m[: gh * 16, : gw * 16], (gw, gh), interpolation=cv2.INTER_AREA)


def boxes_map(boxes: list[list[float]], height: int, width: int, sx: float, sy: float, annotators: float) -> np.ndarray:
    """Consensus map (height, width): boxes (x0, y0, x1, y1) scaled by (sx, sy), summed, / annotators, ≤ 1.

    Box corners are truncated to integers like the LVS evaluation code.
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


def make_sample(rgb: np.ndarray, wave: np.ndarray, valid: np.ndarray, full: np.ndarray | None, group: str,
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


def resize_frame(rgb: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """uint8 (H, W, 3) → the model input size (area averaging; unchanged when already that size)."""
    if rgb.shape[:2] == (cfg.image_height, cfg.image_width):
        return rgb
    return cv2.resize(rgb, (cfg.image_width, cfg.image_height), interpolation=cv2.INTER_AREA)



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
        return make_sample(resize_frame(rgb, self.cfg), wave, valid, full, f"pair:{self.root}:{stem}", self.equirect,
                       self.cfg, self.full_gt)
