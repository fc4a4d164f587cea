"""Shared fixtures: the sample clip, and tiny ONNX models with their sidecars built with onnx.helper.

The graph is a 1x1 convolution with small integer weights, so with mean 0 / std 1 every logit is
an exact integer in float32 and every backend must give the labels of the ``reference_logits`` fixture.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamseg.contract import LoadedModel, load_model


def _weights(classes: int) -> np.ndarray:
    """(classes, 3) weights in -2..2: distinct rows, so classes win on different colors."""
    return ((np.arange(classes * 3).reshape(classes, 3) * 7) % 5 - 2).astype(np.float32)


def _graph(layout: str, height: int, width: int, classes: int, kind: str, in_name: str, out_name: str) -> Any:
    from onnx import TensorProto, helper, numpy_helper

    w = _weights(classes)
    nodes = []
    in_type = TensorProto.UINT8 if kind == "uint8_input" else TensorProto.FLOAT
    x = in_name
    if kind == "uint8_input":
        nodes.append(helper.make_node("Cast", [in_name], ["xf"], to=TensorProto.FLOAT))
        x = "xf"
    if layout == "NCHW":
        inits = [numpy_helper.from_array(w.reshape(classes, 3, 1, 1), "w")]
        nodes.append(helper.make_node("Conv", [x, "w"], ["logits"]))
        in_shape, out_shape, axis = ["N", 3, height, width], ["N", classes, height, width], 1
    else:
        inits = [numpy_helper.from_array(np.ascontiguousarray(w.T), "w")]
        nodes.append(helper.make_node("MatMul", [x, "w"], ["logits"]))
        in_shape, out_shape, axis = ["N", height, width, 3], ["N", height, width, classes], 3
    out_type = TensorProto.FLOAT
    if kind in ("class_map", "class_map_float"):
        nodes.append(helper.make_node("ArgMax", ["logits"], ["labels"], axis=axis, keepdims=0))
        out_shape, out_type = ["N", height, width], TensorProto.INT64
        if kind == "class_map_float":
            nodes.append(helper.make_node("Cast", ["labels"], ["labels_f"], to=TensorProto.FLOAT))
            out_type = TensorProto.FLOAT
        nodes.append(helper.make_node("Identity", [nodes[-1].output[0]], [out_name]))
    else:
        nodes.append(helper.make_node("Identity", ["logits"], [out_name]))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(in_name, in_type, in_shape)],
        [helper.make_tensor_value_info(out_name, out_type, out_shape)],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _torchscript_twin(path: Path, g: dict[str, Any]) -> bool:
    """Write the tiny graph's function as TorchScript (logits out); False when torch is missing."""
    try:
        import torch
    except ImportError:
        return False
    w = torch.from_numpy(_weights(g["classes"]))
    if g["layout"] == "NCHW":
        conv = torch.nn.Conv2d(3, g["classes"], 1, bias=False)
        conv.weight.data = w.reshape(g["classes"], 3, 1, 1).clone()
        module: torch.nn.Module = conv
    else:
        linear = torch.nn.Linear(3, g["classes"], bias=False)  # acts on the last (channel) axis
        linear.weight.data = w.clone()
        module = linear
    torch.jit.save(torch.jit.script(module.eval()), str(path))
    return True


@pytest.fixture
def make_model(tmp_path: Path) -> Callable[..., LoadedModel]:
    """Build a tiny model; ``graph`` sets what the ONNX file is, ``sidecar`` overrides what it claims.

    graph keys: layout, height, width, classes, kind (logits, class_map, class_map_float,
    uint8_input), in_name, out_name. Without overrides the sidecar matches the graph.
    """
    import onnx

    def make(graph: dict[str, Any] | None = None, sidecar: dict[str, Any] | None = None) -> LoadedModel:
        g = {"layout": "NCHW", "height": 8, "width": 12, "classes": 3, "kind": "logits"}
        g |= {"in_name": "input", "out_name": "scores"} | (graph or {})
        folder = tmp_path / f"model{len(list(tmp_path.glob('model*')))}"
        folder.mkdir()
        onnx.save(_graph(**g), str(folder / "tiny.onnx"))
        kind = "logits" if g["kind"] == "uint8_input" else g["kind"].replace("_float", "")
        doc: dict[str, Any] = {
            "name": "tiny",
            "onnx": "tiny.onnx",
            "input": {"name": g["in_name"], "layout": g["layout"], "height": g["height"], "width": g["width"]},
            "output": {"name": g["out_name"], "kind": kind},
            "classes": [{"name": f"c{i}", "color": [40 * i, 255 - 40 * i, 7 * i]} for i in range(g["classes"])],
        }
        for key, value in (sidecar or {}).items():  # "input.name": "x" style overrides
            *parents, leaf = key.split(".")
            node = doc
            for p in parents:
                node = node[p]
            node[leaf] = value
        if g["kind"] in ("logits", "class_map") and _torchscript_twin(folder / "tiny.ts", g):
            doc["checkpoint"] = "tiny.ts"  # the same function for the torch backend
        (folder / "tiny.json").write_text(json.dumps(doc))
        return load_model(str(folder / "tiny.json"))

    return make


@pytest.fixture
def reference_logits() -> Callable[[np.ndarray, str, int], np.ndarray]:
    """What the tiny graph computes, in numpy: (batch, layout, classes) -> logits in that layout."""

    def logits(x: np.ndarray, layout: str, classes: int) -> np.ndarray:
        w = _weights(classes)
        return np.einsum("nchw,kc->nkhw", x, w) if layout == "NCHW" else np.einsum("nhwc,kc->nhwk", x, w)

    return logits


@pytest.fixture(scope="session")
def bikes() -> Path:
    """The real clip samples/bikes.mp4 (640x272, 25 fps, 250 frames), fetched by `make samples`."""
    path = Path(__file__).resolve().parent.parent / "samples" / "bikes.mp4"
    if not path.is_file():
        pytest.fail("samples/bikes.mp4 is missing: run `make samples` (streamseg fetch-sample)")
    return path
