"""streamseg/contract.py: a model's sidecar is checked at load, against its file and its graph."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamseg.backends.onnxruntime import OnnxRuntimeBackend
from streamseg.contract import (
    MODEL_PATH_ENV,
    MODELS_DIR,
    LoadedModel,
    bundled_models,
    expected_input_shape,
    load_model,
    resolve_model,
    sha256_file,
)
from streamseg.errors import ModelError


def test_bundled_selfie_model_loads_and_its_hash_matches() -> None:
    model = load_model("selfie_landscape")
    c = model.contract
    assert c.class_names == ["background", "person"]
    assert (c.input.layout, c.input.height, c.input.width, c.output.kind) == ("NHWC", 144, 256, "class_map")
    assert sha256_file(model.onnx_path) == c.sha256
    assert model.sidecar in bundled_models()


def test_bundled_selfie_model_matches_its_graph() -> None:
    model = load_model("selfie_landscape")
    with OnnxRuntimeBackend(model, device="cpu") as backend:
        out = backend.infer(np.zeros((1, 144, 256, 3), np.float32))
    assert out.shape[0] == 1
    assert set(np.unique(out)) <= {0, 1}


@pytest.fixture
def selfie_copy(tmp_path: Path) -> Path:
    """The bundled model folder copied to tmp_path; returns the sidecar."""
    folder = tmp_path / "selfie"
    shutil.copytree(MODELS_DIR / "selfie_landscape", folder)
    return folder / "selfie_landscape.json"


def test_bundled_model_resolves_by_name_from_any_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # package data, not a path relative to the checkout
    assert resolve_model("selfie_landscape") == MODELS_DIR / "selfie_landscape" / "selfie_landscape.json"
    assert MODELS_DIR.parent.name == "streamseg"


def test_model_path_env_adds_folders_searched_by_name(
    selfie_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = tmp_path / "extra"
    folder = extra / "mine"
    folder.mkdir(parents=True)
    shutil.copy(selfie_copy.with_suffix(".onnx"), folder / "selfie_landscape.onnx")
    shutil.copy(selfie_copy, folder / "mine.json")
    with pytest.raises(ModelError, match="no bundled model of that name"):
        resolve_model("mine")
    monkeypatch.setenv(MODEL_PATH_ENV, f"{tmp_path / 'missing'}:{extra}")
    assert resolve_model("mine") == folder / "mine.json"
    assert load_model("mine").onnx_path == (folder / "selfie_landscape.onnx").resolve()
    assert resolve_model("selfie_landscape").parent.parent == MODELS_DIR  # the bundled ones stay found


def test_resolve_by_sidecar_and_by_onnx_path(selfie_copy: Path) -> None:
    assert resolve_model(str(selfie_copy)) == selfie_copy
    assert resolve_model(str(selfie_copy.with_suffix(".onnx"))) == selfie_copy


def test_corrupt_onnx_fails_the_sha256_check(selfie_copy: Path) -> None:
    onnx_file = selfie_copy.with_suffix(".onnx")
    data = bytearray(onnx_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx_file.write_bytes(bytes(data))
    with pytest.raises(ModelError) as info:
        load_model(str(selfie_copy))
    assert f"{selfie_copy}: sha256: selfie_landscape.onnx has" in str(info.value)
    assert load_model(str(selfie_copy), verify_hash=False).onnx_path == onnx_file.resolve()


def _edit(sidecar: Path, change: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(sidecar.read_text())
    change(doc)
    sidecar.write_text(json.dumps(doc))


# (name, change to the sidecar document, message fragment after "<sidecar>: ")
SIDECAR_ERRORS = [
    ("unknown top-level key", lambda d: d.update(labels=[]), "labels: unknown key"),
    ("unknown nested key", lambda d: d["input"].update(scale=1), "input.scale: unknown key"),
    ("missing key", lambda d: d.pop("output"), "output: Field required"),
    ("bad layout", lambda d: d["input"].update(layout="CHW"), "input.layout: Input should be 'NCHW' or 'NHWC'"),
    ("zero std", lambda d: d["input"].update(std=[1, 0, 1]), "input: Value error, std must not contain 0"),
    ("no classes", lambda d: d.update(classes=[]), "classes: List should have at least 1 item"),
    ("bad output kind", lambda d: d["output"].update(kind="boxes"), "output.kind: Input should be"),
    ("missing onnx file", lambda d: d.update(onnx="gone.onnx"), "onnx: file "),
]


@pytest.mark.parametrize(("change", "fragment"), [e[1:] for e in SIDECAR_ERRORS], ids=[e[0] for e in SIDECAR_ERRORS])
def test_bad_sidecar(selfie_copy: Path, change: Callable[[dict[str, Any]], None], fragment: str) -> None:
    _edit(selfie_copy, change)
    with pytest.raises(ModelError) as info:
        load_model(str(selfie_copy))
    assert str(info.value).startswith(f"{selfie_copy}: {fragment}"), str(info.value)


def test_missing_onnx_file_is_named(selfie_copy: Path) -> None:
    onnx_file = selfie_copy.with_suffix(".onnx")
    onnx_file.unlink()
    with pytest.raises(ModelError, match=f"onnx: file {onnx_file} does not exist"):
        load_model(str(selfie_copy))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("{not json", "cannot read sidecar"), ("[]", "(top level): Input should be a valid dictionary")],
)
def test_unreadable_sidecar(selfie_copy: Path, text: str, fragment: str) -> None:
    selfie_copy.write_text(text)
    with pytest.raises(ModelError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_model(str(selfie_copy))


def test_yaml_sidecar(selfie_copy: Path) -> None:
    import yaml

    yaml_sidecar = selfie_copy.with_suffix(".yaml")
    yaml_sidecar.write_text(yaml.safe_dump(json.loads(selfie_copy.read_text())))
    assert load_model(str(yaml_sidecar)).contract.name == "selfie_landscape"


@pytest.mark.parametrize(
    ("ref", "fragment"),
    [
        ("no_such_model", "model 'no_such_model': no such file and no bundled model of that name"),
        ("elsewhere/x.onnx", r"elsewhere/x.onnx: no sidecar beside the .*\(expected elsewhere/x.json\)"),
    ],
)
def test_unresolvable_model(ref: str, fragment: str) -> None:
    with pytest.raises(ModelError, match=fragment):
        load_model(ref)


@pytest.mark.parametrize(
    ("graph", "out_shape"),
    [
        ({}, (2, 3, 8, 12)),
        ({"layout": "NHWC"}, (2, 8, 12, 3)),
        ({"kind": "class_map"}, (2, 8, 12)),
        ({"kind": "class_map", "layout": "NHWC", "height": 5, "width": 7}, (2, 5, 7)),
    ],
)
def test_a_matching_tiny_model_loads(
    make_model: Callable[..., LoadedModel], graph: dict[str, Any], out_shape: tuple[int, ...]
) -> None:
    model = make_model(graph)
    with OnnxRuntimeBackend(model, device="cpu", max_batch=2) as backend:
        out = backend.infer(np.zeros(expected_input_shape(model.contract, 2), np.float32))
    assert out.shape == out_shape


# (name, what the graph is, what the sidecar claims instead, field named, message fragment)
MISMATCHES = [
    (
        "input size",
        {"height": 16, "width": 16},
        {"input.height": 8, "input.width": 12},
        "input",
        "sidecar says NCHW 8x12 (shape (N,3,8,12))",
    ),
    ("layout", {}, {"input.layout": "NHWC"}, "input", "sidecar says NHWC 8x12 (shape (N,8,12,3))"),
    ("input name", {}, {"input.name": "pixels"}, "input.name", "graph has no input 'pixels' (has ['input'])"),
    ("input dtype", {"kind": "uint8_input"}, {}, "input", "graph input 'input' is uint8, expected float32"),
    ("output name", {}, {"output.name": "logits"}, "output.name", "graph has no output 'logits' (has ['scores'])"),
    (
        "class count",
        {"classes": 4},
        {"classes": [{"name": "a", "color": [0, 0, 0]}] * 3},
        "classes",
        "the sidecar names 3 (a, a, a), the graph's output 'scores' has a class axis of 4",
    ),
    ("class_map as float", {"kind": "class_map_float"}, {}, "output", "is float32 (N,8,12)"),
    ("class_map claimed for logits", {}, {"output.kind": "class_map"}, "output", "kind class_map needs an integer"),
    ("logits claimed for class_map", {"kind": "class_map"}, {"output.kind": "logits"}, "output", "is int64 (N,8,12)"),
]


@pytest.mark.parametrize(
    ("graph", "sidecar", "field", "fragment"), [m[1:] for m in MISMATCHES], ids=[m[0] for m in MISMATCHES]
)
def test_graph_mismatch_fails_at_load(
    make_model: Callable[..., LoadedModel], graph: dict[str, Any], sidecar: dict[str, Any], field: str, fragment: str
) -> None:
    model = make_model(graph, sidecar)
    backend = OnnxRuntimeBackend(model, device="cpu")
    with pytest.raises(ModelError) as info, backend:
        pytest.fail("the backend loaded a model that does not match its sidecar")
    message = str(info.value)
    assert message.startswith(f"{model.sidecar}: {field}: "), message
    assert fragment in message


def test_unloadable_onnx_is_a_model_error(make_model: Callable[..., LoadedModel]) -> None:
    model = make_model()
    model.onnx_path.write_bytes(b"not a protobuf")
    with pytest.raises(ModelError, match="onnxruntime cannot load it"), OnnxRuntimeBackend(model, device="cpu"):
        pytest.fail("loaded garbage")


# --- issue 9, item 11: the class count is checked against the graph at load, else its first output --


def _bundled_with_classes(tmp_path: Path, count: int) -> LoadedModel:
    """The bundled model (by name) copied, its sidecar naming ``count`` classes."""
    folder = tmp_path / "selfie_classes"
    shutil.copytree(load_model("selfie_landscape").sidecar.parent, folder)
    sidecar = next(folder.glob("*.json"))
    doc = json.loads(sidecar.read_text())
    doc["classes"] = [{"name": n, "color": [9 * i, 0, 0]} for i, n in enumerate(["background", "person", "ghost"])][
        :count
    ]
    sidecar.write_text(json.dumps(doc))
    return load_model(str(sidecar))


@pytest.mark.parametrize("count", [1, 3])
def test_thresholded_class_map_states_two_classes(tmp_path: Path, count: int) -> None:
    model = _bundled_with_classes(tmp_path, count)
    with pytest.raises(ModelError) as info, OnnxRuntimeBackend(model, device="cpu"):
        pytest.fail("a 2-class graph loaded with a sidecar of another class count")
    assert str(info.value).startswith(f"{model.sidecar}: classes: the sidecar names {count} (background")
    assert "the graph's output 'classmap' picks from 2" in str(info.value)


def test_argmax_class_map_states_its_classes(make_model: Callable[..., LoadedModel]) -> None:
    model = make_model(
        {"kind": "class_map", "classes": 2}, {"classes": [{"name": f"k{i}", "color": [i, 0, 0]} for i in range(3)]}
    )
    match = r": classes: the sidecar names 3 \(k0, k1, k2\), .* picks from 2$"
    with pytest.raises(ModelError, match=match), OnnxRuntimeBackend(model, device="cpu"):
        pytest.fail("a 2-class graph loaded with a 3-class sidecar")


def test_dynamic_class_axis_is_checked_on_the_first_output(make_model: Callable[..., LoadedModel]) -> None:
    # A graph whose class axis is dynamic (ONNX Runtime's own shape inference states the tiny
    # graph's, so a backend reporting None stands in for one): warm-up's output decides, at load.
    from streamseg.backends.base import Backend
    from streamseg.contract import TensorInfo

    model = make_model({"classes": 2})

    class ThreeScores(Backend):
        name = "three"

        @classmethod
        def unavailable_reason(cls, device: str) -> str | None:
            return None

        def _load(self) -> tuple[list[TensorInfo], list[TensorInfo]]:
            return [TensorInfo("input", (None, 3, 8, 12), "float32")], [
                TensorInfo("scores", (None, None, 8, 12), "float32")
            ]

        def _infer(self, batch: np.ndarray) -> np.ndarray:
            return np.zeros((batch.shape[0], 3, 8, 12), np.float32)

    with pytest.raises(ModelError) as info, ThreeScores(model):
        pytest.fail("a 3-class output loaded with a 2-class sidecar")
    assert (
        str(info.value)
        == f"{model.sidecar}: classes: the sidecar names 2 (c0, c1), the graph's output 'scores' gave scores for 3"
    )


def test_class_index_beyond_the_sidecar_names_file_and_field(
    make_model: Callable[..., LoadedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A class map whose graph does not state its classes (as without the onnx package): warm-up's
    # zeros give class 0, the first real frame class 1 of a 1-class sidecar.
    import streamseg.backends.onnxruntime as ort_backend

    monkeypatch.setattr(ort_backend, "graph_class_count", lambda *_: None)
    model = make_model({"kind": "class_map", "classes": 2}, {"classes": [{"name": "only", "color": [0, 0, 0]}]})
    with OnnxRuntimeBackend(model, device="cpu") as backend:
        x = np.zeros((1, 3, 8, 12), np.float32)
        x[:, 0] = 1.0  # the tiny graph's class 1 wins where channel 0 is positive
        with pytest.raises(ModelError) as info:
            backend.infer(x)
    assert str(info.value) == (
        f"{model.sidecar}: classes: the sidecar names 1 (only), the graph's output 'scores' gave class index 1"
    )
