"""A strict fake of the part of TensorRT 10's Python API, and of ``pycuda.driver``, that
``streamseg.backends.tensorrt`` uses: CPU tests of the backend's orchestration, not of TensorRT.

    gpu = install(monkeypatch)                 # tensorrt, pycuda, pycuda.driver in sys.modules
    gpu = install(monkeypatch, driver=False)   # a host without a CUDA driver

The fake engine really computes. ``build_serialized_network`` serializes the ONNX bytes and the
build settings (JSON, base64); an execution context runs the graph with ONNX Runtime on the bytes
it finds at the input's fake device address, with the shape given to ``set_input_shape``, and
writes the result to the output's fake device address. Device memory is a table of bytearrays
behind integer addresses (filled with 0xCD, as uninitialized memory is garbage); host memory used by
async copies must come from ``pagelocked_empty``; copies and kernels run in stream order when their
stream is synchronized. So a backend that gets the same labels as ONNX Runtime through this fake
put the right bytes at the right addresses with the right shapes and dtypes, on the right streams.

Misuse that the real library answers with a crash, with garbage or with an error code the caller
should never reach is a loud exception here: ``FakeMisuse``; ``FakeSegfault``/``FakeAbort`` where the
real process would die. They derive from BaseException so that no ``except Exception`` in the code
under test can swallow them. Errors the real bindings raise as Python exceptions (pybind11's
TypeError, the RuntimeError of ``IOptimizationProfile.set_shape``) are raised as those types, and
exceptions the real trampolines swallow (in ``ILogger.log`` and the progress monitor) are swallowed,
printed and recorded in ``FakeGPU.swallowed``.

Where the behaviour comes from: TensorRT's python/src/infer/pyCore.cpp (bindings, keep_alive,
trampolines), pyInt8.cpp (calibrator trampoline: ``noexcept``, pointers cast to size_t),
parsers/pyOnnx.cpp, python/docstrings/infer/pyCoreDoc.h and pyInt8Doc.h, tensorrt/__init__.py
(``nptype``); pycuda's doc/driver.rst and src/wrapper/wrap_cudadrv.cpp. Behaviour that could not be
confirmed from those is marked ASSUMED where it is modelled.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import itertools
import json
import sys
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

import numpy as np
import pytest

VERSION = "10.7.0.23"
ENGINE_MAGIC = "streamseg-fake-tensorrt-engine"
TIMING_MAGIC = b"streamseg-fake-timing-cache\n"
CALIBRATION_HEADER = f"TRT-{VERSION}-EntropyCalibration2\n".encode()
UNINITIALIZED = 0xCD


class FakeMisuse(BaseException):
    """The code under test used the API in a way the real library punishes (crash, garbage, error)."""


class FakeCrash(BaseException):
    """The real process would have died here."""


class FakeSegfault(FakeCrash):
    """What ``deserialize_cuda_engine`` does on a host without a CUDA driver: the interpreter dies."""


class FakeAbort(FakeCrash):
    """``std::terminate``: a Python exception escaped a ``noexcept`` TensorRT callback."""


class FakeCudaError(Exception):
    """What pycuda raises for a failed driver call (its ``pycuda.driver.Error`` tree)."""


_current: FakeGPU | None = None


def _gpu() -> FakeGPU:
    if _current is None:
        raise FakeMisuse("the fake TensorRT/pycuda was used outside the test that installed it")
    return _current


# --- the machine: driver, device, memory, streams, and what happened ---------------------------------


@dataclass(eq=False)
class _Allocation:
    address: int
    data: bytearray
    freed: bool = False


@dataclass(eq=False)
class _Op:
    """One queued stream operation: the device ranges it reads and writes, and what it does."""

    what: str
    reads: list[tuple[int, int]]
    writes: list[tuple[int, int]]
    run: Callable[[], None]


def _overlap(a: Iterable[tuple[int, int]], b: Iterable[tuple[int, int]]) -> bool:
    return any(a0 < b1 and b0 < a1 for a0, a1 in a for b0, b1 in b)


@dataclass(eq=False)
class FakeGPU:
    """One fake machine; tests read what happened from it and turn its knobs."""

    driver: bool = True
    name: str = "NVIDIA Fake GPU"
    compute_capability: tuple[int, int] = (8, 9)
    dla_cores: int = 0
    corrupt_outputs: bool = False  # knob: engines compute wrong results (for the accuracy gate)
    calls: list[str] = field(default_factory=list)  # every fake entry point, in call order
    log: list[tuple[str, str]] = field(default_factory=list)  # (severity, message) sent to TensorRT loggers
    swallowed: list[str] = field(default_factory=list)  # exceptions TensorRT's trampolines would swallow
    executions: list[tuple[int, dict[str, tuple[int, ...]]]] = field(default_factory=list)  # (stream, shapes)
    calibration_reads: list[np.ndarray] = field(default_factory=list)  # what TensorRT read at get_batch pointers
    engines_built: list[dict[str, Any]] = field(default_factory=list)  # build settings of each serialized engine
    timing_cache_hits: int = 0
    trt: ModuleType = field(init=False)
    cuda: ModuleType = field(init=False)
    _initialized: bool = False
    _allocations: list[_Allocation] = field(default_factory=list)
    _next_address: int = 0x7F0000000000
    _pinned: list[np.ndarray] = field(default_factory=list)
    _streams: dict[int, Stream] = field(default_factory=dict)
    _local: threading.local = field(default_factory=threading.local)

    def count(self, call: str) -> int:
        return self.calls.count(call)

    def context_depth(self) -> int:
        """CUDA contexts pushed and not popped on this thread."""
        return len(self._stack())

    def pending(self) -> list[str]:
        """Stream operations enqueued and never synchronized."""
        return [op.what for s in self._streams.values() for op in s._ops]

    # --- internals the fake classes share ---
    def _call(self, name: str) -> None:
        self.calls.append(name)

    def _stack(self) -> list[Context]:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        stack: list[Context] = self._local.stack
        return stack

    def _require_context(self, what: str) -> None:
        if not self._stack():
            raise FakeCudaError(f"{what} failed: invalid device context (no CUDA context is current on this thread)")

    def _alloc(self, nbytes: int) -> _Allocation:
        a = _Allocation(self._next_address, bytearray([UNINITIALIZED]) * nbytes)
        self._next_address += -(-nbytes // 256) * 256 + 4096  # aligned, with a gap no pointer slides across
        self._allocations.append(a)
        return a

    def _find(self, address: int, nbytes: int, what: str) -> tuple[_Allocation, int]:
        if type(address) is not int:
            raise FakeMisuse(f"{what}: a device address is an int, got {type(address).__name__}")
        for a in self._allocations:
            if a.address <= address < a.address + max(1, len(a.data)):
                if a.freed:
                    raise FakeMisuse(f"{what}: {address:#x} was freed (its DeviceAllocation is gone)")
                offset = address - a.address
                if offset + nbytes > len(a.data):
                    raise FakeMisuse(
                        f"{what}: needs {nbytes} bytes at {address:#x}, the allocation holds {len(a.data) - offset}"
                    )
                return a, offset
        raise FakeMisuse(f"{what}: {address:#x} is not device memory allocated by pycuda.driver.mem_alloc")

    def _check_pinned(self, array: Any, what: str, writable: bool = False) -> np.ndarray:
        if not isinstance(array, np.ndarray):
            raise FakeMisuse(f"{what}: expected a numpy array in page-locked memory, got {type(array).__name__}")
        if not array.flags.c_contiguous:
            raise FakeMisuse(f"{what}: the host buffer is not contiguous")
        if writable and not array.flags.writeable:
            raise FakeMisuse(f"{what}: the host buffer is read-only")
        start = array.__array_interface__["data"][0]
        for p in self._pinned:
            p0 = p.__array_interface__["data"][0]
            if p0 <= start and start + array.nbytes <= p0 + p.nbytes:
                return array
        raise FakeMisuse(f"{what}: host memory is not page-locked; async copies need pagelocked_empty() memory")

    def _stream(self, stream: Any, what: str) -> Stream:
        if not isinstance(stream, Stream):
            raise FakeMisuse(f"{what}: pass the Stream the work belongs to, got {stream!r} (None: the legacy stream)")
        if self._streams.get(stream.handle) is not stream:
            raise FakeMisuse(f"{what}: that stream is not alive")
        return stream

    def _enqueue(self, stream: Stream, op: _Op) -> None:
        """Queue ``op``; two streams touching the same bytes with no synchronization between is a race."""
        for other in self._streams.values():
            if other is stream:
                continue
            for pending in other._ops:
                if (
                    _overlap(op.writes, pending.writes)
                    or _overlap(op.writes, pending.reads)
                    or _overlap(op.reads, pending.writes)
                ):
                    raise FakeMisuse(
                        f"race: {op.what} on stream {stream.handle:#x} touches device memory that "
                        f"{pending.what} on stream {other.handle:#x} still uses (synchronize first)"
                    )
        stream._ops.append(op)

    def _check_settled(self, ranges: list[tuple[int, int]], what: str) -> None:
        for s in self._streams.values():
            for pending in s._ops:
                if _overlap(ranges, pending.writes):
                    raise FakeMisuse(f"{what}: {pending.what} on stream {s.handle:#x} is still writing it")


def install(monkeypatch: pytest.MonkeyPatch, *, driver: bool = True, **settings: Any) -> FakeGPU:
    """Put fresh fake ``tensorrt``, ``pycuda`` and ``pycuda.driver`` modules in sys.modules for one test."""
    gpu = FakeGPU(driver=driver, **settings)
    gpu.trt = _module("tensorrt", TENSORRT_API)
    gpu.cuda = _module("pycuda.driver", PYCUDA_DRIVER_API)
    package = _module("pycuda", {"driver": gpu.cuda}, package=True)
    monkeypatch.setattr(sys.modules[__name__], "_current", gpu)
    monkeypatch.setitem(sys.modules, "tensorrt", gpu.trt)
    monkeypatch.setitem(sys.modules, "pycuda", package)
    monkeypatch.setitem(sys.modules, "pycuda.driver", gpu.cuda)
    return gpu


def _module(name: str, attributes: dict[str, Any], package: bool = False) -> ModuleType:
    module = ModuleType(name, f"fake {name} (tests/support/fake_tensorrt.py)")
    module.__spec__ = ModuleSpec(name, loader=None, is_package=package)  # importlib.util.find_spec reads it
    if package:
        module.__path__ = []
    for key, value in attributes.items():
        setattr(module, key, value)
    return module


# --- pycuda.driver ---------------------------------------------------------------------------------


def init(flags: int = 0) -> None:
    gpu = _gpu()
    gpu._call("pycuda.init")
    if not gpu.driver:  # the real pycuda does not even import without libcuda.so.1
        raise FakeCudaError("cuInit failed: no CUDA-capable device is detected")
    gpu._initialized = True


class Device:
    def __init__(self, number: int) -> None:
        gpu = _gpu()
        gpu._call("pycuda.Device")
        if not gpu._initialized:
            raise FakeCudaError("cuDeviceGet failed: initialization error (call pycuda.driver.init() first)")
        if number != 0:
            raise FakeCudaError("cuDeviceGet failed: invalid device ordinal")

    def name(self) -> str:
        return _gpu().name

    def compute_capability(self) -> tuple[int, int]:
        return _gpu().compute_capability

    def retain_primary_context(self) -> Context:
        _gpu()._call("pycuda.Device.retain_primary_context")
        return Context()


class Context:
    def push(self) -> None:
        gpu = _gpu()
        gpu._call("pycuda.Context.push")
        gpu._stack().append(self)

    @staticmethod
    def pop() -> None:  # static in pycuda: pops whatever context is current
        gpu = _gpu()
        gpu._call("pycuda.Context.pop")
        if not gpu._stack():
            raise FakeCudaError("cuCtxPopCurrent failed: invalid device context")
        gpu._stack().pop()


class Stream:
    _handles = itertools.count(0x5000)

    def __init__(self, flags: int = 0) -> None:
        gpu = _gpu()
        gpu._call("pycuda.Stream")
        gpu._require_context("cuStreamCreate")
        self._handle = next(Stream._handles)
        self._ops: list[_Op] = []
        gpu._streams[self._handle] = self

    @property
    def handle(self) -> int:
        return self._handle

    def synchronize(self) -> None:
        gpu = _gpu()
        gpu._call("pycuda.Stream.synchronize")
        while self._ops:
            self._ops[0].run()
            self._ops.pop(0)


class DeviceAllocation:
    """``int(allocation)`` is the address; the memory is freed with the object, as in pycuda."""

    def __init__(self, allocation: _Allocation) -> None:
        self._allocation = allocation

    def __int__(self) -> int:
        return self._allocation.address

    def free(self) -> None:
        self._allocation.freed = True

    def __del__(self) -> None:
        self._allocation.freed = True


def mem_alloc(nbytes: int) -> DeviceAllocation:
    gpu = _gpu()
    gpu._call("pycuda.mem_alloc")
    gpu._require_context("cuMemAlloc")
    if type(nbytes) is not int or nbytes <= 0:
        raise FakeCudaError(f"cuMemAlloc failed: invalid argument ({nbytes!r} bytes)")
    return DeviceAllocation(gpu._alloc(nbytes))


def pagelocked_empty(shape: Any, dtype: Any, order: str = "C", mem_flags: int = 0) -> np.ndarray:
    gpu = _gpu()
    gpu._call("pycuda.pagelocked_empty")
    gpu._require_context("cuMemHostAlloc")
    array: np.ndarray = np.empty(shape, dtype, order=order)  # type: ignore[call-overload]
    if array.nbytes:
        array.reshape(-1).view(np.uint8)[:] = UNINITIALIZED
    gpu._pinned.append(array)
    return array


def _device_address(pointer: Any, what: str) -> int:
    if isinstance(pointer, DeviceAllocation):
        return int(pointer)
    if type(pointer) is int:
        return pointer
    raise FakeMisuse(f"{what}: a device pointer is a DeviceAllocation or an int, got {type(pointer).__name__}")


def memcpy_htod_async(dest: Any, src: Any, stream: Any = None) -> None:
    gpu = _gpu()
    gpu._call("pycuda.memcpy_htod_async")
    gpu._require_context("cuMemcpyHtoDAsync")
    s = gpu._stream(stream, "memcpy_htod_async")
    host = gpu._check_pinned(src, "memcpy_htod_async src")
    address = _device_address(dest, "memcpy_htod_async dest")
    allocation, offset = gpu._find(address, host.nbytes, "memcpy_htod_async dest")
    n = host.nbytes

    def run() -> None:  # reads the host buffer when the copy runs, as the DMA engine does
        allocation.data[offset : offset + n] = host.tobytes()

    gpu._enqueue(s, _Op("memcpy_htod_async", [], [(address, address + n)], run))


def memcpy_dtoh_async(dest: Any, src: Any, stream: Any = None) -> None:
    gpu = _gpu()
    gpu._call("pycuda.memcpy_dtoh_async")
    gpu._require_context("cuMemcpyDtoHAsync")
    s = gpu._stream(stream, "memcpy_dtoh_async")
    host = gpu._check_pinned(dest, "memcpy_dtoh_async dest", writable=True)
    address = _device_address(src, "memcpy_dtoh_async src")
    allocation, offset = gpu._find(address, host.nbytes, "memcpy_dtoh_async src")
    n = host.nbytes

    def run() -> None:
        data = np.frombuffer(bytes(allocation.data[offset : offset + n]), dtype=host.dtype)
        np.copyto(host, data.reshape(host.shape))

    gpu._enqueue(s, _Op("memcpy_dtoh_async", [(address, address + n)], [], run))


PYCUDA_DRIVER_API: dict[str, Any] = {
    "init": init,
    "Device": Device,
    "Context": Context,
    "Stream": Stream,
    "mem_alloc": mem_alloc,
    "pagelocked_empty": pagelocked_empty,
    "memcpy_htod_async": memcpy_htod_async,
    "memcpy_dtoh_async": memcpy_dtoh_async,
}


# --- tensorrt: enums, nptype, the interfaces streamseg implements ---------------------------------------


class DataType(enum.Enum):  # values as nvinfer1::DataType
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    INT64 = 8


_NUMPY = {
    DataType.FLOAT: np.float32,
    DataType.HALF: np.float16,
    DataType.INT8: np.int8,
    DataType.INT32: np.int32,
    DataType.INT64: np.int64,
    DataType.BOOL: np.bool_,
    DataType.UINT8: np.uint8,
}
_ORT_TYPES = {
    "tensor(float)": DataType.FLOAT,
    "tensor(float16)": DataType.HALF,
    "tensor(int8)": DataType.INT8,
    "tensor(int32)": DataType.INT32,
    "tensor(int64)": DataType.INT64,
    "tensor(bool)": DataType.BOOL,
    "tensor(uint8)": DataType.UINT8,
}


def nptype(trt_type: DataType) -> type:
    """tensorrt/__init__.py's mapping (the TensorRT 10 one, with INT64)."""
    if trt_type in _NUMPY:
        return _NUMPY[trt_type]
    raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0


