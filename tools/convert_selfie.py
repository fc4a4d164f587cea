"""Convert MediaPipe's selfie segmentation (landscape) TFLite model to ONNX.

Re-runnable and deterministic: the same wheel gives the same ONNX bytes.

    python tools/convert_selfie.py --out streamseg/bundled/selfie_landscape

Steps, top to bottom:

1. ``pip download --no-deps mediapipe==0.10.21`` (the cp311 manylinux_2_28_x86_64 wheel, on any
   host) into a cache directory: ``--cache DIR`` or a temporary one.
2. Extract ``selfie_segmentation_landscape.tflite`` from the wheel and check its sha256.
3. Parse the flatbuffer (PyPI package ``tflite``) and translate each operator to ONNX
   (opset 17). Activations are NHWC in TFLite; the ONNX graph transposes the input once to
   NCHW and stays NCHW. fp16 weights (TFLite ``DEQUANTIZE`` of constants) are folded to fp32.
4. Append the head: ``classmap = uint8(probability > 0.5)``, shape ``[N, 144, 256]``.
5. Write ``selfie_landscape.onnx``, the sidecar ``selfie_landscape.json`` and ``NOTICE``.

Only the operators this model uses are translated; any other operator fails loudly with its
name. The one custom operator, MediaPipe's ``Convolution2DTransposeBias``, is a transposed
convolution with OHWI weights and a bias (see ``_convert_transpose_conv_bias``).

Requires ``pip install tflite onnx numpy`` (the ``convert`` extra); not TensorFlow or MediaPipe.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MEDIAPIPE_VERSION = "0.10.21"
WHEEL_PLATFORM = "manylinux_2_28_x86_64"
WHEEL_NAME = f"mediapipe-{MEDIAPIPE_VERSION}-cp311-cp311-{WHEEL_PLATFORM}.whl"
TFLITE_MEMBER = "mediapipe/modules/selfie_segmentation/selfie_segmentation_landscape.tflite"
# sha256 of the member above in the mediapipe 0.10.21 wheels; a different file means the
# conversion (and docs/model-accuracy.md) no longer describe what is being converted.
TFLITE_SHA256 = "a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd"
MODEL_NAME = "selfie_landscape"
INPUT_NAME = "input"
INPUT_HEIGHT = 144
INPUT_WIDTH = 256
OPSET = 17
IR_VERSION = 8  # the IR version that introduced opset 17: loads in older runtimes too
BATCH_DIM = "N"

Head = Literal["classmap", "probability"]


class ConversionError(RuntimeError):
    """The TFLite model holds something this converter does not translate."""


# --------------------------------------------------------------------------------------------
# Obtaining the TFLite file
# --------------------------------------------------------------------------------------------


def download_wheel(cache_dir: Path) -> Path:
    """Return the mediapipe wheel in ``cache_dir``, downloading it with pip if absent.

    The platform is pinned so that every host (any OS, any Python) fetches the same file.
    """
    wheel = cache_dir / WHEEL_NAME
    if not wheel.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--platform", WHEEL_PLATFORM, "--python-version", "3.11", "--implementation", "cp",
            "--abi", "cp311", "--dest", str(cache_dir), f"mediapipe=={MEDIAPIPE_VERSION}",
        ]  # fmt: skip
        print("+", " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True)
    if not wheel.exists():
        raise ConversionError(f"pip download left no {WHEEL_NAME} in {cache_dir}")
    return wheel


def read_tflite(wheel: Path) -> bytes:
    """Extract the landscape model from the wheel and check it is the expected file."""
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(TFLITE_MEMBER)
    digest = hashlib.sha256(data).hexdigest()
    if digest != TFLITE_SHA256:
        raise ConversionError(f"{TFLITE_MEMBER} in {wheel.name} has sha256 {digest}, expected {TFLITE_SHA256}")
    return data


# --------------------------------------------------------------------------------------------
# TFLite flatbuffer access
# --------------------------------------------------------------------------------------------


def _tflite_schema() -> ModuleType:
    """Import the flatbuffer bindings lazily so that ``--help`` works without them."""
    try:
        return importlib.import_module("tflite")
    except ImportError as exc:
        raise ConversionError("the converter needs the 'tflite' package: pip install tflite") from exc


def _enum_names(enum_cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


@dataclass(frozen=True, slots=True)
class TfTensor:
    """One TFLite tensor: static NHWC shape, element type and constant data (if any)."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    data: np.ndarray | None


