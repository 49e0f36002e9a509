"""``pan360`` command line: a thin Typer layer over :mod:`pan360.pipeline` (flags = API keywords).

Errors become one line on stderr and a non-zero exit (``--debug`` shows the traceback); progress
bars go to stderr through rich (``--quiet`` silences them).
"""

from __future__ import annotations

import os

# OpenMP's threads (torch's, for the network) sleep when idle instead of spinning: on 2 cores the spin
# cost ~10% of a default render's CPU time for no gain in wall time (bench/README.md). Set before
# torch loads; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pan360 import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Turn a 360° equirectangular video into a normal-field-of-view video that follows the sound.")
err = Console(stderr=True)

STAGE_LABELS = {"audio": "decoding audio", "saliency": "saliency maps", "trajectory": "planning camera",
                "render": "rendering", "heatmap": "heatmap video", "train": "training", "eval": "evaluating",
                "concat": "concat-and-localize"}


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class SaliencyName(str, Enum):
    auto = "auto"
    foa = "foa"
    net = "net"
    fused = "fused"
    none = "none"


class FoaFormat(str, Enum):
    auto = "auto"
    ambix = "ambix"
    fuma = "fuma"


class Stereo(str, Enum):
    auto = "auto"
    mono = "mono"
    top_bottom = "top-bottom"
    side_by_side = "side-by-side"


class Projection(str, Enum):
    auto = "auto"
    equirect = "equirect"
    eac = "eac"
    c3x2 = "c3x2"
    c6x1 = "c6x1"


