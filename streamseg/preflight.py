"""What ``streamseg validate`` checks beyond the schema, so that its verdict is ``run``'s start-up
verdict: the model contract against its graph (opened with the backend ``run`` would use, or with
ONNX Runtime where that backend would build a TensorRT engine), each file, camera and synthetic
source opened (a file's first frame decoded), and each file output's folder. Network sources are not
contacted and ports not bound: a check that passes here can still meet a port taken at run time.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .backends import select_backend
from .backends.tensorrt import TensorRTConfig
from .config import Output, PipelineConfig, SourceConfig, key_line
from .contract import LoadedModel, load_model
from .errors import ConfigError, SourceError
from .events.config import check_event_classes
from .outputs.registry import kind_of
from .rle import RleEncoder
from .temporal import TemporalFilter
from .uri import parse_source_uri, redact

log = logging.getLogger(__name__)


def check_pipeline(cfg: PipelineConfig, file: str) -> str:
    """Raise the error ``run`` would stop at; return one line saying what was checked."""
    model = load_model(cfg.model.path)
    check_overlay(cfg, model, file)
    check_event_classes(cfg.events, model.contract.class_names, model.contract.name, file)
    check_postprocess(cfg, model, file)
    checked_with = check_model(cfg, model)
    for i, source in enumerate(cfg.sources):
        check_source(source, i, file)
    for i, output in enumerate(cfg.outputs):
        check_output(output, i, [s.name for s in cfg.sources], file)
    return checked_with


def check_model(cfg: PipelineConfig, model: LoadedModel) -> str:
    """Select the backend as ``run`` does and load the graph through it (contract checked, warm-up run)."""
    m = cfg.model
    backend = select_backend(
        m.backend,
        list(m.prefer),
        model,
        m.device,
        m.threads,
        cfg.batch.max_batch,
        m,  # triton: the server's model is checked
    )
    if backend.name == "tensorrt":  # entering it would build an engine: check the graph's I/O with ONNX Runtime
        check_calibration(cfg)
        from .backends.onnxruntime import OnnxRuntimeBackend

        if OnnxRuntimeBackend.unavailable_reason("cpu") is not None:
            return "tensorrt (graph not opened: onnxruntime is not installed)"
        backend = OnnxRuntimeBackend(model, "cpu", 1, cfg.batch.max_batch)
    with backend:
        pass
    return backend.description


def check_overlay(cfg: PipelineConfig, model: LoadedModel, file: str | None = None) -> None:
    """``overlay.transparent`` may name only the model's classes (``Pipeline`` checks this too)."""
    wanted = cfg.overlay.transparent or []
    unknown = [name for name in wanted if name not in model.contract.class_names]
    if unknown:
        where = f"{file}:{key_line(file, ('overlay', 'transparent'))}: " if file else ""
        raise ConfigError(
            f"{where}overlay.transparent: {', '.join(unknown)} is not a class of model {model.contract.name} "
            f"({', '.join(model.contract.class_names)})"
        )


def check_postprocess(cfg: PipelineConfig, model: LoadedModel, file: str) -> None:
    """``postprocess.temporal`` and ``postprocess.rle`` as ``Pipeline`` builds them: ema needs a model
    with scores, rle names classes of the model and needs pycocotools."""
    c = model.contract
    for key, build in (
        (("postprocess", "temporal", "mode"), lambda: TemporalFilter(cfg.postprocess.temporal, c)),
        (("postprocess", "rle", "classes"), lambda: RleEncoder(cfg.postprocess.rle, c.class_names, c.name)),
    ):
        try:
            build()
        except ConfigError as e:
            raise ConfigError(f"{file}:{key_line(file, key)}: {e}") from None


def check_calibration(cfg: PipelineConfig) -> None:
    """INT8 calibration data that is a local path must exist (a URI is opened at build time)."""
    t = cfg.model.options("tensorrt")
    if not isinstance(t, TensorRTConfig) or t.precision != "int8" or t.calibration is None:
        return
    data = t.calibration.data
    if "://" not in data and not Path(data).exists():
        raise ConfigError(f"model.tensorrt.calibration.data: no such file or folder: {data}")


def check_source(source: SourceConfig, index: int, file: str) -> None:
    """Open a file, camera device or synthetic source the way its reader will, without decoding it."""
    uri = parse_source_uri(source.uri)

    def fail(key: str, message: str) -> ConfigError:
        line = key_line(file, ("sources", index, key))
        return ConfigError(f"{file}:{line}: sources.{index}.{key}: {message}")

    if uri.kind == "file":
        path = Path(uri.target)
        if source.decoder == "gstreamer" and source.loop:
            raise fail("decoder", "gstreamer does not loop files; use decoder: ffmpeg")
        if not path.exists():
            raise fail("uri", f"no such file: {redact(source.uri)}")
        if path.is_dir():
            raise fail("uri", f"{redact(source.uri)} is a folder, not a video file")
        from .media import VideoInput, describe_error

        try:
            # The first frame too: some demuxers (an image "video") open anything and fail on decode.
            video = VideoInput(str(path))
            try:
                next(iter(video.frames()), None)
            finally:
                video.close()
        except Exception as e:  # FFmpeg raises many types for unreadable input
            raise fail("uri", f"cannot open {redact(source.uri)}: {describe_error(e)}") from None
    elif uri.kind == "camera" and uri.target.startswith("/") and not Path(uri.target).exists():
        raise fail("uri", f"no such camera device: {uri.target}")
    elif uri.kind == "synthetic":
        from .readers.synthetic import SyntheticReader

        try:
            SyntheticReader(uri).close()
        except SourceError as e:
            raise fail("uri", str(e)) from None


def check_output(output: Output, index: int, streams: list[str], file: str) -> None:
    """A file output's folder must be creatable where ``run`` will create it (nothing is created here)."""
    writes = kind_of(output).writes
    path_template = getattr(output, "path", None)
    if writes is None or path_template is None:
        return
    streams = output.selected_streams() or streams

    def fail(message: str) -> ConfigError:
        return ConfigError(f"{file}:{key_line(file, ('outputs', index, 'path'))}: outputs.{index}.path: {message}")

    for name in streams if "{stream}" in path_template else streams[:1]:
        path = Path(path_template.replace("{stream}", name))
        folder = path if writes == "folder" else path.parent
        if writes == "file" and path.is_dir():
            raise fail(f"{path} is a folder")
        for parent in (folder, *folder.parents):
            if parent.exists():
                if not parent.is_dir():
                    raise fail(f"parent {parent} is a file, not a folder")
                if not os.access(parent, os.W_OK | os.X_OK):
                    raise fail(f"cannot write in {parent}")
                break


__all__ = ["check_pipeline"]
