"""``pan360`` command line: a thin argparse layer over :mod:`pan360.pipeline` (flags = API keywords).

Errors become one line on stderr and a non-zero exit (``--debug`` shows the traceback); usage errors
(a missing argument, an unknown option, a bad value) too, with exit code 2. Progress bars go to stderr
through rich (``--quiet`` silences them). argparse rather than a richer framework: the command line
starts in the time its imports take (typer 0.29 added ~0.25 CPU s to every run, bench/README.md).
"""

from __future__ import annotations

import os

# OpenMP's threads (torch's, for the network) sleep when idle instead of spinning: on 2 cores the spin
# cost ~10% of a default render's CPU time for no gain in wall time (bench/README.md). Set before
# torch loads; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

from pan360 import __version__

HELP = "Turn a 360° equirectangular video into a normal-field-of-view video that follows the sound."

STAGE_LABELS = {"audio": "decoding audio", "saliency": "saliency maps", "trajectory": "planning camera",
                "render": "rendering", "heatmap": "heatmap video", "train": "training", "eval": "evaluating",
                "concat": "concat-and-localize"}

DEVICES = ("auto", "cpu", "cuda")
SALIENCY = ("auto", "foa", "net", "fused", "none")
FOA_FORMATS = ("auto", "ambix", "fuma")
STEREO = ("auto", "mono", "top-bottom", "side-by-side")
PROJECTIONS = ("auto", "equirect", "eac", "c3x2", "c6x1")
STABILIZE = ("auto", "off", "level", "world")


# -- messages ---------------------------------------------------------------------------------------

def _eprint(label: str, colour: str, msg: str) -> None:
    """One line on stderr, the label coloured on a terminal (plain text: no markup to misread)."""
    tag = f"\033[{colour}m{label}\033[0m" if sys.stderr.isatty() else label
    print(f"{tag} {msg}", file=sys.stderr, flush=True)


def _error(msg: str) -> None:
    _eprint("error:", "31", msg)


