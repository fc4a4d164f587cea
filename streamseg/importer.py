"""`streamseg import-model`: models from elsewhere get the sidecar the pipeline needs, checked by a run.

Two kinds of input:

- an ONNX file: the sidecar is read off the graph (the input's name, size and layout; the output's
  kind: an integer (N,H,W) output is a class map, a float output with a class axis is logits, or
  probabilities when the graph ends in Softmax), plus a label set (``streamseg.labels``) and the
  normalization the model was trained with. The sidecar goes beside the ONNX file (or ``out``).
- a zoo torchvision network (``fcn_resnet50``, ``deeplabv3_mobilenet_v3_large``, ...) with a local
  torchvision state dict: written as a streamseg checkpoint with its sidecar, which the torch backend
  runs and ``streamseg export`` turns into ONNX with the parity gate.

Either way the model then runs once on a frame through the project's backend (ONNX Runtime, or
torch), with the sidecar's own start-up checks; anything that does not fit is a one-line
:class:`~streamseg.errors.ModelError` (exit 2), and nothing is left written.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._deps import require
from .contract import ModelContract, load_model, sha256_file
from .errors import ConfigError, ModelError, StreamsegError
from .labels import Label, resolve_labels

# torchvision's (and most ImageNet-trained models') normalization, in the contract's 0..255 scale
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "unit": ((0.0, 0.0, 0.0), (255.0, 255.0, 255.0)),  # pixels / 255 -> 0..1
    "symmetric": ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),  # -> -1..1
    "raw": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # 0..255 as they are
}
_INTEGER = ("uint8", "int8", "int32", "int64", "uint16", "int16", "uint32", "uint64")
# Ops after the class scores that keep them scores (a softmax before an upsample is still probabilities).
_PASS_THROUGH = {"Identity", "Resize", "Upsample", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Cast"}


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What import-model wrote and what the check run saw."""

    sidecar: Path
    contract: ModelContract
    backend: str  # the backend that ran the check
    output_shape: tuple[int, ...]  # the model's output for one frame
    notes: tuple[str, ...] = ()  # things the user should know (a fixed batch size, ...)


def parse_normalization(mean: str, std: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """``--mean``/``--std``: a preset name for both (imagenet, unit, symmetric, raw), or three numbers each
    (comma-separated) in the contract's 0..255 scale."""
    values: list[tuple[float, float, float]] = []
    for flag, text, which in (("--mean", mean, 0), ("--std", std, 1)):
        key = text.strip().lower()
        if key in NORMALIZATIONS:
            values.append(NORMALIZATIONS[key][which])
            continue
        try:
            numbers = [float(v) for v in text.split(",")]
        except ValueError:
            numbers = []
        if len(numbers) != 3 or not all(abs(v) < 1e6 for v in numbers):
            raise ConfigError(
                f"usage: {flag} takes three numbers in the 0..255 scale (e.g. 123.675,116.28,103.53) "
                f"or one of {', '.join(NORMALIZATIONS)}, got '{text}'"
            )
        values.append((numbers[0], numbers[1], numbers[2]))
    if any(s <= 0 for s in values[1]):
        raise ConfigError(f"usage: --std must be > 0 in every channel, got '{std}'")
    return values[0], values[1]


def _check_writable(path: Path, force: bool, folder_made: bool = False) -> None:
    """Before anything is written: never replace a file without --force; the folder exists (or will be made)."""
    if path.is_dir():
        raise ConfigError(f"usage: {path} is a folder, not a file")
    if path.exists() and not force:
        raise ConfigError(f"usage: {path} exists (--force replaces it)")
    if not folder_made and not path.parent.is_dir():
        raise ConfigError(f"usage: {path}: the folder {path.parent} does not exist")
    if path.parent.exists() and not path.parent.is_dir():
        raise ConfigError(f"usage: {path}: {path.parent} is not a folder")


def _classes(labels: tuple[Label, ...]) -> list[dict[str, Any]]:
    return [{"name": n, "color": list(c)} for n, c in labels]


def _sample_frame(height: int, width: int) -> np.ndarray:
    """A BGR frame with structure in it (gradients and a disc), so the check run is not all one value."""
    y, x = np.mgrid[0:height, 0:width]
    frame = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) % 256], -1)
    disc = (y - height / 2) ** 2 + (x - width / 2) ** 2 < (min(height, width) / 4) ** 2
    frame[disc] = (40, 200, 90)
    return frame.astype(np.uint8)


