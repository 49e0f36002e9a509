"""Camera paths: the per-frame virtual camera, its JSON file (version 1) and keyframe interpolation.

A :class:`CameraPath` holds one pose per output frame (or, as read from a hand-written file, sparse
keyframes). Angles are degrees with the conventions of docs/CONVENTIONS.md (ffmpeg ``v360``): yaw
in (-180, 180], positive to the viewer's right; pitch positive up; roll as v360.

JSON version 1::

    {"version": 1, "fps": 29.97, "width": 1920, "height": 1080, "frame": "camera",
     "frames": [{"index": 0, "time": 0.0, "yaw": 12.5, "pitch": -3.0, "roll": 0.0,
                 "h_fov": 75.0, "v_fov": 46.4}]}

On input ``roll`` (default 0) and ``v_fov`` (default: square pixels, ``tan(v/2) = tan(h/2)·height/width``)
may be omitted, and so may ``time`` when ``index`` is given (``time = index / fps``).

``interp`` (top level, and per frame to override it) says how the camera gets to a keyframe from the
one before: ``"ease"`` (ease in and out: it slows to a stop at each keyframe, so its speed never
jumps; the default for sparse keyframes), ``"linear"`` (constant angular speed; what pan360 writes
for its per-frame paths, and the default for a file with an entry per frame) or ``"cut"`` (hold the previous keyframe, then cut at this one's time).

``frame`` says which frame the angles are in (:data:`FRAMES`, see :mod:`pan360.stabilize`):
``"camera"`` (the picture's own axes; the default when absent), ``"level"`` (the camera's roll and
pitch removed, yaw following its heading) or ``"world"`` (the camera's turns removed too).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import sphere
from .errors import Pan360Error
from .geometry import View, check_fov, v_fov_for
from .options import check_frame_size

FORMAT_VERSION = 1
#: The frames a path's angles can be in (the trajectory file's ``frame``).
FRAMES = ("camera", "level", "world")
#: How the camera reaches a keyframe from the previous one (the trajectory file's ``interp``).
INTERPS = ("ease", "linear", "cut")
_DECIMALS = 6  # 1e-6 degree / 1 µs: well below anything visible, keeps a file round trip exact enough
_TIME_TOL = 1e-6  # seconds: what rounding times to _DECIMALS may move them


@dataclass(eq=False)
class CameraPath:
    """The virtual camera, one entry per output frame (or per keyframe before :func:`resample_path`).

    Construction validates and normalises: arrays become float64 of one length T >= 1, yaw is wrapped
    into (-180, 180], times must increase strictly; invalid values raise :class:`Pan360Error`.
    """

    times: np.ndarray  # (T,) seconds, presentation time of each output frame
    yaw: np.ndarray    # (T,) degrees, v360 convention, wrapped to (-180, 180]
    pitch: np.ndarray  # (T,) degrees
    roll: np.ndarray   # (T,) degrees
    h_fov: np.ndarray  # (T,) degrees
    v_fov: np.ndarray  # (T,) degrees
    width: int         # output frame size
    height: int
    fps: float
    frame: str = "camera"  # what the angles are relative to: one of FRAMES
    interp: tuple[str, ...] | None = None  # per entry, how it is reached from the one before (INTERPS); None: linear

    def __post_init__(self) -> None:
        names = ("times", "yaw", "pitch", "roll", "h_fov", "v_fov")
        arrays = {}
        for name in names:
            a = np.atleast_1d(np.asarray(getattr(self, name), dtype=np.float64))
            if a.ndim != 1:
                raise Pan360Error(f"camera path: {name} must be one-dimensional, got shape {a.shape}")
            if not np.all(np.isfinite(a)):
                raise Pan360Error(f"camera path: {name} contains a non-finite value")
            arrays[name] = a
        n = len(arrays["times"])
        if n == 0:
            raise Pan360Error("camera path: no frames")
        for name in names:
            if len(arrays[name]) != n:
                raise Pan360Error(f"camera path: {name} has {len(arrays[name])} entries, times has {n}")
        if n > 1 and np.any(np.diff(arrays["times"]) <= 0):
            i = int(np.argmax(np.diff(arrays["times"]) <= 0)) + 1
            raise Pan360Error(f"camera path: times must increase, but frame {i} is not after frame {i - 1}")
        if np.any(np.abs(arrays["pitch"]) > 90.0):
            raise Pan360Error("camera path: pitch must be within [-90, 90] degrees")
        check_fov(arrays["h_fov"], arrays["v_fov"], "camera path")
        self.times = arrays["times"]
        self.yaw = sphere.wrap_yaw(arrays["yaw"])
        self.pitch = arrays["pitch"]
        self.roll = sphere.wrap_yaw(arrays["roll"])  # same range as yaw: (-180, 180]
        self.h_fov = arrays["h_fov"]
        self.v_fov = arrays["v_fov"]
        if isinstance(self.width, bool) or isinstance(self.height, bool):
            raise Pan360Error("camera path: width and height must be integers")
        if int(self.width) != self.width or int(self.height) != self.height or self.width < 1 or self.height < 1:
            raise Pan360Error(f"camera path: invalid output size {self.width}x{self.height}")
        self.width, self.height = int(self.width), int(self.height)
        if not (math.isfinite(float(self.fps)) and float(self.fps) > 0.0):
            raise Pan360Error(f"camera path: fps must be positive, got {self.fps}")
        self.fps = float(self.fps)
        if self.frame not in FRAMES:
            raise Pan360Error(f"camera path: frame must be one of {', '.join(FRAMES)}, got {self.frame!r}")
        if self.interp is not None:
            self.interp = tuple(self.interp)
            if len(self.interp) != n or any(k not in INTERPS for k in self.interp):
                raise Pan360Error(f"camera path: interp needs one of {', '.join(INTERPS)} per entry")

    def __len__(self) -> int:
        return len(self.times)

    def view(self, i: int) -> View:
        """The camera of entry ``i``."""
        return View(float(self.yaw[i]), float(self.pitch[i]), float(self.roll[i]), float(self.h_fov[i]),
                    float(self.v_fov[i]))

    def directions(self) -> np.ndarray:
        """Unit view-axis vectors (T, 3) in :mod:`pan360.sphere` axes."""
        return sphere.dir_to_vec(self.yaw, self.pitch)


def constant_path(times: ArrayLike, yaw: float, pitch: float, h_fov: float, width: int, height: int,
                  fps: float, roll: float = 0.0, v_fov: float | None = None) -> CameraPath:
    """A fixed view at every time of ``times`` (v_fov from the output aspect when None)."""
    t = np.atleast_1d(np.asarray(times, dtype=np.float64))
    v = float(v_fov_for(h_fov, width, height)) if v_fov is None else v_fov
    ones = np.ones_like(t)
    return CameraPath(t, yaw * ones, pitch * ones, roll * ones, h_fov * ones, v * ones, width, height, fps)


# ------------------------------------------------------------------------------------------ JSON
def path_to_dict(path: CameraPath) -> dict[str, Any]:
    """The JSON version 1 document of a path (floats rounded to 6 decimals)."""
    def r(x: float) -> float:
        return round(float(x), _DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0

    frames = [
        {"index": i, "time": r(path.times[i]), "yaw": r(path.yaw[i]), "pitch": r(path.pitch[i]),
         "roll": r(path.roll[i]), "h_fov": r(path.h_fov[i]), "v_fov": r(path.v_fov[i])}
        for i in range(len(path))
    ]
    if path.interp is not None:
        for fr, how in zip(frames, path.interp):
            fr["interp"] = how
    return {"version": FORMAT_VERSION, "fps": r(path.fps), "width": path.width, "height": path.height,
            "frame": path.frame, "interp": "linear" if path.interp is None else "ease", "frames": frames}


def save_path(path: CameraPath, file: str | Path) -> None:
    """Write ``path`` as trajectory JSON version 1 to ``file`` (not atomic: the caller handles that)."""
    text = json.dumps(path_to_dict(path), separators=(",", ":"))
    # One frame per line keeps big files readable and diff-able without wasting space.
    text = text.replace('},{"index"', '},\n{"index"')
    Path(file).write_text(text + "\n", encoding="utf-8")


def _number(obj: dict[str, Any], key: str, where: str, default: float | None = None) -> float:
    if key not in obj:
        if default is None:
            raise Pan360Error(f"{where}: missing key {key!r}")
        return default
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise Pan360Error(f"{where}: {key!r} must be a finite number, got {v!r}")
    return float(v)


def _per_frame(frames: Any, fps: float) -> bool:
    """Whether a file's entries come about one per frame (median spacing within 1.5 frame intervals)."""
    if not isinstance(frames, list) or len(frames) < 3:
        return False
    times = []
    for fr in frames:
        if not isinstance(fr, dict):
            return False
        t = fr.get("time", fr.get("index", 0) / fps if isinstance(fr.get("index"), (int, float)) else None)
        if not isinstance(t, (int, float)) or isinstance(t, bool):
            return False
        times.append(float(t))
    gaps = np.diff(times)
    return bool(len(gaps) and np.median(gaps) <= 1.5 / fps)


