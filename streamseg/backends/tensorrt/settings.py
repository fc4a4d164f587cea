"""The ``model.tensorrt:`` settings, shared by the runner, the builder and the accuracy gate."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ...schema import Strict


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
