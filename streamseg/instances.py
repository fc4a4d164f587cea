"""Instances (Mask R-CNN's output) in the pipeline: the typed value, the class map painted from
them, and their outlines. Pure functions; no torch here.

An instance model gives, per frame, K detections: a box, a class, a score and a mask of
probabilities at the model's input size. Those scoring at least the contract's ``score_threshold``
become :class:`Instance` values (mask: probability >= ``mask_threshold``, 0.5 as in the paper).
The class map the area statistics count is painted from them in increasing score order, so where
two masks overlap the higher-scoring instance's class wins; pixels no mask covers are class 0
(the background).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from .contract import ModelContract
from .frames import Frame
from .postprocess import area_ratios
from .stages import CpuStage, Processed, Stage
from .yuv import edit_as_bgr, i420_size

if TYPE_CHECKING:
    from .temporal import TemporalFilter

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Instance:
    """One detected object at the class map's resolution (the model's input size)."""

    label: int  # class index (0 is the background; never a detection's)
    score: float  # 0..1
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in class-map pixels
    mask: np.ndarray  # bool (h, w) at class-map resolution

    def __post_init__(self) -> None:
        if self.mask.dtype != np.bool_ or self.mask.ndim != 2:
            raise ValueError(f"Instance: expected a bool (h, w) mask, got {self.mask.dtype} {self.mask.shape}")
        if self.label < 1:
            raise ValueError(f"Instance: label must be a class >= 1 (0 is the background), got {self.label}")

    @property
    def area(self) -> int:
        """Mask pixels at class-map resolution."""
        return int(np.count_nonzero(self.mask))


@dataclass(frozen=True, slots=True)
class InstanceOutput:
    """What an instance graph gives for one image, as arrays (the backend's output, before thresholds):
    boxes float (K, 4), labels int (K,), scores float (K,), masks float (K, 1, h, w) or (K, h, w)."""

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    masks: np.ndarray

    def __post_init__(self) -> None:
        k = self.scores.shape[0] if self.scores.ndim == 1 else -1
        masks_ok = (
            self.masks.ndim in (3, 4)
            and self.masks.shape[0] == k
            and (self.masks.ndim == 3 or self.masks.shape[1] == 1)
        )
        if k < 0 or self.boxes.shape != (k, 4) or self.labels.shape != (k,) or not masks_ok:
            raise ValueError(
                "InstanceOutput: expected boxes (K, 4), labels (K,), scores (K,), masks (K, 1, h, w) with one K, "
                f"got {self.boxes.shape}, {self.labels.shape}, {self.scores.shape}, {self.masks.shape}"
            )


def select(output: InstanceOutput, score_threshold: float, mask_threshold: float = 0.5) -> tuple[Instance, ...]:
    """The detections scoring at least ``score_threshold``, by decreasing score, masks thresholded."""
    masks = output.masks[:, 0] if output.masks.ndim == 4 else output.masks
    order = np.argsort(-output.scores, kind="stable")
    return tuple(
        Instance(
            int(output.labels[i]),
            float(output.scores[i]),
            (
                float(output.boxes[i, 0]),
                float(output.boxes[i, 1]),
                float(output.boxes[i, 2]),
                float(output.boxes[i, 3]),
            ),
            masks[i] >= mask_threshold,
        )
        for i in order
        if output.scores[i] >= score_threshold and output.labels[i] >= 1
    )


def class_map(instances: tuple[Instance, ...], height: int, width: int) -> np.ndarray:
    """uint8 (height, width) classes: masks painted in increasing score order (the best on top), 0 elsewhere."""
    out = np.zeros((height, width), np.uint8)
    for inst in sorted(instances, key=lambda i: i.score):
        if inst.mask.shape != (height, width):
            raise ValueError(f"Instance mask {inst.mask.shape} does not fit the class map {(height, width)}")
        out[inst.mask] = inst.label
    return out


def counts(instances: tuple[Instance, ...], num_classes: int) -> np.ndarray:
    """int64 (num_classes,): instances per class (index 0, the background, is always 0)."""
    return np.bincount([i.label for i in instances], minlength=num_classes)[:num_classes].astype(np.int64)


def draw_outlines(
    image: np.ndarray, instances: tuple[Instance, ...], colors: np.ndarray, thickness: int = 2
) -> np.ndarray:
    """Outline each instance's mask on a BGR uint8 image, in its class's color (``colors``: (C, 3)
    RGB, the contract's), scaled from class-map to image resolution. Writes into ``image`` and
    returns it."""
    h, w = image.shape[:2]
    for inst in instances:
        mask: np.ndarray = inst.mask.astype(np.uint8)
        if mask.shape != (h, w):
            # nearest, as for class maps: a bilinear mask would grow a soft, shifted edge
            mask = np.asarray(cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST_EXACT))
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        r, g, b = (int(v) for v in colors[inst.label])
        cv2.drawContours(image, contours, -1, (b, g, r), thickness, lineType=cv2.LINE_AA)
    return image


def draw_outlines_i420(
    data: np.ndarray, instances: tuple[Instance, ...], colors: np.ndarray, thickness: int = 2
) -> np.ndarray:
    """``draw_outlines`` on a packed I420 picture, in place: each outline is drawn in BGR on a copy of
    its own bounding box only (``yuv.edit_as_bgr``), so the frame is never converted whole."""
    h, w = i420_size(data)
    for inst in instances:
        mask: np.ndarray = inst.mask.astype(np.uint8)
        if mask.shape != (h, w):
            mask = np.asarray(cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST_EXACT))
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        if not contours:
            continue
        x, y, bw, bh = cv2.boundingRect(np.concatenate(contours))
        r, g, b = (int(v) for v in colors[inst.label])
        m = thickness + 1  # the line's width and antialiasing reach past the contour

        def draw(roi: np.ndarray, dx: int, dy: int, c: Any = contours, color: tuple[int, int, int] = (b, g, r)) -> None:
            cv2.drawContours(roi, c, -1, color, thickness, lineType=cv2.LINE_AA, offset=(-dx, -dy))

        edit_as_bgr(data, (max(0, x - m), max(0, y - m), min(w, x + bw + m), min(h, y + bh + m)), draw)
    return data


def records(
    instances: tuple[Instance, ...], class_names: list[str], frame_hw: tuple[int, int]
) -> list[dict[str, object]]:
    """Per-instance JSON records: class, score, box in frame pixels (x1, y1, x2, y2), mask area in
    frame pixels (the class-map mask's pixel count scaled by the frame/class-map area ratio)."""
    out: list[dict[str, object]] = []
    fh, fw = frame_hw
    for inst in instances:
        h, w = inst.mask.shape
        sx, sy = fw / w, fh / h
        x1, y1, x2, y2 = inst.box
        out.append(
            {
                "class": class_names[inst.label],
                "score": round(inst.score, 4),
                "box": [round(x1 * sx, 1), round(y1 * sy, 1), round(x2 * sx, 1), round(y2 * sy, 1)],
                "mask_area": round(inst.area * sx * sy),
            }
        )
    return out


class InstanceStage(Stage[Any]):
    """The CPU stage of an instance model: preprocess as ``CpuStage``; postprocess takes what
    ``Backend.infer_instances`` gives (one :class:`InstanceOutput` per frame), keeps the detections
    at or above the contract's score threshold and paints the class map the area statistics count.
    Temporal smoothing of class maps does not apply (instances are per frame)."""

    def __init__(self, contract: ModelContract, temporal: TemporalFilter | None = None) -> None:
        super().__init__(contract, None)
        if temporal is not None and temporal.active:
            log.warning("postprocess.temporal: not applied to instance models (their instances are per frame)")
        self._cpu = CpuStage(contract)

    @property
    def description(self) -> str:
        return "cpu (instances)"

    def preprocess(self, frames: Sequence[Frame]) -> np.ndarray:
        return self._cpu.preprocess(frames)

    def postprocess(self, frames: Sequence[Frame], output: Any) -> list[Processed]:
        if not isinstance(output, list) or not all(isinstance(o, InstanceOutput) for o in output):
            raise TypeError(
                f"InstanceStage: expected Backend.infer_instances' list of InstanceOutput, got {type(output)}"
            )
        o, i = self.contract.output, self.contract.input
        out = []
        for result in output:
            found = select(result, o.score_threshold, o.mask_threshold)
            cmap = class_map(found, i.height, i.width)
            out.append(Processed(cmap, area_ratios(cmap, self.contract.num_classes), instances=found))
        return out
