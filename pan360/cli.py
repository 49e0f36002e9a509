"""``pan360`` command line: a thin Typer layer over :mod:`pan360.pipeline` (flags = API keywords).

Errors become one line on stderr and a non-zero exit (``--debug`` shows the traceback); progress
bars go to stderr through rich (``--quiet`` silences them).
"""

from __future__ import annotations

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


def _run(debug: bool, quiet: bool, job: Callable[[Callable | None, Callable[[str], None]], object]) -> object:
    """Run a job; turn failures into one line and an exit code (unless --debug)."""
    def notify(msg: str) -> None:
        if not quiet:
            err.print(f"[yellow]note:[/] {msg}", highlight=False)

    try:
        with _progress(quiet) as progress:
            return job(progress, notify)
    except KeyboardInterrupt:
        if debug:
            raise
        err.print("interrupted: nothing was written", highlight=False)
        raise typer.Exit(130)
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
ProjectionOpt = typer.Option(Projection.auto, "--projection", help="'equirect' forces equirect input whatever the metadata says.")
StereoOpt = typer.Option(Stereo.auto, "--stereo", help="Stereo packing of the input (auto: metadata).")
Weights = typer.Option(None, "--weights", help="Network checkpoint (.safetensors) [default: the bundled weights].")
SaliencyOpt = typer.Option(SaliencyName.auto, "--saliency",
                           help="Saliency source (auto: fused for spatial audio, net for mono/stereo when weights exist).")


@app.command()
def render(
    input: Path = InputArg,
    output: Path = typer.Option(..., "--output", "-o", help="Output MP4 (H.264 + AAC).", show_default=False),
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
        stereo=stereo.value, progress=progress, notify=notify))
    if not quiet:
        cam = result.path
        err.print(f"wrote {result.output} ({cam.width}x{cam.height}, {len(cam)} frames, "
                  f"saliency: {result.saliency_source})", highlight=False)


