"""streamseg/backends: selection with logged reasons, the checks in ``infer``, and one contract test
that runs the same tiny model on every available backend and demands the same labels."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from streamseg.backends import REGISTRY, backend_class, select_backend
from streamseg.backends.onnxruntime import OnnxRuntimeBackend
from streamseg.contract import LoadedModel, expected_input_shape
from streamseg.errors import BackendError
from streamseg.postprocess import to_class_maps
from streamseg.preprocess import preprocess

Reference = Callable[[np.ndarray, str, int], np.ndarray]


@pytest.mark.parametrize("left_out", [None, "tensorrt", "torch"])
def test_auto_skips_missing_backends_with_reasons(
    left_out: str | None,
    make_model: Callable[..., LoadedModel],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="streamseg.backends")
    if backend_class("torch").unavailable_reason("auto") is None:
        pytest.skip("torch sees a CUDA device here: it would rightly be chosen first")
    if left_out is not None:  # a build without that backend
        monkeypatch.delitem(REGISTRY, left_out)
    # device auto on a CPU-only host: TensorRT and torch want a GPU, so ONNX Runtime runs it
    backend = select_backend("auto", ["tensorrt", "torch", "onnxruntime"], make_model(), device="auto", max_batch=3)
    assert isinstance(backend, OnnxRuntimeBackend)
    assert backend.max_batch == 3
    messages = [r.getMessage() for r in caplog.records]
    for name in ("tensorrt", "torch"):
        reasons = [m.split(": ", 1)[1] for m in messages if m.startswith(f"backend {name} skipped")]
        assert reasons, f"no reason logged for {name}"
        if name == left_out:  # said once, and nothing was tried
            assert reasons == ["not part of this build"]
        else:  # a real reason from the backend itself
            assert "not part of this build" not in reasons and all(reasons)
    assert messages[-1] == "backend onnxruntime selected"


def test_explicit_choice_ignores_prefer(make_model: Callable[..., LoadedModel]) -> None:
    assert isinstance(select_backend("onnxruntime", ["tensorrt"], make_model(), device="cpu"), OnnxRuntimeBackend)


@pytest.mark.parametrize(
    ("choice", "prefer", "error"),
    [
        ("tensorflow", [], "no usable backend: tensorflow: not part of this build"),
        ("auto", [], "no usable backend: "),
        ("auto", ["nope", "zilch"], "no usable backend: nope: not part of this build; zilch: not part"),
    ],
)
def test_no_usable_backend(make_model: Callable[..., LoadedModel], choice: str, prefer: list[str], error: str) -> None:
    with pytest.raises(BackendError) as info:
        select_backend(choice, prefer, make_model())
    assert str(info.value).startswith(error)


def test_cuda_requested_without_cuda(make_model: Callable[..., LoadedModel]) -> None:
    if OnnxRuntimeBackend.unavailable_reason("cuda") is None:
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(BackendError, match="onnxruntime: onnxruntime has no CUDAExecutionProvider"):
        select_backend("onnxruntime", [], make_model(), device="cuda")


def test_unknown_backend_class() -> None:
    with pytest.raises(BackendError, match="backend 'nope' is not part of this build \\(have: onnxruntime"):
        backend_class("nope")


@pytest.fixture
def ort(make_model: Callable[..., LoadedModel]) -> Any:
    with OnnxRuntimeBackend(make_model(), device="cpu", threads=1, max_batch=2) as backend:
        yield backend


@pytest.mark.parametrize(
    ("shape", "dtype", "error"),
    [
        ((1, 3, 8, 13), np.float32, "expected float32 batch (1, 3, 8, 12), got float32 (1, 3, 8, 13)"),
        ((1, 8, 12, 3), np.float32, "expected float32 batch (1, 3, 8, 12), got float32 (1, 8, 12, 3)"),
        ((3, 8, 12), np.float32, "expected float32 batch (3, 3, 8, 12), got float32 (3, 8, 12)"),
        ((1, 3, 8, 12), np.float64, "expected float32 batch (1, 3, 8, 12), got float64 (1, 3, 8, 12)"),
        ((1, 3, 8, 12), np.uint8, "expected float32 batch (1, 3, 8, 12), got uint8 (1, 3, 8, 12)"),
        ((3, 3, 8, 12), np.float32, "batch of 3 exceeds max_batch 2"),
    ],
)
def test_infer_checks_the_batch(ort: Any, shape: tuple[int, ...], dtype: type, error: str) -> None:
    with pytest.raises(BackendError) as info:
        ort.infer(np.zeros(shape, dtype))
    assert str(info.value) == f"onnxruntime: {error}"


def test_infer_outside_with(make_model: Callable[..., LoadedModel]) -> None:
    backend = OnnxRuntimeBackend(make_model(), device="cpu")
    batch = np.zeros((1, 3, 8, 12), np.float32)
    with pytest.raises(BackendError, match="infer\\(\\) called outside 'with backend:'"):
        backend.infer(batch)
    with backend:
        assert backend.infer(batch).shape == (1, 3, 8, 12)
        assert backend.last_seconds > 0
        assert backend.description.startswith("onnxruntime (") and "CPUExecutionProvider" in backend.description
    with pytest.raises(BackendError, match="outside"):
        backend.infer(batch)


def _images(n: int, height: int, width: int) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("name", sorted(REGISTRY))
@pytest.mark.parametrize(
    "graph",
    [
        {"layout": "NCHW", "kind": "logits", "classes": 3},
        {"layout": "NHWC", "kind": "logits", "classes": 5},
        {"layout": "NCHW", "kind": "class_map", "classes": 4},
        {"layout": "NHWC", "kind": "class_map", "classes": 2},
    ],
    ids=["nchw-logits", "nhwc-logits", "nchw-classmap", "nhwc-classmap"],
)
def test_every_backend_gives_the_reference_labels(
    name: str, graph: dict[str, Any], make_model: Callable[..., LoadedModel], reference_logits: Reference
) -> None:
    """The contract test: the same tiny model on every backend this build can run here."""
    if name == "triton":  # remote: a server must serve this very model (tests/integration/test_triton.py)
        pytest.skip("triton: needs a server serving the tiny model; the bundled one is tested in test_triton.py")
    cls = backend_class(name)
    model = make_model(graph)
    device = "auto" if cls.unavailable_reason("auto") is None else "cpu"  # select_backend's CPU fallback
    why = cls.model_unsupported_reason(model) or cls.unavailable_reason(device)
    if why is not None:
        pytest.skip(f"{name}: {why}")
    c = model.contract
    batch = preprocess(_images(3, 20, 30), c.input)
    axis = 1 if c.input.layout == "NCHW" else 3
    expected = np.argmax(reference_logits(batch, c.input.layout, c.num_classes), axis=axis)
    assert len(np.unique(expected)) > 1  # the check would be weak on a constant picture
    with cls(model, device=device, max_batch=4) as backend:
        assert backend.name == name
        out = backend.infer(batch)
        single = backend.infer(np.ascontiguousarray(batch[1:2]))
    np.testing.assert_array_equal(to_class_maps(out, c), expected)
    np.testing.assert_array_equal(to_class_maps(single, c)[0], expected[1])
    assert batch.shape == expected_input_shape(c, 3)


def test_model_config_has_a_section_per_backend_with_settings() -> None:
    """model.<name>: comes from each backend's options_model; prefer never lists a remote backend."""
    from streamseg.config import ModelConfig

    m = ModelConfig(path="m")
    for name, cls in REGISTRY.items():
        options = m.options(name)
        assert (options is None) == (cls.options_model is None), name
        if cls.options_model is not None:
            assert type(options) is cls.options_model and name in ModelConfig.model_fields
    assert m.prefer == ["tensorrt", "torch", "onnxruntime"]
    with pytest.raises(ValueError, match="Input should be 'onnxruntime', 'tensorrt' or 'torch'"):
        ModelConfig(path="m", prefer=["triton"])  # type: ignore[list-item]