class Stabilize(str, Enum):
    auto = "auto"
    off = "off"
    level = "level"
    world = "world"


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    if quiet:
        yield None
        return
    bars = Progress(TextColumn("{task.description:<16}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True)
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
            err.print(f"[yellow]note:[/] {msg}", highlight=False, soft_wrap=True)

    try:
        with _signals_as_interrupts(), _progress(quiet) as progress:
            return job(progress, notify)
    except KeyboardInterrupt as exc:
        if debug:  # typer would turn a re-raised interrupt into a silent exit: show the traceback here
            import traceback

            traceback.print_exc()
        how = f"terminated by {exc.args[0]}" if isinstance(exc, _Terminated) else "interrupted"
        err.print(f"{how}: {interrupted() if interrupted else 'nothing was written'}", highlight=False,
                  soft_wrap=True)
        raise typer.Exit(128 + exc.signum if isinstance(exc, _Terminated) else 130)
    except Exception as exc:  # noqa: BLE001 - every failure reaches the user as one line
        if debug:
            raise
        from pan360.errors import Pan360Error

        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not isinstance(exc, Pan360Error):
            msg = f"{type(exc).__name__}: {msg} (run with --debug for details)"
        err.print(f"[red]error:[/] {msg}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


InputArg = typer.Argument(..., help="360° equirectangular video (any FFmpeg-readable file).", show_default=False)
Quiet = typer.Option(False, "--quiet", "-q", help="No progress bars or notes.")
Debug = typer.Option(False, "--debug", help="Show the full traceback on errors.")
Overwrite = typer.Option(False, "--overwrite", help="Replace existing output files.")
YawOffset = typer.Option(0.0, "--yaw-offset", help="Degrees added to the audio direction (audio front ≠ video centre).")
FoaFmt = typer.Option(FoaFormat.auto, "--foa-format", help="Ambisonic format of 4-channel audio (auto: metadata, else ambiX).")
ProjectionOpt = typer.Option(Projection.auto, "--projection",
                             help="Input layout, as ffmpeg v360 names it (auto: metadata, else equirect): equirect, eac (YouTube), c3x2, c6x1.")
StereoOpt = typer.Option(Stereo.auto, "--stereo", help="Stereo packing of the input (auto: metadata).")
Weights = typer.Option(None, "--weights", help="Network checkpoint (.safetensors) [default: the bundled weights].")
SaliencyOpt = typer.Option(SaliencyName.auto, "--saliency",
                           help="Saliency source (auto: fused for spatial audio, net for mono/stereo when weights exist).")


@app.command()
def render(
    input: Path = InputArg,
    output: Path = typer.Option(..., "--output", "-o", help="Output video, H.264 + AAC: .mp4, .m4v, .mov or .mkv.", show_default=False),
    size: Optional[str] = typer.Option(None, "--size", help="Output WxH, e.g. 1280x720 [default: 16:9, ≤ native, ≤ 1920 wide]."),
    fov: Optional[float] = typer.Option(None, "--fov", help="Horizontal field of view in degrees [default: 90]."),
    crf: float = typer.Option(20, "--crf", help="x264 quality (lower is better)."),
    preset: str = typer.Option("medium", "--preset", help="x264 preset (ultrafast … veryslow)."),
    path: Optional[Path] = typer.Option(None, "--path", help="Render this camera path (trajectory JSON, keyframes allowed)."),
    trajectory_out: Optional[Path] = typer.Option(None, "--trajectory-out", help="Write the per-frame camera path (JSON)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG of camera yaw over saliency against time."),
    saliency: SaliencyName = SaliencyOpt,
    weights: Optional[Path] = Weights,
    cuts: bool = typer.Option(False, "--cuts", help="Cut instead of panning for far jumps between sources."),
    max_speed: Optional[float] = typer.Option(None, "--max-speed", help="Camera speed bound in °/s [default: 110]."),
    device: Device = typer.Option(Device.auto, "--device", help="Where to reproject (auto: CUDA when present)."),
    yaw_offset: float = YawOffset,
    foa_format: FoaFormat = FoaFmt,
    projection: Projection = ProjectionOpt,
    stereo: Stereo = StereoOpt,
    stabilize: Stabilize = typer.Option(Stabilize.auto, "--stabilize",
                                        help="level: horizon level; world: the camera's turns held still too; off: the picture's axes "
                                             "(auto: level when the file records the camera's motion, GPMF or CAMM)."),
    follow: Optional[list[str]] = typer.Option(None, "--follow", help="TIME,YAW,PITCH: follow the subject seen there (repeatable: switch subjects)."),
    framing: bool = typer.Option(False, "--framing", help="Keep a face near the view in frame with headroom (needs facenet-pytorch)."),
    zoom: bool = typer.Option(False, "--zoom", help="Zoom in on one steady source, out for a spread scene or a fast pan."),
    overwrite: bool = Overwrite,
    quiet: bool = Quiet,
    debug: bool = Debug,
) -> None:
    """Render a normal-field-of-view video whose camera follows the sound."""
    from pan360 import pipeline

    result = _run(debug, quiet, lambda progress, notify: pipeline.render(
        input, output, size=size, fov=fov, crf=crf, preset=preset, path=path, trajectory_out=trajectory_out,
        plot=plot, saliency=saliency.value, weights=weights, cuts=cuts, max_speed=max_speed, overwrite=overwrite,
        device=device.value, yaw_offset=yaw_offset, foa_format=foa_format.value, projection=projection.value,
        stereo=stereo.value, stabilize=stabilize.value, follow=follow, framing=framing, zoom=zoom,
        progress=progress, notify=notify))
    if not quiet:
        cam = result.path
        err.print(f"wrote {result.output} ({cam.width}x{cam.height}, {len(cam)} frames, "
                  f"saliency: {result.saliency_source})", highlight=False)


@app.command("saliency")
def saliency_cmd(
    input: Path = InputArg,
    output: Path = typer.Option(..., "--output", "-o", help="Output video (.mp4, .m4v, .mov, .mkv): the equirect video with a heatmap.", show_default=False),
    maps_out: Optional[Path] = typer.Option(None, "--maps-out", help="Write the raw maps and timestamps (NPZ)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG of the planned camera yaw over saliency."),
    saliency: SaliencyName = SaliencyOpt,
    weights: Optional[Path] = Weights,
    device: Device = typer.Option(Device.auto, "--device", help="Where to run the network (auto: CUDA when present)."),
    crf: float = typer.Option(23, "--crf", help="x264 quality (lower is better)."),
    preset: str = typer.Option("medium", "--preset", help="x264 preset."),
    max_width: int = typer.Option(1920, "--max-width", help="Downscale wider inputs to this width."),
    yaw_offset: float = YawOffset,
    foa_format: FoaFormat = FoaFmt,
    projection: Projection = ProjectionOpt,
    stereo: Stereo = StereoOpt,
    overwrite: bool = Overwrite,
    quiet: bool = Quiet,
    debug: bool = Debug,
) -> None:
    """Write the equirect video with its saliency as a colour heatmap."""
    from pan360 import pipeline

    result = _run(debug, quiet, lambda progress, notify: pipeline.saliency(
        input, output, maps_out=maps_out, plot=plot, saliency=saliency.value, weights=weights, device=device.value, crf=crf, preset=preset,
        max_width=max_width, overwrite=overwrite, yaw_offset=yaw_offset, foa_format=foa_format.value,
        projection=projection.value, stereo=stereo.value, progress=progress, notify=notify))
    if not quiet:
        err.print(f"wrote {result.output} (saliency: {result.source})", highlight=False)


@app.command()
def preview(
    input: Path = InputArg,
    path: Optional[Path] = typer.Option(None, "--path", help="Trajectory file to start from (if it exists) and to save to [default: INPUT-stem_path.json here]."),
    port: int = typer.Option(0, "--port", help="Port on 127.0.0.1 [default: any free port]."),
    no_open: bool = typer.Option(False, "--no-open", help="Do not open a browser (just print the URL)."),
    size: Optional[str] = typer.Option(None, "--size", help="Output WxH of the path [default: as render]."),
    fov: Optional[float] = typer.Option(None, "--fov", help="Horizontal field of view in degrees [default: 90]."),
    saliency: SaliencyName = SaliencyOpt,
    weights: Optional[Path] = Weights,
    stabilize: Stabilize = typer.Option(Stabilize.auto, "--stabilize", help="As for render."),
    device: Device = typer.Option(Device.auto, "--device", help="Where to run the network."),
    quiet: bool = Quiet,
    debug: bool = Debug,
) -> None:
    """Watch the planned camera in a local web page, steer it with keyframes, save the path for render --path."""
    from pan360 import preview as pv

    def job(progress, notify):
        session = pv.open_session(input, path=path, saliency=saliency.value, weights=weights, fov=fov, size=size,
                                  stabilize=stabilize.value, device=device.value, progress=progress, notify=notify)
        return pv.make_server(session, port)

    server = _run(debug, quiet, job)
    url = pv.url_of(server)
    print(f"pan360 preview: {url}  (Ctrl-C to stop; Save writes {server.RequestHandlerClass.session.save_to})", flush=True)
    if not no_open:
        import webbrowser

        webbrowser.open(url)
    _run(debug, True, lambda progress, notify: server.serve_forever(), interrupted=lambda: "the preview stopped")


@app.command()
def info(
    input: Path = InputArg,
    projection: Projection = ProjectionOpt,
    stereo: Stereo = StereoOpt,
    debug: bool = Debug,
) -> None:
    """Print size, frame rate, duration, projection, stereo mode and audio layout."""
    from pan360 import pipeline

    mi = _run(debug, True, lambda progress, notify: pipeline.info(input, projection=projection.value,
                                                                   stereo=stereo.value))
    out = Console()
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
    a = mi.audio
    if a is None:
        rows.append(("audio", "none"))
    else:
        kind = {"ambix": "ambiX (ACN/SN3D)", "fuma": "FuMa"}.get(a.ambisonic or "")
        rows.append(("audio", f"{a.codec} {a.sample_rate} Hz, {a.channels} ch ({a.layout})"))
        if kind is not None and a.channels > 4:
            layout = f"ambisonics, {kind}, {a.channels} channels: its first-order part (channels 1-4) is used"
        elif kind is not None:
            layout = f"first-order ambisonics, {kind}"
        else:
            layout = "mono" if a.channels == 1 else "stereo" if a.channels == 2 else "not spatial"
        rows.append(("audio layout", layout))
    for k, v in rows:
        out.print(f"{k:<14} {v}", highlight=False, soft_wrap=True)


@app.command()
def train(
    data: Optional[list[Path]] = typer.Argument(None, help="Pair folders (frames/ + audio/) and/or video files or folders.", show_default=False),
    config: Optional[Path] = typer.Option(None, "--config", help="Training config JSON (e.g. train/bundled.json)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder: checkpoints, log.csv, losses.png, model.safetensors."),
    eval_data: Optional[list[Path]] = typer.Option(None, "--eval-data", help="Annotated held-out pair folder (repeatable)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue from a checkpoint or a run folder's newest one."),
    arch: Optional[str] = typer.Option(None, "--arch", help="small (CPU-trainable), vgg16 (the paper) or lite0 (pretrained SoundNet-8 + EfficientNet-Lite0)."),
    mechanism: Optional[int] = typer.Option(None, "--mechanism", help="Attention: 1 softmax, 2 ReLU+softmax."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Optimizer steps in total."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Global batch size."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed."),
    video_rate: Optional[float] = typer.Option(None, "--video-rate", help="Pairs per second of video (video sources)."),
    init_vgg16: Optional[Path] = typer.Option(None, "--init-vgg16", help="Local torchvision VGG16 state dict (ImageNet init)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="Mixed precision on CUDA."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Any config field as key=value (repeatable)."),
    quiet: bool = Quiet,
    debug: bool = Debug,
) -> None:
    """Train the sound-attention network (torchrun for several GPUs)."""
    def job(progress, notify):
        from pan360.training import load_config, train as run_training

        fields = {"data": [str(d) for d in data] if data else None, "out_dir": out and str(out),
                  "eval_data": [str(d) for d in eval_data] if eval_data else None, "resume": resume and str(resume),
                  "arch": arch, "mechanism": mechanism, "steps": steps, "batch_size": batch_size, "lr": lr,
                  "seed": seed, "video_rate": video_rate, "init_vgg16": init_vgg16 and str(init_vgg16),
                  "device": device, "amp": amp}
        cfg = load_config(config, list(set_ or []))
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
    final = _run(debug, quiet, job, interrupted=lambda: _train_interrupted(run[0]))
    if not quiet:
        err.print(f"wrote {final}", highlight=False)


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


eval_app = typer.Typer(no_args_is_help=True, help="Evaluate localization (cIoU/AUC, concat-and-localize), a trajectory or annotated points.")
app.add_typer(eval_app, name="eval")


JsonOut = typer.Option(None, "--json", help="Also write the scores as JSON.")


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


@eval_app.command("pairs")
def eval_pairs(
    folder: Path = typer.Argument(..., help="Annotated pair folder (frames/, audio/, annotations).", show_default=False),
    weights: Optional[Path] = Weights,
    threshold: str = typer.Option("0.5", "--threshold", help="cIoU binarisation: a number in (0,1) or 'median' (LVS)."),
    concat: bool = typer.Option(True, "--concat/--no-concat", help="Also run Oya et al.'s concat-and-localize protocol."),
    withheld: str = typer.Option("mean", "--withheld", help="Sound withheld as the set's mean embedding ('mean') or silence ('zero')."),
    seed: int = typer.Option(0, "--seed", help="Seed of the concat pairing."),
    device: Device = typer.Option(Device.auto, "--device"),
    json_out: Optional[Path] = JsonOut,
    overwrite: bool = Overwrite,
    quiet: bool = Quiet,
    debug: bool = Debug,
) -> None:
    """cIoU success and AUC on annotated pairs, and concat-and-localize with and without the sound."""
    def job(progress, notify):
        from pan360.errors import Pan360Error
        from pan360.nn.evaluate import concat_and_localize, evaluate_pairs
        from pan360.nn.weights import load_network
        from pan360.nn.weights import checkpoint_files

        try:
            thr = None if threshold == "median" else float(threshold)
        except ValueError:
            thr = -1.0
        if thr is not None and not 0.0 < thr < 1.0:  # nan too
            raise Pan360Error(f"--threshold must be a number in (0, 1) or 'median', got {threshold!r}")
        files = _json_output(json_out, overwrite, (folder, "pair folder"),
                             *((f, "--weights") for f in checkpoint_files(weights)))
        with files:
            model = load_network(weights)
            stage = (lambda name: None if progress is None else (lambda d, t: progress(name, d, t)))
            scores = {"pairs": evaluate_pairs(model, folder, threshold=thr, device=device.value,
                                              progress=stage("eval"))}
            if concat:
                scores["concat"] = concat_and_localize(model, folder, seed=seed, withheld=withheld, threshold=thr,
                                                       device=device.value, progress=stage("concat"))
            _write_json(files, json_out, _plain(scores))
        return scores

    _print_scores(_run(debug, quiet, job))


@eval_app.command("trajectory")
def eval_trajectory(
    trajectory: Path = typer.Argument(..., help="Trajectory JSON (pan360 render --trajectory-out).", show_default=False),
    truth: Path = typer.Argument(..., help="Ground-truth direction JSON (per-frame time, yaw, pitch, switch_times).", show_default=False),
    margin: float = typer.Option(0.5, "--margin", help="Seconds around each source switch left out of in-view."),
    json_out: Optional[Path] = JsonOut,
    overwrite: bool = Overwrite,
    debug: bool = Debug,
) -> None:
    """In-view share, angular error and camera speed of a trajectory against the true source directions."""
    def job(progress, notify):
        from pan360.metrics import trajectory_metrics
        from pan360.options import check_number

        check_number(margin, "--margin", low=0.0)
        files = _json_output(json_out, overwrite, (trajectory, "trajectory"), (truth, "truth"))
        with files:
            scores = {"trajectory": trajectory_metrics(trajectory, truth, margin=margin)}
            _write_json(files, json_out, _plain(scores))
        return scores

    scores = _run(debug, True, job)
    note = _coverage_note(trajectory, truth)
    if note:
        err.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
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


@eval_app.command("points")
def eval_points(
    trajectory: Path = typer.Argument(..., help="Trajectory JSON (pan360 render --trajectory-out).", show_default=False),
    annotations: Path = typer.Argument(..., help="Annotation JSON: clips → points [time s, yaw, pitch].", show_default=False),
    clip: str = typer.Option(..., "--clip", help="Name of the annotated clip (a key of 'clips').", show_default=False),
    rotate: float = typer.Option(0.0, "--rotate", help="Degrees the clip was turned (content moving right for > 0): point yaw + DEG."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the counts and per-point rows as JSON."),
    overwrite: bool = Overwrite,
    debug: bool = Debug,
) -> None:
    """Which hand-annotated source points fall inside the rendered camera frame (nearest path frame)."""
    def job(progress, notify):
        from pan360.metrics import load_annotated_points, points_in_view
        from pan360.options import check_number
        from pan360.paths import load_path

        check_number(rotate, "--rotate", low=-360.0, high=360.0)
        files = _json_output(json_out, overwrite, (trajectory, "trajectory"), (annotations, "annotations"))
        with files:
            report = points_in_view(load_path(trajectory), load_annotated_points(annotations, clip), rotate=rotate)
            _write_json(files, json_out, {"trajectory": str(trajectory), "annotations": str(annotations),
                                          "clip": clip, **report.as_dict()})
        return report

    report = _run(debug, True, job)
    out = Console()
    out.print(f"in view: {report.in_view}/{report.total} ({100 * report.share:.0f}%)", highlight=False, markup=False)
    for p in report.points:
        out.print(f"t={p.time:8.3f} s  point yaw {p.yaw:7.2f} pitch {p.pitch:6.2f}  camera yaw {p.camera_yaw:7.2f} "
                  f"pitch {p.camera_pitch:6.2f}  error {p.angular_error:6.2f}°  {'in' if p.in_view else 'out'}",
                  highlight=False, markup=False, soft_wrap=True)


def _plain(v: object) -> object:
    """Scores as plain JSON values."""
    if hasattr(v, "as_dict"):
        return _plain(v.as_dict())
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v.item() if hasattr(v, "item") else v


def _print_scores(scores: dict) -> None:
    out = Console()
    for section, values in _plain(scores).items():
        out.print(f"[bold]{section}[/]")
        for k, v in values.items():
            if isinstance(v, dict):
                out.print(f"  {k}: " + ", ".join(f"{a}={b:.4g}" if isinstance(b, float) else f"{a}={b}"
                                                for a, b in v.items()), highlight=False)
            else:
                out.print(f"  {k:<14} {v:.4g}" if isinstance(v, float) else f"  {k:<14} {v}", highlight=False)


def _version(value: bool) -> None:
    if value:
        print(f"pan360 {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Show the version and exit.")) -> None:
    """pan360: 360° video → a normal video that looks where the sound is."""


def main() -> None:
    """Console-script entry point. Usage errors (missing argument, unknown option, bad value) are one
    line on stderr like every other error, exit code 2."""
    import sys

    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # Click's usage errors
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help was printed already
            sys.exit(2)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        from rich.markup import escape

        msg = " ".join(exc.format_message().split())
        err.print(f"[red]error:[/] {escape(msg + hint)}", highlight=False, soft_wrap=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except typer.Abort:
        err.print("aborted", highlight=False)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
