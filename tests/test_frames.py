"""streamseg/frames.py: values between stages fail where they are made, stating expected and actual."""

from __future__ import annotations

import dataclasses
from typing import Any

import cv2
import numpy as np
import pytest

from streamseg.frames import Batch, Frame, Picture, SegResult, pixel_format_of


def frame(image: np.ndarray | None = None) -> Frame:
    return Frame("cam", 7, 0.28, 1.0, 2.0, np.zeros((4, 6, 3), np.uint8) if image is None else image)


@pytest.mark.parametrize(
    ("image", "class_map", "overlay"),
    [
        (np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1), np.uint8), None),  # smallest accepted
        (np.zeros((4, 6, 3), np.uint8), np.zeros((2, 3), np.uint8), np.zeros((4, 6, 3), np.uint8)),
    ],
)
def test_valid_values_are_accepted_and_frozen(
    image: np.ndarray, class_map: np.ndarray, overlay: np.ndarray | None
) -> None:
    f = frame(image)
    b = Batch((f, frame()), 3.0)
    r = SegResult(f, class_map, np.array([1.0, 0.0]), overlay)
    assert len(b) == 2
    # frozen and slotted: a stage cannot change a value another stage holds, nor hang data on it
    for value, attr in ((f, "index"), (b, "frames"), (r, "class_map")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, attr, None)
        assert not hasattr(value, "__dict__"), type(value).__name__


@pytest.mark.parametrize(
    ("image", "error"),
    [
        (np.zeros((4, 6, 3), np.float32), "Frame cam#7: expected uint8 (H, W, 3) BGR, got float32 (4, 6, 3)"),
        (np.zeros((4, 6), np.uint8), "Frame cam#7: expected uint8 (H, W, 3) BGR, got uint8 (4, 6)"),
        (np.zeros((4, 6, 4), np.uint8), "Frame cam#7: expected uint8 (H, W, 3) BGR, got uint8 (4, 6, 4)"),
        (np.zeros((1, 4, 6, 3), np.uint8), "Frame cam#7: expected uint8 (H, W, 3) BGR, got uint8 (1, 4, 6, 3)"),
    ],
)
def test_frame_validation(image: np.ndarray, error: str) -> None:
    with pytest.raises(ValueError) as info:
        frame(image)
    assert str(info.value) == error


def test_empty_batch() -> None:
    with pytest.raises(ValueError, match="Batch: expected at least one frame, got 0"):
        Batch(())


@pytest.mark.parametrize(
    ("class_map", "ratios", "error"),
    [
        (
            np.zeros((2, 3), np.int64),
            np.zeros(2),
            "SegResult cam#7: expected uint8 (h, w) class map, got int64 (2, 3)",
        ),
        (
            np.zeros((1, 2, 3), np.uint8),
            np.zeros(2),
            "SegResult cam#7: expected uint8 (h, w) class map, got uint8 (1, 2, 3)",
        ),
        (
            np.zeros((2, 3), np.uint8),
            np.zeros((1, 2)),
            "SegResult cam#7: expected 1-D area ratios, got shape (1, 2)",
        ),
    ],
)
def test_seg_result_validation(class_map: np.ndarray, ratios: np.ndarray, error: str) -> None:
    with pytest.raises(ValueError) as info:
        SegResult(frame(), class_map, ratios)
    assert str(info.value) == error


# --- frames that live on a device (NVDEC's NV12, "nv12_device") ---------------------------------


def _i420_and_nv12(h: int = 6, w: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A random picture as packed I420 and as NV12 (the same planes, U and V interleaved)."""
    i420 = np.random.default_rng(seed).integers(0, 256, (h * 3 // 2, w), dtype=np.uint8)
    u, v = i420[h:].reshape(2, h // 2, w // 2)  # the chroma planes need not start on a row (H/2 odd)
    return i420, np.concatenate([i420[:h], np.stack([u, v], axis=-1).reshape(h // 2, w)])


def device_frame(nv12: np.ndarray) -> Frame:
    """A frame as the NVDEC source makes it, with a CPU tensor standing in for the CUDA one."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'streamseg[torch]')")
    return Frame("cam", 7, 0.28, 1.0, 2.0, torch.from_numpy(nv12), "nv12_device")


