"""streamseg/backends/tensorrt/calibration.py: INT8 calibration batches from arrays, a folder of
PNGs and the sample clip. No TensorRT anywhere."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from streamseg.backends.tensorrt.calibration import CalibrationBatches
from streamseg.contract import InputSpec
from streamseg.errors import ConfigError
from streamseg.preprocess import preprocess

NCHW = InputSpec(name="input", layout="NCHW", height=16, width=24, mean=(10.0, 20.0, 30.0), std=(2.0, 3.0, 4.0))
NHWC = InputSpec(name="input", layout="NHWC", height=16, width=24)


def _images(n: int, h: int = 30, w: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(n)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize(
    ("frames", "batch", "count"), [(8, 4, 2), (10, 4, 2), (11, 4, 2), (12, 4, 3), (5, 5, 1), (7, 1, 7)]
)
def test_calibration_batches_are_full_and_drop_the_partial_one(frames: int, batch: int, count: int) -> None:
    images = _images(frames)
    batches = CalibrationBatches(images, NCHW, batch)
    assert len(batches) == count
    assert batches.shape == (batch, 3, 16, 24)
    got = list(batches)
    assert len(got) == count
    for i, b in enumerate(got):
        assert b.dtype == np.float32 and b.shape == batches.shape
        np.testing.assert_array_equal(b, preprocess(images[i * batch : (i + 1) * batch], NCHW))


def test_calibration_batches_follow_the_layout() -> None:
    batches = CalibrationBatches(_images(6), NHWC, 3)
    assert batches.shape == (3, 16, 24, 3)
    assert [b.shape for b in batches] == [(3, 16, 24, 3)] * 2


def test_calibration_batches_can_be_read_twice() -> None:
    """The gate reads the calibration frames again after TensorRT has consumed them."""
    batches = CalibrationBatches(_images(8), NCHW, 4)
    first, second = list(batches), list(batches)
    assert len(first) == len(second) == 2
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_too_few_frames_for_one_batch() -> None:
    with pytest.raises(ConfigError, match="INT8 calibration needs at least 8 frames, got 3"):
        CalibrationBatches(_images(3), NCHW, 8)
    with pytest.raises(ConfigError, match="batch: must be >= 1"):
        CalibrationBatches(_images(3), NCHW, 0)


def test_from_folder_reads_images_in_name_order(tmp_path: Path) -> None:
    images = _images(6)
    for i, image in enumerate(images):
        assert cv2.imwrite(str(tmp_path / f"frame{i:02d}.png"), image)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.png").write_bytes(b"not a png")  # skipped: cv2 cannot read it
    batches = CalibrationBatches.from_folder(tmp_path, NCHW, 4)
    assert len(batches.images) == 6 and len(batches) == 1
    np.testing.assert_array_equal(next(iter(batches)), preprocess(images[:4], NCHW))
    limited = CalibrationBatches.from_folder(tmp_path, NCHW, 2, limit=4)
    assert len(limited) == 2


def test_from_folder_without_readable_images(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"nope")
    with pytest.raises(ConfigError, match="no readable images"):
        CalibrationBatches.from_folder(tmp_path, NCHW, 1)


def test_from_video_takes_the_first_frames(bikes: Path) -> None:
    batches = CalibrationBatches.from_video(str(bikes), NCHW, 4, limit=10)
    assert len(batches.images) == 10 and len(batches) == 2
    assert batches.images[0].shape == (272, 640, 3)
    assert [b.shape for b in batches] == [(4, 3, 16, 24)] * 2


def test_from_video_with_too_few_frames(bikes: Path) -> None:
    with pytest.raises(ConfigError, match="needs at least 16 frames, got 5"):
        CalibrationBatches.from_video(str(bikes), NCHW, 16, limit=5)


def test_from_video_that_cannot_be_opened(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="INT8 calibration: cannot open"):
        CalibrationBatches.from_video(str(tmp_path / "missing.mp4"), NCHW, 4)
