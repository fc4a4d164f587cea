"""ONNX Runtime backend: CPU everywhere, CUDA execution provider where onnxruntime-gpu has one.

The only module that imports onnxruntime.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .._deps import require
from ..contract import TensorInfo
from ..errors import BackendError, MissingDependencyError, ModelError
from ..instances import InstanceOutput
from .base import Backend, RuntimeInfo

log = logging.getLogger(__name__)

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(uint8)": "uint8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
}


def _ort() -> Any:
    return require("onnxruntime", None, "the onnxruntime backend")  # a base dependency


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    supports_instances = True

    @classmethod
    def unavailable_reason(cls, device: str) -> str | None:
        try:
            ort = _ort()
        except MissingDependencyError as e:
            return str(e)
        if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            return "onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu)"
        return None

    @classmethod
    def model_unsupported_reason(cls, model: Any) -> str | None:
        return None if model.onnx_path is not None else "the model has no ONNX file"

    def _load(self) -> tuple[list[TensorInfo], list[TensorInfo]]:
        ort = _ort()
        if self.model.onnx_path is None:
            raise ModelError(f"{self.model.sidecar}: onnx: the onnxruntime backend needs an ONNX file")
        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = self.threads
        # Idle intra-op workers spin-wait by default and take the core that decoding and encoding
        # need; measured on 2 cores: 141 -> ~200 pipeline FPS with spinning off (docs/benchmarks.md).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.contract.output.kind == "instances":
            # Mask R-CNN's graph pastes K masks in a loop whose shapes ONNX Runtime warns about on
            # every frame (declared 1, actual K): errors only
            opts.log_severity_level = 3
        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if self.device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self._session = ort.InferenceSession(str(self.model.onnx_path), opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own untyped errors for bad graphs
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"{self.model.onnx_path}: onnxruntime cannot load it: {first}") from None
        self._providers = self._session.get_providers()
        self._out_name = self.contract.output.name
        self._in_name = self.contract.input.name

        def info(args: list[Any]) -> list[TensorInfo]:
            return [
                TensorInfo(
                    a.name, tuple(d if isinstance(d, int) else None for d in a.shape), _ORT_TYPES.get(a.type, a.type)
                )
                for a in args
            ]

        outputs = info(self._session.get_outputs())
        if self.contract.output.kind == "class_map":
            classes = graph_class_count(self.model.onnx_path, self._out_name)
            outputs = [
                TensorInfo(o.name, o.shape, o.dtype, classes if o.name == self._out_name else None) for o in outputs
            ]
        return info(self._session.get_inputs()), outputs

    @property
    def description(self) -> str:
        return f"onnxruntime ({', '.join(getattr(self, '_providers', []))})"

    @property
    def runtime(self) -> RuntimeInfo:
        # The first provider runs every node it supports; CPU takes only what it leaves over.
        first = (getattr(self, "_providers", None) or ["CPUExecutionProvider"])[0]
        device = "cuda" if first in ("CUDAExecutionProvider", "TensorrtExecutionProvider") else "cpu"
        return RuntimeInfo(device, first, "fp32")  # the graph as exported: float32 in and out

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        try:
            (out,) = self._session.run([self._out_name], {self._in_name: batch})
        except Exception as e:  # onnxruntime's errors are untyped
            raise BackendError(f"onnxruntime failed on a batch of {batch.shape[0]}: {str(e).splitlines()[0]}") from None
        return np.asarray(out)

    def _infer_instances(self, batch: np.ndarray) -> list[InstanceOutput]:
        o = self.contract.output
        names = [o.boxes, o.labels, o.scores, o.name]
        out = []
        for i in range(batch.shape[0]):  # an instance graph takes one image
            try:
                boxes, labels, scores, masks = self._session.run(names, {self._in_name: batch[i : i + 1]})
            except Exception as e:  # onnxruntime's errors are untyped
                raise BackendError(f"onnxruntime failed on an image: {str(e).splitlines()[0]}") from None
            try:
                out.append(InstanceOutput(np.asarray(boxes), np.asarray(labels), np.asarray(scores), np.asarray(masks)))
            except ValueError as e:
                raise BackendError(f"{self.model.onnx_path}: {e}") from None
        return out

    def _close(self) -> None:
        self._session = None


# Ops a class map passes through unchanged in count, and ops whose output is a yes/no mask.
_PASS_THROUGH = {"Identity", "Cast", "Squeeze", "Unsqueeze", "Reshape", "Flatten", "Transpose", "Resize", "Upsample"}
_BOOLEAN = {"Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Equal", "Not", "And", "Or", "Xor"}


def graph_class_count(onnx_path: Any, output: str) -> int | None:
    """How many classes a class-map output picks from, where the graph states it: the class axis
    of the ArgMax that makes it, or 2 for a thresholded mask. None when the graph does not say, or
    when the ``onnx`` package (which reads graphs; onnxruntime does not expose them) is missing."""
    try:
        import onnx
        from onnx import shape_inference
    except ImportError:
        log.debug("onnx is not installed: class count of %s checked on the first output only", onnx_path)
        return None
    try:
        model = onnx.load(str(onnx_path))
        producer = {o: n for n in model.graph.node for o in n.output}
        name, node = output, producer.get(output)
        while node is not None and node.op_type in _PASS_THROUGH and node.input:
            name = node.input[0]
            node = producer.get(name)
        if node is None:
            return None
        if node.op_type in _BOOLEAN:
            return 2
        if node.op_type not in ("ArgMax", "ArgMin"):
            return None
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        graph = shape_inference.infer_shapes(model).graph
        for v in (*graph.value_info, *graph.input, *graph.output):
            if v.name == node.input[0]:
                dims = v.type.tensor_type.shape.dim
                if dims and -len(dims) <= axis < len(dims) and dims[axis].HasField("dim_value"):
                    return int(dims[axis].dim_value)
        return None
    except Exception as e:  # a graph onnx cannot read was loaded by onnxruntime: trust the first output
        log.debug("class count of %s not read from the graph: %s", onnx_path, e)
        return None


def providers() -> list[str]:
    """Execution providers this onnxruntime build offers (for `streamseg doctor`)."""
    return list(_ort().get_available_providers())
