"""The one backend interface every engine implements.

A backend is a context manager: ``__enter__`` loads the model, checks it against its contract and
warms up; ``__exit__`` frees it. ``infer`` checks the batch, times the call and hands it to the
backend's ``_infer``. Backends never import their heavy library at module import time.

``stage()`` gives the pre/post-processing that fits the backend (``streamseg.stages``): the CPU
stage by default; a backend that runs on a GPU may give a stage whose tensors stay on the device,
and then ``infer`` takes and returns that stage's device tensors (``_infer_device``).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, overload

import numpy as np

from ..contract import LoadedModel, TensorInfo, check_io, class_count_error, expected_input_shape
from ..errors import BackendError
from ..instances import InstanceOutput, InstanceStage
from ..schema import Strict
from ..stages import CpuStage, OverlaySpec, Stage

if TYPE_CHECKING:
    from ..temporal import TemporalFilter


class DeviceTensor(Protocol):
    """A batch on an accelerator, made by the backend's own device stage (a torch tensor on CUDA).
    Named by what ``infer`` reads of it, so this interface names no framework."""

    @property
    def shape(self) -> Sequence[int]: ...

    @property
    def dtype(self) -> object: ...

    def numel(self) -> int: ...  # numpy arrays have no numel(): infer tells the two apart by type


@dataclass(frozen=True, slots=True)
class RuntimeInfo:
    """Where a loaded backend runs, as ``streamseg_build_info`` labels it."""

    device: str  # cpu, cuda, dla0, ...
    provider: str  # ONNX Runtime's execution provider, torch's mode, or tensorrt
    precision: str  # fp32, fp16, int8


class Backend(abc.ABC):
    """Runs one model on batches of preprocessed frames; subclasses write ``_load``/``_infer``."""

    name: ClassVar[str]
    # Its settings: the section of ``model:`` named after the backend (model.tensorrt, ...), whose
    # model the config builds ModelConfig from; the instance receives it as ``options``.
    options_model: ClassVar[type[Strict] | None] = None
    options_description: ClassVar[str] = ""
    # A remote server: never tried by ``backend: auto`` (not allowed in ``prefer``), only when named.
    remote: ClassVar[bool] = False
    # Runs instance models (contract output kind "instances"): writes ``_infer_instances``.
    supports_instances: ClassVar[bool] = False

    def __init__(
        self, model: LoadedModel, device: str = "auto", threads: int = 0, max_batch: int = 1, options: Any = None
    ) -> None:
        self.model = model
        self.options = options  # its options_model instance (TensorRT: TensorRTConfig), or None
        self.contract = model.contract
        self.device = device
        self.threads = threads
        self.max_batch = max_batch
        self.last_seconds = 0.0
        self._loaded = False

    # --- what a backend writes ---------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def unavailable_reason(cls, device: str) -> str | None:
        """Why this backend cannot run here (missing library, no GPU), or None when it can."""

    @classmethod
    def model_unsupported_reason(cls, model: LoadedModel) -> str | None:
        """Why this backend cannot run this model (e.g. no file in its format), or None."""
        return None

    @abc.abstractmethod
    def _load(self) -> tuple[list[TensorInfo], list[TensorInfo]]:
        """Load the model; return what the graph says of its inputs and outputs."""

    @abc.abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """Run the graph on a checked batch; return the contract's output for each item."""

    def _infer_device(self, batch: DeviceTensor) -> DeviceTensor:
        """``_infer`` for a batch already on the device, leaving the output there; only backends
        whose ``stage()`` makes device tensors receive one."""
        raise BackendError(f"{self.name}: takes numpy batches only, got {type(batch).__name__}")

    def _close(self) -> None:  # noqa: B027 - optional hook
        """Free what ``_load`` took."""

    @property
    def description(self) -> str:
        """One line for logs and build_info: backend and where it runs."""
        return self.name

    @property
    def runtime(self) -> RuntimeInfo:
        """Device, provider and precision once loaded; backends that can run elsewhere override it."""
        return RuntimeInfo("cpu", self.name, "fp32")

    # --- the fixed part ----------------------------------------------------------------------
    def __enter__(self) -> Backend:
        if self.contract.output.kind == "instances" and not self.supports_instances:
            raise BackendError(f"{self.name}: runs no instance models ({self.model.sidecar}: output.kind instances)")
        inputs, outputs = self._load()
        check_io(self.model, inputs, outputs)
        self._loaded = True
        self.warmup()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._loaded = False
        self._close()

    def stage(self, overlay: OverlaySpec | None = None, temporal: TemporalFilter | None = None) -> Stage[Any]:
        """The pre/post-processing for this backend's ``infer``, once loaded: numpy and OpenCV on
        the host unless the backend overrides it. ``overlay``: for stages that blend where the
        frames are; ``temporal``: the pipeline's smoothing, None for none. Instance models get the
        instance stage (``Backend.infer_instances``' outputs -> instances and their class map)."""
        if self.contract.output.kind == "instances":
            return InstanceStage(self.contract, temporal)
        return CpuStage(self.contract, temporal)

    def warmup(self, runs: int = 2) -> None:
        """Run zeros through the graph so the first real frame does not pay for allocation."""
        shape = expected_input_shape(self.contract, 1)
        dummy = np.zeros(tuple(d or 1 for d in shape), np.float32)
        for _ in range(runs):
            if self.contract.output.kind == "instances":
                self.infer_instances(dummy)
            else:
                self.infer(dummy)

    def infer_instances(self, batch: np.ndarray) -> list[InstanceOutput]:
        """An instance model's ``infer``: the batch checked as ``infer`` checks it, then per frame its
        detections (boxes, labels, scores, masks), timed as one call."""
        if not self._loaded:
            raise BackendError(f"{self.name}: infer_instances() called outside 'with backend:'")
        if self.contract.output.kind != "instances":
            raise BackendError(f"{self.name}: infer_instances() on a model whose output is {self.contract.output.kind}")
        want = expected_input_shape(self.contract, batch.shape[0] if batch.ndim else None)
        if tuple(batch.shape) != want or batch.dtype != np.float32:
            raise BackendError(f"{self.name}: expected float32 batch {want}, got {batch.dtype} {batch.shape}")
        if batch.shape[0] > self.max_batch:
            raise BackendError(f"{self.name}: batch of {batch.shape[0]} exceeds max_batch {self.max_batch}")
        start = time.perf_counter()
        out = self._infer_instances(batch)
        self.last_seconds = time.perf_counter() - start
        if len(out) != batch.shape[0]:
            raise BackendError(f"{self.name}: {batch.shape[0]} frames in, {len(out)} results out")
        n = self.contract.num_classes
        for o in out:
            if o.labels.size and (int(o.labels.max()) >= n or int(o.labels.min()) < 0):
                bad = int(o.labels.max()) if int(o.labels.min()) >= 0 else int(o.labels.min())
                raise class_count_error(self.model, bad, "gave class index")
        return out

    def _infer_instances(self, batch: np.ndarray) -> list[InstanceOutput]:
        """Per frame of a checked batch, the instance graph's outputs (backends with ``supports_instances``)."""
        raise BackendError(f"{self.name}: runs no instance models")

    @overload
    def infer(self, batch: np.ndarray) -> np.ndarray: ...

    @overload
    def infer(self, batch: DeviceTensor) -> DeviceTensor: ...

    def infer(self, batch: np.ndarray | DeviceTensor) -> np.ndarray | DeviceTensor:
        """Check a preprocessed batch against the contract, run it, and time the call. The output is
        where the batch was: numpy for numpy, a device tensor for the device stage's tensor."""
        if not self._loaded:
            raise BackendError(f"{self.name}: infer() called outside 'with backend:'")
        shape = tuple(int(d) for d in batch.shape)
        want = expected_input_shape(self.contract, shape[0] if shape else None)
        if shape != want or str(batch.dtype).rpartition(".")[2] != "float32":  # numpy's or torch's name
            raise BackendError(f"{self.name}: expected float32 batch {want}, got {batch.dtype} {shape}")
        if shape[0] > self.max_batch:
            raise BackendError(f"{self.name}: batch of {shape[0]} exceeds max_batch {self.max_batch}")
        start = time.perf_counter()
        out = self._infer(batch) if isinstance(batch, np.ndarray) else self._infer_device(batch)
        self.last_seconds = time.perf_counter() - start
        if out.shape[0] != shape[0]:
            raise BackendError(f"{self.name}: {shape[0]} frames in, {out.shape[0]} results out")
        self._check_classes(out)
        return out

    def _check_classes(self, out: Any) -> None:
        """The sidecar's class count against what the graph gave, for graphs that do not state it
        (a dynamic class axis, a class map): the first output is warm-up's, so a mismatch the
        graph shows on zeros fails at load; a class index beyond the sidecar fails where it appears."""
        if not isinstance(out, np.ndarray):  # a device tensor: its backend checks the graph at load
            return
        c = self.contract
        if c.output.kind != "class_map":
            axis = 1 if c.input.layout == "NCHW" else 3
            if out.ndim == 4 and out.shape[axis] != c.num_classes:
                raise class_count_error(self.model, out.shape[axis], "gave scores for")
        elif out.size and np.issubdtype(out.dtype, np.integer):
            high, low = int(out.max()), int(out.min())
            if high >= c.num_classes or low < 0:
                raise class_count_error(self.model, high if low >= 0 else low, "gave class index")