class BuilderFlag(enum.Enum):
    FP16 = 0
    INT8 = 1
    GPU_FALLBACK = 4


class DeviceType(enum.Enum):
    GPU = 0
    DLA = 1


def _base_init(obj: Any) -> None:
    obj.__dict__["_fake_trt_base_initialized"] = True


def _check_base(obj: Any, base: type, what: str) -> None:
    """pybind11's checks on a Python object handed to C++ as one of TensorRT's interfaces."""
    if not isinstance(obj, base):
        raise TypeError(f"{what}: incompatible function arguments: expected tensorrt.{base.__name__}, got {obj!r}")
    if not obj.__dict__.get("_fake_trt_base_initialized"):
        raise TypeError(f"{type(obj).__name__}.__init__() must be called when overriding __init__")


class ILogger:
    class Severity(enum.Enum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self) -> None:
        _base_init(self)

    def log(self, severity: ILogger.Severity, msg: str) -> None:
        raise RuntimeError('Tried to call pure virtual function "ILogger::log"')


for _severity in ILogger.Severity:  # export_values(): trt.ILogger.ERROR and friends
    setattr(ILogger, _severity.name, _severity)
Severity = ILogger.Severity


def _emit(logger: ILogger, severity: Severity, msg: str) -> None:
    """The logger trampoline: an exception in ``log`` is caught and printed, never raised."""
    gpu = _gpu()
    gpu.log.append((severity.name, msg))
    try:
        logger.log(severity, msg)
    except Exception as e:
        gpu.swallowed.append(f"ILogger.log: {e!r}")
        print(f"[ERROR] Exception caught in log(): {e}", file=sys.stderr)


