"""Building a TensorRT engine from an ONNX file: the driver check, TensorRT's logger and progress
monitor routed into Python, the optimization profiles, precision flags and the timing cache.

TensorRT is imported here (``import_tensorrt``) and nowhere else in the package.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ..._deps import require
from ...engines import EngineKey
from ...errors import BackendError, ModelError
from ...hardware import cuda_driver
from .calibration import CalibrationBatches, calibrator
from .settings import TensorRTConfig

log = logging.getLogger(__package__)  # one logger for the whole backend: streamseg.backends.tensorrt
trt_log = logging.getLogger("streamseg.tensorrt")  # TensorRT's own messages


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, through the one door that names the pip extra when it is missing."""
    return require("tensorrt", "tensorrt", "the TensorRT backend")


def driver_missing_reason() -> str | None:
    """Checked before anything TensorRT: without a driver, deserializing crashes the process."""
    if cuda_driver() is None:
        return "no CUDA driver (libcuda.so.1 not found): not touching TensorRT"
    return None


def trt_logger(trt: Any) -> Any:
    """TensorRT's ILogger routed into Python logging under 'streamseg.tensorrt'."""
    levels = {
        trt.ILogger.Severity.INTERNAL_ERROR: logging.CRITICAL,
        trt.ILogger.Severity.ERROR: logging.ERROR,
        trt.ILogger.Severity.WARNING: logging.WARNING,
        trt.ILogger.Severity.INFO: logging.INFO,
        trt.ILogger.Severity.VERBOSE: logging.DEBUG,
    }

    class _Logger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            trt_log.log(levels.get(severity, logging.INFO), "%s", msg)

    return _Logger()


def progress_monitor(trt: Any) -> Any:
    """TensorRT's build phases as a progress line on a terminal, and as log lines always."""

    from ...progress import bar

    class _Monitor(trt.IProgressMonitor):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.bars: dict[str, Any] = {}  # one tqdm bar per open phase; nested phases stack below

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            log.info("build: %s%s (%d steps)", f"{parent_phase} / " if parent_phase else "", phase_name, num_steps)
            position = len(self.bars)
            # A nested phase's bar disappears when it finishes; the outermost one stays, at 100 %.
            self.bars[phase_name] = bar(
                max(1, num_steps), phase_name[:40], "step", position=position, leave=position == 0
            )

        def step_complete(self, phase_name: str, step: int) -> bool:
            if (b := self.bars.get(phase_name)) is not None:
                b.update(step + 1 - b.n)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            if (b := self.bars.pop(phase_name, None)) is not None:
                b.close()

    return _Monitor()


def build_engine(
    onnx: Path,
    input_name: str,
    input_chw: tuple[int, int, int],
    key: EngineKey,
    settings: TensorRTConfig,
    calibration: CalibrationBatches | None = None,
    calibration_cache: Path | None = None,
) -> bytes:
    """Parse the ONNX file and build a serialized engine for ``key``'s precision and batch profile."""
    if (why := driver_missing_reason()) is not None:
        raise BackendError(f"cannot build a TensorRT engine: {why}")
    trt = import_tensorrt()
    logger = trt_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"{onnx}: TensorRT's ONNX parser failed: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mb << 20)
    profile = builder.create_optimization_profile()
    c, h, w = input_chw
    profile.set_shape(input_name, (key.min_batch, c, h, w), (key.opt_batch, c, h, w), (key.max_batch, c, h, w))
    config.add_optimization_profile(profile)
    if key.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # INT8 layers fall back to FP16, not FP32
    cal = None
    if key.precision == "int8":
        if calibration is None or calibration_cache is None:
            raise BackendError("precision int8 needs calibration frames")
        config.set_flag(trt.BuilderFlag.INT8)
        cal = calibrator(trt, calibration, calibration_cache)
        config.int8_calibrator = cal
        # Calibration runs at the calibration profile's OPT shape (TensorRT overwrites its MIN and MAX
        # with OPT), and every batch the calibrator hands over must have that shape: a profile of its
        # own at the calibration batch size, whatever the inference profile's opt batch is.
        b = calibration.batch
        calibration_profile = builder.create_optimization_profile()
        calibration_profile.set_shape(input_name, (b, c, h, w), (b, c, h, w), (b, c, h, w))
        config.set_calibration_profile(calibration_profile)
    if key.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = key.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    timing_path = Path(settings.cache_dir) / "timing.cache"
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(timing, False)
    config.progress_monitor = progress_monitor(trt)
    started = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    if cal is not None and cal.error is not None:
        raise BackendError(f"INT8 calibration failed: {cal.error}") from cal.error
    if serialized is None:
        raise BackendError(f"TensorRT could not build {onnx.name} ({key.precision}); see the streamseg.tensorrt log")
    timing_path.parent.mkdir(parents=True, exist_ok=True)
    timing_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    log.info("built %s engine for %s in %.1f s", key.precision, onnx.name, time.monotonic() - started)
    return bytes(serialized)
