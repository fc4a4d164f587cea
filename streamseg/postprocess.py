"""Engine output -> class map -> per-class area ratios. Pure functions, plus one small smoother."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from .contract import ModelContract
from .errors import BackendError


def to_class_maps(output: np.ndarray, contract: ModelContract) -> np.ndarray:
    """Turn a batch of engine outputs into uint8 class maps (N, h, w).

    Logits and probabilities are reduced with argmax over the class axis; a class map is only
    squeezed and narrowed. Graphs with the argmax inside are faster on every backend.
    """
    kind = contract.output.kind
    if kind == "class_map":
        maps: np.ndarray = output[:, 0] if output.ndim == 4 else output
        if maps.dtype != np.uint8:
            if maps.size and (maps.min() < 0 or maps.max() >= contract.num_classes):
                bad = int(maps.min()) if maps.min() < 0 else int(maps.max())
                raise BackendError(
                    f"model '{contract.name}' produced class index {bad} but has {contract.num_classes} classes"
                )
            maps = maps.astype(np.uint8)
        return maps
    axis = 1 if contract.input.layout == "NCHW" else 3
    labels: np.ndarray = np.argmax(output, axis=axis).astype(np.uint8)
    return labels


def resize_labels(class_map: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a class map with nearest neighbour, pixel centres aligned.

    Interpolating labels would invent classes. OpenCV's plain INTER_NEAREST samples source pixel
    floor(x * src / dst), which shifts the map by up to half a source pixel against a bilinear-resized
    image (measured: 0.929 -> 0.949 mean IU for one checkpoint scored both ways); INTER_NEAREST_EXACT
    samples floor((x + 0.5) * src / dst), so a down-and-up round trip is the identity.
    """
    if class_map.shape[:2] == (height, width):
        return class_map
    resized: np.ndarray = cv2.resize(class_map, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
    return resized


@lru_cache(maxsize=64)
def nearest_index(src: int, dst: int) -> np.ndarray:
    """The source index ``resize_labels`` reads for each of ``dst`` output positions (non-decreasing).

    Taken from OpenCV itself rather than the formula: its fixed-point arithmetic breaks exact ties
    differently (e.g. 256 -> 1920), and the GPU path must match it index for index.
    """
    row = np.arange(src, dtype=np.float32)[None, :]  # float32 holds every index below 2**24 exactly
    index: np.ndarray = cv2.resize(row, (dst, 1), interpolation=cv2.INTER_NEAREST_EXACT)[0].astype(np.int64)
    index.flags.writeable = False  # shared through the cache
    return index


def area_ratios(class_map: np.ndarray, num_classes: int) -> np.ndarray:
    """Fraction of the class map's pixels in each class (exact counts; sums to 1)."""
    counts = np.bincount(class_map.ravel(), minlength=num_classes)
    if counts.shape[0] > num_classes:
        raise BackendError(f"class map holds class index {counts.shape[0] - 1} but the model has {num_classes} classes")
    return counts / class_map.size


class Smoother:
    """Exponential smoothing per stream: s = w * s_prev + (1 - w) * x. w = 0 passes x through."""

    def __init__(self, weight: float) -> None:
        if not 0.0 <= weight < 1.0:
            raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
        self.weight = weight
        self._state: dict[str, np.ndarray] = {}

    def forget(self, stream: str) -> None:
        """Drop a removed stream's state: added again, it starts afresh."""
        self._state.pop(stream, None)

    def update(self, stream: str, ratios: np.ndarray) -> np.ndarray:
        prev = self._state.get(stream)
        value = ratios if prev is None or self.weight == 0 else self.weight * prev + (1 - self.weight) * ratios
        self._state[stream] = value
        return value
