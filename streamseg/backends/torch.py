"""torch backend: zoo checkpoints (``streamseg train``) or TorchScript files, on CPU or CUDA.

The argmax runs inside the backend, on the device, so only a uint8 class map crosses back. On
CUDA: channels-last memory, optional FP16 autocast and optional CUDA graphs for a fixed batch, and
its stage is ``gpu.TorchStage``: frames preprocessed on the GPU, ``infer`` takes and returns device
tensors, class maps, histograms and blend are computed there. torch itself is imported only
through ``streamseg.models._torch``.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import Field

from ..contract import TensorInfo
from ..errors import BackendError, ModelError
from ..schema import Strict
from ..stages import OverlaySpec, Stage
from .base import Backend, DeviceTensor, RuntimeInfo

if TYPE_CHECKING:
    from ..temporal import TemporalFilter


class TorchConfig(Strict):
    fp16: bool = Field(True, description="CUDA: FP16 autocast (labels checked against FP32 in the GPU tests)")
    cuda_graphs: bool = Field(
        False, description="CUDA: capture one CUDA graph per batch size and replay it (fixed shapes only)"
    )


def _cuda_available() -> bool:
    from ..models._torch import torch

    return bool(torch.cuda.is_available())


class TorchBackend(Backend):
    name = "torch"
    options_model: ClassVar[type[Strict] | None] = TorchConfig
    options_description: ClassVar[str] = "torch backend settings"

    @property
    def fp16(self) -> bool:
        return bool(getattr(self.options, "fp16", True))

    @property
    def cuda_graphs(self) -> bool:
        return bool(getattr(self.options, "cuda_graphs", False))

    @classmethod
    def unavailable_reason(cls, device: str) -> str | None:
        if importlib.util.find_spec("torch") is None:
            return "torch is not installed (pip install 'streamseg[torch]')"
        if device == "cpu":
            return None
        if not _cuda_available():
            if device == "cuda":
                return "torch sees no CUDA device"
            # On CPU, ONNX Runtime runs these graphs about twice as fast; ask for device: cpu to insist.
            return "no CUDA device (set model.device: cpu to run torch on the CPU)"
        return None

    @classmethod
    def model_unsupported_reason(cls, model: Any) -> str | None:
        if model.checkpoint_path is None:
            return "the model has no checkpoint (ONNX only)"
        return None

    def _load(self) -> tuple[list[TensorInfo], list[TensorInfo]]:
        from ..models._torch import torch

        path = self.model.checkpoint_path
        if path is None:
            raise ModelError(f"{self.model.sidecar}: checkpoint: the torch backend needs a checkpoint")
        use_cuda = self.device in ("auto", "cuda") and torch.cuda.is_available()
        self._device = torch.device("cuda" if use_cuda else "cpu")
        if self.threads and not use_cuda:
            torch.set_num_threads(self.threads)
        net = self._load_module(path)
        net = net.eval().to(self._device)
        if use_cuda:
            net = net.to(memory_format=torch.channels_last)
        self._net = net
        self._graphs: dict[int, tuple[Any, Any, Any]] = {}
        c = self.contract
        # Run one batch to learn what the module really returns (a TorchScript file has no
        # declared shapes), then report it the way an ONNX graph would.
        from ..contract import expected_input_shape

        in_shape = expected_input_shape(c, 1)
        dummy = torch.zeros(tuple(d or 1 for d in in_shape), device=self._device)
        with torch.inference_mode():
            out = self._forward(dummy)
        self._class_axis = 1 if c.input.layout == "NCHW" else out.ndim - 1
        classes = int(out.shape[self._class_axis])
        if classes != c.num_classes:
            raise ModelError(
                f"{self.model.sidecar}: classes: sidecar lists {c.num_classes}, {path.name} outputs {classes}"
            )
        inputs = [TensorInfo(c.input.name, (None, *in_shape[1:]), "float32")]
        # The sidecar decides what this backend returns: a uint8 class map (argmax on the device,
        # 1 byte per pixel back) or the module's logits/probabilities as they are.
        if c.output.kind == "class_map":
            spatial = tuple(int(d) for i, d in enumerate(out.shape) if i not in (0, self._class_axis))
            outputs = [TensorInfo(c.output.name, (None, *spatial), "uint8")]
        else:
            outputs = [TensorInfo(c.output.name, (None, *(int(d) for d in out.shape[1:])), "float32")]
        return inputs, outputs

    def _load_module(self, path: Any) -> Any:
        from ..models._torch import torch

        try:
            return torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        except (RuntimeError, ValueError):
            pass  # not TorchScript: a zoo checkpoint
        from ..models.checkpoint import load_network

        return load_network(path)[0]

    def _forward(self, x: Any) -> Any:
        from ..models._torch import torch

        if self._device.type == "cuda" and self.fp16:
            with torch.autocast("cuda", dtype=torch.float16):
                out = self._net(x)
        else:
            out = self._net(x)
        return out[0] if isinstance(out, tuple) else out

    @property
    def description(self) -> str:
        dev = getattr(self, "_device", None)
        return f"torch ({dev}{', fp16' if dev is not None and dev.type == 'cuda' and self.fp16 else ''})"

    @property
    def runtime(self) -> RuntimeInfo:
        dev = getattr(self, "_device", None)
        cuda = dev is not None and dev.type == "cuda"
        mode = "cuda_graphs" if cuda and self.cuda_graphs else "eager"
        return RuntimeInfo("cuda" if cuda else "cpu", mode, "fp16" if cuda and self.fp16 else "fp32")

    def stage(self, overlay: OverlaySpec | None = None, temporal: TemporalFilter | None = None) -> Stage[Any]:
        """On CUDA the GPU stage, whose device tensors this backend takes and returns; else the CPU one."""
        if self._device.type != "cuda":
            return super().stage(overlay, temporal)
        from ..gpu import TorchStage

        return TorchStage(self._device, self.contract, overlay, temporal)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        from ..models._torch import torch

        out = self._run(torch.from_numpy(batch))
        return np.asarray((out if out.dtype == torch.uint8 else out.float()).cpu().numpy())

    def _infer_device(self, batch: DeviceTensor) -> DeviceTensor:
        out: DeviceTensor = self._run(batch)  # stays on the device, for the stage's postprocess
        return out

    def _run(self, batch: Any) -> Any:
        """The contract's output for a batch (a torch tensor anywhere), on this backend's device: a
        uint8 class map (argmax here) for class-map models, the module's scores otherwise."""
        from ..models._torch import torch

        try:
            with torch.inference_mode():
                x = batch.to(self._device, non_blocking=True)
                if self._device.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                if self.contract.output.kind != "class_map":
                    return self._forward(x)
                if self.cuda_graphs and self._device.type == "cuda":
                    return self._replay(x)
                return self._forward(x).argmax(dim=self._class_axis).to(torch.uint8)
        except RuntimeError as e:
            raise BackendError(f"torch failed on a batch of {batch.shape[0]}: {str(e).splitlines()[0]}") from None

    def _replay(self, x: Any) -> Any:
        """Run through a CUDA graph captured once per batch size: one launch instead of hundreds,
        which matters for small networks at small batches. Shapes are fixed per graph."""
        from ..models._torch import torch

        n = int(x.shape[0])
        if n not in self._graphs:
            static_in = x.clone()
            side = torch.cuda.Stream()  # type: ignore[no-untyped-call]
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm up outside the capture, as CUDA graphs require
                for _ in range(3):
                    self._forward(static_in)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._forward(static_in).argmax(dim=self._class_axis).to(torch.uint8)
            self._graphs[n] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[n]
        static_in.copy_(x)
        graph.replay()
        return static_out.clone()

    def _close(self) -> None:
        self._graphs = {}
        self._net = None