def _note(msg: str) -> None:
    _eprint("note:", "33", msg)


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    if quiet:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bars = Progress(TextColumn("{task.description:<16}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=True)
    tasks: dict[str, TaskID] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bars.add_task(STAGE_LABELS.get(stage, stage), total=max(total, 1))
        bars.update(tasks[stage], completed=done, total=max(total, 1))

    with bars:
        yield update


class _Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so that the same cleanup as for Ctrl-C runs."""

    def __init__(self, signum: int) -> None:
        import signal

        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def _signals_as_interrupts() -> Iterator[None]:
    """While a job runs, SIGTERM and SIGHUP raise :class:`_Terminated` (once: a second one is ignored so
    that the cleanup finishes); signals the process was started ignoring (nohup) stay ignored."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = [s for s in (signal.SIGTERM, signal.SIGHUP) if signal.getsignal(s) is not signal.SIG_IGN]

    def handler(signum: int, frame: object) -> None:
        for s in sigs:
            signal.signal(s, signal.SIG_IGN)
        raise _Terminated(signum)

    old = {s: signal.signal(s, handler) for s in sigs}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _run(debug: bool, quiet: bool, job: Callable[[Callable | None, Callable[[str], None]], object],
         interrupted: Callable[[], str] | None = None) -> object:
    """Run a job; turn failures into one line and an exit code (unless --debug). Ctrl-C, SIGTERM and
    SIGHUP end it the same way (exit 130, 143, 129); ``interrupted()`` says what was written then."""
    def notify(msg: str) -> None:
        if not quiet:
            _note(msg)

    try:
        with _signals_as_interrupts(), _progress(quiet) as progress:
            return job(progress, notify)
    except KeyboardInterrupt as exc:
        if debug:
            import traceback

            traceback.print_exc()
        how = f"terminated by {exc.args[0]}" if isinstance(exc, _Terminated) else "interrupted"
        print(f"{how}: {interrupted() if interrupted else 'nothing was written'}", file=sys.stderr, flush=True)
        raise SystemExit(128 + exc.signum if isinstance(exc, _Terminated) else 130) from None
    except Exception as exc:  # noqa: BLE001 - every failure reaches the user as one line
        if debug:
            raise
        from pan360.errors import Pan360Error

        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not isinstance(exc, Pan360Error):
            msg = f"{type(exc).__name__}: {msg} (run with --debug for details)"
        _error(msg)
        raise SystemExit(1) from None




# -- commands: each takes the parsed arguments and calls the Python API ----------------------------

def render(a: argparse.Namespace) -> None:
    """Render a normal-field-of-view video whose camera follows the sound."""
    from pan360 import pipeline

    result = _run(a.debug, a.quiet, lambda progress, notify: pipeline.render(
        a.input, a.output, size=a.size, fov=a.fov, crf=a.crf, preset=a.preset, path=a.path,
        trajectory_out=a.trajectory_out, plot=a.plot, saliency=a.saliency, weights=a.weights, cuts=a.cuts,
        max_speed=a.max_speed, overwrite=a.overwrite, device=a.device, yaw_offset=a.yaw_offset,
        foa_format=a.foa_format, projection=a.projection, stereo=a.stereo, stabilize=a.stabilize,
        follow=a.follow, framing=a.framing, zoom=a.zoom, progress=progress, notify=notify))
    if not a.quiet:
        cam = result.path
        print(f"wrote {result.output} ({cam.width}x{cam.height}, {len(cam)} frames, "
              f"saliency: {result.saliency_source})", file=sys.stderr)


def saliency(a: argparse.Namespace) -> None:
    """Write the equirect video with its saliency as a colour heatmap."""
    from pan360 import pipeline

    result = _run(a.debug, a.quiet, lambda progress, notify: pipeline.saliency(
        a.input, a.output, maps_out=a.maps_out, plot=a.plot, saliency=a.saliency, weights=a.weights,
        device=a.device, crf=a.crf, preset=a.preset, max_width=a.max_width, overwrite=a.overwrite,
        yaw_offset=a.yaw_offset, foa_format=a.foa_format, projection=a.projection, stereo=a.stereo,
        progress=progress, notify=notify))
    if not a.quiet:
        print(f"wrote {result.output} (saliency: {result.source})", file=sys.stderr)


def preview(a: argparse.Namespace) -> None:
    """Watch the planned camera in a local web page, steer it with keyframes, save the path for render --path."""
    from pan360 import preview as pv

    def job(progress, notify):
        session = pv.open_session(a.input, path=a.path, saliency=a.saliency, weights=a.weights, fov=a.fov,
                                  size=a.size, stabilize=a.stabilize, device=a.device, progress=progress,
                                  notify=notify)
        return pv.make_server(session, a.port)

    server = _run(a.debug, a.quiet, job)
    url = pv.url_of(server)
    print(f"pan360 preview: {url}  (Ctrl-C to stop; Save writes {server.RequestHandlerClass.session.save_to})", flush=True)
    if not a.no_open:
        import webbrowser

        webbrowser.open(url)
    _run(a.debug, True, lambda progress, notify: server.serve_forever(), interrupted=lambda: "the preview stopped")


def info(a: argparse.Namespace) -> None:
    """Print size, frame rate, duration, projection, stereo mode and audio layout."""
    from pan360 import pipeline

    mi = _run(a.debug, True, lambda progress, notify: pipeline.info(a.input, projection=a.projection,
                                                                     stereo=a.stereo))
    rows = [
        ("file", str(mi.path)),
        ("container", mi.format_name),
        ("video", f"{mi.video_codec} {mi.width}x{mi.height} {mi.pixel_format}"),
        ("picture", f"{mi.eye_width}x{mi.eye_height} (one eye)" if mi.stereo != "mono" else f"{mi.eye_width}x{mi.eye_height}"),
        ("frame rate", f"{float(mi.fps):.3f} fps"),
        ("frames", str(mi.n_frames)),
        ("duration", f"{mi.duration:.3f} s"),
        ("projection", f"{mi.projection} ({mi.projection_source})"),
        ("stereo", f"{mi.stereo} ({mi.stereo_source})"),
    ]
    if mi.display_rotation % 360:
        rows.append(("rotation", f"{mi.display_rotation:g}° (display matrix; render and saliency refuse it)"))
    if mi.yaw or mi.pitch or mi.roll:
        rows.append(("initial view", f"yaw {mi.yaw:g}, pitch {mi.pitch:g}, roll {mi.roll:g}"))
    from pan360.stabilize import describe_motion

    rows.append(("camera motion", describe_motion(mi)))
    au = mi.audio
    if au is None:
        rows.append(("audio", "none"))
    else:
        kind = {"ambix": "ambiX (ACN/SN3D)", "fuma": "FuMa"}.get(au.ambisonic or "")
        rows.append(("audio", f"{au.codec} {au.sample_rate} Hz, {au.channels} ch ({au.layout})"))
        if kind is not None and au.channels > 4:
            layout = f"ambisonics, {kind}, {au.channels} channels: its first-order part (channels 1-4) is used"
        elif kind is not None:
            layout = f"first-order ambisonics, {kind}"
        else:
            layout = "mono" if au.channels == 1 else "stereo" if au.channels == 2 else "not spatial"
        rows.append(("audio layout", layout))
    for k, v in rows:
        print(f"{k:<14} {v}")


def train(a: argparse.Namespace) -> None:
    """Train the sound-attention network (torchrun for several GPUs)."""
    def job(progress, notify):
        from pan360.training import load_config, train as run_training

        fields = {"data": [str(d) for d in a.data] if a.data else None, "out_dir": a.out and str(a.out),
                  "eval_data": [str(d) for d in a.eval_data] if a.eval_data else None,
                  "resume": a.resume and str(a.resume), "arch": a.arch, "mechanism": a.mechanism,
                  "steps": a.steps, "batch_size": a.batch_size, "lr": a.lr, "seed": a.seed,
                  "video_rate": a.video_rate, "init_vgg16": a.init_vgg16 and str(a.init_vgg16),
                  "device": a.device, "amp": a.amp}
        cfg = load_config(a.config, list(a.set or []))
        cfg = load_config(None, {**cfg.to_dict(), **{k: v for k, v in fields.items() if v is not None}})
        _check_train_numbers(cfg)
        run[0], created = Path(cfg.out_dir), _missing_root(Path(cfg.out_dir))
        step_progress = None if progress is None else (lambda done, total: progress("train", done, total))
        try:
            return run_training(cfg, progress=step_progress)
        except BaseException:
            if created is not None:
                _remove_empty_tree(created)  # a refused or interrupted start leaves no empty run folder
            raise

    run: list[Path | None] = [None]
    final = _run(a.debug, a.quiet, job, interrupted=lambda: _train_interrupted(run[0]))
    if not a.quiet:
        print(f"wrote {final}", file=sys.stderr)


def _check_train_numbers(cfg: object) -> None:
    """Every float setting finite, the pair rate positive (one line naming the setting)."""
    import dataclasses
    import math

    from pan360.errors import Pan360Error

    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, float) and not math.isfinite(v):
            raise Pan360Error(f"{f.name} must be a finite number, got {v}")
    if not cfg.video_rate > 0:
        raise Pan360Error(f"video_rate (--video-rate) must be positive, got {cfg.video_rate:g}")


def _missing_root(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (None: it exists)."""
    root = None
    while not path.exists():
        root, path = path, path.parent
        if path == root:
            break
    return root


def _remove_empty_tree(root: Path) -> None:
    """Remove ``root`` if it holds nothing but empty folders."""
    if not root.is_dir() or any(p.is_file() or p.is_symlink() for p in root.rglob("*")):
        return
    for d in sorted((p for p in root.rglob("*")), key=lambda p: len(p.parts), reverse=True):
        d.rmdir()
    root.rmdir()


def _train_interrupted(run: Path | None) -> str:
    """What an interrupted ``pan360 train`` leaves: the checkpoints so far, or nothing."""
    ckpts = sorted((run / "checkpoints").glob("step_*.safetensors")) if run is not None else []
    if ckpts:
        return (f"checkpoints up to {ckpts[-1].stem} are in {run / 'checkpoints'} "
                f"(continue with --resume {run})")
    if run is not None and run.is_dir() and any(p.is_file() for p in run.rglob("*")):
        return f"no checkpoint was written yet ({run} holds the run's config and logs)"
    return "nothing was written"


def _json_output(json_out: Path | None, overwrite: bool, *inputs: tuple[Path | None, str]):
    """The OutputSet of an eval command: its --json against its inputs (checked before any work)."""
    from pan360.media.output import OutputSet

    files = OutputSet(overwrite=overwrite)
    for path, what in inputs:
        files.add_input(path, what)
    files.add_output(json_out, "--json")
    return files


def _write_json(files, json_out: Path | None, doc: dict) -> None:
    import json

    if json_out is not None:
        files.temp(json_out).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def eval_pairs(a: argparse.Namespace) -> None:
    """cIoU success and AUC on annotated pairs, and concat-and-localize with and without the sound."""
    def job(progress, notify):
        from pan360.errors import Pan360Error
        from pan360.nn.evaluate import concat_and_localize, evaluate_pairs
        from pan360.nn.weights import checkpoint_files, load_network

        try:
            thr = None if a.threshold == "median" else float(a.threshold)
        except ValueError:
            thr = -1.0
        if thr is not None and not 0.0 < thr < 1.0:  # nan too
            raise Pan360Error(f"--threshold must be a number in (0, 1) or 'median', got {a.threshold!r}")
        files = _json_output(a.json, a.overwrite, (a.folder, "pair folder"),
                             *((f, "--weights") for f in checkpoint_files(a.weights)))
        with files:
            model = load_network(a.weights)
            stage = (lambda name: None if progress is None else (lambda d, t: progress(name, d, t)))
            scores = {"pairs": evaluate_pairs(model, a.folder, threshold=thr, device=a.device,
                                              progress=stage("eval"))}
            if a.concat:
                scores["concat"] = concat_and_localize(model, a.folder, seed=a.seed, withheld=a.withheld,
                                                       threshold=thr, device=a.device, progress=stage("concat"))
            _write_json(files, a.json, _plain(scores))
        return scores

    _print_scores(_run(a.debug, a.quiet, job))


def eval_trajectory(a: argparse.Namespace) -> None:
    """In-view share, angular error and camera speed of a trajectory against the true source directions."""
    def job(progress, notify):
        from pan360.metrics import trajectory_metrics
        from pan360.options import check_number

        check_number(a.margin, "--margin", low=0.0)
        files = _json_output(a.json, a.overwrite, (a.trajectory, "trajectory"), (a.truth, "truth"))
        with files:
            scores = {"trajectory": trajectory_metrics(a.trajectory, a.truth, margin=a.margin)}
            _write_json(files, a.json, _plain(scores))
        return scores

    scores = _run(a.debug, True, job)
    note = _coverage_note(a.trajectory, a.truth)
    if note:
        _note(note)
    _print_scores(scores)


def _coverage_note(trajectory: Path, truth: Path) -> str | None:
    """A warning when the scored path covers much less time than the truth (only that part is scored)."""
    from pan360.paths import load_path, read_json

    try:
        times = load_path(trajectory).times
        frames = read_json(truth, "ground truth").get("frames", [])
        truth_times = [float(f["time"]) for f in frames]
    except Exception:  # noqa: BLE001 - the scores were computed: the files are fine, this is only a hint
        return None
    if not truth_times:
        return None
    span = max(truth_times) - min(truth_times)
    covered = min(times[-1], max(truth_times)) - max(times[0], min(truth_times))
    if span <= 0 or covered >= 0.9 * span:
        return None
    return (f"the trajectory covers {times[0]:.2f}-{times[-1]:.2f} s but the truth "
            f"{min(truth_times):.2f}-{max(truth_times):.2f} s: only {100 * max(covered, 0) / span:.0f}% of it is scored")


def eval_points(a: argparse.Namespace) -> None:
    """Which hand-annotated source points fall inside the rendered camera frame (nearest path frame)."""
    def job(progress, notify):
        from pan360.metrics import load_annotated_points, points_in_view
        from pan360.options import check_number
        from pan360.paths import load_path

        check_number(a.rotate, "--rotate", low=-360.0, high=360.0)
        files = _json_output(a.json, a.overwrite, (a.trajectory, "trajectory"), (a.annotations, "annotations"))
        with files:
            report = points_in_view(load_path(a.trajectory), load_annotated_points(a.annotations, a.clip),
                                    rotate=a.rotate)
            _write_json(files, a.json, {"trajectory": str(a.trajectory), "annotations": str(a.annotations),
                                        "clip": a.clip, **report.as_dict()})
        return report

    report = _run(a.debug, True, job)
    print(f"in view: {report.in_view}/{report.total} ({100 * report.share:.0f}%)")
    for p in report.points:
        print(f"t={p.time:8.3f} s  point yaw {p.yaw:7.2f} pitch {p.pitch:6.2f}  camera yaw {p.camera_yaw:7.2f} "
              f"pitch {p.camera_pitch:6.2f}  error {p.angular_error:6.2f}°  {'in' if p.in_view else 'out'}")


def _plain(v: object) -> object:
    """Scores as plain JSON values."""
    if hasattr(v, "as_dict"):
        return _plain(v.as_dict())
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v.item() if hasattr(v, "item") else v


def _print_scores(scores: dict) -> None:
    for section, values in _plain(scores).items():
        print(section)
        for k, v in values.items():
            if isinstance(v, dict):
                print(f"  {k}: " + ", ".join(f"{a}={b:.4g}" if isinstance(b, float) else f"{a}={b}"
                                             for a, b in v.items()))
            else:
                print(f"  {k:<14} {v:.4g}" if isinstance(v, float) else f"  {k:<14} {v}")


# -- the parser -------------------------------------------------------------------------------------

class _UsageError(Exception):
    """A usage error found by argparse, with the command whose --help explains it."""

    def __init__(self, message: str, prog: str) -> None:
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """argparse that raises usage errors (main prints them as one line) instead of printing usage."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        kwargs.setdefault("allow_abbrev", False)  # an abbreviation would change meaning when options are added
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message, self.prog)


class _Formatter(argparse.HelpFormatter):
    """Help with "Usage:" and each option's default where it has one worth saying."""

    def add_usage(self, usage, actions, groups, prefix=None) -> None:  # noqa: ANN001
        super().add_usage(usage, actions, groups, "Usage: " if prefix is None else prefix)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = re.sub(r"%(?!\()", "%%", action.help or "")  # a literal % (not argparse's own %(default)s)
        shown = action.default not in (None, False, True, argparse.SUPPRESS) and action.option_strings
        return f"{text} [default: {action.default}]" if shown and "[default" not in text else text


def _common(p: argparse.ArgumentParser, *, quiet: bool = True, overwrite: bool = True) -> None:
    if overwrite:
        p.add_argument("--overwrite", action="store_true", help="Replace existing output files.")
    if quiet:
        p.add_argument("-q", "--quiet", action="store_true", help="No progress bars or notes.")
    p.add_argument("--debug", action="store_true", help="Show the full traceback on errors.")


def _input(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=Path, metavar="INPUT", help="360° equirectangular video (any FFmpeg-readable file).")


def _layout(p: argparse.ArgumentParser, audio: bool = True) -> None:
    if audio:
        p.add_argument("--yaw-offset", type=float, default=0.0,
                       help="Degrees added to the audio direction (audio front ≠ video centre).")
        p.add_argument("--foa-format", choices=FOA_FORMATS, default="auto",
                       help="Ambisonic format of 4-channel audio (auto: metadata, else ambiX).")
    p.add_argument("--projection", choices=PROJECTIONS, default="auto",
                   help="Input layout, as ffmpeg v360 names it (auto: metadata, else equirect): equirect, "
                        "eac (YouTube), c3x2, c6x1.")
    p.add_argument("--stereo", choices=STEREO, default="auto", help="Stereo packing of the input (auto: metadata).")


def _saliency(p: argparse.ArgumentParser) -> None:
    p.add_argument("--saliency", choices=SALIENCY, default="auto",
                   help="Saliency source (auto: fused for spatial audio, net for mono/stereo when weights exist).")
    p.add_argument("--weights", type=Path, help="Network checkpoint (.safetensors) [default: the bundled weights].")


def _json(p: argparse.ArgumentParser, help: str = "Also write the scores as JSON.") -> None:
    p.add_argument("--json", type=Path, help=help)


def build_parser() -> argparse.ArgumentParser:
    """The ``pan360`` parser: one subcommand per pipeline entry point (``func`` is its handler)."""
    parser = _Parser(prog="pan360", description=HELP)
    parser.add_argument("--version", action="version", version=f"pan360 {__version__}",
                        help="Show the version and exit.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(sub, name: str, func: Callable[[argparse.Namespace], None]) -> argparse.ArgumentParser:
        doc = (func.__doc__ or "").strip()
        p = sub.add_parser(name, help=doc, description=doc)
        p.set_defaults(func=func, parser=p)
        return p

    p = command(commands, "render", render)
    _input(p)
    p.add_argument("-o", "--output", type=Path, required=True, help="Output video, H.264 + AAC: .mp4, .m4v, .mov or .mkv.")
    p.add_argument("--size", metavar="WxH", help="Output WxH, e.g. 1280x720 [default: 16:9, ≤ native, ≤ 1920 wide].")
    p.add_argument("--fov", type=float, help="Horizontal field of view in degrees [default: 90].")
    p.add_argument("--crf", type=float, default=20.0, help="x264 quality (lower is better).")
    p.add_argument("--preset", default="medium", help="x264 preset (ultrafast … veryslow).")
    p.add_argument("--path", type=Path, help="Render this camera path (trajectory JSON, keyframes allowed).")
    p.add_argument("--trajectory-out", type=Path, help="Write the per-frame camera path (JSON).")
    p.add_argument("--plot", type=Path, help="Write a PNG of camera yaw over saliency against time.")
    _saliency(p)
    p.add_argument("--cuts", action="store_true", help="Cut instead of panning for far jumps between sources.")
    p.add_argument("--max-speed", type=float, help="Camera speed bound in °/s [default: 110].")
    p.add_argument("--device", choices=DEVICES, default="auto", help="Where to reproject (auto: CUDA when present).")
    _layout(p)
    p.add_argument("--stabilize", choices=STABILIZE, default="auto",
                   help="level: horizon level; world: the camera's turns held still too; off: the picture's axes "
                        "(auto: level when the file records the camera's motion, GPMF or CAMM).")
    p.add_argument("--follow", action="append", metavar="TIME,YAW,PITCH",
                   help="Follow the subject seen there (repeatable: switch subjects).")
    p.add_argument("--framing", action="store_true",
                   help="Keep a face near the view in frame with headroom (needs facenet-pytorch).")
    p.add_argument("--zoom", action="store_true", help="Zoom in on one steady source, out for a spread scene or a fast pan.")
    _common(p)

    p = command(commands, "saliency", saliency)
    _input(p)
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="Output video (.mp4, .m4v, .mov, .mkv): the equirect video with a heatmap.")
    p.add_argument("--maps-out", type=Path, help="Write the raw maps and timestamps (NPZ).")
    p.add_argument("--plot", type=Path, help="Write a PNG of the planned camera yaw over saliency.")
    _saliency(p)
    p.add_argument("--device", choices=DEVICES, default="auto", help="Where to run the network (auto: CUDA when present).")
    p.add_argument("--crf", type=float, default=23.0, help="x264 quality (lower is better).")
    p.add_argument("--preset", default="medium", help="x264 preset.")
    p.add_argument("--max-width", type=int, default=1920, help="Downscale wider inputs to this width.")
    _layout(p)
    _common(p)

    p = command(commands, "preview", preview)
    _input(p)
    p.add_argument("--path", type=Path, help="Trajectory file to start from (if it exists) and to save to "
                                             "[default: INPUT-stem_path.json here].")
    p.add_argument("--port", type=int, default=0, help="Port on 127.0.0.1 [default: any free port].")
    p.add_argument("--no-open", action="store_true", help="Do not open a browser (just print the URL).")
    p.add_argument("--size", metavar="WxH", help="Output WxH of the path [default: as render].")
    p.add_argument("--fov", type=float, help="Horizontal field of view in degrees [default: 90].")
    _saliency(p)
    p.add_argument("--stabilize", choices=STABILIZE, default="auto", help="As for render.")
    p.add_argument("--device", choices=DEVICES, default="auto", help="Where to run the network.")
    _common(p, overwrite=False)

    p = command(commands, "info", info)
    _input(p)
    _layout(p, audio=False)
    _common(p, quiet=False, overwrite=False)

    p = command(commands, "train", train)
    p.add_argument("data", type=Path, nargs="*", metavar="DATA",
                   help="Pair folders (frames/ + audio/) and/or video files or folders.")
    p.add_argument("--config", type=Path, help="Training config JSON (e.g. train/bundled.json).")
    p.add_argument("--out", type=Path, help="Run folder: checkpoints, log.csv, losses.png, model.safetensors.")
    p.add_argument("--eval-data", type=Path, action="append", help="Annotated held-out pair folder (repeatable).")
    p.add_argument("--resume", type=Path, help="Continue from a checkpoint or a run folder's newest one.")
    p.add_argument("--arch", help="small (CPU-trainable), vgg16 (the paper) or lite0 (pretrained SoundNet-8 + "
                                  "EfficientNet-Lite0).")
    p.add_argument("--mechanism", type=int, help="Attention: 1 softmax, 2 ReLU+softmax.")
    p.add_argument("--steps", type=int, help="Optimizer steps in total.")
    p.add_argument("--batch-size", type=int, help="Global batch size.")
    p.add_argument("--lr", type=float, help="Learning rate.")
    p.add_argument("--seed", type=int, help="Random seed.")
    p.add_argument("--video-rate", type=float, help="Pairs per second of video (video sources).")
    p.add_argument("--init-vgg16", type=Path, help="Local torchvision VGG16 state dict (ImageNet init).")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N.")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, help="Mixed precision on CUDA.")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="Any config field (repeatable).")
    _common(p, overwrite=False)

    ev = command(commands, "eval", _eval_help)
    evals = ev.add_subparsers(dest="eval_command", metavar="COMMAND", parser_class=_Parser)

    p = command(evals, "pairs", eval_pairs)
    p.add_argument("folder", type=Path, metavar="FOLDER", help="Annotated pair folder (frames/, audio/, annotations).")
    p.add_argument("--weights", type=Path, help="Network checkpoint (.safetensors) [default: the bundled weights].")
    p.add_argument("--threshold", default="0.5", help="cIoU binarisation: a number in (0,1) or 'median' (LVS).")
    p.add_argument("--concat", action=argparse.BooleanOptionalAction, default=True,
                   help="Also run Oya et al.'s concat-and-localize protocol [default: on].")
    p.add_argument("--withheld", default="mean", help="Sound withheld as the set's mean embedding ('mean') or silence ('zero').")
    p.add_argument("--seed", type=int, default=0, help="Seed of the concat pairing.")
    p.add_argument("--device", choices=DEVICES, default="auto", help="Where to run the network.")
    _json(p)
    _common(p)

    p = command(evals, "trajectory", eval_trajectory)
    p.add_argument("trajectory", type=Path, metavar="TRAJECTORY", help="Trajectory JSON (pan360 render --trajectory-out).")
    p.add_argument("truth", type=Path, metavar="TRUTH",
                   help="Ground-truth direction JSON (per-frame time, yaw, pitch, switch_times).")
    p.add_argument("--margin", type=float, default=0.5, help="Seconds around each source switch left out of in-view.")
    _json(p)
    _common(p, quiet=False)

    p = command(evals, "points", eval_points)
    p.add_argument("trajectory", type=Path, metavar="TRAJECTORY", help="Trajectory JSON (pan360 render --trajectory-out).")
    p.add_argument("annotations", type=Path, metavar="ANNOTATIONS", help="Annotation JSON: clips → points [time s, yaw, pitch].")
    p.add_argument("--clip", required=True, help="Name of the annotated clip (a key of 'clips').")
    p.add_argument("--rotate", type=float, default=0.0,
                   help="Degrees the clip was turned (content moving right for > 0): point yaw + DEG.")
    _json(p, "Also write the counts and per-point rows as JSON.")
    _common(p, quiet=False)
    return parser


def _eval_help(a: argparse.Namespace) -> None:
    """Evaluate localization (cIoU/AUC, concat-and-localize), a trajectory or annotated points."""
    a.parser.print_help()
    raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point. Usage errors (missing argument, unknown option, bad value) are one
    line on stderr like every other error, exit code 2; no arguments print the help (exit code 2)."""
    parser = build_parser()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if not args:
            parser.print_help()
            raise SystemExit(2)
        ns, extra = parser.parse_known_args(args)
        if extra:
            getattr(ns, "parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    except _UsageError as exc:
        _error(f"{exc} (see {exc.prog} --help)")
        raise SystemExit(2) from None
    if getattr(ns, "func", None) is None:
        parser.print_help()
        raise SystemExit(2)
    ns.func(ns)
    raise SystemExit(0)