class IProgressMonitor:
    def __init__(self) -> None:
        _base_init(self)

    def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
        raise RuntimeError('Tried to call pure virtual function "IProgressMonitor::phase_start"')

    def step_complete(self, phase_name: str, step: int) -> bool:
        raise RuntimeError('Tried to call pure virtual function "IProgressMonitor::step_complete"')

    def phase_finish(self, phase_name: str) -> None:
        raise RuntimeError('Tried to call pure virtual function "IProgressMonitor::phase_finish"')


def _monitor(monitor: IProgressMonitor | None, method: str, *args: Any) -> bool:
    """The progress monitor trampoline: exceptions are caught and printed; in step_complete one cancels
    the build, and so does any answer that is not a bool (pybind11 cannot cast it)."""
    if monitor is None:
        return True
    gpu = _gpu()
    gpu._call(f"IProgressMonitor.{method}")
    try:
        answer = getattr(monitor, method)(*args)
    except Exception as e:
        gpu.swallowed.append(f"IProgressMonitor.{method}: {e!r}")
        print(f"[ERROR] Exception caught in {method}(): {e}", file=sys.stderr)
        return False
    if method == "step_complete" and type(answer) is not bool:
        gpu.swallowed.append(f"IProgressMonitor.step_complete returned {answer!r}, not a bool")
        return False
    return True