@app.command("saliency")
def saliency_cmd(
    input: Path = InputArg,
    output: Path = typer.Option(..., "--output", "-o", help="Output MP4: the equirect video with a heatmap.", show_default=False),
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
    if mi.yaw or mi.pitch or mi.roll:
        rows.append(("initial view", f"yaw {mi.yaw:g}, pitch {mi.pitch:g}, roll {mi.roll:g}"))
    a = mi.audio
    if a is None:
        rows.append(("audio", "none"))
    else:
        kind = {"ambix": "first-order ambisonics, ambiX (ACN/SN3D)", "fuma": "first-order ambisonics, FuMa"}
        rows.append(("audio", f"{a.codec} {a.sample_rate} Hz, {a.channels} ch ({a.layout})"))
        rows.append(("audio layout", kind.get(a.ambisonic or "", "mono" if a.channels == 1 else
                                                "stereo" if a.channels == 2 else "not spatial")))
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
        step_progress = None if progress is None else (lambda done, total: progress("train", done, total))
        return run_training(cfg, progress=step_progress)

    final = _run(debug, quiet, job)
    if not quiet:
        err.print(f"wrote {final}", highlight=False)


eval_app = typer.Typer(no_args_is_help=True, help="Evaluate localization (cIoU/AUC, concat-and-localize), a trajectory or annotated points.")
app.add_typer(eval_app, name="eval")


@eval_app.command("pairs")
def eval_pairs(
    folder: Path = typer.Argument(..., help="Annotated pair folder (frames/, audio/, annotations).", show_default=False),
    weights: Optional[Path] = Weights,
    threshold: str = typer.Option("0.5", "--threshold", help="cIoU binarisation: a number in (0,1) or 'median' (LVS)."),
    concat: bool = typer.Option(True, "--concat/--no-concat", help="Also run Oya et al.'s concat-and-localize protocol."),
    withheld: str = typer.Option("mean", "--withheld", help="Sound withheld as the set's mean embedding ('mean') or silence ('zero')."),
    seed: int = typer.Option(0, "--seed", help="Seed of the concat pairing."),
    device: Device = typer.Option(Device.auto, "--device"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the scores as JSON."),
    quiet: bool = Quiet,
    debug: bool = Debug,
) -> None:
    """cIoU success and AUC on annotated pairs, and concat-and-localize with and without the sound."""
    def job(progress, notify):
        from pan360.errors import Pan360Error
        from pan360.nn.evaluate import concat_and_localize, evaluate_pairs
        from pan360.saliency import load_network

        try:
            thr = None if threshold == "median" else float(threshold)
        except ValueError:
            raise Pan360Error(f"--threshold must be a number or 'median', got {threshold!r}") from None
        model = load_network(weights)
        stage = (lambda name: None if progress is None else (lambda d, t: progress(name, d, t)))
        scores = {"pairs": evaluate_pairs(model, folder, threshold=thr, device=device.value, progress=stage("eval"))}
        if concat:
            scores["concat"] = concat_and_localize(model, folder, seed=seed, withheld=withheld, threshold=thr,
                                                   device=device.value, progress=stage("concat"))
        return scores

    scores = _run(debug, quiet, job)
    _print_scores(scores, json_out)


@eval_app.command("trajectory")
def eval_trajectory(
    trajectory: Path = typer.Argument(..., help="Trajectory JSON (pan360 render --trajectory-out).", show_default=False),
    truth: Path = typer.Argument(..., help="Ground-truth direction JSON (per-frame time, yaw, pitch, switch_times).", show_default=False),
    margin: float = typer.Option(0.5, "--margin", help="Seconds around each source switch left out of in-view."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the scores as JSON."),
    debug: bool = Debug,
) -> None:
    """In-view share, angular error and camera speed of a trajectory against the true source directions."""
    def job(progress, notify):
        from pan360.nn.evaluate import trajectory_metrics

        return trajectory_metrics(trajectory, truth, margin=margin)

    _print_scores({"trajectory": _run(debug, True, job)}, json_out)



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
        import json

        from pan360.media.output import atomic_output, check_output
        from pan360.metrics import load_annotated_points, points_in_view
        from pan360.paths import load_path

        inputs = (trajectory, annotations)
        if json_out is not None:
            check_output(json_out, overwrite=overwrite, inputs=inputs)
        report = points_in_view(load_path(trajectory), load_annotated_points(annotations, clip), rotate=rotate)
        if json_out is not None:
            doc = {"trajectory": str(trajectory), "annotations": str(annotations), "clip": clip, **report.as_dict()}
            with atomic_output(json_out, overwrite=overwrite, inputs=inputs) as tmp:
                tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        return report

    report = _run(debug, True, job)
    out = Console()
    out.print(f"in view: {report.in_view}/{report.total} ({100 * report.share:.0f}%)", highlight=False, markup=False)
    for p in report.points:
        out.print(f"t={p.time:8.3f} s  point yaw {p.yaw:7.2f} pitch {p.pitch:6.2f}  camera yaw {p.camera_yaw:7.2f} "
                  f"pitch {p.camera_pitch:6.2f}  error {p.angular_error:6.2f}°  {'in' if p.in_view else 'out'}",
                  highlight=False, markup=False, soft_wrap=True)


def _print_scores(scores: dict, json_out: Path | None) -> None:
    import json

    def plain(v: object) -> object:
        if hasattr(v, "as_dict"):
            return plain(v.as_dict())
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v.item() if hasattr(v, "item") else v

    doc = plain(scores)
    out = Console()
    for section, values in doc.items():
        out.print(f"[bold]{section}[/]")
        for k, v in values.items():
            if isinstance(v, dict):
                out.print(f"  {k}: " + ", ".join(f"{a}={b:.4g}" if isinstance(b, float) else f"{a}={b}"
                                                for a, b in v.items()), highlight=False)
            else:
                out.print(f"  {k:<14} {v:.4g}" if isinstance(v, float) else f"  {k:<14} {v}", highlight=False)
    if json_out is not None:
        json_out.write_text(json.dumps(doc, indent=2) + "\n")


def _version(value: bool) -> None:
    if value:
        print(f"pan360 {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Show the version and exit.")) -> None:
    """pan360: 360° video → a normal video that looks where the sound is."""


def main() -> None:
    """Console-script entry point."""
    app()
