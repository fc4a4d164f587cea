"""Segmentation datasets on disk: images with per-pixel class masks. No torch here.

Two layouts:

* **VOC**: ``JPEGImages/NAME.jpg`` with ``SegmentationClass/NAME.png`` (palette/index PNG; labelme
  writes it to ``SegmentationClassPNG/``) or ``.npy``, optional ``ImageSets/Segmentation/SPLIT.txt``
  and ``class_names.txt``. Index 255 (and negative values in .npy files) means "ignore".
* **folder**: ``images/NAME.*`` with ``masks/NAME.png`` and optional ``class_names.txt``.

Masks are read as class indices (a palette PNG's indices, never its colors).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ._deps import require
from .errors import ConfigError
from .postprocess import resize_labels

IGNORE_INDEX = 255
_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    image_path: Path
    mask_path: Path


@dataclass(frozen=True, slots=True)
class SegDataset:
    root: Path
    samples: tuple[Sample, ...]
    class_names: tuple[str, ...] | None

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(BGR uint8 image (H, W, 3), uint8 mask (H, W) with 255 = ignore)."""
        s = self.samples[i]
        image = cv2.imread(str(s.image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise ConfigError(f"{s.image_path}: cannot read image")
        mask = read_mask(s.mask_path)
        if mask.shape != image.shape[:2]:
            raise ConfigError(
                f"{s.mask_path}: mask is {mask.shape[1]}x{mask.shape[0]}, image is {image.shape[1]}x{image.shape[0]}"
            )
        return image, mask


def read_mask(path: Path) -> np.ndarray:
    """Class indices from an index/palette PNG or a .npy array; negatives become IGNORE_INDEX."""
    if path.suffix == ".npy":
        raw = np.load(path)
        if raw.ndim != 2:
            raise ConfigError(f"{path}: expected a 2-D class array, got shape {raw.shape}")
        out = np.where(raw < 0, IGNORE_INDEX, raw)
        if out.max(initial=0) > 255:
            raise ConfigError(f"{path}: class index {int(out.max())} does not fit 0..254")
        return out.astype(np.uint8)
    # Pillow keeps palette indices; OpenCV would return colors
    Image = require("PIL.Image", "train", "reading PNG masks (eval, train)")  # noqa: N806 - the module's name

    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L", "I", "I;16"):
                raise ConfigError(f"{path}: mask must be an index or palette PNG, got mode {im.mode} (colors)")
            arr = np.asarray(im)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read mask: {e}") from None
    return arr.astype(np.uint8)


def _read_names(path: Path) -> tuple[str, ...] | None:
    if not path.is_file():
        return None
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return tuple(n for n in names if n != "__ignore__")


def open_dataset(root: str | Path, split: str | None = None) -> SegDataset:
    """Find the layout under ``root`` and pair every image with its mask."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"dataset {root}: no such folder")
    if (root / "JPEGImages").is_dir():
        image_dir = root / "JPEGImages"
        mask_dirs = [root / d for d in ("SegmentationClass", "SegmentationClassPNG")]
    elif (root / "images").is_dir():
        image_dir, mask_dirs = root / "images", [root / "masks"]
    else:
        raise ConfigError(f"dataset {root}: expected JPEGImages/ (VOC) or images/ + masks/ (folder layout)")
    names: list[str]
    if split is not None:
        listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not listing.is_file():
            raise ConfigError(f"dataset {root}: split '{split}' needs {listing}")
        names = [n.strip() for n in listing.read_text().splitlines() if n.strip()]
    else:
        names = sorted(p.stem for p in image_dir.iterdir() if p.suffix.lower() in _IMAGE_EXTS)
    samples = []
    for name in names:
        image = next((image_dir / f"{name}{e}" for e in _IMAGE_EXTS if (image_dir / f"{name}{e}").is_file()), None)
        if image is None:
            raise ConfigError(f"dataset {root}: no image for '{name}' in {image_dir}")
        mask = next(
            (d / f"{name}{e}" for d in mask_dirs for e in (".png", ".npy") if (d / f"{name}{e}").is_file()), None
        )
        if mask is None:
            raise ConfigError(f"dataset {root}: no mask for '{name}' in {', '.join(map(str, mask_dirs))}")
        samples.append(Sample(name, image, mask))
    if not samples:
        raise ConfigError(f"dataset {root}: no images found")
    return SegDataset(root, tuple(samples), _read_names(root / "class_names.txt"))


def augment(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    crop: tuple[int, int],
    scale: tuple[float, float] = (0.5, 2.0),
    flip: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Paired random scale, crop (padding with ignore) and horizontal flip. Masks: nearest only."""
    s = float(rng.uniform(*scale))
    h, w = image.shape[:2]
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    mask = resize_labels(mask, nw, nh)
    ch, cw = crop
    ph, pw = max(0, ch - nh), max(0, cw - nw)
    if ph or pw:
        image = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        mask = cv2.copyMakeBorder(mask, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=IGNORE_INDEX)
    y = int(rng.integers(0, image.shape[0] - ch + 1))
    x = int(rng.integers(0, image.shape[1] - cw + 1))
    image, mask = image[y : y + ch, x : x + cw], mask[y : y + ch, x : x + cw]
    if flip and rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)