def path_from_dict(doc: Any, source: str = "trajectory") -> CameraPath:
    """Parse a JSON version 1 document (see module docstring); ``source`` names it in errors."""
    if not isinstance(doc, dict):
        raise Pan360Error(f"{source}: expected a JSON object at the top level")
    if "version" not in doc:
        raise Pan360Error(f"{source}: missing key 'version' (expected version {FORMAT_VERSION})")
    if doc["version"] != FORMAT_VERSION or isinstance(doc["version"], bool):
        raise Pan360Error(f"{source}: unsupported trajectory version {doc['version']!r} (expected {FORMAT_VERSION})")
    for key in ("fps", "width", "height", "frames"):
        if key not in doc:
            raise Pan360Error(f"{source}: missing key {key!r}")
    fps = _number(doc, "fps", source)
    width, height = doc["width"], doc["height"]
    for key, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise Pan360Error(f"{source}: {key!r} must be a positive integer, got {v!r}")
    frames = doc["frames"]
    if not isinstance(frames, list) or not frames:
        raise Pan360Error(f"{source}: 'frames' must be a non-empty list")
    if fps <= 0:
        raise Pan360Error(f"{source}: 'fps' must be positive, got {fps:g}")
    frame = doc.get("frame", "camera")
    if frame not in FRAMES:
        raise Pan360Error(f"{source}: 'frame' must be one of {', '.join(FRAMES)}, got {frame!r}")
    # Without "interp": sparse keyframes ease; a file with an entry per frame (as pan360 wrote them before
    # it said so) is linear, so resampling it at other frame times does not stop at every entry.
    default_interp = doc.get("interp", "linear" if _per_frame(frames, fps) else "ease")
    if default_interp not in INTERPS:
        raise Pan360Error(f"{source}: 'interp' must be one of {', '.join(INTERPS)}, got {default_interp!r}")
    interp: list[str] = []
    cols: dict[str, list[float]] = {k: [] for k in ("time", "yaw", "pitch", "roll", "h_fov", "v_fov")}
    for i, fr in enumerate(frames):
        where = f"{source}: frame {i}"
        if not isinstance(fr, dict):
            raise Pan360Error(f"{where}: expected an object")
        if "time" in fr:
            t = _number(fr, "time", where)
        elif "index" in fr:
            t = _number(fr, "index", where) / fps
        else:
            raise Pan360Error(f"{where}: missing key 'time' (or 'index')")
        h = _number(fr, "h_fov", where)
        check_fov(h, where=f"{where}: 'h_fov'")
        cols["time"].append(t)
        cols["yaw"].append(_number(fr, "yaw", where))
        cols["pitch"].append(_number(fr, "pitch", where))
        cols["roll"].append(_number(fr, "roll", where, default=0.0))
        cols["h_fov"].append(h)
        cols["v_fov"].append(_number(fr, "v_fov", where, default=float(v_fov_for(h, width, height))))
        how = fr.get("interp", default_interp)
        if how not in INTERPS:
            raise Pan360Error(f"{where}: 'interp' must be one of {', '.join(INTERPS)}, got {how!r}")
        interp.append(how)
        if i > 0 and cols["time"][i] <= cols["time"][i - 1]:
            raise Pan360Error(f"{where}: times must increase ({cols['time'][i]:g} s is not after "
                              f"{cols['time'][i - 1]:g} s)")
    for i, p in enumerate(cols["pitch"]):
        if abs(p) > 90.0:
            raise Pan360Error(f"{source}: frame {i}: 'pitch' must be in [-90, 90], got {p:g}")
    check_frame_size(width, height, f"{source}: output size")  # the bounds of --size
    return CameraPath(np.array(cols["time"]), np.array(cols["yaw"]), np.array(cols["pitch"]),
                      np.array(cols["roll"]), np.array(cols["h_fov"]), np.array(cols["v_fov"]),
                      width, height, fps, frame, None if set(interp) == {"linear"} else tuple(interp))