def test_a_device_frame_knows_its_size_and_format_without_a_download() -> None:
    _, nv12 = _i420_and_nv12(6, 8)
    f = device_frame(nv12)
    assert pixel_format_of(f.image) == "nv12_device" and pixel_format_of(nv12) == "yuv420p"
    assert f.on_device and f.host_format == "yuv420p" and f.size == (6, 8)
    picture = Picture.of(f)
    assert picture.pixel_format == "yuv420p" and picture.size == (6, 8)
    assert f._host is None  # nothing was copied off the device for these


def test_the_picture_of_a_device_frame_is_its_i420_downloaded_once() -> None:
    i420, nv12 = _i420_and_nv12(12, 16, seed=4)
    f = device_frame(nv12)
    picture = Picture.of(f)
    assert f._host is None  # lazy: outputs that never look at the pixels never pay the copy
    assert isinstance(picture.data, np.ndarray) and np.array_equal(picture.data, i420)
    assert np.array_equal(picture.i420(), i420)
    want_bgr = cv2.cvtColor(nv12, cv2.COLOR_YUV2BGR_NV12)
    assert np.array_equal(picture.bgr(), want_bgr) and np.array_equal(f.bgr(), want_bgr)
    # one download per frame, shared: the next picture, the frame's bgr() and its host frame reuse it
    assert Picture.of(f).data is picture.data is f.host_image()
    host = f.host()
    assert host.pixel_format == "yuv420p" and host.image is picture.data
    assert (host.stream, host.index, host.pts, host.capture_time, host.wall_time) == ("cam", 7, 0.28, 1.0, 2.0)
    assert Picture.of(f).scaled(8).size == (6, 8)


def test_an_i420_frame_whose_half_height_is_odd_is_accepted() -> None:
    """H = 6 (and 270, 534, ...): 9 rows, the U plane ends mid-row; only H and W must be even."""
    i420, _ = _i420_and_nv12(6, 8)
    assert Frame("cam", 0, 0.0, 0.0, 0.0, i420, "yuv420p").size == (6, 8)


def test_host_frames_are_their_own_host_copy() -> None:
    i420, _ = _i420_and_nv12()
    for f in (frame(), Frame("cam", 1, 0.0, 0.0, 0.0, i420, "yuv420p")):
        assert not f.on_device and f.host() is f and f.host_image() is f.image
        assert Picture.of(f).data is f.image


@pytest.mark.parametrize(
    ("make", "fmt", "error"),
    [
        (
            lambda t: t.zeros((10, 8), dtype=t.uint8),
            "nv12_device",
            r"expected a uint8 \(H \* 3 / 2, W\) NV12 device tensor of even H and W, got Tensor torch.uint8 \(10, 8\)",
        ),
        (lambda t: t.zeros((9, 7), dtype=t.uint8), "nv12_device", r"even H and W, got Tensor torch.uint8 \(9, 7\)"),
        (
            lambda t: t.zeros((9, 8), dtype=t.float32),
            "nv12_device",
            r"NV12 device tensor of even H and W, got Tensor torch.float32 \(9, 8\)",
        ),
        (lambda t: t.zeros((6, 8, 3), dtype=t.uint8), "nv12_device", r"got Tensor torch.uint8 \(6, 8, 3\)"),
        (lambda t: np.zeros((9, 8), np.uint8), "nv12_device", r"NV12 device tensor .* got ndarray uint8 \(9, 8\)"),
        (lambda t: np.zeros((10, 8), np.uint8), "yuv420p", r"I420 of even H and W, got uint8 \(10, 8\)"),
        (
            lambda t: t.zeros((9, 8), dtype=t.uint8),
            "yuv420p",
            r"expected uint8 \(H \* 3 / 2, W\) I420 of even H and W, got Tensor torch.uint8 \(9, 8\)",
        ),
        (lambda t: t.zeros((6, 8, 3), dtype=t.uint8), "bgr24", r"BGR, got Tensor torch.uint8 \(6, 8, 3\)"),
    ],
)
def test_device_frame_validation(make: Any, fmt: str, error: str) -> None:
    """A host format never takes a tensor and the device format never takes a numpy array."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'streamseg[torch]')")
    with pytest.raises(ValueError, match=f"^Frame cam#7: .*{error}$"):
        Frame("cam", 7, 0.0, 0.0, 0.0, make(torch), fmt)  # type: ignore[arg-type]
