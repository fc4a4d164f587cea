"""Backend selection: an explicit ordered list, with the reason each skipped one was skipped.

Backends are named here and imported only when chosen, so listing them costs nothing.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from ..contract import LoadedModel
from ..errors import BackendError
from .base import Backend

log = logging.getLogger(__name__)

# name -> (module, class). The TensorRT and torch backends plug in here.
REGISTRY: dict[str, tuple[str, str]] = {
    "onnxruntime": ("streamseg.backends.onnxruntime", "OnnxRuntimeBackend"),
    "torch": ("streamseg.backends.torch", "TorchBackend"),
    "tensorrt": ("streamseg.backends.tensorrt", "TensorRTBackend"),
    # Remote: only when `backend: triton` names it (never in `prefer`; a server needs its URL).
    "triton": ("streamseg.backends.triton", "TritonBackend"),
}


def backend_class(name: str) -> type[Backend]:
    if name not in REGISTRY:
        raise BackendError(f"backend '{name}' is not part of this build (have: {', '.join(REGISTRY)})")
    module, cls = REGISTRY[name]
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def select_backend(
    choice: str,
    prefer: list[str],
    model: LoadedModel,
    device: str = "auto",
    threads: int = 0,
    max_batch: int = 1,
    options: dict[str, Any] | None = None,
) -> Backend:
    """Instantiate the chosen backend, or for 'auto' the first available one in ``prefer``.

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
            if why is None:
                log.info("backend %s selected%s", name, " (CPU fallback)" if attempt != device else "")
                return cls(
                    model, device=attempt, threads=threads, max_batch=max_batch, options=(options or {}).get(name)
                )
            if reasons.get(name, why) != why:
                why = f"{reasons[name]}; on cpu: {why}"
            reasons[name] = why
            log.info("backend %s skipped%s: %s", name, " on cpu" if attempt != device else "", why)
    raise BackendError("no usable backend: " + "; ".join(f"{n}: {w}" for n, w in reasons.items()))
