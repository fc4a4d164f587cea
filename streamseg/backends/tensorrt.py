"""TensorRT backend and engine builder: the only module that imports ``tensorrt``.

Written to the TensorRT 10/11 Python API (named I/O tensors, ``execute_async_v3``); see the
README's backend matrix for where this has and has not been executed. Order of business:

1. refuse early without a CUDA driver: ``Runtime.deserialize_cuda_engine`` segfaults the
   interpreter on a driverless host (seen with tensorrt-lean), so nothing TensorRT is touched;
2. compute the engine key (ONNX sha256, TensorRT version, GPU, compute capability, precision,
   batch profile, DLA core) and compare it with the cached engine's sidecar *before* loading;
3. build when needed (progress bar from TensorRT's progress monitor, its logger routed into
   Python logging, persistent timing cache, INT8 entropy calibration with a saved cache), then
   gate the new engine against ONNX Runtime on a few frames;
4. run with named tensors on two CUDA streams, pinned host buffers, device buffers via pycuda.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import sys
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from .._deps import require
from ..contract import TensorInfo, check_io, sha256_file
from ..doctor import cuda_driver
from ..engines import CalibrationBatches, EngineKey, decide, engine_path, write_engine
from ..errors import BackendError, ModelError
from ..schema import Strict
from .base import Backend, RuntimeInfo


class CalibrationConfig(Strict):
    data: str = Field(description="folder of images, or a video file/URI whose first frames are used")
    frames: int = Field(200, ge=1, le=100_000, description="frames fed to the INT8 calibrator")
    batch: int = Field(8, ge=1, le=256, description="calibration batch size")
    cache: str | None = Field(None, description="calibration cache file; default: next to the engine")


class TensorRTConfig(Strict):
    precision: Literal["fp32", "fp16", "int8"] = Field("fp16", description="engine precision")
    opt_batch: int | None = Field(None, ge=1, le=64, description="batch TensorRT tunes for; default: batch.max_batch")
    workspace_mb: int = Field(1024, ge=16, le=1 << 20, description="builder workspace limit")
    dla_core: int | None = Field(None, ge=0, le=15, description="Jetson DLA core, with GPU fallback; null = GPU only")
    cache_dir: str = Field("engines", description="where engines, sidecars and the timing cache live")
    rebuild: bool = Field(True, description="rebuild a cached engine whose key does not match; false = refuse")
    min_agreement: float = Field(
        0.99, ge=0, le=1, description="pixel agreement with ONNX Runtime a new engine needs to go live"
    )
    gate_frames: int = Field(8, ge=1, le=1024, description="frames compared with ONNX Runtime after a build")
    calibration: CalibrationConfig | None = Field(None, description="INT8 calibration input (precision int8)")

    @model_validator(mode="after")
    def _int8_needs_data(self) -> TensorRTConfig:
        if self.precision == "int8" and self.calibration is None:
            raise ValueError("precision int8 needs a calibration section (data: images folder or video)")
        return self


log = logging.getLogger(__name__)
trt_log = logging.getLogger("streamseg.tensorrt")


def _trt() -> Any:
    return require("tensorrt", "tensorrt", "the TensorRT backend")


def driver_missing_reason() -> str | None:
    """Checked before anything TensorRT: without a driver, deserializing crashes the process."""
    if cuda_driver() is None:
        return "no CUDA driver (libcuda.so.1 not found): not touching TensorRT"
    return None


def _logger(trt: Any) -> Any:
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


def _progress_monitor(trt: Any) -> Any:
    """TensorRT's build phases as a progress line on a terminal, and as log lines always."""

    from ..progress import bar

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