class IInt8Calibrator:
    def __init__(self) -> None:
        _base_init(self)

    def get_batch_size(self) -> int:
        raise RuntimeError('Tried to call pure virtual function "IInt8Calibrator::getBatchSize"')

    def get_batch(self, names: list[str]) -> list[int] | None:
        raise RuntimeError("get_batch is not overridden")

    def read_calibration_cache(self) -> Any:
        raise RuntimeError("read_calibration_cache is not overridden")

    def write_calibration_cache(self, cache: memoryview) -> None:
        raise RuntimeError("write_calibration_cache is not overridden")


class IInt8EntropyCalibrator2(IInt8Calibrator):
    pass


def _calibrator(calibrator: IInt8Calibrator, method: str, *args: Any) -> Any:
    """The calibrator trampoline is noexcept: an exception escaping a callback terminates the process."""
    _gpu()._call(f"IInt8Calibrator.{method}")
    try:
        return getattr(calibrator, method)(*args)
    except Exception as e:
        raise FakeAbort(f"terminate called: an exception escaped IInt8Calibrator.{method}: {e!r}") from e


# --- tensorrt: builder side ------------------------------------------------------------------------------


class _Network:
    def __init__(self, builder: Builder, flags: int) -> None:
        self._builder = builder
        self._flags = flags
        self._onnx: bytes | None = None
        self._inputs: dict[str, tuple[DataType, tuple[int, ...]]] = {}


class _ParserError:
    def __init__(self, desc: str) -> None:
        self._desc = desc

    def desc(self) -> str:
        return self._desc

    def __str__(self) -> str:
        return f"In node -1 with name:  and operator:  (parseGraph): INVALID_GRAPH: {self._desc}"


def _session(onnx_bytes: bytes) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])


def _dims(shape: list[Any]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) else -1 for d in shape)


class OnnxParser:
    def __init__(self, network: _Network, logger: ILogger) -> None:
        _gpu()._call("OnnxParser")
        if not isinstance(network, _Network):
            raise TypeError(f"OnnxParser(): incompatible function arguments: network is {network!r}")
        _check_base(logger, ILogger, "OnnxParser()")
        self._network = network
        self._logger = logger
        self._errors: list[_ParserError] = []

    def parse(self, model: Any, path: str | None = None) -> bool:
        _gpu()._call("OnnxParser.parse")
        if self._network._onnx is not None:
            raise FakeMisuse("OnnxParser.parse called twice on one network: its layers would be added twice")
        data = bytes(memoryview(model))  # TypeError for what is not a buffer, as pybind11's py::buffer
        try:
            import onnx

            proto = onnx.load_model_from_string(data)
            onnx.checker.check_model(proto)
            session = _session(data)
        except Exception as e:
            self._errors.append(_ParserError(str(e).strip().splitlines()[0] if str(e).strip() else repr(e)))
            _emit(self._logger, Severity.ERROR, f"ModelImporter.cpp: Failed to parse ONNX model: {self._errors[-1]}")
            return False
        for arg in session.get_inputs():
            if arg.type not in _ORT_TYPES:
                self._errors.append(_ParserError(f"input {arg.name} has unsupported type {arg.type}"))
                return False
            self._network._inputs[arg.name] = (_ORT_TYPES[arg.type], _dims(arg.shape))
        self._network._onnx = data
        opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
        _emit(self._logger, Severity.INFO, f"ONNX IR version {proto.ir_version}, opset {opset}")
        _emit(self._logger, Severity.VERBOSE, f"parsed {len(proto.graph.node)} nodes")
        return True

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index: int) -> _ParserError | None:
        return self._errors[index] if 0 <= index < len(self._errors) else None


