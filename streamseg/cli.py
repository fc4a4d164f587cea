"""The command line. It catches only StreamsegError: exit 2 for config/usage errors, 1 for
runtime failures; anything else keeps its traceback because it is a bug."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from . import __version__
from .errors import ConfigError, StreamsegError
from .uri import help_text

log = logging.getLogger("streamseg")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"usage: {message} (see 'streamseg --help')")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="streamseg",
        description="Real-time semantic segmentation of video streams.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"streamseg {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
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
    val = sub.add_parser("validate", help="check a pipeline file without running it")
    val.add_argument("file", help="pipeline YAML")
    sub.add_parser("models", help="list bundled models and their contracts")
    sub.add_parser("doctor", help="report codecs, ONNX Runtime providers, CUDA/TensorRT presence")
    return p


def _cmd_run(args: argparse.Namespace) -> int:
    from .config import load_config
    from .pipeline import Pipeline

    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError("usage: --max-frames must be >= 1")
    if args.duration is not None and args.duration <= 0:
        raise ConfigError("usage: --duration must be > 0")
    cfg = load_config(args.file)
    pipeline = Pipeline(cfg, args.max_frames, args.duration)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: stopping, finalizing outputs", signal.Signals(signum).name)
        pipeline.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    summary = pipeline.run()
    total = sum(summary.frames.values())
    fps = total / summary.seconds if summary.seconds else 0.0
    print(
        f"processed {total} frames in {summary.seconds:.1f} s ({fps:.1f} FPS) with {summary.backend}: "
        + ", ".join(f"{k}={v}" for k, v in summary.frames.items())
    )
    for error in summary.failed.values():
        print(f"streamseg: error: {error}", file=sys.stderr)
    return 1 if summary.failed else 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from .config import load_config
    from .contract import load_model

    cfg = load_config(args.file)
    model = load_model(cfg.model.path)
    print(f"{args.file}: ok ({len(cfg.sources)} source(s), model {model.contract.name}, {len(cfg.outputs)} output(s))")
    return 0


def _cmd_models(_args: argparse.Namespace) -> int:
    from .contract import bundled_models, load_model

    for sidecar in bundled_models():
        c = load_model(str(sidecar)).contract
        i = c.input
        print(f"{c.name}: {c.description}")
        print(f"  file     {sidecar}")
        print(f"  input    {i.name} {i.layout} {i.height}x{i.width} {i.color}, mean {list(i.mean)}, std {list(i.std)}")
        print(f"  output   {c.output.name} ({c.output.kind})")
        print(f"  classes  {', '.join(f'{k.name} {tuple(k.color)}' for k in c.classes)}")
        print(f"  license  {c.license}; source: {c.source}")
    return 0


def _cmd_doctor(_args: argparse.Namespace) -> int:
    from .doctor import report

    for key, value in report():
        print(f"{key:<28}{value}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        command = {"run": _cmd_run, "validate": _cmd_validate, "models": _cmd_models, "doctor": _cmd_doctor}[
            args.command
        ]
        return command(args)
    except StreamsegError as e:
        print(f"streamseg: error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