def _calibrator(trt: Any, batches: CalibrationBatches, cache: Path) -> Any:
    """INT8 entropy calibrator fed with preprocessed frames; the cache makes rebuilds skip calibration.

    TensorRT calls these methods from C++ where an escaping Python exception aborts the process
    (the trampolines are ``noexcept``), so each one catches its own failure: ``get_batch`` ends the
    calibration and keeps the error in ``self.error`` for ``build_engine`` to raise after the build.
    """
    from .cuda_buffers import allocate, new_stream, to_device

    class _Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._it = iter(batches)
            self._buf = allocate(batches.shape, np.dtype(np.float32))
            self._stream = new_stream()
            self.error: BaseException | None = None

        def get_batch_size(self) -> int:
            return batches.batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            try:
                batch = next(self._it, None)
                if batch is None:
                    return None
                np.copyto(self._buf.host, batch)
                to_device(self._buf, self._stream, batch.nbytes)
                # TensorRT reads the pointer as soon as this returns, on a stream of its own.
                self._stream.synchronize()
                return [self._buf.address]
            except Exception as e:
                self.error = e
                return None

        def read_calibration_cache(self) -> bytes | None:
            try:
                return cache.read_bytes() if cache.is_file() else None
            except OSError as e:
                log.warning("INT8 calibration cache %s unreadable (%s): calibrating again", cache, e)
                return None

        def write_calibration_cache(self, data: Any) -> None:
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_name(cache.name + ".tmp")
                tmp.write_bytes(bytes(data))
                tmp.replace(cache)
                log.info("INT8 calibration cache written to %s", cache)
            except OSError as e:
                log.warning("INT8 calibration cache %s not written: %s", cache, e)

    return _Calibrator()


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
    trt = _trt()
    logger = _logger(trt)
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
    calibrator = None
    if key.precision == "int8":
        if calibration is None or calibration_cache is None:
            raise BackendError("precision int8 needs calibration frames")
        config.set_flag(trt.BuilderFlag.INT8)
        calibrator = _calibrator(trt, calibration, calibration_cache)
        config.int8_calibrator = calibrator
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
    config.progress_monitor = _progress_monitor(trt)
    started = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    if calibrator is not None and calibrator.error is not None:
        raise BackendError(f"INT8 calibration failed: {calibrator.error}") from calibrator.error
    if serialized is None:
        raise BackendError(f"TensorRT could not build {onnx.name} ({key.precision}); see the streamseg.tensorrt log")
    timing_path.parent.mkdir(parents=True, exist_ok=True)
    timing_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    log.info("built %s engine for %s in %.1f s", key.precision, onnx.name, time.monotonic() - started)
    return bytes(serialized)


class _Slot:
    """One batch in flight: an execution context, a stream and its buffers."""

    def __init__(
        self,
        context: Any,
        names: list[str],
        shapes: dict[str, tuple[int, ...]],
        dtypes: dict[str, np.dtype[Any]],
        ctx: Any,
    ) -> None:
        from .cuda_buffers import allocate

        self.context = context
        self.stream = ctx.stream()
        self.buffers = {n: allocate(shapes[n], dtypes[n]) for n in names}