@dataclass(frozen=True, slots=True)
class TfOp:
    """One TFLite operator with its inputs/outputs as tensor indices (-1 = absent)."""

    index: int
    name: str  # builtin operator name, or the custom code for CUSTOM operators
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: Any  # the decoded *Options table, or raw bytes for custom operators


_NUMPY_TYPES = {"FLOAT32": np.float32, "FLOAT16": np.float16, "INT32": np.int32}

_OPTION_TABLES = {
    "CONV_2D": "Conv2DOptions",
    "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
    "ADD": "AddOptions",
    "MUL": "MulOptions",
    "MEAN": "ReducerOptions",
    "RESIZE_BILINEAR": "ResizeBilinearOptions",
}


def parse_tflite(data: bytes) -> tuple[list[TfTensor], list[TfOp], list[int], list[int]]:
    """Decode the single subgraph: tensors, operators, graph inputs and outputs."""
    tfl = _tflite_schema()
    model = tfl.Model.GetRootAsModel(data, 0)
    if model.SubgraphsLength() != 1:
        raise ConversionError(f"expected 1 subgraph, found {model.SubgraphsLength()}")
    graph = model.Subgraphs(0)
    type_names = _enum_names(tfl.TensorType)
    op_names = _enum_names(tfl.BuiltinOperator)

    tensors: list[TfTensor] = []
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        dtype = type_names.get(t.Type(), str(t.Type()))
        quant = t.Quantization()
        if quant is not None and quant.ScaleLength() > 0:
            raise ConversionError(f"tensor {t.Name().decode()} is quantized ({dtype}); unsupported")
        shape_arr = t.ShapeAsNumpy()  # the bindings return 0 for an empty vector
        shape = () if isinstance(shape_arr, int) else tuple(int(d) for d in shape_arr)
        buf = model.Buffers(t.Buffer())
        payload: np.ndarray | None = None
        if buf is not None and buf.DataLength() > 0:
            if dtype not in _NUMPY_TYPES:
                raise ConversionError(f"constant tensor {t.Name().decode()} has type {dtype}")
            payload = buf.DataAsNumpy().view(_NUMPY_TYPES[dtype]).reshape(shape).copy()
        elif buf is not None and buf.Offset() > 1:
            raise ConversionError(f"tensor {t.Name().decode()} stores data outside the flatbuffer")
        tensors.append(TfTensor(i, t.Name().decode(), shape, dtype, payload))

    ops: list[TfOp] = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        # Builtin codes above 127 live in BuiltinCode; older files only fill the deprecated one.
        name = op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "UNKNOWN")
        options: Any = None
        if name == "CUSTOM":
            name = code.CustomCode().decode()
            options = op.CustomOptionsAsNumpy().tobytes() if op.CustomOptionsLength() else b""
        elif name in _OPTION_TABLES:
            table = op.BuiltinOptions()
            options = getattr(tfl, _OPTION_TABLES[name])()
            options.Init(table.Bytes, table.Pos)
        ins = tuple(int(v) for v in op.InputsAsNumpy())
        outs = tuple(int(v) for v in op.OutputsAsNumpy())
        ops.append(TfOp(i, name, ins, outs, options))

    inputs = [int(v) for v in graph.InputsAsNumpy()]
    outputs = [int(v) for v in graph.OutputsAsNumpy()]
    return tensors, ops, inputs, outputs


# --------------------------------------------------------------------------------------------
# Graph building
# --------------------------------------------------------------------------------------------


