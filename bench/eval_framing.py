"""Framing people on the annotated real clips: is the source still in view, and are faces near it in frame?

For every clip of ``annotations.json`` (default ``shared/media/real360_foa``) the default analysis runs
twice, without and with ``framing`` (same saliency, same plan; framing only tilts), and:

- **source in view**: the annotated points in view of the path (:func:`pan360.metrics.points_in_view`);
- **faces in frame**: twice a second, faces are detected (the same MTCNN as the framing) in a view around
  the rendered one, 1.6x its FOV; a face counts when its centre is within the view's width (h_fov) of
  the annotated source (the annotation nearest in time); it is *fully in frame* when its whole box
  (corners and edge midpoints) projects inside the rendered frame.

    python bench/eval_framing.py [--clips guitar19 soprano30] [--saliency auto]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pan360 import geometry, pipeline, sphere
from pan360.framing import detection_view, face_detector
from pan360.media import iter_frames
from pan360.metrics import load_annotated_points, points_in_view
from pan360.reproject import Renderer

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media" / "real360_foa"


def faces_in_frame(info, path, points, detector, rate: float = 2.0) -> tuple[int, int]:
    """(frames with a face near the source, of those: every such face fully in frame)."""
    step = max(1, int(round(float(info.fps) / rate)))
    near = full = 0
    renderer = None
    for i, (t, rgb) in enumerate(iter_frames(info, fmt="rgb24")):
        if i % step or i >= len(path):
            continue
        view = path.view(i)
        big, (w, h) = detection_view(view)
        if renderer is None or renderer.out_size != (w, h):
            renderer = Renderer(info.eye_width, info.eye_height, w, h, device="cpu")
        k = int(np.argmin(np.abs(points[:, 0] - t)))
        src_yaw, src_pitch = points[k, 1], points[k, 2]
        counted, ok = False, True
        for x0, y0, x1, y1, prob in detector(renderer.render_rgb(rgb, big)):
            if prob < 0.9 or y1 - y0 < 10:
                continue
            cy, cp = geometry.view_pixel_to_dir(0.5 * (x0 + x1), 0.5 * (y0 + y1), w, h, big)
            if sphere.angular_distance(cy, cp, src_yaw, src_pitch) > view.h_fov:
                continue
            counted = True
            xs = np.array([x0, x1, x0, x1, 0.5 * (x0 + x1), 0.5 * (x0 + x1), x0, x1])
            ys = np.array([y0, y0, y1, y1, y0, y1, 0.5 * (y0 + y1), 0.5 * (y0 + y1)])
            dy, dp = geometry.view_pixel_to_dir(xs, ys, w, h, big)
            _, _, vis = geometry.dir_to_view_pixel(dy, dp, path.width, path.height, view)
            ok &= bool(vis.all())
        near += counted
        full += counted and ok
    return near, full


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--media", type=Path, default=MEDIA)
    ap.add_argument("--clips", nargs="*")
    ap.add_argument("--saliency", default="auto")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    detector = face_detector()
    if detector is None:
        raise SystemExit("needs facenet-pytorch: pip install --no-deps facenet-pytorch requests")
    ann_file = args.media / "annotations.json"
    clips = json.loads(ann_file.read_text())["clips"]
    rows = []
    print("| clip | source in view, off | on | frames with a face near the source | fully in frame, off | on |")
    print("|---|---|---|---|---|---|")
    for name in args.clips or list(clips):
        clip = args.media / clips[name]["file"]
        points = load_annotated_points(ann_file, name)
        row = {"clip": name}
        for mode in ("off", "on"):
            a = pipeline.analyse(clip, saliency=args.saliency, framing=mode == "on")
            rep = points_in_view(a.path, points)
            row[f"in_view_{mode}"] = sum(p.in_view for p in rep.points) / len(rep.points)
            near, full = faces_in_frame(a.info, a.path, points, detector)
            row[f"near_{mode}"], row[f"full_{mode}"] = near, full
        rows.append(row)
        def share(k: str) -> str:
            n = row[f"near_{k}"]
            return f"{row[f'full_{k}']}/{n}" if n else "-"
        print(f"| {name} | {row['in_view_off']:.2f} | {row['in_view_on']:.2f} | {row['near_on']} | "
              f"{share('off')} | {share('on')} |", flush=True)
    near = sum(r["near_on"] for r in rows)
    full_on, full_off = sum(r["full_on"] for r in rows), sum(r["full_off"] for r in rows)
    near_off = sum(r["near_off"] for r in rows)
    print(f"all: faces fully in frame {full_off}/{near_off} off, {full_on}/{near} on")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