class TensorRTBackend(Backend):
    name = "tensorrt"
    options_model: ClassVar[type[Strict] | None] = TensorRTConfig
    options_description: ClassVar[str] = "TensorRT engine settings"

    @classmethod
    def unavailable_reason(cls, device: str) -> str | None:
        if device == "cpu":
            return "TensorRT runs on NVIDIA GPUs only (model.device is cpu)"
        if importlib.util.find_spec("tensorrt") is None:
            return "tensorrt is not installed (pip install 'streamseg[tensorrt]' on a GPU host; JetPack has it)"
        if importlib.util.find_spec("pycuda") is None:
            return "pycuda is not installed (pip install 'streamseg[tensorrt]' on a GPU host)"
        return driver_missing_reason()

    @classmethod
    def model_unsupported_reason(cls, model: Any) -> str | None:
        return None if model.onnx_path is not None else "TensorRT builds engines from an ONNX file; the model has none"

    @property
    def settings(self) -> TensorRTConfig:
        return self.options if isinstance(self.options, TensorRTConfig) else TensorRTConfig()

    def engine_key(self, gpu_name: str, compute_capability: str, trt_version: str) -> EngineKey:
        s = self.settings
        if self.model.onnx_path is None:  # model_unsupported_reason() says so before a backend is made
            raise ModelError(f"{self.model.sidecar}: onnx: TensorRT builds engines from an ONNX file; there is none")
        return EngineKey(
            onnx_sha256=sha256_file(self.model.onnx_path),
            tensorrt_version=trt_version,
            gpu_name=gpu_name,
            compute_capability=compute_capability,
            precision=s.precision,
            min_batch=1,
            opt_batch=min(s.opt_batch or self.max_batch, self.max_batch),
            max_batch=self.max_batch,
            dla_core=s.dla_core,
        )

    def _load(self) -> tuple[list[TensorInfo], list[TensorInfo]]:
        if (why := driver_missing_reason()) is not None:
            raise BackendError(f"tensorrt: {why}")
        if self.model.onnx_path is None:
            raise ModelError(f"{self.model.sidecar}: onnx: TensorRT needs an ONNX file")
        if self.contract.input.layout != "NCHW":
            raise ModelError(f"{self.model.sidecar}: input.layout: the TensorRT backend feeds NCHW tensors")
        trt = _trt()
        from .cuda_buffers import CudaContext

        self._cuda = CudaContext(0)
        s = self.settings
        with self._cuda:
            key = self.engine_key(self._cuda.gpu_name, self._cuda.compute_capability, str(trt.__version__))
            path = engine_path(Path(s.cache_dir), self.contract.name, s.precision, s.dla_core)
            built = decide(path, key, s.rebuild) == "build"
            if built:
                log.info("building TensorRT engine %s (%s)", path, key)
                start = time.monotonic()
                batches = self._calibration_batches()
                blob = build_engine(
                    self.model.onnx_path,
                    self.contract.input.name,
                    (3, self.contract.input.height, self.contract.input.width),
                    key,
                    s,
                    batches,
                    self._calibration_cache(path, key) if batches is not None else None,
                )
                write_engine(path, blob, key, time.monotonic() - start)
            self._runtime = trt.Runtime(_logger(trt))
            if s.dla_core is not None:
                self._runtime.DLA_core = s.dla_core  # which DLA core runs it; TensorRT's default is -1
            self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
            if self._engine is None:
                raise BackendError(f"engine {path}: TensorRT could not deserialize it (see the streamseg.tensorrt log)")
            inputs, outputs = self._describe(trt)
            check_io(self.model, inputs, outputs)  # before TensorRT is asked for shapes the contract implies
            self._setup_slots(trt)
        self.engine_path = path
        self.built = built
        return inputs, outputs

    def __enter__(self) -> Backend:
        super().__enter__()
        if self.built:
            try:
                self._gate()
            except BaseException:
                self.__exit__(*sys.exc_info())  # `with` never calls __exit__ when __enter__ raises
                raise
        return self

    def _calibration_batches(self) -> CalibrationBatches | None:
        """INT8 calibration frames from the configured folder or video; None unless precision is int8."""
        cal = self.settings.calibration
        if self.settings.precision != "int8" or cal is None:
            return None
        data = Path(cal.data)
        if data.is_dir():
            return CalibrationBatches.from_folder(data, self.contract.input, cal.batch, cal.frames)
        return CalibrationBatches.from_video(cal.data, self.contract.input, cal.batch, cal.frames)

    def _calibration_cache(self, engine: Path, key: EngineKey) -> Path:
        """Where the INT8 calibration cache lives: ``calibration.cache``, else beside the engine.

        TensorRT uses whatever cache it is handed, and the scales in it are only right for one graph
        and one calibration set, so the default name carries a hash of both: a changed ONNX file or
        calibration set calibrates again instead of silently reusing stale scales.
        """
        cal = self.settings.calibration
        if cal is not None and cal.cache:
            return Path(cal.cache)
        what = f"{key.onnx_sha256}|{cal.data if cal else ''}|{cal.frames if cal else 0}|{cal.batch if cal else 0}"
        return engine.with_name(f"{engine.stem}-{hashlib.sha256(what.encode()).hexdigest()[:12]}.calib")

    def _describe(self, trt: Any) -> tuple[list[TensorInfo], list[TensorInfo]]:
        eng = self._engine
        self._inputs: list[str] = []
        self._outputs: list[str] = []
        self._dtypes: dict[str, np.dtype[Any]] = {}
        infos: dict[str, TensorInfo] = {}
        for i in range(eng.num_io_tensors):
            name = eng.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(eng.get_tensor_dtype(name)))
            shape = tuple(None if d < 0 else int(d) for d in eng.get_tensor_shape(name))
            self._dtypes[name] = dtype
            infos[name] = TensorInfo(name, shape, dtype.name)
            (self._inputs if eng.get_tensor_mode(name) == trt.TensorIOMode.INPUT else self._outputs).append(name)
        lo, _, hi = eng.get_tensor_profile_shape(self._inputs[0], 0)
        self._profile = (int(lo[0]), int(hi[0]))
        return [infos[n] for n in self._inputs], [infos[n] for n in self._outputs]

    def _setup_slots(self, trt: Any) -> None:
        c = self.contract
        in_name = self._inputs[0]
        max_b = self._profile[1]
        shapes: dict[str, tuple[int, ...]] = {in_name: (max_b, 3, c.input.height, c.input.width)}
        contexts = [self._engine.create_execution_context() for _ in range(2)]
        if not contexts[0].set_input_shape(in_name, shapes[in_name]):  # output shapes are known only after this
            raise BackendError(
                f"tensorrt: the engine refuses input shape {shapes[in_name]} (see the streamseg.tensorrt log)"
            )
        for name in self._outputs:
            shapes[name] = tuple(int(d) for d in contexts[0].get_tensor_shape(name))
        names = self._inputs + self._outputs
        self._slots = [_Slot(context, names, shapes, self._dtypes, self._cuda) for context in contexts]

    def _enqueue(self, slot: _Slot, chunk: np.ndarray) -> None:
        from .cuda_buffers import to_device, to_host

        n = chunk.shape[0]
        in_name = self._inputs[0]
        np.copyto(slot.buffers[in_name].host[:n], chunk)
        if not slot.context.set_input_shape(in_name, chunk.shape):
            raise BackendError(
                f"tensorrt: the engine refuses input shape {chunk.shape} (see the streamseg.tensorrt log)"
            )
        for name in self._inputs + self._outputs:
            if not slot.context.set_tensor_address(name, slot.buffers[name].address):
                raise BackendError(f"tensorrt: the engine refuses the address of tensor '{name}'")
        to_device(slot.buffers[in_name], slot.stream, chunk.nbytes)
        if not slot.context.execute_async_v3(slot.stream.handle):
            raise BackendError(f"tensorrt: execute failed on a batch of {n}")
        for name in self._outputs:
            out = slot.buffers[name]
            shape = tuple(int(d) for d in slot.context.get_tensor_shape(name))
            to_host(out, slot.stream, int(np.prod(shape)) * out.host.dtype.itemsize)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        lo, hi = self._profile
        n = batch.shape[0]
        if not lo <= n <= hi:
            raise BackendError(
                f"tensorrt: batch {n} is outside the engine's profile {lo}..{hi}; rebuild with batch.max_batch >= {n}"
            )
        out_name = self.contract.output.name
        # Two halves on two streams: the second half's upload overlaps the first half's compute.
        chunks = [batch] if n < 2 else [batch[: n // 2], batch[n // 2 :]]
        with self._cuda:
            for slot, chunk in zip(self._slots, chunks, strict=False):
                self._enqueue(slot, np.ascontiguousarray(chunk))
            results = []
            for slot, chunk in zip(self._slots, chunks, strict=False):
                slot.stream.synchronize()
                results.append(slot.buffers[out_name].host[: chunk.shape[0]].copy())
        return np.concatenate(results) if len(results) > 1 else results[0]

    def _gate(self) -> None:
        """Compare a freshly built engine with ONNX Runtime on a few frames; refuse it below the threshold."""
        from ..evaluate import ConfusionMatrix, scores
        from ..postprocess import to_class_maps
        from .onnxruntime import OnnxRuntimeBackend

        s = self.settings
        rng = np.random.default_rng(0)
        c = self.contract
        frames = rng.standard_normal((s.gate_frames, 3, c.input.height, c.input.width)).astype(np.float32)
        batches = self._calibration_batches()
        if batches is not None:
            frames = np.concatenate(list(batches))[: s.gate_frames]
        cm = ConfusionMatrix(c.num_classes)
        with OnnxRuntimeBackend(self.model, "cpu", 0, self.max_batch) as reference:
            for i in range(0, len(frames), self.max_batch):
                x = frames[i : i + self.max_batch]
                cm.update(to_class_maps(reference.infer(x), c), to_class_maps(self.infer(x), c))
        result = scores(cm.matrix)
        log.info(
            "engine %s vs ONNX Runtime: pixel agreement %.4f, mean IU %.4f",
            self.engine_path,
            result.pixel_accuracy,
            result.mean_iu,
        )
        if result.pixel_accuracy < s.min_agreement:
            self.engine_path.with_suffix(".json").unlink(missing_ok=True)  # never reuse a refused engine
            raise BackendError(
                f"engine {self.engine_path}: pixel agreement with ONNX Runtime "
                f"{result.pixel_accuracy:.4f} is below tensorrt.min_agreement {s.min_agreement}"
            )

    @property
    def description(self) -> str:
        return f"tensorrt ({self.settings.precision})"

    @property
    def runtime(self) -> RuntimeInfo:
        s = self.settings
        return RuntimeInfo("cuda" if s.dla_core is None else f"dla{s.dla_core}", "tensorrt", s.precision)

    def _close(self) -> None:
        self._slots = []
        self._engine = None
        self._runtime = None
