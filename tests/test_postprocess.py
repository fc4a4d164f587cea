"""streamseg/postprocess.py: engine output -> uint8 class maps -> exact per-class area ratios."""

from __future__ import annotations

import numpy as np
import pytest

from streamseg.contract import ModelContract
from streamseg.errors import BackendError
from streamseg.postprocess import Smoother, area_ratios, to_class_maps


def contract(kind: str, layout: str = "NCHW", classes: int = 3) -> ModelContract:
    return ModelContract.model_validate(
        {
            "name": "m",
            "onnx": "m.onnx",
            "input": {"name": "x", "layout": layout, "height": 2, "width": 3},
            "output": {"name": "y", "kind": kind},
            "classes": [{"name": f"c{i}", "color": [i, i, i]} for i in range(classes)],
        }
    )


# Labels for a 2x3 picture, and logits that make them the argmax.
LABELS = np.array([[[0, 1, 2], [2, 2, 1]], [[1, 1, 1], [0, 0, 2]]])


def one_hot_logits(labels: np.ndarray, classes: int = 3) -> np.ndarray:
    rng = np.random.default_rng(3)
    logits = rng.uniform(-1, 1, (*labels.shape, classes)).astype(np.float32)
    np.put_along_axis(logits, labels[..., None], 5.0, axis=-1)
    return logits  # (N, H, W, C)


@pytest.mark.parametrize("kind", ["logits", "probabilities"])
def test_argmax_nhwc(kind: str) -> None:
    maps = to_class_maps(one_hot_logits(LABELS), contract(kind, "NHWC"))
    assert maps.dtype == np.uint8
    np.testing.assert_array_equal(maps, LABELS)


@pytest.mark.parametrize("kind", ["logits", "probabilities"])
def test_argmax_nchw(kind: str) -> None:
    maps = to_class_maps(one_hot_logits(LABELS).transpose(0, 3, 1, 2), contract(kind, "NCHW"))
    assert maps.dtype == np.uint8
    np.testing.assert_array_equal(maps, LABELS)


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64])
@pytest.mark.parametrize("channel_dim", [False, True])
def test_class_map_is_squeezed_and_narrowed(dtype: type, channel_dim: bool) -> None:
    out = LABELS.astype(dtype)
    if channel_dim:
        out = out[:, None]
    maps = to_class_maps(out, contract("class_map"))
    assert maps.dtype == np.uint8
    assert maps.shape == (2, 2, 3)
    np.testing.assert_array_equal(maps, LABELS)


@pytest.mark.parametrize(("bad", "named"), [(3, "class index 3"), (300, "class index 300"), (-1, "class index -1")])
def test_class_map_out_of_range(bad: int, named: str) -> None:
    out = LABELS.astype(np.int64)
    out[1, 0, 2] = bad
    with pytest.raises(BackendError) as info:
        to_class_maps(out, contract("class_map"))
    assert f"model 'm' produced {named} but has 3 classes" in str(info.value)


def test_area_ratios_exact_and_sum_to_one() -> None:
    # 40 pixels: 4 of class 0, 0 of class 1, 10 of class 2, 26 of class 3
    cmap = np.full((5, 8), 3, np.uint8)
    cmap[0, :4] = 0
    cmap[1:3, 3:8] = 2
    ratios = area_ratios(cmap, 4)
    assert ratios.dtype == np.float64
    assert ratios.tolist() == [4 / 40, 0.0, 10 / 40, 26 / 40]
    assert ratios.sum() == pytest.approx(1.0, abs=1e-12)


def test_area_ratios_of_a_synthetic_frame_with_known_areas() -> None:
    # a 144x256 map: a 48x64 person rectangle, the rest background
    cmap = np.zeros((144, 256), np.uint8)
    cmap[10:58, 100:164] = 1
    assert area_ratios(cmap, 2).tolist() == [1 - 48 * 64 / (144 * 256), 48 * 64 / (144 * 256)]


def test_area_ratios_count_absent_classes() -> None:
    assert area_ratios(np.zeros((3, 3), np.uint8), 5).tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_area_ratios_index_beyond_classes() -> None:
    cmap = np.zeros((4, 4), np.uint8)
    cmap[2, 2] = 7
    with pytest.raises(BackendError, match="class map holds class index 7 but the model has 3 classes"):
        area_ratios(cmap, 3)


def test_smoother_passes_through_with_weight_zero() -> None:
    s = Smoother(0.0)
    x = np.array([0.25, 0.75])
    assert s.update("a", x).tolist() == [0.25, 0.75]
    assert s.update("a", np.array([1.0, 0.0])).tolist() == [1.0, 0.0]


def test_smoother_math_per_stream() -> None:
    s = Smoother(0.75)
    assert s.update("a", np.array([1.0, 0.0])).tolist() == [1.0, 0.0]  # the first value is taken as is
    assert s.update("a", np.array([0.0, 1.0])).tolist() == [0.75, 0.25]
    assert s.update("a", np.array([0.0, 1.0])).tolist() == [0.5625, 0.4375]
    assert s.update("b", np.array([0.0, 1.0])).tolist() == [0.0, 1.0]  # streams do not mix
    assert s.update("a", np.array([0.5625, 0.4375])).tolist() == [0.5625, 0.4375]  # a fixed point stays


@pytest.mark.parametrize("weight", [-0.1, 1.0, 1.5])
def test_smoother_weight_range(weight: float) -> None:
    with pytest.raises(ValueError, match=f"smoothing weight must be in \\[0, 1\\), got {weight}"):
        Smoother(weight)