class _OptimizationProfile:
    def __init__(self, builder: Builder) -> None:
        self._builder = builder
        self._shapes: dict[str, list[tuple[int, ...]]] = {}

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # the binding's argument names
        _gpu()._call("IOptimizationProfile.set_shape")
        shapes = [tuple(int(d) for d in dims) for dims in (min, opt, max)]
        low, best, high = shapes
        if len(low) != len(best) or any(a < 0 for a in low) or any(a > b for a, b in zip(low, best, strict=False)):
            raise RuntimeError("Shape provided for opt is inconsistent with other shapes.")
        if len(best) != len(high) or any(a > b for a, b in zip(best, high, strict=False)):
            raise RuntimeError("Shape provided for max is inconsistent with other shapes.")
        self._shapes[input] = shapes

    def __bool__(self) -> bool:
        return bool(self._shapes)


class _TimingCache:
    def __init__(self, entries: dict[str, float]) -> None:
        self._entries = entries

    def serialize(self) -> memoryview:
        return memoryview(TIMING_MAGIC + json.dumps(self._entries, sort_keys=True).encode())


class _BuilderConfig:
    def __init__(self, builder: Builder) -> None:
        self._builder = builder
        self._pools: dict[MemoryPoolType, int] = {}
        self._profiles: list[_OptimizationProfile] = []
        self._flags: set[BuilderFlag] = set()
        self._calibrator: IInt8Calibrator | None = None
        self._calibration_profile: _OptimizationProfile | None = None
        self._device_type = DeviceType.GPU
        self._dla_core = -1
        self._timing_cache: _TimingCache | None = None
        self._monitor: IProgressMonitor | None = None

    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
        if not isinstance(pool, MemoryPoolType) or type(pool_size) is not int or pool_size < 0:
            raise TypeError(f"set_memory_pool_limit(): incompatible function arguments: {pool!r}, {pool_size!r}")
        self._pools[pool] = pool_size

    def add_optimization_profile(self, profile: _OptimizationProfile) -> int:
        _gpu()._call("IBuilderConfig.add_optimization_profile")
        if not isinstance(profile, _OptimizationProfile):
            raise TypeError(f"add_optimization_profile(): incompatible function arguments: {profile!r}")
        if not profile:
            return -1
        self._profiles.append(profile)
        return len(self._profiles) - 1

    def set_flag(self, flag: BuilderFlag) -> None:
        if not isinstance(flag, BuilderFlag):
            raise TypeError(f"set_flag(): incompatible function arguments: {flag!r} is not a tensorrt.BuilderFlag")
        self._flags.add(flag)

    @property
    def int8_calibrator(self) -> IInt8Calibrator | None:
        return self._calibrator

    @int8_calibrator.setter
    def int8_calibrator(self, calibrator: IInt8Calibrator | None) -> None:
        warnings.warn("Deprecated in TensorRT 10.1. Superseded by explicit quantization.", DeprecationWarning, 2)
        if calibrator is not None:
            _check_base(calibrator, IInt8Calibrator, "int8_calibrator")
        self._calibrator = calibrator  # keep_alive<1, 2> in the binding: the config holds it

    def set_calibration_profile(self, profile: _OptimizationProfile | None) -> bool:
        warnings.warn("Deprecated in TensorRT 10.1. Superseded by explicit quantization.", DeprecationWarning, 2)
        if profile is not None and not isinstance(profile, _OptimizationProfile):
            raise TypeError(f"set_calibration_profile(): incompatible function arguments: {profile!r}")
        if profile is not None and not profile:
            return False
        self._calibration_profile = profile
        return True

    @property
    def default_device_type(self) -> DeviceType:
        return self._device_type

    @default_device_type.setter
    def default_device_type(self, value: DeviceType) -> None:
        if not isinstance(value, DeviceType):
            raise TypeError(f"default_device_type: {value!r} is not a tensorrt.DeviceType")
        self._device_type = value

    @property
    def DLA_core(self) -> int:  # noqa: N802 - TensorRT's name
        return self._dla_core

    @DLA_core.setter
    def DLA_core(self, value: int) -> None:  # noqa: N802
        if type(value) is not int:
            raise TypeError(f"DLA_core: {value!r} is not an int")
        self._dla_core = value

    def create_timing_cache(self, serialized_timing_cache: Any) -> _TimingCache:
        gpu = _gpu()
        gpu._call("IBuilderConfig.create_timing_cache")
        data = bytes(memoryview(serialized_timing_cache))
        if not data:
            return _TimingCache({})
        if data.startswith(TIMING_MAGIC):
            return _TimingCache(json.loads(data[len(TIMING_MAGIC) :]))
        # ASSUMED: an unusable blob gives an empty cache and a warning rather than an error.
        _emit(self._builder._logger, Severity.WARNING, "timing cache blob not recognized: starting an empty cache")
        return _TimingCache({})

    def set_timing_cache(self, cache: _TimingCache, ignore_mismatch: bool) -> bool:
        if not isinstance(cache, _TimingCache) or type(ignore_mismatch) is not bool:
            raise TypeError(f"set_timing_cache(): incompatible function arguments: {cache!r}, {ignore_mismatch!r}")
        self._timing_cache = cache  # keep_alive<1, 2>
        return True

    def get_timing_cache(self) -> _TimingCache | None:
        return self._timing_cache

    @property
    def progress_monitor(self) -> IProgressMonitor | None:
        return self._monitor

    @progress_monitor.setter
    def progress_monitor(self, monitor: IProgressMonitor | None) -> None:
        if monitor is not None:
            _check_base(monitor, IProgressMonitor, "progress_monitor")
        self._monitor = monitor  # keep_alive<1, 2>


