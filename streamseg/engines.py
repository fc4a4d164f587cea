"""TensorRT engine cache: keys, sidecars and the rebuild decision. No TensorRT import here.

An engine is only valid for the exact ONNX file, TensorRT version, GPU model and compute
capability, precision, batch profile and DLA core it was built with. Each engine in ``engines/``
has a JSON sidecar holding that key; the key is compared *before* the engine is deserialized,
and a mismatch is rebuilt (or refused when ``rebuild: false``) with the differing fields named.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import cv2
import numpy as np

from .contract import InputSpec
from .errors import BackendError, ConfigError
from .preprocess import preprocess
from .progress import Steps

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EngineKey:
    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "9.0"
    precision: str  # fp32 | fp16 | int8
    min_batch: int
    opt_batch: int
    max_batch: int
    dla_core: int | None = None

    def differences(self, other: EngineKey) -> list[str]:
        """Fields that differ, as 'field: cached X, needed Y'."""
        return [
            f"{f.name}: cached {getattr(other, f.name)!r}, needed {getattr(self, f.name)!r}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]


def engine_path(cache_dir: Path, model_name: str, precision: str, dla_core: int | None) -> Path:
    """One file per model, precision and DLA core: a changed key rebuilds it in place."""
    dla = f"-dla{dla_core}" if dla_core is not None else ""
    return cache_dir / f"{model_name}-{precision}{dla}.engine"


def sidecar_path(engine: Path) -> Path:
    return engine.with_suffix(".json")


def write_engine(engine: Path, blob: bytes, key: EngineKey, build_seconds: float) -> None:
    """Old sidecar out, engine in, new sidecar last (each step atomic): a sidecar only ever vouches
    for the engine it was written with, never for a torn one or for its replacement."""
    engine.parent.mkdir(parents=True, exist_ok=True)
    sidecar_path(engine).unlink(missing_ok=True)
    tmp = engine.with_suffix(".engine.tmp")
    tmp.write_bytes(blob)
    tmp.replace(engine)
    side = sidecar_path(engine)
    tmp_side = side.with_suffix(".json.tmp")
    tmp_side.write_text(
        json.dumps({"key": asdict(key), "build_seconds": round(build_seconds, 1), "bytes": len(blob)}, indent=2) + "\n"
    )
    tmp_side.replace(side)


def cached_key(engine: Path) -> EngineKey | None:
    """The key an engine was built with, or None when the engine or its sidecar is missing/unreadable."""
    side = sidecar_path(engine)
    if not engine.is_file() or not side.is_file():
        return None
    try:
        return EngineKey(**json.loads(side.read_text())["key"])
    except (ValueError, KeyError, TypeError):
        return None


def decide(engine: Path, needed: EngineKey, rebuild: bool) -> str:
    """'use' the cached engine or 'build' a new one; raise BackendError if building is not allowed."""
    cached = cached_key(engine)
    if cached == needed:
        return "use"
    reason = "no cached engine" if cached is None else "; ".join(needed.differences(cached))
    if not rebuild:
        raise BackendError(
            f"engine {engine}: {reason}, and tensorrt.rebuild is false: build it with "
            f"`streamseg build-engine` on this machine"
        )
    log.info("engine %s: building it: %s", engine, reason)
    return "build"


_KEY = "model.tensorrt.calibration"


class CalibrationBatches:
    """INT8 calibration input: preprocessed float32 batches of exactly ``batch`` frames.

    TensorRT asks for full batches; a last partial batch is dropped (calibration statistics do
    not need every frame, and padding would bias them toward the padding).
    """

    def __init__(self, images: list[np.ndarray], spec: InputSpec, batch: int) -> None:
        # Bad calibration data is a configuration error (exit 2), named by its key, not a backend failure.
        if batch < 1:
            raise ConfigError(f"{_KEY}.batch: must be >= 1, got {batch}")
        if len(images) < batch:
            raise ConfigError(f"{_KEY}.data: INT8 calibration needs at least {batch} frames, got {len(images)}")
        self.images, self.spec, self.batch = images, spec, batch

    def __len__(self) -> int:
        return len(self.images) // self.batch

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """The shape of every batch: the input spec's layout at ``batch`` frames."""
        s = self.spec
        return (self.batch, 3, s.height, s.width) if s.layout == "NCHW" else (self.batch, s.height, s.width, 3)

    def __iter__(self) -> Iterator[np.ndarray]:
        # TensorRT pulls these while it calibrates: the bar (or 5 % log lines) shows how far it got.
        with Steps(len(self) * self.batch, "INT8 calibration", "frame", log) as steps:
            for i in range(len(self)):
                yield preprocess(self.images[i * self.batch : (i + 1) * self.batch], self.spec)
                steps.update(self.batch)

    @classmethod
    def from_folder(cls, folder: Path, spec: InputSpec, batch: int, limit: int = 500) -> CalibrationBatches:
        try:
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))
        except OSError as e:
            raise ConfigError(f"{_KEY}.data: INT8 calibration: cannot list {folder}: {e.strerror}") from None
        images: list[np.ndarray] = []
        for path in files:  # ``limit`` counts frames read, not files: an unreadable one is skipped
            if len(images) >= limit:
                break
            if (img := cv2.imread(str(path), cv2.IMREAD_COLOR)) is not None:
                images.append(img)
        if not images:
            raise ConfigError(f"{_KEY}.data: INT8 calibration: no readable images in {folder}")
        return cls(images, spec, batch)

    @classmethod
    def from_video(cls, uri: str, spec: InputSpec, batch: int, limit: int = 500) -> CalibrationBatches:
        from .media import VideoInput, describe_error
        from .uri import redact

        try:
            video = VideoInput(uri, timeout=(10.0, 10.0))
        except Exception as e:  # FFmpeg errors of every kind
            why = describe_error(e)
            raise ConfigError(f"{_KEY}.data: INT8 calibration: cannot open {redact(uri)}: {why}") from None
        images = []
        try:
            for image, _ in video.frames():
                images.append(image)
                if len(images) >= limit:
                    break
        finally:
            video.close()
        return cls(images, spec, batch)
