"""TensorRT: the only package that imports ``tensorrt`` (lazily, in ``build.import_tensorrt``).

``runner`` is the backend (engine key, cache, inference on two CUDA streams); ``build`` turns an
ONNX file into an engine; ``calibration`` feeds INT8 calibration; ``gate`` compares a new engine
with ONNX Runtime before it goes live; ``settings`` is the ``model.tensorrt:`` section.
"""

from __future__ import annotations

from .build import build_engine, driver_missing_reason
from .calibration import CalibrationBatches
from .runner import TensorRTBackend
from .settings import CalibrationConfig, TensorRTConfig

__all__ = [
    "CalibrationBatches",
    "CalibrationConfig",
    "TensorRTBackend",
    "TensorRTConfig",
    "build_engine",
    "driver_missing_reason",
]