def _check_run(sidecar: Path, backend_name: str) -> tuple[tuple[int, ...], str]:
    """Load the model through the project's backend (its start-up checks against the sidecar) and run one frame."""
    from .backends import backend_class
    from .preprocess import preprocess

    model = load_model(str(sidecar))
    cls = backend_class(backend_name)
    why = cls.model_unsupported_reason(model) or cls.unavailable_reason("cpu")
    if why:
        raise ModelError(f"{sidecar}: cannot check the model with {backend_name}: {why}")
    spec = model.contract.input
    with cls(model, device="cpu", max_batch=1) as backend:
        out = backend.infer(preprocess([_sample_frame(spec.height, spec.width)], spec))
        return tuple(int(d) for d in out.shape), backend.description


# --- ONNX files ------------------------------------------------------------------------------


def _dims(value_info: Any) -> tuple[int | None, ...] | None:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return tuple(int(d.dim_value) if d.HasField("dim_value") else None for d in t.shape.dim)


def _dtype(onnx: Any, value_info: Any) -> str:
    elem = value_info.type.tensor_type.elem_type
    try:
        return str(onnx.helper.tensor_dtype_to_np_dtype(elem))
    except (KeyError, ValueError, TypeError):
        return f"type {elem}"


def _fmt(shape: tuple[int | None, ...]) -> str:
    return "(" + ",".join("?" if d is None else str(d) for d in shape) + ")"


