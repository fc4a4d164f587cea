"""Scoring a model the pipeline can run on a dataset: ``evaluate_backend``.

The metrics themselves (``ConfusionMatrix``, ``scores``, the FCN paper's four) live in
``streamseg.scoring``, below both this module and the backends (TensorRT's accuracy gate scores a
new engine with them); they are re-exported here for the training code and the tests.
"""

from __future__ import annotations

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
