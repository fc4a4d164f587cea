"""Export a module with the legacy (TorchScript) ONNX exporter, as the zoo's export does, and run it in ONNX Runtime."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np


def export_and_run(model: Any, example: Any, run_on: Any) -> tuple[Any, np.ndarray]:
    """Return (onnx ModelProto, ONNX Runtime output for ``run_on``); the batch axis is dynamic."""
    import onnx
    import onnxruntime as ort
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            model,
            example,
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        )
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": run_on.numpy()})
    return onnx.load_from_string(buffer.getvalue()), out