class Builder:
    def __init__(self, logger: ILogger) -> None:
        gpu = _gpu()
        gpu._call("Builder")
        _check_base(logger, ILogger, "Builder()")
        self._logger = logger
        if not gpu.driver:  # ASSUMED: what createInferBuilder does without a driver
            _emit(logger, Severity.WARNING, "CUDA initialization failure with error: 35")
            raise TypeError("pybind11::init(): factory function returned nullptr")

    def create_network(self, flags: int = 0) -> _Network:
        _gpu()._call("Builder.create_network")
        if type(flags) is not int:
            raise TypeError(f"create_network(): incompatible function arguments: flags={flags!r}")
        return _Network(self, flags)

    def create_builder_config(self) -> _BuilderConfig:
        return _BuilderConfig(self)

    def create_optimization_profile(self) -> _OptimizationProfile:
        return _OptimizationProfile(self)

    def build_serialized_network(self, network: _Network, config: _BuilderConfig) -> memoryview | None:
        gpu = _gpu()
        gpu._call("Builder.build_serialized_network")
        if network._builder is not self or config._builder is not self:
            raise FakeMisuse("build_serialized_network: network and config must come from this builder")

        def error(msg: str) -> None:
            _emit(
                self._logger, Severity.ERROR, f"IBuilder::buildSerializedNetwork: Error Code 4: API Usage Error ({msg})"
            )

        if network._onnx is None:
            error("Network must have at least one output")
            return None
        if not config._profiles and any(-1 in dims for _, dims in network._inputs.values()):
            error("Network has dynamic or shape inputs, but no optimization profile has been defined.")
            return None
        checked = config._profiles + ([config._calibration_profile] if config._calibration_profile else [])
        for p in checked:
            for name, shapes in p._shapes.items():
                if name not in network._inputs:
                    error(f"optimization profile names '{name}', which is not an input of the network")
                    return None
                dims = network._inputs[name][1]
                for shape in shapes:
                    if len(shape) != len(dims) or any(d >= 0 and d != s for d, s in zip(dims, shape, strict=True)):
                        error(f"profile shape {shape} of '{name}' does not match its network dimensions {dims}")
                        return None
            for name, (_, dims) in network._inputs.items():
                if -1 in dims and name not in p._shapes:
                    error(f"optimization profile is missing values for the dynamic input '{name}'")
                    return None
        if BuilderFlag.INT8 in config._flags and config._calibrator is None:
            raise FakeMisuse("BuilderFlag.INT8 without an int8_calibrator (and no Q/DQ layers): nothing to calibrate")
        if config._calibrator is not None and BuilderFlag.INT8 not in config._flags:
            _emit(self._logger, Severity.WARNING, "a calibrator is set but BuilderFlag.INT8 is not: it is ignored")
        dla = config._device_type is DeviceType.DLA
        if dla and not 0 <= config._dla_core < gpu.dla_cores:
            error(f"DLA core {config._dla_core} requested; this platform has {gpu.dla_cores} DLA cores")
            return None

        phase = "Building engine"
        monitor = config._monitor
        _monitor(monitor, "phase_start", phase, None, 3)
        calibration = None
        if BuilderFlag.INT8 in config._flags:
            calibration = self._calibrate(network, config)
            if calibration is None:
                _monitor(monitor, "phase_finish", phase)
                return None
        for step in range(3):
            if not _monitor(monitor, "step_complete", phase, step):
                _emit(self._logger, Severity.INFO, "the build was cancelled by the progress monitor")
                _monitor(monitor, "phase_finish", phase)
                return None
        _monitor(monitor, "phase_finish", phase)

        flags = sorted(f.name for f in config._flags)
        if config._timing_cache is not None:
            tactic = hashlib.sha256(network._onnx + repr(flags).encode()).hexdigest()[:16]
            gpu.timing_cache_hits += tactic in config._timing_cache._entries
            config._timing_cache._entries[tactic] = 0.042
        settings = {
            "version": VERSION,
            "device": gpu.name,
            "compute_capability": list(gpu.compute_capability),
            "profiles": [{n: [list(s) for s in shapes] for n, shapes in p._shapes.items()} for p in config._profiles],
            "flags": flags,
            "device_type": config._device_type.name,
            "dla_core": config._dla_core if dla else None,
            "workspace": config._pools.get(MemoryPoolType.WORKSPACE),
            "calibration": calibration,
        }
        gpu.engines_built.append(settings)
        _emit(self._logger, Severity.INFO, f"built a fake engine: {', '.join(flags) or 'FP32'} on {gpu.name}")
        payload = {"magic": ENGINE_MAGIC, "onnx": base64.b64encode(network._onnx).decode(), **settings}
        return memoryview(json.dumps(payload).encode())  # IHostMemory: a buffer

    def _calibrate(self, network: _Network, config: _BuilderConfig) -> dict[str, Any] | None:
        """TensorRT's calibration: the cache if the calibrator has one, else batches at the OPT shape of
        the calibration profile (or the first profile): MIN and MAX are overwritten by OPT."""
        gpu = _gpu()
        calibrator = config._calibrator
        assert calibrator is not None
        profile = config._calibration_profile or config._profiles[0]
        shapes = {name: tuple(profile._shapes[name][1]) for name in network._inputs}
        cached = _calibrator(calibrator, "read_calibration_cache")
        if cached is not None:
            data = bytes(memoryview(cached))
            if data.startswith(CALIBRATION_HEADER):
                _emit(self._logger, Severity.INFO, "calibration cache found: calibration skipped")
                return {"source": "cache", **json.loads(data[len(CALIBRATION_HEADER) :])}
            if data:
                _emit(self._logger, Severity.WARNING, "calibration cache not recognized: calibrating again")
        batch_size = _calibrator(calibrator, "get_batch_size")
        for name, shape in shapes.items():
            if batch_size != shape[0]:
                raise FakeMisuse(
                    f"get_batch_size() is {batch_size!r} but calibration runs at the calibration profile's OPT "
                    f"shape {shape} for '{name}': the batches get_batch hands over must match it"
                )
        names = list(network._inputs)
        phase = "Calibration"
        _monitor(config._monitor, "phase_start", phase, "Building engine", 0)
        batches = 0
        amax = 0.0
        while True:
            pointers = _calibrator(calibrator, "get_batch", names)
            if pointers is None or len(pointers) == 0:
                break
            if len(pointers) != len(names) or any(type(p) is not int for p in pointers):
                raise FakeAbort(f"terminate called: get_batch must return one int pointer per input, got {pointers!r}")
            for name, pointer in zip(names, pointers, strict=True):
                dtype = np.dtype(nptype(network._inputs[name][0]))
                nbytes = int(np.prod(shapes[name])) * dtype.itemsize
                what = f"TensorRT reading calibration input '{name}' at get_batch's pointer"
                gpu._check_settled([(pointer, pointer + nbytes)], what)
                allocation, offset = gpu._find(pointer, nbytes, what)
                array = np.frombuffer(bytes(allocation.data[offset : offset + nbytes]), dtype).reshape(shapes[name])
                gpu.calibration_reads.append(array.copy())
                amax = max(amax, float(np.abs(array).max()))
            batches += 1
            _monitor(config._monitor, "step_complete", phase, batches - 1)
        _monitor(config._monitor, "phase_finish", phase)
        if batches == 0:
            _emit(self._logger, Severity.ERROR, "Calibration failure occurred with no scaling factors detected.")
            return None
        table = {"batches": batches, "amax": amax}
        _calibrator(calibrator, "write_calibration_cache", memoryview(CALIBRATION_HEADER + json.dumps(table).encode()))
        return {"source": "batches", **table}


