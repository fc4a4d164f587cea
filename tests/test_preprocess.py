"""streamseg/preprocess.py: BGR uint8 frames -> the float32 batch the contract asks for."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from streamseg.contract import InputSpec
from streamseg.preprocess import preprocess


def spec(**kw: Any) -> InputSpec:
    return InputSpec.model_validate({"name": "x", "layout": "NCHW", "height": 4, "width": 6} | kw)


def pixel_image(b: int, g: int, r: int, h: int = 4, w: int = 6) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (b, g, r)
    return img


@pytest.mark.parametrize(
    ("layout", "color", "first_pixel"),
    [
        ("NCHW", "RGB", [30, 20, 10]),
        ("NCHW", "BGR", [10, 20, 30]),
        ("NHWC", "RGB", [30, 20, 10]),
        ("NHWC", "BGR", [10, 20, 30]),
    ],
)
def test_layout_and_channel_order(layout: str, color: str, first_pixel: list[int]) -> None:
    out = preprocess([pixel_image(10, 20, 30)], spec(layout=layout, color=color))
    assert out.dtype == np.float32
    if layout == "NCHW":
        assert out.shape == (1, 3, 4, 6)
        assert out[0, :, 2, 3].tolist() == first_pixel
    else:
        assert out.shape == (1, 4, 6, 3)
        assert out[0, 2, 3].tolist() == first_pixel


def test_layouts_hold_the_same_values() -> None:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (4, 6, 3), dtype=np.uint8) for _ in range(3)]
    nchw = preprocess(images, spec(layout="NCHW"))
    nhwc = preprocess(images, spec(layout="NHWC"))
    np.testing.assert_array_equal(nchw.transpose(0, 2, 3, 1), nhwc)
    # RGB (the default) reverses OpenCV's BGR; values are untouched with mean 0, std 1
    np.testing.assert_array_equal(nhwc, np.stack(images)[..., ::-1].astype(np.float32))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_mean_std_exact(layout: str) -> None:
    # B=100 G=150 R=250 in RGB order is (250, 150, 100); mean/std chosen so results are exact.
    s = spec(layout=layout, color="RGB", mean=(50.0, 100.0, 150.0), std=(2.0, 4.0, 0.5))
    out = preprocess([pixel_image(100, 150, 250)], s)
    expected = [(250 - 50) / 2.0, (150 - 100) / 4.0, (100 - 150) / 0.5]  # [100, 12.5, -100]
    values = out[0, :, 0, 0] if layout == "NCHW" else out[0, 0, 0]
    assert values.tolist() == expected
    channels = out[0] if layout == "NCHW" else out[0].transpose(2, 0, 1)
    for c, v in enumerate(expected):
        assert np.all(channels[c] == v)


def test_scale_to_unit_range() -> None:
    out = preprocess([pixel_image(0, 255, 51)], spec(std=(255.0, 255.0, 255.0)))
    np.testing.assert_allclose(out[0, :, 0, 0], [0.2, 1.0, 0.0], rtol=1e-6)


def test_resize_to_contract_size() -> None:
    rng = np.random.default_rng(2)
    images = [pixel_image(1, 2, 3, 33, 17), rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)]
    out = preprocess(images, spec(layout="NCHW", height=5, width=9, color="BGR"))
    assert out.shape == (2, 3, 5, 9)
    # a uniform picture stays exactly uniform through bilinear resizing
    for c, v in enumerate((1, 2, 3)):
        assert np.all(out[0, c] == v)
    assert out[1].min() >= 0 and out[1].max() <= 255


def test_input_is_not_modified() -> None:
    img = pixel_image(10, 20, 30)
    before = img.copy()
    preprocess([img], spec(mean=(1.0, 2.0, 3.0)))
    np.testing.assert_array_equal(img, before)


def test_out_is_filled_and_returned() -> None:
    s = spec(layout="NHWC", color="BGR")
    out = np.full((2, 4, 6, 3), -1.0, np.float32)
    first = preprocess([pixel_image(1, 2, 3), pixel_image(4, 5, 6)], s, out=out)
    assert first is out
    assert out[1, 0, 0].tolist() == [4, 5, 6]
    second = preprocess([pixel_image(7, 8, 9), pixel_image(4, 5, 6)], s, out=out)
    assert second is out
    assert out[0, 3, 5].tolist() == [7, 8, 9]


@pytest.mark.parametrize(
    ("out", "error"),
    [
        (np.empty((1, 3, 4, 6), np.float32), "out must be float32 (2, 3, 4, 6), got float32 (1, 3, 4, 6)"),
        (np.empty((2, 4, 6, 3), np.float32), "out must be float32 (2, 3, 4, 6), got float32 (2, 4, 6, 3)"),
        (np.empty((2, 3, 4, 6), np.float64), "out must be float32 (2, 3, 4, 6), got float64 (2, 3, 4, 6)"),
    ],
)
def test_wrong_out_is_refused(out: np.ndarray, error: str) -> None:
    with pytest.raises(ValueError) as info:
        preprocess([pixel_image(1, 2, 3)] * 2, spec(), out=out)
    assert error in str(info.value)
