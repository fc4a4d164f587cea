"""streamseg/frames.py: values between stages fail where they are made, stating expected and actual."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from streamseg.frames import Batch, Frame, SegResult


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
