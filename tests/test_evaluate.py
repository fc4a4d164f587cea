"""The FCN paper's metrics, proved against an independent per-pixel implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamseg.evaluate import ConfusionMatrix, scores


def reference(truth: np.ndarray, pred: np.ndarray, n: int, ignore: int = 255) -> dict[str, float]:
    """Straight from the paper's formulas, class by class over label arrays (no confusion matrix)."""
    keep = truth != ignore
    t, p = truth[keep], pred[keep]
    accs, ius, fw, total = [], [], 0.0, t.size
    for i in range(n):
        t_i = int((t == i).sum())
        n_ii = int(((t == i) & (p == i)).sum())
        predicted_i = int((p == i).sum())
        union = t_i + predicted_i - n_ii
        if t_i:
            accs.append(n_ii / t_i)
        if union:
            ius.append(n_ii / union)
            fw += t_i * (n_ii / union)
    return {
        "pixel_accuracy": float((t == p).sum() / total),
        "mean_accuracy": sum(accs) / len(accs),
        "mean_iu": sum(ius) / len(ius),
        "frequency_weighted_iu": fw / total,
    }


@pytest.mark.parametrize("seed", range(8))
def test_metrics_match_an_independent_implementation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 12))
    truth = rng.integers(0, n, (40, 50)).astype(np.uint8)
    pred = np.where(rng.random((40, 50)) < 0.6, truth, rng.integers(0, n, (40, 50))).astype(np.uint8)
    truth[rng.random((40, 50)) < 0.1] = 255  # ignored pixels
    if seed % 2:  # a class absent from truth and prediction, and one only predicted
        truth[truth == n - 1] = 0
        pred[pred == n - 1] = 0
        truth[truth == n - 2] = 1
    cm = ConfusionMatrix(n)
    for rows in (slice(0, 20), slice(20, 40)):  # accumulates over several images
        cm.update(truth[rows], pred[rows])
    got = scores(cm.matrix)
    want = reference(truth, pred, n)
    for key, value in want.items():
        assert getattr(got, key) == pytest.approx(value, rel=1e-12), key


def test_absent_classes_and_perfect_prediction() -> None:
    truth = np.array([[0, 0, 1, 1], [0, 0, 1, 255]], np.uint8)
    s = scores(_cm(truth, truth, 4))
    assert (s.pixel_accuracy, s.mean_accuracy, s.mean_iu, s.frequency_weighted_iu) == (1.0, 1.0, 1.0, 1.0)
    assert s.per_class_iu[:2] == (1.0, 1.0) and all(math.isnan(v) for v in s.per_class_iu[2:])
    assert s.confusion.sum() == 7  # the ignored pixel is not counted


def test_predicted_but_absent_class_counts_as_zero_iu() -> None:
    truth = np.zeros((2, 2), np.uint8)
    pred = np.array([[0, 0], [0, 2]], np.uint8)
    s = scores(_cm(truth, pred, 3))
    assert s.per_class_iu[2] == 0.0 and math.isnan(s.per_class_iu[1])
    assert s.mean_iu == pytest.approx((0.75 + 0.0) / 2)
    assert s.mean_accuracy == pytest.approx(0.75)  # only class 0 has truth pixels


def test_bad_input_is_rejected() -> None:
    cm = ConfusionMatrix(2)
    with pytest.raises(ValueError, match="differ in shape"):
        cm.update(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match=r"class index 5 outside 0\.\.1"):
        cm.update(np.zeros((2, 2), np.uint8), np.full((2, 2), 5, np.uint8))


def _cm(truth: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    cm = ConfusionMatrix(n)
    cm.update(truth, pred)
    return cm.matrix