def _same_pads(in_size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TFLite SAME padding: total split with the extra pixel at the end (may be asymmetric)."""
    out = (in_size + stride - 1) // stride
    effective = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + effective - in_size, 0)
    return total // 2, total - total // 2


@dataclass
class _Builder:
    """Accumulates ONNX nodes/initializers while walking the TFLite operators in order."""

    tensors: list[TfTensor]
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    constants: dict[int, np.ndarray] = field(default_factory=dict)  # folded TFLite tensors
    names: dict[int, str] = field(default_factory=dict)  # TFLite index -> ONNX value (NCHW)
    _used: set[str] = field(default_factory=set)

    def unique(self, base: str) -> str:
        """Reserve and return a value name not used yet (TFLite names may repeat)."""
        name, n = base, 1
        while name in self._used:
            n += 1
            name = f"{base}_{n}"
        self._used.add(name)
        return name

    def const(self, index: int, op: TfOp) -> np.ndarray:
        if index in self.constants:
            return self.constants[index]
        t = self.tensors[index]
        if t.data is None:
            raise ConversionError(f"{op.name} (op {op.index}): input {t.name} is not a constant")
        return t.data

    def value(self, index: int, op: TfOp) -> str:
        if index not in self.names:
            t = self.tensors[index]
            raise ConversionError(f"{op.name} (op {op.index}): input {t.name} is not computed")
        return self.names[index]

    def initializer(self, base: str, array: np.ndarray) -> str:
        name = self.unique(base)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def emit(self, op: TfOp, op_type: str, inputs: list[str], **attrs: Any) -> None:
        out = self.tensors[op.outputs[0]]
        name = self.unique(out.name)
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=f"{op_type}_{op.index}", **attrs))
        self.names[out.index] = name


def _require_no_activation(op: TfOp) -> None:
    fused = op.options.FusedActivationFunction()
    if fused != 0:  # ActivationFunctionType.NONE
        raise ConversionError(f"{op.name} (op {op.index}): fused activation {fused} unsupported")


def _conv_pads(op: TfOp, b: _Builder, kernel: tuple[int, int], dilation: tuple[int, int]) -> list[int]:
    x = b.tensors[op.inputs[0]]
    y = b.tensors[op.outputs[0]]
    strides = (op.options.StrideH(), op.options.StrideW())
    if op.options.Padding() == 1:  # VALID
        pads = [0, 0, 0, 0]
    else:  # SAME
        (top, bottom), (left, right) = (
            _same_pads(x.shape[1 + i], kernel[i], strides[i], dilation[i]) for i in range(2)
        )
        pads = [top, left, bottom, right]
    for i in range(2):
        span = x.shape[1 + i] + pads[i] + pads[i + 2] - ((kernel[i] - 1) * dilation[i] + 1)
        if span // strides[i] + 1 != y.shape[1 + i]:
            raise ConversionError(f"{op.name} (op {op.index}): padding does not give {y.shape}")
    return pads


def _convert_conv(op: TfOp, b: _Builder) -> None:
    _require_no_activation(op)
    weight = b.const(op.inputs[1], op).astype(np.float32)  # OHWI
    dilation = (op.options.DilationHFactor(), op.options.DilationWFactor())
    kernel = (weight.shape[1], weight.shape[2])
    inputs = [b.value(op.inputs[0], op), b.initializer(b.tensors[op.inputs[1]].name, weight.transpose(0, 3, 1, 2))]
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        bias = b.const(op.inputs[2], op).astype(np.float32)
        inputs.append(b.initializer(b.tensors[op.inputs[2]].name, bias))
    b.emit(
        op,
        "Conv",
        inputs,
        kernel_shape=list(kernel),
        strides=[op.options.StrideH(), op.options.StrideW()],
        dilations=list(dilation),
        pads=_conv_pads(op, b, kernel, dilation),
    )


def _convert_depthwise(op: TfOp, b: _Builder) -> None:
    _require_no_activation(op)
    weight = b.const(op.inputs[1], op).astype(np.float32)  # 1, H, W, C*multiplier
    channels = b.tensors[op.inputs[0]].shape[3]
    dilation = (op.options.DilationHFactor(), op.options.DilationWFactor())
    kernel = (weight.shape[1], weight.shape[2])
    # TFLite output channel c*m + j reads input channel c; ONNX group c produces channels
    # c*m .. c*m+m-1 from input channel c: the same order, so only the axes move.
    inputs = [b.value(op.inputs[0], op), b.initializer(b.tensors[op.inputs[1]].name, weight.transpose(3, 0, 1, 2))]
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        bias = b.const(op.inputs[2], op).astype(np.float32)
        inputs.append(b.initializer(b.tensors[op.inputs[2]].name, bias))
    b.emit(
        op,
        "Conv",
        inputs,
        group=channels,
        kernel_shape=list(kernel),
        strides=[op.options.StrideH(), op.options.StrideW()],
        dilations=list(dilation),
        pads=_conv_pads(op, b, kernel, dilation),
    )


def _convert_transpose_conv_bias(op: TfOp, b: _Builder) -> None:
    """MediaPipe's ``Convolution2DTransposeBias`` custom operator as ONNX ConvTranspose.

    Options are a raw ``TfLiteTransposeConvParams`` struct: int32 padding (1 = SAME,
    2 = VALID), stride_width, stride_height. The kernel (mediapipe/util/tflite/operations/
    transpose_conv_bias.cc) computes ``out[iy*s - pad + fy, ix*s - pad + fx, o] +=
    in[iy, ix, i] * W[o, fy, fx, i]`` with OHWI weights and no kernel flip, which is ONNX
    ConvTranspose with weights ``W.transpose(3, 0, 1, 2)`` (I, O, H, W). SAME padding there is
    ``max(0, k - (in - 1) % s - 1)`` in total, ``total // 2`` of it cropped at the start.
    """
    if len(op.options) < 12:
        raise ConversionError(f"{op.name} (op {op.index}): {len(op.options)} option bytes")
    padding, stride_w, stride_h = struct.unpack_from("<3i", op.options)
    weight = b.const(op.inputs[1], op).astype(np.float32)  # O, H, W, I
    bias = b.const(op.inputs[2], op).astype(np.float32)
    x = b.tensors[op.inputs[0]]
    y = b.tensors[op.outputs[0]]
    kernel = (weight.shape[1], weight.shape[2])
    strides = (stride_h, stride_w)
    pads = [0, 0, 0, 0]
    for i in range(2):
        total = 0
        if padding == 1:
            total = max(0, kernel[i] - (x.shape[1 + i] - 1) % strides[i] - 1)
        elif padding != 2:
            raise ConversionError(f"{op.name} (op {op.index}): padding code {padding}")
        pads[i], pads[i + 2] = total // 2, total - total // 2
        if strides[i] * (x.shape[1 + i] - 1) + kernel[i] - total != y.shape[1 + i]:
            raise ConversionError(f"{op.name} (op {op.index}): output shape mismatch")
    inputs = [
        b.value(op.inputs[0], op),
        b.initializer(b.tensors[op.inputs[1]].name, weight.transpose(3, 0, 1, 2)),
        b.initializer(b.tensors[op.inputs[2]].name, bias),
    ]
    b.emit(op, "ConvTranspose", inputs, kernel_shape=list(kernel), strides=list(strides), pads=pads)


def _convert_dequantize(op: TfOp, b: _Builder) -> None:
    # Only constant fp16 weights are dequantized in this model: fold them into fp32.
    src = b.const(op.inputs[0], op)
    if src.dtype != np.float16:
        raise ConversionError(f"{op.name} (op {op.index}): input type {src.dtype}")
    b.constants[op.outputs[0]] = src.astype(np.float32)


def _convert_binary(op_type: str) -> Callable[[TfOp, _Builder], None]:
    def convert(op: TfOp, b: _Builder) -> None:
        _require_no_activation(op)
        for i in op.inputs[:2]:
            if len(b.tensors[i].shape) != 4:  # 4-D NHWC and NCHW broadcast alike
                raise ConversionError(f"{op.name} (op {op.index}): operand {b.tensors[i].name}")
        b.emit(op, op_type, [b.value(i, op) for i in op.inputs[:2]])

    return convert


def _convert_unary(op_type: str, **attrs: Any) -> Callable[[TfOp, _Builder], None]:
    def convert(op: TfOp, b: _Builder) -> None:
        b.emit(op, op_type, [b.value(op.inputs[0], op)], **attrs)

    return convert


def _convert_mean(op: TfOp, b: _Builder) -> None:
    axes = sorted(int(a) for a in np.atleast_1d(b.const(op.inputs[1], op)))
    if axes != [1, 2] or not op.options.KeepDims():
        raise ConversionError(f"{op.name} (op {op.index}): axes {axes} keep_dims; only [1, 2]")
    b.emit(op, "GlobalAveragePool", [b.value(op.inputs[0], op)])


def _convert_resize_bilinear(op: TfOp, b: _Builder) -> None:
    x = b.tensors[op.inputs[0]]
    size = [int(v) for v in b.const(op.inputs[1], op)]
    if op.options.AlignCorners():
        mode = "align_corners"
    elif op.options.HalfPixelCenters():
        # TF: src = (dst + 0.5) / scale - 0.5, neighbours clamped to the edge; onnxruntime
        # clamps the same way for half_pixel.
        mode = "half_pixel"
    else:
        mode = "asymmetric"
    scales = np.array([1.0, 1.0, size[0] / x.shape[1], size[1] / x.shape[2]], np.float32)
    # Scales rather than sizes keep the batch axis dynamic in opset 17.
    inputs = [b.value(op.inputs[0], op), "", b.initializer(f"{x.name}_scales", scales)]
    b.emit(op, "Resize", inputs, mode="linear", coordinate_transformation_mode=mode)


CONVERTERS: dict[str, Callable[[TfOp, _Builder], None]] = {
    "DEQUANTIZE": _convert_dequantize,
    "CONV_2D": _convert_conv,
    "DEPTHWISE_CONV_2D": _convert_depthwise,
    "Convolution2DTransposeBias": _convert_transpose_conv_bias,
    "ADD": _convert_binary("Add"),
    "MUL": _convert_binary("Mul"),
    "RELU": _convert_unary("Relu"),
    "HARD_SWISH": _convert_unary("HardSwish"),  # x * relu6(x + 3) / 6, same definition
    "LOGISTIC": _convert_unary("Sigmoid"),
    "MEAN": _convert_mean,
    "RESIZE_BILINEAR": _convert_resize_bilinear,
}


def convert(tflite_data: bytes, head: Head = "classmap") -> onnx.ModelProto:
    """Translate the TFLite model to ONNX with the requested output head.

    ``classmap``: uint8 ``[N, 144, 256]``, 1 where person probability > 0.5 (the shipped model).
    ``probability``: float32 ``[N, 144, 256]`` person probability (for parity checks).
    """
    tensors, ops, graph_inputs, graph_outputs = parse_tflite(tflite_data)
    if len(graph_inputs) != 1 or len(graph_outputs) != 1:
        raise ConversionError(f"expected 1 input and 1 output, got {graph_inputs}, {graph_outputs}")
    x, y = tensors[graph_inputs[0]], tensors[graph_outputs[0]]
    if x.shape != (1, INPUT_HEIGHT, INPUT_WIDTH, 3) or x.dtype != "FLOAT32":
        raise ConversionError(f"unexpected input {x.name} {x.shape} {x.dtype}")
    if y.shape != (1, INPUT_HEIGHT, INPUT_WIDTH, 1):
        raise ConversionError(f"unexpected output {y.name} {y.shape}")

    b = _Builder(tensors)
    b.unique(INPUT_NAME)  # reserve the graph input name
    nchw = b.unique("input_nchw")
    b.nodes.append(helper.make_node("Transpose", [INPUT_NAME], [nchw], name="to_nchw", perm=[0, 3, 1, 2]))
    b.names[x.index] = nchw
    for op in ops:
        converter = CONVERTERS.get(op.name)
        if converter is None:
            raise ConversionError(f"unsupported TFLite operator {op.name} (op {op.index})")
        converter(op, b)

    prob = b.value(y.index, ops[-1])  # [N, 1, H, W], already through the model's sigmoid
    squeeze_axes = b.initializer("channel_axis", np.array([1], np.int64))
    if head == "probability":
        out_name, out_type = "probability", TensorProto.FLOAT
        b.nodes.append(helper.make_node("Squeeze", [prob, squeeze_axes], [out_name], name="squeeze"))
    else:
        out_name, out_type = "classmap", TensorProto.UINT8
        half = b.initializer("threshold", np.array(0.5, np.float32))
        b.nodes += [
            helper.make_node("Greater", [prob, half], ["is_person"], name="threshold"),
            helper.make_node("Cast", ["is_person"], ["classmap_nchw"], name="to_uint8", to=TensorProto.UINT8),
            helper.make_node("Squeeze", ["classmap_nchw", squeeze_axes], [out_name], name="squeeze"),
        ]

    graph = helper.make_graph(
        b.nodes,
        MODEL_NAME,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, INPUT_HEIGHT, INPUT_WIDTH, 3])],
        [helper.make_tensor_value_info(out_name, out_type, [BATCH_DIM, INPUT_HEIGHT, INPUT_WIDTH])],
        b.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="streamseg tools/convert_selfie.py",
        doc_string=(
            f"MediaPipe selfie segmentation (landscape), mediapipe=={MEDIAPIPE_VERSION} "
            f"{TFLITE_MEMBER} (sha256 {TFLITE_SHA256}), converted to ONNX. Input NHWC RGB in "
            "[0, 1]. Apache-2.0, Copyright Google LLC."
        ),
    )
    onnx.checker.check_model(model, full_check=True)
    _check_shapes(model, b, tensors)
    return model


def _check_shapes(model: onnx.ModelProto, b: _Builder, tensors: list[TfTensor]) -> None:
    """Compare every inferred ONNX activation shape with the TFLite one (NHWC -> NCHW)."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    shapes: dict[str, list[int | str]] = {}
    for vi in inferred.graph.value_info:
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_param or d.dim_value for d in dims]
    for index, name in b.names.items():
        t = tensors[index]
        if name not in shapes or len(t.shape) != 4:
            continue
        _, h, w, c = t.shape
        expected: list[int | str] = [BATCH_DIM, c, h, w]
        if shapes[name][1:] != expected[1:]:
            raise ConversionError(f"{t.name}: ONNX shape {shapes[name]}, TFLite NCHW {expected}")


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


