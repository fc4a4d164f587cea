"""Scoring a model the pipeline can run on a dataset: ``evaluate_backend`` (semantic models: the FCN
paper's four metrics) and ``evaluate_instances_backend`` (instance models: mask AP).

The metrics themselves (``ConfusionMatrix``, ``scores``, the FCN paper's four) live in
``streamseg.scoring``, below both this module and the backends (TensorRT's accuracy gate scores a
new engine with them); they are re-exported here for the training code and the tests.
"""

from __future__ import annotations

import numpy as np

from .maskap import MaskAP
from .scoring import ConfusionMatrix, Scores, scores


def evaluate_backend(
    model_ref: str, data: str, split: str | None = None, backend: str = "auto", device: str = "auto", batch: int = 1
) -> Scores:
    """Score any model the pipeline can run (ONNX, checkpoint; TensorRT engines later) on a dataset,
    through the pipeline's own preprocess, backend and postprocess."""

    from .backends import select_backend
    from .contract import load_model
    from .datasets import open_dataset
    from .errors import ConfigError
    from .postprocess import resize_labels, to_class_maps
    from .preprocess import preprocess

    model = load_model(model_ref)
    c = model.contract
    dataset = open_dataset(data, split)
    if dataset.class_names is not None and list(dataset.class_names) != c.class_names:
        raise ConfigError(
            f"dataset {data}: classes {list(dataset.class_names)} differ from the model's {c.class_names}"
        )
    prefer = ["tensorrt", "torch", "onnxruntime"]
    cm = ConfusionMatrix(c.num_classes)
    with select_backend(backend, prefer, model, device, 0, batch) as engine:
        for i in range(len(dataset)):
            image, mask = dataset.load(i)
            labels = to_class_maps(engine.infer(preprocess([image], c.input)), c)[0]
            cm.update(mask, resize_labels(labels, mask.shape[1], mask.shape[0]))
    return scores(cm.matrix)


__all__ = ["ConfusionMatrix", "Scores", "evaluate_backend", "scores"]


def evaluate_instances_backend(
    model_ref: str, data: str, split: str | None = None, backend: str = "auto", device: str = "auto"
) -> MaskAP:
    """Mask AP (AP, AP50, AP75 by pycocotools) of an instance model (contract output kind
    ``instances``) on an instance dataset (COCO JSON or VOC SegmentationObject), through the
    pipeline's preprocess and backend. As COCO scores detectors, every detection the graph gives
    is ranked by its score (the contract's score threshold is for serving, and would only cut the
    precision-recall curve short); masks are resized to the image (bilinear probabilities) and
    thresholded at the contract's mask threshold."""
    import cv2

    from .backends import select_backend
    from .contract import load_model
    from .datasets import open_instance_dataset
    from .errors import ConfigError
    from .maskap import MaskAPAccumulator
    from .preprocess import preprocess

    model = load_model(model_ref)
    c = model.contract
    if c.output.kind != "instances":
        raise ConfigError(f"{model.sidecar}: output.kind is {c.output.kind}: mask AP is for instance models")
    dataset = open_instance_dataset(data, split)
    if list(dataset.class_names) != c.class_names:
        raise ConfigError(
            f"dataset {data}: classes {list(dataset.class_names)} differ from the model's {c.class_names}"
        )
    acc = MaskAPAccumulator()
    o = c.output
    with select_backend(backend, ["tensorrt", "torch", "onnxruntime"], model, device, 0, 1) as engine:
        for i in range(len(dataset)):
            image, truth = dataset.load(i)
            (out,) = engine.infer_instances(preprocess([image], c.input))
            h, w = image.shape[:2]
            probs = out.masks[:, 0] if out.masks.ndim == 4 else out.masks
            masks = np.array(
                [
                    cv2.resize(p.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) >= o.mask_threshold
                    for p in probs
                ],
                np.uint8,
            ).reshape(-1, h, w)
            acc.update(truth, out.labels, out.scores, masks)
    return acc.result()
