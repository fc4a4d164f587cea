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


# --- instance segmentation (Mask R-CNN): one mask, class and box per object -----------------------


@dataclass(frozen=True, slots=True)
class InstanceTarget:
    """One image's objects: ``boxes`` float32 (K, 4) x1 y1 x2 y2 in pixels (the masks' extents,
    x2/y2 one past the last pixel), ``labels`` int64 (K,) class indices (0 is the background),
    ``masks`` uint8 (K, H, W) 0/1."""

    boxes: np.ndarray
    labels: np.ndarray
    masks: np.ndarray

    def __post_init__(self) -> None:
        k = self.labels.shape[0]
        if self.boxes.shape != (k, 4) or self.masks.ndim != 3 or self.masks.shape[0] != k:
            raise ValueError(
                f"InstanceTarget: expected boxes (K, 4), labels (K,), masks (K, H, W) with one K, got "
                f"{self.boxes.shape}, {self.labels.shape}, {self.masks.shape}"
            )


def target_from_masks(masks: np.ndarray, labels: np.ndarray) -> InstanceTarget:
    """Boxes from the masks' extents; empty masks are dropped (nothing to detect)."""
    boxes, kept = [], []
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        if ys.size:
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            kept.append(i)
    h, w = masks.shape[1:] if masks.ndim == 3 else (0, 0)
    return InstanceTarget(
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(labels, np.int64)[kept],
        (masks[kept] != 0).astype(np.uint8).reshape(len(kept), h, w),
    )


@dataclass(frozen=True, slots=True)
class InstanceSample:
    name: str
    image_path: Path
    # VOC: (SegmentationObject file, SegmentationClass file); COCO: the image's annotations
    object_path: Path | None = None
    class_path: Path | None = None
    annotations: tuple[dict[str, object], ...] = ()
    height: int = 0
    width: int = 0