def sidecar(onnx_sha256: str) -> dict[str, Any]:
    """The model contract that travels with the ONNX file (validated by the pipeline)."""
    return {
        "name": MODEL_NAME,
        "onnx": f"{MODEL_NAME}.onnx",
        "description": "MediaPipe selfie segmentation (landscape 144x256), person vs background",
        "input": {
            "name": INPUT_NAME,
            "layout": "NHWC",
            "height": INPUT_HEIGHT,
            "width": INPUT_WIDTH,
            "color": "RGB",
            "mean": [0.0, 0.0, 0.0],
            "std": [255.0, 255.0, 255.0],
        },
        "output": {"name": "classmap", "kind": "class_map"},
        "classes": [
            {"name": "background", "color": [0, 0, 0]},
            {"name": "person", "color": [255, 56, 56]},
        ],
        "source": (f"mediapipe=={MEDIAPIPE_VERSION} wheel, {TFLITE_MEMBER}, converted by tools/convert_selfie.py"),
        "license": "Apache-2.0",
        "sha256": onnx_sha256,
    }


NOTICE = f"""\
selfie_landscape.onnx
=====================

This model is a derivative of the MediaPipe Selfie Segmentation (landscape) model,
Copyright Google LLC, licensed under the Apache License, Version 2.0
(https://www.apache.org/licenses/LICENSE-2.0).

Source: the file {TFLITE_MEMBER}
(sha256 {TFLITE_SHA256})
inside the PyPI wheel mediapipe=={MEDIAPIPE_VERSION} (https://pypi.org/project/mediapipe/,
project https://github.com/google-ai-edge/mediapipe).

Changes made by streamseg (tools/convert_selfie.py):
- converted from TensorFlow Lite to ONNX (opset {OPSET}); fp16 weights stored as fp32;
  the MediaPipe custom op Convolution2DTransposeBias expressed as ONNX ConvTranspose;
- input made batch-dynamic ([N, 144, 256, 3], NHWC, RGB in [0, 1]); the network runs in NCHW
  after one transpose;
- a threshold head added: the output "classmap" is uint8 [N, 144, 256], 1 where the model's
  person probability is > 0.5, else 0.

The weights and architecture are otherwise unchanged. Unless required by applicable law or
agreed to in writing, the model is distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR
CONDITIONS OF ANY KIND, either express or implied.
"""


