"""streamseg/engines.py: engine keys and the rebuild decision, and the engine/sidecar write. No
TensorRT anywhere (INT8 calibration batches: tests/backends/test_tensorrt_calibration.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from streamseg.contract import InputSpec
from streamseg.engines import (
    EngineKey,
    cached_key,
    decide,
    engine_path,
    sidecar_path,
    write_engine,
)
from streamseg.errors import BackendError

KEY = EngineKey(
    onnx_sha256="ab" * 32,
    tensorrt_version="10.7.0.23",
    gpu_name="NVIDIA GeForce RTX 4090",
    compute_capability="8.9",
    precision="fp16",
    min_batch=1,
    opt_batch=4,
    max_batch=4,
    dla_core=None,
)
CHANGED: dict[str, Any] = {
    "onnx_sha256": "cd" * 32,
    "tensorrt_version": "10.8.0.43",
    "gpu_name": "NVIDIA A100-SXM4-40GB",
    "compute_capability": "8.0",
    "precision": "int8",
    "min_batch": 2,
    "opt_batch": 2,
    "max_batch": 8,
    "dla_core": 0,
}
NCHW = InputSpec(name="input", layout="NCHW", height=16, width=24, mean=(10.0, 20.0, 30.0), std=(2.0, 3.0, 4.0))
NHWC = InputSpec(name="input", layout="NHWC", height=16, width=24)


def test_every_key_field_has_a_changed_value() -> None:
    assert set(CHANGED) == {f.name for f in dataclasses.fields(EngineKey)}


def test_differences_name_each_field_with_both_values() -> None:
    assert KEY.differences(KEY) == []
    cached = dataclasses.replace(KEY, precision="fp32", max_batch=2)
    assert KEY.differences(cached) == ["precision: cached 'fp32', needed 'fp16'", "max_batch: cached 2, needed 4"]


def test_decide_builds_without_an_engine_and_uses_a_matching_one(tmp_path: Path) -> None:
    path = engine_path(tmp_path, "m", "fp16", None)
    assert decide(path, KEY, rebuild=True) == "build"
    write_engine(path, b"engine bytes", KEY, 12.34)
    assert decide(path, KEY, rebuild=True) == "use"
    assert decide(path, KEY, rebuild=False) == "use"


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_each_mismatched_field_rebuilds_or_is_refused_by_name(tmp_path: Path, name: str) -> None:
    path = engine_path(tmp_path, "m", "fp16", None)
    write_engine(path, b"engine bytes", KEY, 1.0)
    needed = dataclasses.replace(KEY, **{name: CHANGED[name]})
    assert decide(path, needed, rebuild=True) == "build"
    with pytest.raises(BackendError) as info:
        decide(path, needed, rebuild=False)
    message = str(info.value)
    assert f"{name}: cached {getattr(KEY, name)!r}, needed {CHANGED[name]!r}" in message
    assert "tensorrt.rebuild is false" in message and "streamseg build-engine" in message
    assert message.count("cached") == 1  # only the field that differs


def test_refusal_names_every_differing_field(tmp_path: Path) -> None:
    path = engine_path(tmp_path, "m", "fp16", None)
    write_engine(path, b"x", KEY, 1.0)
    needed = dataclasses.replace(KEY, gpu_name="Orin", compute_capability="8.7")
    with pytest.raises(BackendError, match=r"gpu_name: cached .*; compute_capability: cached '8.9', needed '8.7'"):
        decide(path, needed, rebuild=False)


def test_refusal_without_any_engine(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"no cached engine, and tensorrt\.rebuild is false"):
        decide(tmp_path / "m-fp16.engine", KEY, rebuild=False)


@pytest.mark.parametrize(
    "sidecar",
    [
        None,  # missing
        "not json {",
        "[]",
        json.dumps({"key": {"onnx_sha256": "ab"}}),  # fields missing
        json.dumps({"key": {**dataclasses.asdict(KEY), "surprise": 1}}),  # a field this version does not know
        json.dumps({"bytes": 12}),  # no key
    ],
)
def test_missing_or_corrupt_sidecar_means_build(tmp_path: Path, sidecar: str | None) -> None:
    path = engine_path(tmp_path, "m", "fp16", None)
    write_engine(path, b"engine bytes", KEY, 1.0)
    if sidecar is None:
        sidecar_path(path).unlink()
    else:
        sidecar_path(path).write_text(sidecar)
    assert cached_key(path) is None
    assert decide(path, KEY, rebuild=True) == "build"


def test_sidecar_without_its_engine_means_build(tmp_path: Path) -> None:
    path = engine_path(tmp_path, "m", "fp16", None)
    write_engine(path, b"engine bytes", KEY, 1.0)
    path.unlink()
    assert decide(path, KEY, rebuild=True) == "build"


def test_write_engine_writes_engine_then_sidecar_and_leaves_no_temporaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = engine_path(tmp_path / "engines", "m", "fp16", None)
    order: list[str] = []
    real_replace = Path.replace

    def replace(self: Path, target: Any) -> Path:
        order.append(Path(target).name)
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", replace)
    write_engine(path, b"engine bytes", KEY, 12.34)
    assert order == ["m-fp16.engine", "m-fp16.json"]
    assert path.read_bytes() == b"engine bytes"
    doc = json.loads(sidecar_path(path).read_text())
    assert doc == {"key": dataclasses.asdict(KEY), "build_seconds": 12.3, "bytes": 12}
    assert sorted(p.name for p in path.parent.iterdir()) == ["m-fp16.engine", "m-fp16.json"]
    assert cached_key(path) == KEY


def test_interrupted_rewrite_leaves_no_sidecar_vouching_for_the_new_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Old key A on disk; writing key B dies after the engine is replaced: the old sidecar must be gone,
    or a later run needing A would load B's engine."""
    path = engine_path(tmp_path, "m", "fp16", None)
    write_engine(path, b"engine A", KEY, 1.0)
    new_key = dataclasses.replace(KEY, max_batch=8, opt_batch=8)
    real_write_text = Path.write_text

    def write_text(self: Path, *args: Any, **kwargs: Any) -> int:
        if self.name.endswith(".json.tmp"):
            raise OSError(28, "No space left on device")
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    with pytest.raises(OSError, match="No space left"):
        write_engine(path, b"engine B", new_key, 1.0)
    assert path.read_bytes() == b"engine B"
    assert cached_key(path) is None
    assert decide(path, KEY, rebuild=True) == "build"


@pytest.mark.parametrize(
    ("precision", "dla_core", "name"),
    [
        ("fp16", None, "selfie-fp16.engine"),
        ("int8", None, "selfie-int8.engine"),
        ("fp32", 0, "selfie-fp32-dla0.engine"),
        ("int8", 1, "selfie-int8-dla1.engine"),
    ],
)
def test_engine_path_names_model_precision_and_dla_core(
    tmp_path: Path, precision: str, dla_core: int | None, name: str
) -> None:
    path = engine_path(tmp_path, "selfie", precision, dla_core)
    assert path == tmp_path / name
    assert sidecar_path(path) == tmp_path / name.replace(".engine", ".json")