def read_json(file: str | Path, what: str) -> Any:
    """The parsed JSON of ``file``; an unreadable file or bad JSON is a one-line :class:`Pan360Error`
    naming ``what`` the file was meant to be ("trajectory", "annotations")."""
    name = str(file)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Pan360Error(f"cannot read {what} {name}: {exc.strerror if isinstance(exc, OSError) else exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise Pan360Error(f"{name} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from exc


def load_path(file: str | Path) -> CameraPath:
    """Read a trajectory JSON (version 1): a per-frame path or sparse keyframes, as written.

    Use :func:`resample_path` to turn keyframes into one pose per output frame.
    """
    return path_from_dict(read_json(file, "trajectory"), str(file))


# -------------------------------------------------------------------------------- interpolation
def _slerp_antipodal_safe(v0: np.ndarray, v1: np.ndarray, t: np.ndarray, yaw0: np.ndarray) -> np.ndarray:
    """Slerp (N, 3) that also handles exactly opposite directions (there: turn right on the horizon).

    ``sphere.slerp`` has no unique great circle for antipodes; we go through the direction 90° to the
    right of ``v0`` in yaw at pitch 0 (projected perpendicular to v0), an arbitrary but documented choice.
    """
    opposite = sphere.vec_angle(v0, v1) > 180.0 - 1e-6
    if not np.any(opposite):
        return sphere.slerp(v0, v1, t)
    mid = sphere.dir_to_vec(yaw0 + 90.0, np.zeros_like(yaw0))
    mid = mid - np.sum(mid * v0, axis=-1, keepdims=True) * v0
    norm = np.linalg.norm(mid, axis=-1, keepdims=True)
    mid = np.where(norm > 1e-9, mid / np.where(norm > 1e-9, norm, 1.0), sphere.dir_to_vec(yaw0, 0.0 * yaw0))
    first = sphere.slerp(v0, mid, np.clip(2.0 * t, 0.0, 1.0))
    second = sphere.slerp(mid, v1, np.clip(2.0 * t - 1.0, 0.0, 1.0))
    split = np.where((t < 0.5)[..., None], first, second)
    return np.where(opposite[..., None], split, sphere.slerp(v0, v1, t))


def resample_path(keyframes: CameraPath, times: ArrayLike) -> CameraPath:
    """One pose per time in ``times`` from (sparse) keyframes.

    Directions are interpolated on the sphere (slerp between consecutive keyframes, so yaw 170 → -170
    passes through 180); h_fov, v_fov and roll alike (roll the short way round); before the first
    keyframe and after the last the pose is held. Each segment runs as its end keyframe's ``interp``
    says: ``linear`` (uniform in time), ``ease`` (smoothstep in time: the speed rises from and falls
    back to zero, so it is continuous at every keyframe) or ``cut`` (the start pose is held, the end
    one appears at its time). Output size, fps and frame are the keyframes'; the result is per frame
    (linear).
    """
    t = np.atleast_1d(np.asarray(times, dtype=np.float64))
    kt = keyframes.times
    n = len(kt)
    if n == 1:
        seg = np.zeros(len(t), dtype=np.int64)
        frac = np.zeros(len(t))
        j0 = j1 = seg
    else:
        seg = np.clip(np.searchsorted(kt, t, side="right") - 1, 0, n - 2)
        frac = np.clip((t - kt[seg]) / (kt[seg + 1] - kt[seg]), 0.0, 1.0)
        # Times within the file's precision (1 µs) of a keyframe take that keyframe exactly.
        frac = np.where(np.abs(t - kt[seg]) <= _TIME_TOL, 0.0, np.where(np.abs(t - kt[seg + 1]) <= _TIME_TOL, 1.0, frac))
        j0, j1 = seg, seg + 1
        if keyframes.interp is not None:
            how = np.asarray(keyframes.interp)[j1]
            frac = np.where(how == "ease", frac * frac * (3.0 - 2.0 * frac), np.where(how == "cut", np.floor(frac), frac))
    vec = keyframes.directions()
    v = _slerp_antipodal_safe(vec[j0], vec[j1], frac, keyframes.yaw[j0])
    yaw, pitch = sphere.vec_to_dir(v)
    # Exact keyframe values at the keyframe times (no round trip through vectors): a per-frame path
    # resampled at its own times comes back unchanged.
    at0 = frac == 0.0
    at1 = frac == 1.0
    yaw = np.where(at0, keyframes.yaw[j0], np.where(at1, keyframes.yaw[j1], yaw))
    pitch = np.where(at0, keyframes.pitch[j0], np.where(at1, keyframes.pitch[j1], pitch))
    roll_unwrapped = np.degrees(np.unwrap(np.radians(keyframes.roll)))

    def lerp(a: np.ndarray) -> np.ndarray:
        return a[j0] + (a[j1] - a[j0]) * frac

    return CameraPath(t, yaw, pitch, lerp(roll_unwrapped), lerp(keyframes.h_fov), lerp(keyframes.v_fov),
                      keyframes.width, keyframes.height, keyframes.fps, keyframes.frame)


# ------------------------------------------------------------------------------- ffmpeg export
def to_ffmpeg_sendcmd(path: CameraPath) -> str:
    """The path as an ffmpeg ``sendcmd`` script driving ``v360`` with absolute angles.

    Replay with (``reset_rot=1`` makes every rotation command absolute rather than cumulative)::

        ffmpeg -i in.mp4 -vf "sendcmd=f=path.cmd,v360=e:flat:reset_rot=1:w=W:h=H" out.mp4

    Only values that change are sent (each command makes v360 rebuild its whole remap table). v360
    knows nothing of the camera's motion: only a path in the picture's own ("camera") frame replays.
    """
    if path.frame != "camera":
        raise Pan360Error(f"this camera path is in the {path.frame} frame; ffmpeg's v360 replays camera-frame "
                          "angles only (render it with pan360 render --path)")
    lines = [
        "# pan360 camera path for ffmpeg v360 (absolute angles: use v360 option reset_rot=1)",
        f"# v360=e:flat:reset_rot=1:w={path.width}:h={path.height}",
    ]
    keys = ("yaw", "pitch", "roll", "h_fov", "v_fov")
    last: dict[str, str] = {}
    for i in range(len(path)):
        cmds = []
        for key in keys:
            val = f"{float(getattr(path, key)[i]):.4f}"
            if last.get(key) != val:
                cmds.append(f"v360 {key} {val}")
                last[key] = val
        if cmds:
            lines.append(f"{path.times[i]:.6f} " + ", ".join(cmds) + ";")
    return "\n".join(lines) + "\n"
