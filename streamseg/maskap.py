"""Mask AP for instance models: COCO's AP (IoU 0.50:0.95), AP50 and AP75, computed by pycocotools'
own ``COCOeval`` (iouType "segm", 101-point interpolated precision, at most 100 detections per
image), beside the FCN paper's four metrics that semantic models get. No torch here.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field

import numpy as np

from ._deps import require
from .datasets import InstanceTarget


@dataclass(frozen=True)
class MaskAP:
    ap: float  # mean over IoU 0.50:0.05:0.95; -1 when the truth has no instances (COCO's convention)
    ap50: float
    ap75: float
    images: int
    instances: int  # ground-truth instances
    detections: int = 0  # predicted instances scored

    def as_dict(self) -> dict[str, object]:
        return {
            "mask_ap": self.ap,
            "mask_ap50": self.ap50,
            "mask_ap75": self.ap75,
            "images": self.images,
            "instances": self.instances,
            "detections": self.detections,
        }


@dataclass
class MaskAPAccumulator:
    """Collects (truth, prediction) per image; ``result()`` runs COCOeval once over all of them."""

    _truth: list[dict[str, object]] = field(default_factory=list)
    _detections: list[dict[str, object]] = field(default_factory=list)
    _images: list[dict[str, int]] = field(default_factory=list)
    _labels: set[int] = field(default_factory=set)

    def update(self, truth: InstanceTarget, labels: np.ndarray, scores: np.ndarray, masks: np.ndarray) -> None:
        """One image: its truth, and predicted ``labels`` (K,), ``scores`` (K,), binary ``masks``
        (K, H, W) at the truth's size."""
        mask_utils = require("pycocotools.mask", "rle", "mask AP (streamseg eval of instance models)")
        h, w = truth.masks.shape[1:]
        if masks.shape[1:] != (h, w) and masks.shape[0]:
            raise ValueError(f"predicted masks {masks.shape[1:]} and truth {(h, w)} differ in size")
        image_id = len(self._images) + 1
        self._images.append({"id": image_id, "height": int(h), "width": int(w)})
        for label, m in zip(truth.labels, truth.masks, strict=True):
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            self._truth.append(
                {
                    "id": len(self._truth) + 1,
                    "image_id": image_id,
                    "category_id": int(label),
                    "segmentation": rle,
                    "area": float(mask_utils.area(rle)),
                    "bbox": mask_utils.toBbox(rle).tolist(),
                    "iscrowd": 0,
                }
            )
            self._labels.add(int(label))
        for label, score, m in zip(labels, scores, masks, strict=True):
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            self._detections.append(
                {"image_id": image_id, "category_id": int(label), "segmentation": rle, "score": float(score)}
            )
            self._labels.add(int(label))

    def result(self) -> MaskAP:
        coco = require("pycocotools.coco", "rle", "mask AP (streamseg eval of instance models)")
        cocoeval = require("pycocotools.cocoeval", "rle", "mask AP (streamseg eval of instance models)")
        if not self._truth:
            return MaskAP(-1.0, -1.0, -1.0, len(self._images), 0, len(self._detections))
        gt = coco.COCO()
        gt.dataset = {
            "images": self._images,
            "annotations": self._truth,
            "categories": [{"id": c} for c in sorted(self._labels)],
        }
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            gt.createIndex()
            dt = gt.loadRes(self._detections) if self._detections else coco.COCO()
            if not self._detections:
                return MaskAP(0.0, 0.0, 0.0, len(self._images), len(self._truth), 0)
            ev = cocoeval.COCOeval(gt, dt, iouType="segm")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats = ev.stats
        n = len(self._images), len(self._truth), len(self._detections)
        return MaskAP(float(stats[0]), float(stats[1]), float(stats[2]), *n)
