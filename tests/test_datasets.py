"""Datasets: real labelme VOC data from Debian's labelme-examples, and paired augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streamseg.datasets import IGNORE_INDEX, augment, open_dataset, read_mask
from streamseg.errors import ConfigError

LABELME = Path("/usr/share/doc/labelme-examples/examples")
VIDEO = LABELME / "video_annotation" / "data_dataset_voc"
VOC = LABELME / "semantic_segmentation" / "data_dataset_voc"


@pytest.fixture
def need_labelme() -> None:
    if not VIDEO.is_dir():
        pytest.skip("Debian package labelme-examples is not installed (tools/install-system-deps.sh installs it)")


def test_labelme_video_frames(need_labelme: None) -> None:
    ds = open_dataset(VIDEO)
    assert len(ds) == 5 and ds.class_names == ("_background_", "car", "track")
    image, mask = ds.load(0)
    assert image.shape == (563, 1000, 3) and mask.shape == (563, 1000)
    # the PNG's palette indices, identical to labelme's own .npy export
    assert np.array_equal(mask, np.load(VIDEO / "SegmentationClass" / f"{ds.samples[0].name}.npy").astype(np.uint8))
    assert set(np.unique(mask)) == {0, 1, 2}


def test_voc_images_keep_the_ignore_label(need_labelme: None) -> None:
    ds = open_dataset(VOC)
    assert len(ds.class_names or ()) == 21 and ds.class_names[15] == "person"  # type: ignore[index]
    _, mask = ds.load(0)
    assert IGNORE_INDEX in np.unique(mask) and 15 in np.unique(mask)
    npy = np.load(VOC / "SegmentationClass" / f"{ds.samples[0].name}.npy")
    assert np.array_equal(
        read_mask(VOC / "SegmentationClass" / f"{ds.samples[0].name}.npy"), np.where(npy < 0, 255, npy).astype(np.uint8)
    )


def test_folder_layout_and_errors(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    with pytest.raises(ConfigError, match="no mask for 'a'"):
        open_dataset(tmp_path)
    Image.fromarray(np.full((8, 10, 3), 7, np.uint8)).save(tmp_path / "masks" / "a.png")  # RGB: colors
    with pytest.raises(ConfigError, match="index or palette PNG, got mode RGB"):
        open_dataset(tmp_path).load(0)
    Image.fromarray(np.ones((8, 9), np.uint8)).save(tmp_path / "masks" / "a.png")
    with pytest.raises(ConfigError, match="mask is 9x8, image is 10x8"):
        open_dataset(tmp_path).load(0)
    with pytest.raises(ConfigError, match="no such folder"):
        open_dataset(tmp_path / "nope")


def test_augment_keeps_image_and_mask_aligned() -> None:
    rng = np.random.default_rng(0)
    mask = np.zeros((60, 80), np.uint8)
    mask[:, 40:] = 1
    image = np.zeros((60, 80, 3), np.uint8)
    image[:, 40:] = 200  # the image encodes the label, so alignment is checkable
    for _ in range(20):
        img, m = augment(image, mask, rng, crop=(48, 64), scale=(0.5, 1.5))
        assert img.shape == (48, 64, 3) and m.shape == (48, 64)
        assert set(np.unique(m)) <= {0, 1, IGNORE_INDEX}  # nearest: no invented labels
        valid = m != IGNORE_INDEX
        bright = img[..., 0] > 100
        # away from the label edge, image brightness agrees with the label everywhere
        interior = valid & (np.abs(np.diff(m.astype(int), axis=1, prepend=m[:, :1])) == 0)
        assert np.mean(bright[interior] == (m[interior] == 1)) > 0.97
