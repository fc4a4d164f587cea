"""The backends, in one table, and their selection: an explicit ordered list, with the reason each
skipped one was skipped.

Each backend module declares its settings model beside its class (``Backend.options_model``); the
config builds ``model.backend``, ``model.prefer`` and the ``model.<name>:`` sections from this
table. The modules are light: each imports its library (onnxruntime, torch, tensorrt,
tritonclient) only when it loads a model or is asked whether it can run.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..contract import LoadedModel
from ..errors import BackendError
from .base import Backend
from .onnxruntime import OnnxRuntimeBackend
from .tensorrt import TensorRTBackend
from .torch import TorchBackend
from .triton import TritonBackend

if TYPE_CHECKING:
    from ..config import ModelConfig

log = logging.getLogger(__name__)

# name -> class; the order is the one the config's messages list them in.
REGISTRY: dict[str, type[Backend]] = {
    cls.name: cls for cls in (OnnxRuntimeBackend, TensorRTBackend, TorchBackend, TritonBackend)
}
# What `backend: auto` tries when `prefer` is not given (remote backends are never tried).
DEFAULT_ORDER: tuple[str, ...] = ("tensorrt", "torch", "onnxruntime")


def backend_class(name: str) -> type[Backend]:
    if name not in REGISTRY:
        raise BackendError(f"backend '{name}' is not part of this build (have: {', '.join(REGISTRY)})")
    return REGISTRY[name]


def select_backend(
    choice: str,
    prefer: list[str],
    model: LoadedModel,
    device: str = "auto",
    threads: int = 0,
    max_batch: int = 1,
    settings: ModelConfig | None = None,
) -> Backend:
    """Instantiate the chosen backend, or for 'auto' the first available one in ``prefer``; it
    receives its own section of ``settings`` (``model.tensorrt`` for tensorrt, ...) as its options.

    With ``device: auto``, GPU-capable backends are tried on the GPU first; only when none of the
    list can run does a second pass accept the CPU (so a torch checkpoint still runs on a laptop,
    but never ahead of ONNX Runtime when both could).
    """
    names = [choice] if choice != "auto" else list(prefer)
    reasons: dict[str, str] = {}
    for name in names:
        if name not in REGISTRY:
            reasons[name] = "not part of this build"
            log.info("backend %s skipped: not part of this build", name)
    passes = [device, "cpu"] if device == "auto" else [device]
    for attempt in passes:
        for name in (n for n in names if n in REGISTRY):
            cls = backend_class(name)
            why = cls.model_unsupported_reason(model) or cls.unavailable_reason(attempt)
            if model.contract.output.kind == "instances" and not cls.supports_instances:
                why = "runs no instance models (output.kind instances)"
            if why is None:
                log.info("backend %s selected%s", name, " (CPU fallback)" if attempt != device else "")
                options: Any = settings.options(name) if settings is not None else None
                return cls(model, device=attempt, threads=threads, max_batch=max_batch, options=options)
            if reasons.get(name, why) != why:
                why = f"{reasons[name]}; on cpu: {why}"
            reasons[name] = why
            log.info("backend %s skipped%s: %s", name, " on cpu" if attempt != device else "", why)
    raise BackendError("no usable backend: " + "; ".join(f"{n}: {w}" for n, w in reasons.items()))
