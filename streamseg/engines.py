"""TensorRT engine cache: keys, sidecars and the rebuild decision. No TensorRT import here.

An engine is only valid for the exact ONNX file, TensorRT version, GPU model and compute
capability, precision, batch profile and DLA core it was built with. Each engine in ``engines/``
has a JSON sidecar holding that key; the key is compared *before* the engine is deserialized,
and a mismatch is rebuilt (or refused when ``rebuild: false``) with the differing fields named.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .errors import BackendError

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
