"""Scoring segmentation: the four metrics of the FCN paper from one confusion matrix.

With n_ij the pixels of class i predicted as j, t_i = sum_j n_ij and n_cl classes (Long et al.,
2015, section 5): pixel accuracy sum_i n_ii / sum_i t_i; mean accuracy (1/n_cl) sum_i n_ii / t_i;
mean IU (1/n_cl) sum_i n_ii / (t_i + sum_j n_ji - n_ii); frequency-weighted IU
(sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii). As in the authors' scoring code, a
class absent from both truth and prediction (0/0) is left out of the means rather than counted
as 0 or 1; a class predicted but absent from the truth counts with IU 0. Pixels labelled with the
ignore index are not counted at all. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .datasets import IGNORE_INDEX


class ConfusionMatrix:
    """Accumulates (truth, prediction) pixel counts over a dataset."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), np.int64)  # rows: truth, columns: prediction

    def update(self, truth: np.ndarray, pred: np.ndarray) -> None:
        if truth.shape != pred.shape:
            raise ValueError(f"truth {truth.shape} and prediction {pred.shape} differ in shape")
        keep = truth != self.ignore_index
        t = truth[keep].astype(np.int64)
        p = pred[keep].astype(np.int64)
        n = self.num_classes
        if t.size and (t.max() >= n or p.max() >= n):
            raise ValueError(f"class index {max(int(t.max()), int(p.max()))} outside 0..{n - 1}")
        self.matrix += np.bincount(n * t + p, minlength=n * n).reshape(n, n)


@dataclass(frozen=True)
class Scores:
    pixel_accuracy: float
    mean_accuracy: float
    mean_iu: float
    frequency_weighted_iu: float
    per_class_iu: tuple[float, ...]  # nan for classes absent from truth and prediction
    confusion: np.ndarray

    def as_dict(self, class_names: list[str] | None = None) -> dict[str, object]:
        names = class_names or [str(i) for i in range(len(self.per_class_iu))]
        return {
            "pixel_accuracy": self.pixel_accuracy,
            "mean_accuracy": self.mean_accuracy,
            "mean_iu": self.mean_iu,
            "frequency_weighted_iu": self.frequency_weighted_iu,
            "per_class_iu": {n: (None if np.isnan(v) else v) for n, v in zip(names, self.per_class_iu, strict=True)},
            "confusion": self.confusion.tolist(),
        }


def scores(matrix: np.ndarray) -> Scores:
    """The FCN paper's metrics from a confusion matrix (rows truth, columns prediction)."""
    hist = matrix.astype(np.float64)
    diag = np.diag(hist)
    truth = hist.sum(axis=1)
    pred = hist.sum(axis=0)
    total = hist.sum()
    union = truth + pred - diag
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.where(truth > 0, diag / truth, np.nan)
        iu = np.where(union > 0, diag / union, np.nan)
    freq = truth / total if total else np.zeros_like(truth)
    present = truth > 0
    return Scores(
        pixel_accuracy=float(diag.sum() / total) if total else float("nan"),
        mean_accuracy=float(np.nanmean(acc)) if present.any() else float("nan"),
        mean_iu=float(np.nanmean(iu)) if (union > 0).any() else float("nan"),
        frequency_weighted_iu=float((freq[present] * iu[present]).sum()) if total else float("nan"),
        per_class_iu=tuple(float(v) for v in iu),
        confusion=matrix.copy(),
    )
