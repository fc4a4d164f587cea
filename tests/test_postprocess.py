"""streamseg/postprocess.py: engine output -> uint8 class maps -> exact per-class area ratios."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamseg.contract import ModelContract
from streamseg.errors import BackendError
from streamseg.postprocess import Smoother, area_ratios, nearest_index, resize_labels, to_class_maps


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


# --- resize_labels: nearest neighbour with pixel centres aligned --------------------------------


def centre_index_bounds(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """The source pixel under each output pixel's centre, (i + 0.5) * src / dst. An exact hit on a
    boundary between two source pixels allows either: (low, high) bounds per output pixel."""
    num = (2 * np.arange(dst) + 1) * src
    high = np.minimum(num // (2 * dst), src - 1)
    low = np.where(num % (2 * dst) == 0, high - 1, high)
    return np.maximum(low, 0), high


@pytest.mark.parametrize(
    ("src", "dst"), [(144, 1080), (256, 1920), (375, 384), (500, 512), (512, 500), (37, 1000), (60, 60), (7, 3)]
)
def test_nearest_index_is_centre_aligned(src: int, dst: int) -> None:
    index = nearest_index(src, dst)
    low, high = centre_index_bounds(src, dst)
    assert index.shape == (dst,) and index.dtype == np.int64
    assert ((index >= low) & (index <= high)).all()
    assert (np.diff(index) >= 0).all()


@pytest.mark.parametrize(("h", "w", "height", "width"), [(9, 15, 37, 53), (144, 256, 1080, 1920), (5, 7, 3, 4)])
def test_resize_labels_reads_nearest_index(h: int, w: int, height: int, width: int) -> None:
    labels = np.random.default_rng(2).integers(0, 21, (h, w), dtype=np.uint8)
    out = resize_labels(labels, width, height)
    np.testing.assert_array_equal(out, labels[nearest_index(h, height)][:, nearest_index(w, width)])


@pytest.mark.parametrize(
    ("h", "w", "height", "width"), [(375, 500, 384, 512), (338, 500, 384, 512), (563, 1000, 576, 1024)]
)
def test_resize_labels_up_and_down_is_the_identity(h: int, w: int, height: int, width: int) -> None:
    # What evaluation relies on: a mask enlarged to the network's size and brought back is unchanged.
    # OpenCV's plain INTER_NEAREST (floor(x * src / dst)) moves thousands of pixels on these sizes.
    labels = np.random.default_rng(3).integers(0, 21, (h, w), dtype=np.uint8)
    back = resize_labels(resize_labels(labels, width, height), w, h)
    np.testing.assert_array_equal(back, labels)


def centroid(weights: np.ndarray) -> np.ndarray:
    ys, xs = np.indices(weights.shape)
    w = weights.astype(np.float64)
    return np.array([(ys * w).sum() / w.sum(), (xs * w).sum() / w.sum()])


@pytest.mark.parametrize("size", [(53, 71), (71, 53), (37, 29), (29, 37), (63, 63)])
def test_resize_labels_keeps_a_shape_where_bilinear_puts_it(size: tuple[int, int]) -> None:
    # A bright rectangle resized like the image (bilinear, half-pixel centres) and its label resized
    # with resize_labels must sit in the same place. Plain INTER_NEAREST is off by 0.5-0.64 px here.
    image = np.zeros((40, 40), np.uint8)
    image[12:28, 8:20] = 255
    bright = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    labels = resize_labels((image > 0).astype(np.uint8), *size)
    assert np.abs(centroid(labels) - centroid(bright)).max() < 0.25


def test_resize_labels_same_size_returns_input() -> None:
    labels = np.zeros((4, 6), np.uint8)
    assert resize_labels(labels, 6, 4) is labels
