"""The model contract: the sidecar that travels with every ONNX file and engine.

It states what the graph takes (size, layout, color order, mean/std) and gives (logits,
probabilities or a class map), with class names and colors. ``check_io`` compares it with what a
backend reports about the graph, so a mismatch fails at load, never mid-stream.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ModelError

# The bundled models are package data (streamseg/bundled/<name>/), so a pip-installed streamseg finds
# them from any directory. A plain path rather than importlib.resources: ONNX Runtime and TensorRT
# open the file by name, and wheels install as real files.
MODELS_DIR = Path(__file__).resolve().parent / "bundled"
# Extra folders of <name>/<name>.json model folders, searched before the bundled ones (os.pathsep-separated).
MODEL_PATH_ENV = "STREAMSEG_MODEL_PATH"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    name: str = Field(description="graph input name")
    layout: Literal["NCHW", "NHWC"] = Field(description="tensor layout")
    height: int = Field(gt=0, description="input height in pixels")
    width: int = Field(gt=0, description="input width in pixels")
    color: Literal["RGB", "BGR"] = Field("RGB", description="channel order the model expects")
    mean: tuple[float, float, float] = Field((0.0, 0.0, 0.0), description="per channel, 0..255 scale")
    std: tuple[float, float, float] = Field((1.0, 1.0, 1.0), description="per channel, 0..255 scale")

    @model_validator(mode="after")
    def _std_nonzero(self) -> InputSpec:
        if any(s == 0 for s in self.std):
            raise ValueError("std must not contain 0")
        return self


class OutputSpec(_Strict):
    name: str = Field(description="graph output name (for kind instances: the masks output)")
    kind: Literal["logits", "probabilities", "class_map", "instances"] = Field(
        description="per-class scores (N,C,H,W) / (N,H,W,C), class indices (N,H,W), or instances: "
        "boxes (K,4), labels (K,), scores (K,) and masks (K,1,H,W) of one image (Mask R-CNN)"
    )
    boxes: str | None = Field(None, description="kind instances: graph output of boxes x1,y1,x2,y2 in input pixels")
    labels: str | None = Field(None, description="kind instances: graph output of class indices (0: background)")
    scores: str | None = Field(None, description="kind instances: graph output of detection scores")
    score_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="kind instances: detections scoring below this are dropped"
    )
    mask_threshold: float = Field(
        0.5, gt=0.0, lt=1.0, description="kind instances: mask probability from which a pixel is the object's"
    )

    @model_validator(mode="after")
    def _instance_outputs(self) -> OutputSpec:
        named = {k: getattr(self, k) for k in ("boxes", "labels", "scores")}
        if self.kind == "instances":
            missing = [k for k, v in named.items() if not v]
            if missing:
                raise ValueError(f"kind instances needs the graph's output names for {', '.join(missing)}")
            if len({self.name, *named.values()}) != 4:
                raise ValueError(
                    "kind instances: name (masks), boxes, labels and scores must be four different outputs"
                )
        elif any(named.values()):
            given = ", ".join(k for k, v in named.items() if v)
            raise ValueError(f"{given}: only for kind instances (this output is {self.kind})")
        return self


class ClassSpec(_Strict):
    name: str = Field(min_length=1, description="class name used in metrics and records")
    color: tuple[int, int, int] = Field(description="RGB overlay color")


class ModelContract(_Strict):
    name: str = Field(description="model name")
    onnx: str | None = Field(None, description="ONNX file, relative to the sidecar")
    checkpoint: str | None = Field(
        None, description="torch checkpoint (streamseg train) or TorchScript file, relative to the sidecar"
    )
    description: str = Field("", description="one line for people")
    input: InputSpec
    output: OutputSpec
    classes: list[ClassSpec] = Field(min_length=1, max_length=255)
    source: str = Field("", description="where the weights come from")
    license: str = Field("", description="license of the weights")
    sha256: str | None = Field(None, description="sha256 of the ONNX file, checked at load")

    @model_validator(mode="after")
    def _has_weights(self) -> ModelContract:
        if self.onnx is None and self.checkpoint is None:
            raise ValueError("a model needs 'onnx' or 'checkpoint'")
        return self

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A contract with the files it was read from."""

    contract: ModelContract
    sidecar: Path
    onnx_path: Path | None
    checkpoint_path: Path | None = None


def model_dirs() -> list[Path]:
    """Where models are found by name: $STREAMSEG_MODEL_PATH's folders first, then the bundled ones."""
    extra = [Path(d) for d in os.environ.get(MODEL_PATH_ENV, "").split(os.pathsep) if d]
    return [*extra, MODELS_DIR]