# --- tensorrt: runtime side ------------------------------------------------------------------------------


class Runtime:
    def __init__(self, logger: ILogger) -> None:
        _gpu()._call("Runtime")
        _check_base(logger, ILogger, "Runtime()")
        self._logger = logger
        self._dla_core = -1

    @property
    def DLA_core(self) -> int:  # noqa: N802 - TensorRT's name
        return self._dla_core

    @DLA_core.setter
    def DLA_core(self, value: int) -> None:  # noqa: N802
        if type(value) is not int:
            raise TypeError(f"DLA_core: {value!r} is not an int")
        self._dla_core = value

    def deserialize_cuda_engine(self, serialized_engine: Any) -> _Engine | None:
        gpu = _gpu()
        gpu._call("Runtime.deserialize_cuda_engine")
        if not gpu.driver:
            raise FakeSegfault("Segmentation fault: Runtime.deserialize_cuda_engine on a host without a CUDA driver")
        data = bytes(memoryview(serialized_engine))

        def error(msg: str) -> None:
            _emit(self._logger, Severity.ERROR, f"IRuntime::deserializeCudaEngine: Error Code 1: Serialization ({msg})")

        try:
            payload = json.loads(data)
            ok = isinstance(payload, dict) and payload.get("magic") == ENGINE_MAGIC
        except ValueError:
            ok = False
        if not ok:
            error("Serialization assertion magicTagRead == kMAGIC_TAG failed.Magic tag does not match")
            return None
        if payload["version"] != VERSION:
            error(f"Version tag does not match: the engine is from TensorRT {payload['version']}, this is {VERSION}")
            return None
        if tuple(payload["compute_capability"]) != gpu.compute_capability:
            error("The engine plan file is generated on an incompatible device, please rebuild.")
            return None
        if payload["dla_core"] is not None and not 0 <= self._dla_core < gpu.dla_cores:
            error(f"engine built for DLA; Runtime.DLA_core is {self._dla_core}")  # ASSUMED: how it fails
            return None
        return _Engine(payload)


class _Engine:
    def __init__(self, payload: dict[str, Any]) -> None:
        self._session = _session(base64.b64decode(payload["onnx"]))
        self._profiles: list[dict[str, list[list[int]]]] = payload["profiles"]
        self._symbolic: dict[str, list[Any]] = {}
        self._io: dict[str, tuple[TensorIOMode, DataType, tuple[int, ...]]] = {}
        for mode, args in (
            (TensorIOMode.INPUT, self._session.get_inputs()),
            (TensorIOMode.OUTPUT, self._session.get_outputs()),
        ):
            for arg in args:
                self._io[arg.name] = (mode, _ORT_TYPES[arg.type], _dims(arg.shape))
                self._symbolic[arg.name] = list(arg.shape)

    def _tensor(self, name: str, what: str) -> tuple[TensorIOMode, DataType, tuple[int, ...]]:
        if name not in self._io:
            raise FakeMisuse(f"{what}: '{name}' is not an I/O tensor of this engine (has {list(self._io)})")
        return self._io[name]

    @property
    def num_io_tensors(self) -> int:
        return len(self._io)

    def get_tensor_name(self, index: int) -> str | None:
        names = list(self._io)
        return names[index] if 0 <= index < len(names) else None

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self._io[name][0] if name in self._io else TensorIOMode.NONE

    def get_tensor_dtype(self, name: str) -> DataType:
        return self._tensor(name, "get_tensor_dtype")[1]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self._tensor(name, "get_tensor_shape")[2]  # -1 where the dimension is dynamic

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
        if self._tensor(name, "get_tensor_profile_shape")[0] is not TensorIOMode.INPUT:
            raise FakeMisuse(f"get_tensor_profile_shape: '{name}' is not an input")
        if not 0 <= profile_index < len(self._profiles):
            raise FakeMisuse(
                f"get_tensor_profile_shape: no profile {profile_index} (the engine has {len(self._profiles)})"
            )
        return [tuple(s) for s in self._profiles[profile_index][name]]

    def create_execution_context(self) -> _ExecutionContext:
        _gpu()._call("ICudaEngine.create_execution_context")
        return _ExecutionContext(self)