def write_outputs(model: onnx.ModelProto, out_dir: Path) -> Path:
    """Write the ONNX file, its sidecar and NOTICE into ``out_dir``; return the ONNX path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = model.SerializeToString(deterministic=True)
    onnx_path = out_dir / f"{MODEL_NAME}.onnx"
    onnx_path.write_bytes(payload)
    meta = sidecar(hashlib.sha256(payload).hexdigest())
    (out_dir / f"{MODEL_NAME}.json").write_text(json.dumps(meta, indent=2) + "\n")
    (out_dir / "NOTICE").write_text(NOTICE)
    return onnx_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--cache", type=Path, default=None, help="directory for the downloaded wheel (default: a temporary one)"
    )
    args = parser.parse_args(argv)

    try:
        with tempfile.TemporaryDirectory(prefix="convert_selfie_") as tmp:
            wheel = download_wheel(args.cache or Path(tmp))
            tflite_data = read_tflite(wheel)
        model = convert(tflite_data)
        path = write_outputs(model, args.out)
    except (ConversionError, subprocess.CalledProcessError, OSError, KeyError) as exc:
        print(f"convert_selfie: error: {exc}", file=sys.stderr)
        return 1
    size = path.stat().st_size
    print(f"wrote {path} ({size} bytes, {len(model.graph.node)} nodes) and its sidecar, NOTICE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