def bundled_models() -> list[Path]:
    """Sidecars of the models found by name: <dir>/<name>/<name>.json in each of ``model_dirs()``."""
    found: list[Path] = []
    for folder in model_dirs():
        if folder.is_dir():
            found += sorted(p for p in folder.glob("*/*.json") if p.is_file())
    return found


def resolve_model(ref: str) -> Path:
    """A bundled model name, a sidecar path, or an ONNX path with a sidecar beside it."""
    path = Path(ref)
    if path.suffix.lower() in (".onnx", ".pt", ".pth", ".ts"):
        for ext in (".json", ".yaml", ".yml"):
            if path.with_suffix(ext).exists():
                return path.with_suffix(ext)
        raise ModelError(f"{ref}: no sidecar beside the model file (expected {path.with_suffix('.json')})")
    if path.exists():
        return path
    for sidecar in bundled_models():
        if sidecar.parent.name == ref or sidecar.stem == ref:
            return sidecar
    names = ", ".join(p.stem for p in bundled_models()) or "none"
    raise ModelError(f"model '{ref}': no such file and no bundled model of that name (bundled: {names})")


def load_model(ref: str, verify_hash: bool = True) -> LoadedModel:
    """Read and validate a sidecar; check its ONNX file exists and matches the recorded hash."""
    sidecar = resolve_model(ref)
    from .config import MAX_CONFIG_BYTES, compose_bounded, plain_data

    try:
        # The pipeline file's bounds hold here too: size, nesting, YAML alias expansion.
        with open(sidecar, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ValueError(f"larger than {MAX_CONFIG_BYTES} bytes")
        text = data.decode("utf-8")
        if sidecar.suffix == ".json":
            raw = json.loads(text)
        else:
            node = compose_bounded(text)
            raw = None if node is None else plain_data(node)
    except RecursionError:
        raise ModelError(f"{sidecar}: cannot read sidecar: nested too deep") from None
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise ModelError(f"{sidecar}: cannot read sidecar: {str(e).splitlines()[0]}") from None
    try:
        contract = ModelContract.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise ModelError(f"{sidecar}: {key}: {msg}") from None
    onnx_path = None
    if contract.onnx is not None:
        onnx_path = (sidecar.parent / contract.onnx).resolve()
        if not onnx_path.is_file():
            raise ModelError(f"{sidecar}: onnx: file {onnx_path} does not exist")
        if verify_hash and contract.sha256:
            digest = sha256_file(onnx_path)
            if digest != contract.sha256:
                raise ModelError(
                    f"{sidecar}: sha256: {onnx_path.name} has {digest[:12]}…, sidecar says "
                    f"{contract.sha256[:12]}… (the ONNX file changed without its sidecar)"
                )
    checkpoint_path = None
    if contract.checkpoint is not None:
        checkpoint_path = (sidecar.parent / contract.checkpoint).resolve()
        if not checkpoint_path.is_file():
            raise ModelError(f"{sidecar}: checkpoint: file {checkpoint_path} does not exist")
    return LoadedModel(contract, sidecar, onnx_path, checkpoint_path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """What a backend says about one graph input or output. Dims may be None (dynamic)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str  # numpy dtype name: float32, float16, uint8, int64, ...
    classes: int | None = None  # a class-map output: how many classes the graph's argmax/threshold picks from


def class_count_error(model: LoadedModel, graph: int, how: str) -> ModelError:
    """The one message for a sidecar whose ``classes`` disagree with what the graph gives."""
    c = model.contract
    return ModelError(
        f"{model.sidecar}: classes: the sidecar names {c.num_classes} ({', '.join(c.class_names)}), "
        f"the graph's output '{c.output.name}' {how} {graph}"
    )


def expected_input_shape(c: ModelContract, batch: int | None = None) -> tuple[int | None, ...]:
    i = c.input
    if i.layout == "NCHW":
        return (batch, 3, i.height, i.width)
    return (batch, i.height, i.width, 3)


def check_io(model: LoadedModel, inputs: list[TensorInfo], outputs: list[TensorInfo]) -> None:
    """Raise ModelError naming the sidecar field when the graph does not match the contract."""
    c, where = model.contract, model.sidecar

    def dims_match(actual: tuple[int | None, ...], expected: tuple[int | None, ...]) -> bool:
        return len(actual) == len(expected) and all(
            a is None or e is None or a == e for a, e in zip(actual, expected, strict=True)
        )

    ins = {t.name: t for t in inputs}
    if c.input.name not in ins:
        raise ModelError(f"{where}: input.name: graph has no input '{c.input.name}' (has {sorted(ins)})")
    if len(inputs) != 1:
        raise ModelError(f"{where}: the graph has {len(inputs)} inputs; streamseg feeds exactly one")
    got = ins[c.input.name]
    want = expected_input_shape(c)
    if not dims_match(got.shape, want):
        raise ModelError(
            f"{where}: input: sidecar says {c.input.layout} {c.input.height}x{c.input.width} "
            f"(shape {_fmt(want)}), graph input '{got.name}' has shape {_fmt(got.shape)}"
        )
    if got.dtype not in ("float32", "float16"):
        raise ModelError(f"{where}: input: graph input '{got.name}' is {got.dtype}, expected float32")

    outs = {t.name: t for t in outputs}
    if c.output.kind == "instances":
        _check_instance_outputs(model, outs, got)
        return
    if c.output.name not in outs:
        raise ModelError(f"{where}: output.name: graph has no output '{c.output.name}' (has {sorted(outs)})")
    out = outs[c.output.name]
    # The output may be smaller than the input (stride-4 heads); only rank and classes matter.
    if c.output.kind == "class_map":
        ok = len(out.shape) == 3 or (len(out.shape) == 4 and dims_match(out.shape, (None, 1, None, None)))
        if not ok or out.dtype not in ("uint8", "int32", "int64"):
            raise ModelError(
                f"{where}: output: kind class_map needs an integer (N,H,W) output, graph output "
                f"'{out.name}' is {out.dtype} {_fmt(out.shape)}"
            )
        if out.classes is not None and out.classes != c.num_classes:
            raise class_count_error(model, out.classes, "picks from")
    else:
        n = c.num_classes
        chw = (None, n, None, None) if c.input.layout == "NCHW" else (None, None, None, n)
        axis = 1 if c.input.layout == "NCHW" else 3
        if len(out.shape) == 4 and out.shape[axis] is not None and out.shape[axis] != n:
            raise class_count_error(model, out.shape[axis] or 0, "has a class axis of")
        if not dims_match(out.shape, chw) or out.dtype not in ("float32", "float16"):
            raise ModelError(
                f"{where}: output: kind {c.output.kind} with {n} classes needs a float "
                f"{_fmt(chw)} output, graph output '{out.name}' is {out.dtype} {_fmt(out.shape)}"
            )


def _check_instance_outputs(model: LoadedModel, outs: dict[str, TensorInfo], graph_input: TensorInfo) -> None:
    """An instance graph: one image in (batch 1), boxes (K,4), labels (K,), scores (K,) and masks
    (K,1,H,W) at the input size out, each by the name the sidecar gives."""
    c, where = model.contract, model.sidecar
    o = c.output
    if graph_input.shape[0] not in (None, 1):
        raise ModelError(
            f"{where}: input: an instance graph takes one image, graph input has batch {graph_input.shape[0]}"
        )
    h, w = c.input.height, c.input.width
    wanted: tuple[tuple[str, str | None, int, tuple[str, ...], dict[int, int]], ...] = (
        # key, output name, rank, dtypes, fixed dims
        ("name", o.name, 4, ("float32", "float16"), {1: 1, 2: h, 3: w}),
        ("boxes", o.boxes, 2, ("float32", "float16"), {1: 4}),
        ("labels", o.labels, 1, ("int64", "int32"), {}),
        ("scores", o.scores, 1, ("float32", "float16"), {}),
    )
    for key, name, rank, dtypes, fixed in wanted:
        if name not in outs:
            raise ModelError(f"{where}: output.{key}: graph has no output '{name}' (has {sorted(outs)})")
        t = outs[name]
        bad_dims = any(t.shape[i] is not None and t.shape[i] != d for i, d in fixed.items() if i < len(t.shape))
        if len(t.shape) != rank or t.dtype not in dtypes or bad_dims:
            want = ["K", *(str(fixed.get(i, "?")) for i in range(1, rank))]
            raise ModelError(
                f"{where}: output.{key}: instance output '{name}' must be {dtypes[0]} ({','.join(want)}), "
                f"graph has {t.dtype} {_fmt(t.shape)}"
            )


def _fmt(shape: tuple[int | None, ...]) -> str:
    return "(" + ",".join("N" if d is None else str(d) for d in shape) + ")"
