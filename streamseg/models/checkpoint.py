"""Checkpoints of zoo networks and the sidecar that lets the pipeline and `eval` run them.

A checkpoint is a torch file holding the network name, its build options, the weights, the
classes and the input contract, plus optimizer state for `train --resume`. Next to it, training
writes a sidecar (``NAME.json``) in the pipeline's model-contract format with ``checkpoint:``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..contract import InputSpec
from ..errors import ModelError
from . import build, network_info
from ._torch import nn, torch

IMAGENET_MEAN = (123.675, 116.28, 103.53)  # 0..255 scale, RGB
IMAGENET_STD = (58.395, 57.12, 57.375)


# The outputs of an exported instance network (streamseg.models.maskrcnn.ExportWrapper), as the
# contract names them; ``name`` is the masks output.
INSTANCE_OUTPUT: dict[str, Any] = {
    "name": "masks",
    "kind": "instances",
    "boxes": "boxes",
    "labels": "labels",
    "scores": "scores",
    "score_threshold": 0.5,
    "mask_threshold": 0.5,
}


@dataclass
class CheckpointMeta:
    network: str
    num_classes: int
    class_names: list[str]
    class_colors: list[tuple[int, int, int]]
    height: int
    width: int
    options: dict[str, Any] = field(default_factory=dict)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    source: str = ""


def save_checkpoint(path: Path, model: nn.Module, meta: CheckpointMeta, **state: Any) -> None:
    """Write weights + meta (+ optimizer/scheduler/epoch in ``state``) atomically, then the sidecar."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"meta": asdict(meta), "model": model.state_dict(), **state}, tmp)
    tmp.replace(path)  # a crash mid-write never leaves a torn checkpoint
    write_sidecar(path, meta)


def read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as e:
        raise ModelError(f"{path}: cannot read checkpoint: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict) or "meta" not in data or "model" not in data:
        raise ModelError(f"{path}: not a streamseg checkpoint (no 'meta'/'model')")
    return data


def load_network(path: Path) -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild the network a checkpoint was trained as and load its weights (strictly)."""
    data = read_checkpoint(path)
    meta = CheckpointMeta(**data["meta"])
    model = build(meta.network, meta.num_classes, **meta.options)
    try:
        model.load_state_dict(data["model"])
    except RuntimeError as e:
        raise ModelError(f"{path}: weights do not fit {meta.network}: {str(e).splitlines()[0]}") from None
    return model, meta


def sidecar_dict(
    meta: CheckpointMeta,
    checkpoint: str | None = None,
    onnx: str | None = None,
    output_kind: str = "class_map",
    sha256: str | None = None,
) -> dict[str, Any]:
    out = {
        "name": meta.network,
        "description": f"{meta.network}, {meta.num_classes} classes",
        "input": {
            "name": "input",
            "layout": "NCHW",
            "height": meta.height,
            "width": meta.width,
            "color": "RGB",
            "mean": list(meta.mean),
            "std": list(meta.std),
        },
        "output": INSTANCE_OUTPUT
        if network_info(meta.network).task == "instances"
        else {"name": "classmap" if output_kind == "class_map" else "logits", "kind": output_kind},
        "classes": [{"name": n, "color": list(c)} for n, c in zip(meta.class_names, meta.class_colors, strict=True)],
        "source": meta.source,
        "license": "",
    }
    if checkpoint is not None:
        out["checkpoint"] = checkpoint
    if onnx is not None:
        out["onnx"] = onnx
    if sha256 is not None:
        out["sha256"] = sha256
    return out


def input_spec(meta: CheckpointMeta) -> InputSpec:
    """The input contract the sidecar states, for training to prepare images exactly as serving will."""
    return InputSpec.model_validate(sidecar_dict(meta)["input"])


def write_sidecar(path: Path, meta: CheckpointMeta) -> Path:
    sidecar = path.with_suffix(".json")
    sidecar.write_text(json.dumps(sidecar_dict(meta, checkpoint=path.name), indent=2) + "\n")
    return sidecar