class _ExecutionContext:
    def __init__(self, engine: _Engine) -> None:
        self._engine = engine
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._addresses: dict[str, int] = {}
        self._premature: dict[str, tuple[int, ...]] = {}

    def _inputs(self) -> list[str]:
        return [n for n, (mode, _, _) in self._engine._io.items() if mode is TensorIOMode.INPUT]

    def set_input_shape(self, name: str, shape: Any) -> bool:
        _gpu()._call("IExecutionContext.set_input_shape")
        mode, _, dims = self._engine._tensor(name, "set_input_shape")
        if mode is not TensorIOMode.INPUT:
            raise FakeMisuse(f"set_input_shape: '{name}' is an output")
        shape = tuple(int(d) for d in shape)
        low, _, high = self._engine._profiles[0][name]
        if len(shape) != len(dims) or any(d >= 0 and d != s for d, s in zip(dims, shape, strict=True)):
            raise FakeMisuse(f"set_input_shape: {shape} does not fit '{name}' of dimensions {dims}")
        if any(not lo <= s <= hi for lo, s, hi in zip(low, shape, high, strict=True)):
            # The real call returns False and logs an error; the backend checks the batch first.
            raise FakeMisuse(f"set_input_shape: {shape} is outside the profile {tuple(low)}..{tuple(high)} of '{name}'")
        self._shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        mode, _, dims = self._engine._tensor(name, "get_tensor_shape")
        if mode is TensorIOMode.INPUT:
            return self._shapes.get(name, dims)
        if any(n not in self._shapes for n in self._inputs()):
            self._premature[name] = dims  # TensorRT answers with -1s; buffers sized from that are wrong
            return dims
        return self._output_shape(name)

    def _output_shape(self, name: str) -> tuple[int, ...]:
        symbols: dict[str, int] = {}
        for n in self._inputs():
            for sym, value in zip(self._engine._symbolic[n], self._shapes[n], strict=True):
                if isinstance(sym, str):
                    symbols[sym] = value
        shape = [d if isinstance(d, int) else symbols.get(d) for d in self._engine._symbolic[name]]
        if any(d is None for d in shape):
            raise FakeMisuse(f"the fake cannot infer the shape of '{name}' from its inputs")
        return tuple(int(d) for d in shape if d is not None)

    def set_tensor_address(self, name: str, memory: int) -> bool:
        _gpu()._call("IExecutionContext.set_tensor_address")
        self._engine._tensor(name, "set_tensor_address")
        if type(memory) is not int:
            raise TypeError(f"set_tensor_address(): incompatible function arguments: memory={memory!r} is not an int")
        self._addresses[name] = memory
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        gpu = _gpu()
        gpu._call("IExecutionContext.execute_async_v3")
        if type(stream_handle) is not int:
            raise TypeError(f"execute_async_v3(): incompatible function arguments: {stream_handle!r} is not an int")
        if stream_handle == 0:
            raise FakeMisuse("execute_async_v3(0): the legacy default stream serializes everything; pass stream.handle")
        stream = gpu._streams.get(stream_handle)
        if stream is None:
            raise FakeMisuse(f"execute_async_v3({stream_handle:#x}): not the handle of a live CUDA stream")
        if not gpu._stack():
            raise FakeMisuse("execute_async_v3: no CUDA context is current on this thread")
        if self._premature:
            name, dims = next(iter(self._premature.items()))
            raise FakeMisuse(
                f"the shape of output '{name}' was read before set_input_shape: TensorRT answered {dims} "
                "and anything sized from that is wrong"
            )
        unset = [n for n in self._inputs() if n not in self._shapes]
        if unset:
            raise FakeMisuse(f"execute_async_v3: no set_input_shape for {unset}")
        missing = [n for n in self._engine._io if n not in self._addresses]
        if missing:
            raise FakeMisuse(f"execute_async_v3: no address for {missing}: every I/O tensor needs set_tensor_address")
        tensors = []
        for name, (mode, dtype, _) in self._engine._io.items():
            shape = self._shapes[name] if mode is TensorIOMode.INPUT else self._output_shape(name)
            np_dtype = np.dtype(nptype(dtype))
            nbytes = int(np.prod(shape)) * np_dtype.itemsize
            address = self._addresses[name]
            allocation, offset = gpu._find(address, nbytes, f"execute_async_v3: tensor '{name}'")
            tensors.append((name, mode, shape, np_dtype, address, nbytes, allocation, offset))
        session = self._engine._session
        corrupt = gpu.corrupt_outputs

        def run() -> None:
            feed = {}
            for name, mode, shape, dtype, _, nbytes, allocation, offset in tensors:
                if mode is TensorIOMode.INPUT:
                    raw = bytes(allocation.data[offset : offset + nbytes])
                    feed[name] = np.frombuffer(raw, dtype).reshape(shape)
            results = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True))
            for name, mode, shape, dtype, _, nbytes, allocation, offset in tensors:
                if mode is TensorIOMode.OUTPUT:
                    out = np.ascontiguousarray(results[name], dtype=dtype)
                    if out.shape != shape:
                        raise FakeMisuse(f"the fake computed {out.shape} for '{name}', the context said {shape}")
                    if corrupt:
                        out = -out if out.dtype.kind == "f" else out + 1
                    allocation.data[offset : offset + nbytes] = out.tobytes()

        reads = [(t[4], t[4] + t[5]) for t in tensors if t[1] is TensorIOMode.INPUT]
        writes = [(t[4], t[4] + t[5]) for t in tensors if t[1] is TensorIOMode.OUTPUT]
        gpu._enqueue(stream, _Op("execute_async_v3", reads, writes, run))
        gpu.executions.append((stream_handle, dict(self._shapes)))
        return True


TENSORRT_API: dict[str, Any] = {
    "__version__": VERSION,
    "ILogger": ILogger,
    "IProgressMonitor": IProgressMonitor,
    "IInt8EntropyCalibrator2": IInt8EntropyCalibrator2,
    "Builder": Builder,
    "OnnxParser": OnnxParser,
    "Runtime": Runtime,
    "MemoryPoolType": MemoryPoolType,
    "BuilderFlag": BuilderFlag,
    "DeviceType": DeviceType,
    "TensorIOMode": TensorIOMode,
    "DataType": DataType,
    "nptype": nptype,
}
