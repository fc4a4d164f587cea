"""The accuracy gate: a freshly built engine goes live only when its class maps agree with ONNX
Runtime's (on the CPU, the reference) on a few frames; a refused engine's sidecar is removed so
it is never reused."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ...contract import LoadedModel
from ...errors import BackendError
from ...postprocess import to_class_maps
from ...scoring import ConfusionMatrix, Scores, scores
from ..base import Backend
from ..onnxruntime import OnnxRuntimeBackend
from .calibration import CalibrationBatches
from .settings import TensorRTConfig

log = logging.getLogger(__package__)


def gate_frames(model: LoadedModel, settings: TensorRTConfig, calibration: CalibrationBatches | None) -> np.ndarray:
    """The frames the gate compares on: the calibration set's first ones for INT8 (what the engine
    will see), else seeded noise in the input's shape."""
    c = model.contract
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((settings.gate_frames, 3, c.input.height, c.input.width)).astype(np.float32)
    if calibration is not None:
        frames = np.concatenate(list(calibration))[: settings.gate_frames]
    return frames


def agreement(engine: Backend, model: LoadedModel, frames: np.ndarray, max_batch: int) -> Scores:
    """Scores of ``engine``'s class maps against ONNX Runtime's on ``frames`` (ONNX Runtime as the truth)."""
    c = model.contract
    cm = ConfusionMatrix(c.num_classes)
    with OnnxRuntimeBackend(model, "cpu", 0, max_batch) as reference:
        for i in range(0, len(frames), max_batch):
            x = frames[i : i + max_batch]
            cm.update(to_class_maps(reference.infer(x), c), to_class_maps(engine.infer(x), c))
    return scores(cm.matrix)


def gate(engine: Backend, engine_path: Path, settings: TensorRTConfig, frames: np.ndarray) -> None:
    """Refuse ``engine`` (BackendError, sidecar removed) below ``settings.min_agreement``."""
    result = agreement(engine, engine.model, frames, engine.max_batch)
    log.info(
        "engine %s vs ONNX Runtime: pixel agreement %.4f, mean IU %.4f",
        engine_path,
        result.pixel_accuracy,
        result.mean_iu,
    )
    if result.pixel_accuracy < settings.min_agreement:
        engine_path.with_suffix(".json").unlink(missing_ok=True)  # never reuse a refused engine
        raise BackendError(
            f"engine {engine_path}: pixel agreement with ONNX Runtime "
            f"{result.pixel_accuracy:.4f} is below tensorrt.min_agreement {settings.min_agreement}"
        )
