"""The TensorRT backend: engine key, cache decision, build, accuracy gate, then inference.

Written to the TensorRT 10/11 Python API (named I/O tensors, ``execute_async_v3``); see the
README's backend matrix for where this has and has not been executed. Order of business:

1. refuse early without a CUDA driver: ``Runtime.deserialize_cuda_engine`` segfaults the
   interpreter on a driverless host (seen with tensorrt-lean), so nothing TensorRT is touched;
2. compute the engine key (ONNX sha256, TensorRT version, GPU, compute capability, precision,
   batch profile, DLA core) and compare it with the cached engine's sidecar *before* loading;
3. build when needed (``build.py``; INT8 calibration in ``calibration.py``), then gate the new
   engine against ONNX Runtime on a few frames (``gate.py``);
4. run with named tensors on two CUDA streams, pinned host buffers, device buffers via pycuda.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...contract import TensorInfo, check_io, sha256_file
from ...engines import EngineKey, decide, engine_path, write_engine
from ...errors import BackendError, ModelError
from ...schema import Strict
from ..base import Backend, RuntimeInfo
from .build import build_engine, driver_missing_reason, import_tensorrt, trt_logger
from .calibration import CalibrationBatches
from .gate import gate, gate_frames
from .settings import TensorRTConfig

log = logging.getLogger(__package__)


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
        from ..cuda_buffers import allocate

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
        trt = import_tensorrt()
        from ..cuda_buffers import CudaContext

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
            self._runtime = trt.Runtime(trt_logger(trt))
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
        from ..cuda_buffers import to_device, to_host

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
        gate(self, self.engine_path, self.settings, gate_frames(self.model, self.settings, self._calibration_batches()))

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
