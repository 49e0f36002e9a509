"""``pan360 preview``: a local page to watch the planned camera and steer it with keyframes.

The server (the standard library's ``http.server``, on 127.0.0.1 only) serves the page and its script
from this package (no internet), the input video itself (with byte ranges, so the browser can seek),
the analysis (``/api/state``: frame times, the planned path, the saliency maps, the camera's
rotations when stabilised) and takes the user's keyframes (``POST /api/save``). Saving re-plans: the
keyframes are constraints the planner keeps (:func:`pan360.trajectory.plan_camera_path`) and the
automatic camera fills the stretches between them (or, with ``fill`` off, the keyframes alone are
interpolated); the per-frame path is written, with the keyframes under ``"keyframes"`` so the page
can reopen them, as a trajectory file that ``pan360 render --path`` renders.

The page draws the view with the renderer's geometry (:mod:`pan360.geometry`: the same rays, the same
v360 rotation, the same equirect pixel grid, bilinear), so the same angles give the same picture.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import re
import threading
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from pan360.errors import Pan360Error
from pan360.geometry import H_FOV_RANGE
from pan360.paths import INTERPS, CameraPath, load_path, path_to_dict, read_json, resample_path

STATIC = Path(__file__).with_name("static")
#: Map grid sent to the page (height, width) and the most maps sent (longer clips: every n-th frame).
PAGE_MAP = (32, 64)
MAX_PAGE_MAPS = 3000
#: Largest save request accepted (bytes).
MAX_REQUEST = 16_000_000
_VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/mp4", ".webm": "video/webm",
                ".mkv": "video/webm", ".ogv": "video/ogg"}


@dataclass
class PreviewSession:
    """One input, its analysis and the keyframes being edited; ``save_to`` is where Save writes."""

    analysis: Any  # pan360.pipeline.Analysis (with maps)
    save_to: Path
    options: Any  # pan360.trajectory.TrajectoryOptions used for (re)planning
    size: tuple[int, int]
    keyframes: list[dict] = field(default_factory=list)
    follow: list[dict] = field(default_factory=list)  # subjects to follow: {time, yaw, pitch}
    sound_maps: Any = None  # the analysis' own maps, before any following
    auto_path: CameraPath | None = None  # the analysis' own plan (framing included), for no keyframes
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def info(self):
        return self.analysis.info

    def state(self) -> dict:
        """Everything the page needs, as JSON-ready values."""
        a, info = self.analysis, self.info
        path = a.path
        doc: dict[str, Any] = {
            "file": info.path.name, "duration": info.duration, "fps": float(info.fps),
            "times": info.frame_times.tolist(), "eye": [info.eye_width, info.eye_height],
            "stereo": info.stereo, "source": a.source, "save_to": str(self.save_to),
            "path": _path_lists(path), "keyframes": self.keyframes, "interps": list(INTERPS), "follow": self.follow,
            "frame": path.frame, "camera": None, "maps": None,
        }
        stab = a.stabilization
        if stab.active:  # per frame, camera -> frame (row-major 3x3), for composing views like the renderer
            doc["camera"] = base64.b64encode(stab.rotations.astype("<f8").tobytes()).decode()
        if a.maps is not None and len(a.maps):
            doc["maps"] = _page_maps(a.maps, info.frame_times, stab.rotations)
        return doc

    def save(self, request: dict) -> dict:
        """Re-plan with the page's keyframes and write the path; returns the new state's path and file."""
        from pan360.media.output import atomic_output
        from pan360.sources.follow import follow_saliency
        from pan360.trajectory import plan_camera_path

        if not isinstance(request, dict):
            raise Pan360Error("the request must be a JSON object")
        kfs = _check_keyframes(request.get("keyframes"), self.info.duration)
        follow = _check_follow(request.get("follow", []))
        fill = request.get("fill", True) is not False
        info, a = self.info, self.analysis
        notes: list[str] = []
        with self.lock:
            w, h = self.size
            maps = a.maps
            if self.sound_maps is not None and follow != self.follow:
                maps = (follow_saliency(info, self.sound_maps, [(f["time"], f["yaw"], f["pitch"]) for f in follow],
                                        a.stabilization, notes.append) if follow else self.sound_maps)
            if kfs:
                keys = CameraPath([k["time"] for k in kfs], [k["yaw"] for k in kfs], [k["pitch"] for k in kfs],
                                  [k.get("roll", 0.0) for k in kfs], [k["h_fov"] for k in kfs],
                                  [_v_fov(k["h_fov"], w, h) for k in kfs], w, h, float(info.fps), a.path.frame,
                                  tuple(k["interp"] for k in kfs))
                if fill and maps is not None:
                    path = plan_camera_path(maps, info.frame_times, w, h, float(info.fps), self.options, keyframes=keys)
                else:
                    path = replace(resample_path(keys, info.frame_times), fps=float(info.fps))
            elif not follow and self.auto_path is not None:  # back to the analysis' own plan
                path = self.auto_path
            elif maps is not None:  # following, no keyframes: the automatic plan of the subject
                path = replace(plan_camera_path(maps, info.frame_times, w, h, float(info.fps), self.options),
                               frame=a.path.frame)
            else:
                path = a.path
            doc = path_to_dict(path)
            doc["keyframes"] = kfs
            doc["follow"] = follow
            doc["fill"] = fill
            with atomic_output(self.save_to, overwrite=True, inputs=(info.path,)) as tmp:
                text = json.dumps(doc, separators=(",", ":")).replace('},{"index"', '},\n{"index"')
                Path(tmp).write_text(text + "\n", encoding="utf-8")
            # only now, with the file written, does the session take the new state
            self.keyframes, self.follow = kfs, follow
            a.maps, a.path = maps, path
        return {"path": _path_lists(path), "saved": str(self.save_to), "keyframes": kfs, "follow": follow,
                "notes": notes}


def _v_fov(h_fov: float, w: int, h: int) -> float:
    from pan360.geometry import v_fov_for

    return float(v_fov_for(h_fov, w, h))


def _path_lists(path: CameraPath) -> dict:
    return {k: getattr(path, k).tolist() for k in ("yaw", "pitch", "roll", "h_fov", "v_fov")} | {
        "width": path.width, "height": path.height}


def _page_maps(maps: np.ndarray, times: np.ndarray, rotations: np.ndarray | None = None) -> dict:
    """The maps at the page's grid, scaled to 0..255 by one clip-wide scale (as the heatmap video), in the
    camera picture's axes (maps in a level or world frame are turned back: ``rotations`` camera -> frame)."""
    import cv2

    from pan360.stabilize import rotate_maps
    from pan360.visualize import map_scale

    step = max(1, -(-len(maps) // MAX_PAGE_MAPS))
    idx = np.arange(0, len(maps), step)
    scale = map_scale(maps)
    h, w = PAGE_MAP
    out = np.empty((len(idx), h, w), np.uint8)
    for n, i in enumerate(idx):
        m = np.asarray(maps[i], np.float32)
        if rotations is not None:  # frame -> camera picture
            m = rotate_maps(m[None], rotations[i].T[None])[0]
        m = cv2.resize(m, (w, h), interpolation=cv2.INTER_AREA)
        out[n] = np.clip(255.0 * m / scale if scale > 0 else 0.0, 0, 255).astype(np.uint8)
    return {"width": w, "height": h, "times": times[idx].tolist(), "data": base64.b64encode(out.tobytes()).decode()}


def _check_follow(raw: Any) -> list[dict]:
    if not isinstance(raw, list):
        raise Pan360Error("follow must be a list")
    out = []
    for i, f in enumerate(raw):
        try:
            e = {"time": float(f["time"]), "yaw": float(f["yaw"]), "pitch": float(np.clip(float(f["pitch"]), -90, 90))}
        except (KeyError, TypeError, ValueError) as exc:
            raise Pan360Error(f"follow {i}: {exc}") from None
        if not np.isfinite(list(e.values())).all() or e["time"] < 0:
            raise Pan360Error(f"follow {i}: values must be finite, time >= 0")
        out.append(e)
    return sorted(out, key=lambda e: e["time"])


def _check_keyframes(raw: Any, duration: float | None = None) -> list[dict]:
    if not isinstance(raw, list):
        raise Pan360Error("keyframes must be a list")
    out = []
    for i, k in enumerate(raw):
        if not isinstance(k, dict):
            raise Pan360Error(f"keyframe {i}: expected an object")
        try:
            kf = {"time": float(k["time"]), "yaw": float(k["yaw"]), "pitch": float(k["pitch"]),
                  "h_fov": float(k.get("h_fov", 90.0)), "interp": str(k.get("interp", "ease"))}
        except (KeyError, TypeError, ValueError) as exc:
            raise Pan360Error(f"keyframe {i}: {exc}") from None
        if not all(np.isfinite([kf["time"], kf["yaw"], kf["pitch"], kf["h_fov"]])):
            raise Pan360Error(f"keyframe {i}: values must be finite")
        if kf["interp"] not in INTERPS:
            raise Pan360Error(f"keyframe {i}: interp must be one of {', '.join(INTERPS)}")
        lo, hi = H_FOV_RANGE
        if not lo <= kf["h_fov"] <= hi:
            raise Pan360Error(f"keyframe {i}: h_fov must be within [{lo:g}, {hi:g}], got {kf['h_fov']:g}")
        if duration is not None and not 0.0 <= kf["time"] <= duration:
            raise Pan360Error(f"keyframe {i}: time {kf['time']:g} s is outside the clip (0 to {duration:g} s)")
        kf["pitch"] = float(np.clip(kf["pitch"], -90.0, 90.0))
        out.append(kf)
    out.sort(key=lambda k: k["time"])
    for a, b in zip(out, out[1:]):
        if b["time"] <= a["time"]:
            raise Pan360Error(f"two keyframes at {b['time']:g} s")
    return out


def open_session(input: str | Path, *, path: str | Path | None = None, saliency: str = "auto",
                 weights: Any = None, fov: float | None = None, size: str | tuple[int, int] | None = None,
                 stabilize: str = "auto", device: str = "auto", framing: bool = False, progress=None,
                 notify=None) -> PreviewSession:
    """Analyse ``input`` and open a session. ``path``: the trajectory file Save writes (default
    ``<input stem>_path.json`` in the current folder); when it exists, its keyframes (or, for a plain
    per-frame file, its path) are where the page starts."""
    from pan360 import pipeline

    save_to = Path(path) if path is not None else Path.cwd() / f"{Path(input).stem}_path.json"
    a = pipeline.analyse(input, saliency=saliency, weights=weights, fov=fov, size=size, stabilize=stabilize,
                         device=device, framing=framing, progress=progress, notify=notify)
    if a.info.layout != "equirect":
        raise Pan360Error(f"the preview page shows equirect inputs only ({a.info.path.name} is {a.info.layout}); "
                          "render it with pan360 render")
    options = pipeline.camera_options(a.info, fov=fov)
    w, h = a.path.width, a.path.height
    session = PreviewSession(a, save_to, options, (w, h), sound_maps=a.maps, auto_path=a.path)
    if save_to.is_file():
        doc = read_json(save_to, "trajectory")
        given = load_path(save_to)
        if given.frame != a.path.frame:
            raise Pan360Error(f"{save_to.name} is in the {given.frame} frame, the analysis in the {a.path.frame} "
                              f"frame: give --stabilize {'off' if given.frame == 'camera' else given.frame}")
        if "keyframes" in doc:
            session.keyframes = _check_keyframes(doc["keyframes"])
        elif len(given) < 0.5 * a.info.n_frames:  # a sparse (hand-written) keyframe file: edit its keyframes
            session.keyframes = _check_keyframes([
                {"time": float(given.times[i]), "yaw": float(given.yaw[i]), "pitch": float(given.pitch[i]),
                 "h_fov": float(given.h_fov[i]), "interp": (given.interp or ("linear",) * len(given))[i]}
                for i in range(len(given)) if 0.0 <= given.times[i] <= a.info.duration])
        session.follow = _check_follow(doc.get("follow", []))
        if session.follow and a.maps is not None:
            from pan360.sources.follow import follow_saliency

            a.maps = follow_saliency(a.info, a.maps, [(f["time"], f["yaw"], f["pitch"]) for f in session.follow],
                                     a.stabilization, notify)
        a.path = pipeline.given_path(save_to, a.info)
        session.size = (a.path.width, a.path.height)
    return session


class _Handler(BaseHTTPRequestHandler):
    session: PreviewSession  # set on the subclass made by serve()
    server_version = "pan360-preview"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the CLI prints the URL only
        pass

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        route = self.path.split("?", 1)[0]
        if not self._local():
            self._send(403, b"forbidden", "text/plain")
            return
        try:
            if route in ("/", "/index.html"):
                self._static("index.html")
            elif route.startswith("/static/"):
                self._static(route[len("/static/"):])
            elif route == "/video":
                self._video()
            elif route == "/api/state":
                self._json(self.session.state())
            else:
                self._send(404, b"not found", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _local(self) -> bool:
        """Only this server's own address may talk to it (no DNS rebinding, no cross-site form posts)."""
        port = self.server.server_address[1]
        return self.headers.get("Host", "") in (f"127.0.0.1:{port}", f"localhost:{port}")

    def do_POST(self) -> None:
        if self.path != "/api/save":
            self._send(404, b"not found", "text/plain")
            return
        if not self._local() or not self.headers.get("Content-Type", "").startswith("application/json"):
            self._send(403, b"forbidden", "text/plain")
            return
        try:
            n = int(self.headers.get("Content-Length", "-1"))
        except ValueError:
            n = -1
        if not 0 < n <= MAX_REQUEST:
            self._json({"error": f"a save request is 1 byte to {MAX_REQUEST // 1_000_000} MB"}, 413 if n > 0 else 400)
            return
        try:
            request = json.loads(self.rfile.read(n))
            self._json(self.session.save(request))
        except (Pan360Error, ValueError) as exc:
            self._json({"error": str(exc)}, 400)
        except Exception as exc:  # noqa: BLE001 - the page shows it; the server keeps serving
            self._json({"error": f"{type(exc).__name__}: {exc}"}, 500)

    def _static(self, name: str) -> None:
        f = (STATIC / name).resolve()
        if STATIC.resolve() not in f.parents or not f.is_file():
            self._send(404, b"not found", "text/plain")
            return
        ctype = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
        self._send(200, f.read_bytes(), ctype + ("; charset=utf-8" if ctype.startswith("text/") or f.suffix == ".js" else ""))

    def _video(self) -> None:
        f = self.session.info.path
        size = f.stat().st_size
        ctype = _VIDEO_TYPES.get(f.suffix.lower(), "application/octet-stream")
        start, end = 0, size - 1
        m = re.match(r"bytes=(\d*)-(\d*)$", self.headers.get("Range", ""))
        status = HTTPStatus.OK
        if m and (m.group(1) or m.group(2)):
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:  # the last N bytes
                start = max(0, size - int(m.group(2)))
            if start > end or start >= size:
                self._send(416, b"", "text/plain", {"Content-Range": f"bytes */{size}"})
                return
            status = HTTPStatus.PARTIAL_CONTENT
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            return
        with open(f, "rb") as src:
            src.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = src.read(min(1 << 20, left))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)


def make_server(session: PreviewSession, port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server for ``session`` on 127.0.0.1:``port`` (0: any free port); call ``serve_forever``."""
    handler = type("Handler", (_Handler,), {"session": session})
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        raise Pan360Error(f"cannot listen on port {port}: {exc.strerror}") from None
    server.daemon_threads = True
    return server


def url_of(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/"