def _load_graph(path: Path) -> Any:
    onnx = require("onnx", None, "import-model (reading the graph)")
    if not path.exists():
        raise ModelError(f"{path}: no such file")
    if not path.is_file():
        raise ModelError(f"{path}: not a file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises its own untyped DecodeError for a file that is not ONNX
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{path}: not an ONNX model ({first})") from None
    if not proto.graph.output or not proto.graph.input:
        raise ModelError(f"{path}: not an ONNX model (the graph has no inputs or no outputs)")
    return onnx, proto


def _inferred_shape(
    onnx: Any, proto: Any, input_name: str, fixed: tuple[int, ...], output: str
) -> tuple[int | None, ...] | None:
    """The output's shape as ONNX's shape inference (with data propagation) gives it for a fixed input
    shape, or None where it cannot tell; ``proto`` is left as it was."""
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    for value in probe.graph.input:
        if value.name == input_name:
            for dim, size in zip(value.type.tensor_type.shape.dim, fixed, strict=True):
                dim.Clear()
                dim.dim_value = size
    for value in probe.graph.output:
        value.type.tensor_type.ClearField("shape")  # the exporter's symbolic dims would be kept as they are
    try:
        inferred = onnx.shape_inference.infer_shapes(probe, data_prop=True).graph.output
    except Exception:  # ONNX's inference fails on some custom ops: then the check run decides
        return None
    return next((_dims(v) for v in inferred if v.name == output), None)


def _ends_in_softmax(proto: Any, output: str) -> bool:
    producer = {o: n for n in proto.graph.node for o in n.output}
    node = producer.get(output)
    while node is not None and node.op_type in _PASS_THROUGH and node.input:
        node = producer.get(node.input[0])
    return node is not None and node.op_type == "Softmax"


def import_onnx(
    model: Path,
    labels: str,
    *,
    out: Path | None = None,
    name: str | None = None,
    size: tuple[int, int] | None = None,
    layout: str | None = None,
    output: str | None = None,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    color: str = "RGB",
    force: bool = False,
) -> ImportReport:
    """Write the sidecar of the ONNX file ``model`` from its graph and ``labels``, after one check run."""
    onnx, proto = _load_graph(model)
    graph = proto.graph
    sidecar = out or model.with_suffix(".json")
    if sidecar.suffix.lower() not in (".json", ".yaml", ".yml"):
        raise ConfigError(f"usage: --out {sidecar}: a sidecar is .json (or .yaml)")
    _check_writable(sidecar, force)
    notes: list[str] = []

    # The input: exactly one that is not an initializer (old exporters list the weights as inputs too).
    weights = {i.name for i in graph.initializer}
    inputs = [v for v in graph.input if v.name not in weights]
    if len(inputs) != 1:
        raise ModelError(
            f"{model}: the graph has {len(inputs)} inputs ({', '.join(v.name for v in inputs)}); "
            "streamseg feeds exactly one image batch"
        )
    inp = inputs[0]
    shape = _dims(inp)
    if shape is None or len(shape) != 4:
        got = "no shape" if shape is None else f"shape {_fmt(shape)}"
        raise ModelError(f"{model}: input '{inp.name}' has {got}; expected an image batch (N,3,H,W) or (N,H,W,3)")
    in_dtype = _dtype(onnx, inp)
    if in_dtype != "float32":
        raise ModelError(f"{model}: input '{inp.name}' is {in_dtype}; streamseg feeds float32 (normalized pixels)")
    if layout is None:
        if shape[1] == 3:
            layout = "NCHW"  # also when the width is 3 too: channels-first is what exporters write
        elif shape[3] == 3:
            layout = "NHWC"
        else:
            raise ModelError(
                f"{model}: input '{inp.name}' has shape {_fmt(shape)}: 3 channels at neither axis 1 (NCHW) "
                "nor axis 3 (NHWC); give --layout if the graph does not state its channels"
            )
    elif shape[1 if layout == "NCHW" else 3] not in (3, None):
        raise ModelError(f"{model}: --layout {layout}: input '{inp.name}' has shape {_fmt(shape)}, not 3 channels")
    h_dim, w_dim = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    if h_dim is None or w_dim is None:
        if size is None:
            raise ModelError(
                f"{model}: input '{inp.name}' has a dynamic height/width {_fmt(shape)}: give --size HxW "
                "(the size frames are resized to)"
            )
        height, width = size
    else:
        if size is not None and size != (h_dim, w_dim):
            raise ModelError(f"{model}: --size {size[0]}x{size[1]}: the graph's input is fixed at {h_dim}x{w_dim}")
        height, width = h_dim, w_dim
    if shape[0] is not None:
        notes.append(f"the graph takes batches of exactly {shape[0]}: set batch: {{max_batch: {shape[0]}}}")

    # The output: the one named, or the first (torchvision's dict output exports as out, then aux).
    outputs = {v.name: v for v in graph.output}
    if output is None:
        output = graph.output[0].name
        if len(outputs) > 1:
            notes.append(f"the graph has {len(outputs)} outputs; reading '{output}' (--output chooses another)")
    elif output not in outputs:
        raise ModelError(f"{model}: --output {output}: the graph has no such output (has {', '.join(outputs)})")
    out_info = outputs[output]
    out_dtype = _dtype(onnx, out_info)
    out_shape = _dims(out_info)
    class_axis = 1 if layout == "NCHW" else 3
    if out_shape is None or (len(out_shape) == 4 and out_shape[class_axis] is None):
        # Exporters leave the class axis symbolic behind a Resize: ONNX's shape inference at this size knows it.
        fixed = (1, 3, height, width) if layout == "NCHW" else (1, height, width, 3)
        out_shape = _inferred_shape(onnx, proto, inp.name, fixed, output) or out_shape
    graph_classes: int | None
    if out_dtype in _INTEGER:
        if out_shape is not None and not (len(out_shape) == 3 or (len(out_shape) == 4 and out_shape[1] == 1)):
            raise ModelError(
                f"{model}: output '{output}' is {out_dtype} {_fmt(out_shape)}: an integer output "
                "must be a class map (N,H,W)"
            )
        kind = "class_map"
        from .backends.onnxruntime import graph_class_count

        graph_classes = graph_class_count(model, output)
    elif out_dtype in ("float32", "float16"):
        if out_shape is not None and len(out_shape) != 4:
            what = "a class map must be an integer type" if len(out_shape) == 3 else "expected (N,C,H,W) or (N,H,W,C)"
            raise ModelError(f"{model}: output '{output}' is {out_dtype} {_fmt(out_shape)}: {what}")
        kind = "probabilities" if _ends_in_softmax(proto, output) else "logits"
        graph_classes = None if out_shape is None else out_shape[class_axis]
        if graph_classes == 1:
            raise ModelError(
                f"{model}: output '{output}' has 1 channel: a single-score (sigmoid) mask is not a "
                "class axis; export two classes or an integer class map"
            )
    else:
        raise ModelError(f"{model}: output '{output}' is {out_dtype}: expected float scores or an integer class map")

    label_set = resolve_labels(labels)
    if graph_classes is not None and graph_classes != len(label_set):
        raise ModelError(
            f"{model}: output '{output}' has {graph_classes} classes, the label set '{labels}' {len(label_set)}"
        )
    producer = " ".join(p for p in (proto.producer_name, proto.producer_version) if p)
    raw = {
        "name": name or model.stem,
        "onnx": os.path.relpath(model.resolve(), sidecar.resolve().parent),
        "description": f"imported from {model.name} ({kind}, {len(label_set)} classes)",
        "input": {
            "name": inp.name,
            "layout": layout,
            "height": height,
            "width": width,
            "color": color,
            "mean": list(mean),
            "std": list(std),
        },
        "output": {"name": output, "kind": kind},
        "classes": _classes(label_set),
        "source": f"{model.name}" + (f", exported by {producer}" if producer else "") + "; streamseg import-model",
        "license": "",
        "sha256": sha256_file(model),
    }
    try:
        ModelContract.model_validate(raw)
    except ValueError as e:
        raise ModelError(f"{model}: the sidecar would not be valid: {str(e).splitlines()[-1].strip()}") from None
    return _write_checked(sidecar, raw, "onnxruntime", notes)


def _write_checked(sidecar: Path, raw: dict[str, Any], backend: str, notes: list[str]) -> ImportReport:
    """Write the sidecar beside its final place, check it by a run, then move it there (or remove it)."""
    tmp = sidecar.with_name(f".{sidecar.stem}.importing{sidecar.suffix}")
    tmp.write_text(json.dumps(raw, indent=2) + "\n")
    try:
        shape, description = _check_run(tmp, backend)
    except StreamsegError as e:
        tmp.unlink(missing_ok=True)
        message = str(e).replace(str(tmp), str(sidecar))
        raise ModelError(f"the check run refused the model: {message}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(sidecar)
    return ImportReport(sidecar, load_model(str(sidecar)).contract, description, shape, tuple(notes))


# --- torchvision state dicts -----------------------------------------------------------------


def import_torchvision(
    network: str,
    weights: Path,
    labels: str,
    *,
    out: Path | None = None,
    size: tuple[int, int] | None = None,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    force: bool = False,
) -> ImportReport:
    """A local torchvision state dict of a zoo torchvision network -> a streamseg checkpoint and sidecar."""
    from .models import network_info

    info = network_info(network)
    if info.module != "torchvision_seg":
        raise ConfigError(f"usage: --weights takes a torchvision state dict; {network} is not a torchvision network")
    if not weights.is_file():
        raise ModelError(f"{weights}: no such file" if not weights.exists() else f"{weights}: not a file")
    checkpoint = out or Path(network) / f"{network}.pt"
    if checkpoint.suffix.lower() not in (".pt", ".pth"):
        raise ConfigError(f"usage: --out {checkpoint}: a torchvision network is written as a checkpoint (.pt)")
    _check_writable(checkpoint, force, folder_made=True)
    _check_writable(checkpoint.with_suffix(".json"), force, folder_made=True)
    label_set = resolve_labels(labels)

    from .models import build
    from .models.checkpoint import CheckpointMeta, save_checkpoint
    from .models.torchvision_seg import read_state_dict, state_dict_classes, state_dict_has_aux

    state = read_state_dict(weights)
    classes = state_dict_classes(state)
    if classes is None:
        raise ModelError(
            f"{weights}: not a torchvision segmentation state dict (no classifier.4 or classifier.low_classifier)"
        )
    if classes != len(label_set):
        raise ModelError(f"{weights}: the state dict has {classes} classes, the label set '{labels}' {len(label_set)}")
    options: dict[str, Any] = {} if network.startswith("lraspp") else {"aux": state_dict_has_aux(state)}
    net = build(network, classes, weights=str(weights), **options).eval()
    height, width = size or info.input_size
    meta = CheckpointMeta(
        network,
        classes,
        [n for n, _ in label_set],
        [c for _, c in label_set],
        height,
        width,
        options,
        mean,
        std,
        source=f"torchvision {network} state dict {weights.name}; streamseg import-model",
    )
    made_folder = not checkpoint.parent.exists()
    save_checkpoint(checkpoint, net, meta)
    sidecar = checkpoint.with_suffix(".json")
    try:
        shape, description = _check_run(sidecar, "torch")
    except BaseException:
        checkpoint.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
        if made_folder:
            checkpoint.parent.rmdir()
        raise
    notes = [f"streamseg export {checkpoint} --out {checkpoint.with_suffix('.onnx')}: ONNX with the parity check"]
    return ImportReport(sidecar, load_model(str(sidecar)).contract, description, shape, tuple(notes))