@dataclass(frozen=True, slots=True)
class InstanceDataset:
    """Images with per-object masks: a COCO instances JSON, or VOC's ``SegmentationObject`` layout."""

    root: Path
    samples: tuple[InstanceSample, ...]
    class_names: tuple[str, ...]
    kind: str  # "coco" | "voc"

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int) -> tuple[np.ndarray, InstanceTarget]:
        """(BGR uint8 image (H, W, 3), its objects)."""
        s = self.samples[i]
        image = cv2.imread(str(s.image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise ConfigError(f"{s.image_path}: cannot read image")
        h, w = image.shape[:2]
        if self.kind == "coco":
            return image, self._coco_target(s, h, w)
        assert s.object_path is not None and s.class_path is not None  # set for every VOC sample
        objects, classes = read_mask(s.object_path), read_mask(s.class_path)
        for path, m in ((s.object_path, objects), (s.class_path, classes)):
            if m.shape != (h, w):
                raise ConfigError(f"{path}: mask is {m.shape[1]}x{m.shape[0]}, image is {w}x{h}")
        ids = [int(v) for v in np.unique(objects) if v not in (0, IGNORE_INDEX)]
        masks = np.stack([objects == v for v in ids]) if ids else np.zeros((0, h, w), bool)
        labels = []
        for v, m in zip(ids, masks, strict=True):
            counts = np.bincount(classes[m], minlength=256)
            counts[[0, IGNORE_INDEX]] = 0  # an object's class is what its labelled pixels say
            if not counts.any():
                raise ConfigError(f"{s.class_path}: object {v} of {s.object_path.name} has no class pixels")
            labels.append(int(counts.argmax()))
        if labels and max(labels) >= len(self.class_names):
            raise ConfigError(f"{s.class_path}: class index {max(labels)} beyond class_names.txt")
        return image, target_from_masks(masks, np.asarray(labels, np.int64))

    def _coco_target(self, s: InstanceSample, h: int, w: int) -> InstanceTarget:
        mask_utils = require("pycocotools.mask", "rle", "COCO instance datasets")
        if (s.height, s.width) != (h, w):
            raise ConfigError(f"{s.image_path}: image is {w}x{h}, the JSON says {s.width}x{s.height}")
        masks, labels = [], []
        for a in s.annotations:
            seg = a["segmentation"]
            if isinstance(seg, list):  # polygons
                rles = mask_utils.frPyObjects(seg, h, w)
                rle = mask_utils.merge(rles)
            elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):  # uncompressed RLE
                rle = mask_utils.frPyObjects(seg, h, w)
            else:
                rle = seg
            masks.append(mask_utils.decode(rle))
            labels.append(a["label"])
        stacked = np.stack(masks) if masks else np.zeros((0, h, w), np.uint8)
        return target_from_masks(stacked, np.asarray(labels, np.int64))


def open_instance_dataset(ref: str | Path, split: str | None = None) -> InstanceDataset:
    """A COCO instances JSON (the file, or a folder holding ``annotations.json``), or a VOC folder
    with ``SegmentationObject/`` (or labelme's ``SegmentationObjectPNG/``) beside ``SegmentationClass``."""
    ref = Path(ref)
    if ref.is_dir() and (ref / "annotations.json").is_file():
        ref = ref / "annotations.json"
    if ref.is_file():
        return _open_coco(ref)
    if not ref.is_dir():
        raise ConfigError(f"dataset {ref}: no such file or folder")
    object_dirs = [ref / d for d in ("SegmentationObject", "SegmentationObjectPNG") if (ref / d).is_dir()]
    if not object_dirs or not (ref / "JPEGImages").is_dir():
        raise ConfigError(
            f"dataset {ref}: instance datasets are a COCO JSON or a VOC folder with JPEGImages/ and "
            "SegmentationObject/ (found neither)"
        )
    names = _read_names(ref / "class_names.txt")
    if names is None:
        raise ConfigError(f"dataset {ref}: class_names.txt is required (the class of index i on line i + 1)")
    semantic = open_dataset(ref, split)  # pairs images with SegmentationClass masks, the same checks
    samples = []
    for s in semantic.samples:
        found = next(
            (d / f"{s.name}{e}" for d in object_dirs for e in (".png", ".npy") if (d / f"{s.name}{e}").is_file()), None
        )
        if found is None:
            raise ConfigError(f"dataset {ref}: no object mask for '{s.name}' in {', '.join(map(str, object_dirs))}")
        samples.append(InstanceSample(s.name, s.image_path, found, s.mask_path))
    return InstanceDataset(ref, tuple(samples), names, "voc")


def _open_coco(path: Path) -> InstanceDataset:
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read COCO JSON: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations")):
        raise ConfigError(f"{path}: not a COCO instances file (needs 'images' and 'annotations' lists)")
    try:
        categories = sorted(data.get("categories") or [], key=lambda c: int(c["id"]))
        # index 0 is the background: labelme writes it as category 0, COCO itself has none
        names = [str(c["name"]) for c in categories]
        index = {int(c["id"]): i for i, c in enumerate(categories)}
        if not categories or int(categories[0]["id"]) != 0:
            names = ["_background_", *names]
            index = {k: v + 1 for k, v in index.items()}
        by_image: dict[int, list[dict[str, object]]] = {}
        for a in data["annotations"]:
            if a.get("iscrowd", 0):
                continue  # crowd regions are neither objects to learn nor to find
            if int(a["category_id"]) not in index:
                raise ConfigError(f"{path}: annotation {a.get('id')}: unknown category_id {a['category_id']}")
            by_image.setdefault(int(a["image_id"]), []).append(
                {"segmentation": a["segmentation"], "label": index[int(a["category_id"])]}
            )
        samples = []
        for im in data["images"]:
            image_path = (path.parent / str(im["file_name"])).resolve()
            if not image_path.is_file():
                raise ConfigError(f"{path}: image {im['file_name']} does not exist ({image_path})")
            samples.append(
                InstanceSample(
                    Path(str(im["file_name"])).stem,
                    image_path,
                    annotations=tuple(by_image.get(int(im["id"]), [])),
                    height=int(im["height"]),
                    width=int(im["width"]),
                )
            )
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{path}: malformed COCO entry: {type(e).__name__} {e}") from None
    if not samples:
        raise ConfigError(f"{path}: no images")
    return InstanceDataset(path, tuple(samples), tuple(names), "coco")
