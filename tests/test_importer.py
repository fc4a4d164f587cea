"""`streamseg import-model`: the sidecar read off real graphs, the check run, and the refusals.

Tiny graphs built with onnx.helper cover the layouts and output kinds; a torchvision LR-ASPP exported
with torch.onnx.export (random weights, torchvision's dict output wrapped) goes through import-model,
validate and run, as a user's model would.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamseg.cli import main
from streamseg.contract import load_model
from streamseg.errors import ConfigError, ModelError
from streamseg.importer import IMAGENET_MEAN, IMAGENET_STD, import_onnx, parse_normalization
from streamseg.labels import PRESETS


def tiny_graph(
    path: Path,
    shape: list[Any],
    classes: int = 3,
    tail: str = "",
    layout: str = "NCHW",
    in_type: str = "float",
    out_name: str = "scores",
) -> Path:
    """A 1x1 convolution (or channel matmul for NHWC) to ``classes`` scores, then ``tail``: "",
    "softmax", "argmax" (int64 class map), "argmax_float" or "upsample_softmax" (Softmax, then Resize)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.arange(classes * 3, dtype=np.float32).reshape(classes, 3) % 5 - 2
    axis = 1 if layout == "NCHW" else 3
    nodes = []
    x = "image"
    elem = {"float": TensorProto.FLOAT, "uint8": TensorProto.UINT8}[in_type]
    if in_type == "uint8":
        nodes.append(helper.make_node("Cast", ["image"], ["xf"], to=TensorProto.FLOAT))
        x = "xf"
    if layout == "NCHW":
        inits = [numpy_helper.from_array(w.reshape(classes, 3, 1, 1), "w")]
        nodes.append(helper.make_node("Conv", [x, "w"], ["logits"]))
    else:
        inits = [numpy_helper.from_array(np.ascontiguousarray(w.T), "w")]
        nodes.append(helper.make_node("MatMul", [x, "w"], ["logits"]))
    last, out_type = "logits", TensorProto.FLOAT
    if tail in ("softmax", "upsample_softmax"):
        nodes.append(helper.make_node("Softmax", [last], ["probs"], axis=axis))
        last = "probs"
        if tail == "upsample_softmax":
            inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
            nodes.append(helper.make_node("Resize", [last, "", "scales"], ["up"], mode="nearest"))
            last = "up"
    elif tail.startswith("argmax"):
        nodes.append(helper.make_node("ArgMax", [last], ["labels"], axis=axis, keepdims=0))
        last, out_type = "labels", TensorProto.INT64
        if tail == "argmax_float":
            nodes.append(helper.make_node("Cast", [last], ["labels_f"], to=TensorProto.FLOAT))
            last, out_type = "labels_f", TensorProto.FLOAT
    nodes.append(helper.make_node("Identity", [last], [out_name]))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", elem, shape)],
        [helper.make_tensor_value_info(out_name, out_type, None)],
        initializer=inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path


def label_file(path: Path, n: int) -> Path:
    path.write_text("".join(f"class {i}\n" for i in range(n)))
    return path


# --- the sidecar read off the graph ----------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "tail", "layout", "kind", "size"),
    [
        (["N", 3, 24, 32], "", "NCHW", "logits", (24, 32)),
        ([1, 24, 32, 3], "", "NHWC", "logits", (24, 32)),
        (["N", 3, 24, 32], "softmax", "NCHW", "probabilities", (24, 32)),
        (["N", 3, 24, 32], "upsample_softmax", "NCHW", "probabilities", (24, 32)),
        (["N", 3, 24, 32], "argmax", "NCHW", "class_map", (24, 32)),
        (["N", 24, 32, 3], "argmax", "NHWC", "class_map", (24, 32)),
        (["N", 3, "H", "W"], "", "NCHW", "logits", (40, 56)),  # dynamic: --size
    ],
)
def test_sidecar_from_the_graph(
    tmp_path: Path, shape: list[Any], tail: str, layout: str, kind: str, size: tuple[int, int]
) -> None:
    model = tiny_graph(tmp_path / "m.onnx", shape, 3, tail, layout)
    dynamic = any(isinstance(d, str) and d != "N" for d in shape)
    report = import_onnx(model, str(label_file(tmp_path / "l.txt", 3)), size=size if dynamic else None)
    assert report.sidecar == tmp_path / "m.json"
    c = load_model(str(report.sidecar)).contract  # what the pipeline will read, sha256 checked
    assert (c.input.name, c.input.layout, c.input.height, c.input.width) == ("image", layout, *size)
    assert (c.output.name, c.output.kind) == ("scores", kind)
    assert c.class_names == ["class 0", "class 1", "class 2"]
    assert c.input.mean == IMAGENET_MEAN and c.input.std == IMAGENET_STD and c.input.color == "RGB"
    # the check run: one frame through ONNX Runtime, the output of that kind
    upsampled = 2 if tail == "upsample_softmax" else 1
    hw = (size[0] * upsampled, size[1] * upsampled)
    expected = (1, *hw) if kind == "class_map" else ((1, 3, *hw) if layout == "NCHW" else (1, *hw, 3))
    assert report.output_shape == expected
    assert report.backend.startswith("onnxruntime")
    assert any("exactly 1" in n for n in report.notes) == (shape[0] == 1)


def test_options_name_out_normalization_and_color(tmp_path: Path) -> None:
    model = tiny_graph(tmp_path / "m.onnx", ["N", 3, 16, 16], 21)
    (tmp_path / "models").mkdir()
    out = tmp_path / "models" / "mine.json"
    mean, std = parse_normalization("unit", "unit")
    report = import_onnx(model, "voc", out=out, name="mine", mean=mean, std=std, color="BGR")
    raw = json.loads(out.read_text())
    assert raw["onnx"] == "../m.onnx" and raw["name"] == "mine"
    assert raw["input"]["mean"] == [0, 0, 0] and raw["input"]["std"] == [255, 255, 255]
    assert raw["input"]["color"] == "BGR"
    assert [(k["name"], tuple(k["color"])) for k in raw["classes"]] == list(PRESETS["voc"])
    assert load_model(str(out)).onnx_path == model.resolve()
    assert report.contract.name == "mine"


@pytest.mark.parametrize(
    ("mean", "std", "expected"),
    [
        ("imagenet", "imagenet", (IMAGENET_MEAN, IMAGENET_STD)),
        ("symmetric", "symmetric", ((127.5,) * 3, (127.5,) * 3)),
        ("0,0,0", "1,1,1", ((0.0,) * 3, (1.0,) * 3)),
        ("123.675, 116.28, 103.53", "raw", (IMAGENET_MEAN, (1.0,) * 3)),
    ],
)
def test_normalization(mean: str, std: str, expected: tuple[Any, Any]) -> None:
    assert parse_normalization(mean, std) == expected


@pytest.mark.parametrize(("mean", "std"), [("1,2", "imagenet"), ("a,b,c", "imagenet"), ("imagenet", "1,0,1")])
def test_bad_normalization(mean: str, std: str) -> None:
    with pytest.raises(ConfigError):
        parse_normalization(mean, std)


# --- refusals: one line on stderr, exit 2, nothing written -----------------------------------


def _bad_rows() -> list[Any]:
    """(id, files to make, argv after import-model, fragment of the one error line)."""
    fixed = ("model", lambda d: tiny_graph(d / "model.onnx", ["N", 3, 16, 16], 21))
    return [
        ("unknown preset", [fixed], ["model.onnx", "--labels", "pascal"], "--labels pascal: neither a preset"),
        (
            "label file with the wrong count",
            [fixed, ("labels", lambda d: label_file(d / "labels.txt", 19))],
            ["model.onnx", "--labels", "labels.txt"],
            "output 'scores' has 21 classes, the label set 'labels.txt' 19",
        ),
        ("preset with the wrong count", [fixed], ["model.onnx", "--labels", "cityscapes"], "has 21 classes"),
        (
            "not an ONNX file",
            [("text", lambda d: (d / "model.onnx").write_text("this is not a model\n"))],
            ["model.onnx", "--labels", "voc"],
            "model.onnx: not an ONNX model",
        ),
        ("missing file", [], ["missing.onnx", "--labels", "voc"], "missing.onnx: no such file"),
        ("a folder", [("dir", lambda d: (d / "dir.onnx").mkdir())], ["dir.onnx", "--labels", "voc"], "not a file"),
        (
            "dynamic size without --size",
            [("dyn", lambda d: tiny_graph(d / "model.onnx", ["N", 3, "H", "W"], 21))],
            ["model.onnx", "--labels", "voc"],
            "dynamic height/width (?,3,?,?): give --size HxW",
        ),
        (
            "--size against a fixed graph",
            [fixed],
            ["model.onnx", "--labels", "voc", "--size", "32x32"],
            "fixed at 16x16",
        ),
        (
            "no 3-channel axis",
            [("c4", lambda d: tiny_graph(d / "model.onnx", ["N", 4, 16, 16], 21))],
            ["model.onnx", "--labels", "voc"],
            "3 channels at neither axis 1 (NCHW) nor axis 3 (NHWC)",
        ),
        (
            "uint8 input",
            [("u8", lambda d: tiny_graph(d / "model.onnx", ["N", 3, 16, 16], 21, in_type="uint8"))],
            ["model.onnx", "--labels", "voc"],
            "input 'image' is uint8; streamseg feeds float32",
        ),
        (
            "a float class map",
            [("f", lambda d: tiny_graph(d / "model.onnx", ["N", 3, 16, 16], 21, "argmax_float"))],
            ["model.onnx", "--labels", "voc"],
            "a class map must be an integer type",
        ),
        (
            "a single-score output",
            [("one", lambda d: tiny_graph(d / "model.onnx", ["N", 3, 16, 16], 1))],
            ["model.onnx", "--labels", "voc"],
            "has 1 channel",
        ),
        ("an unknown output", [fixed], ["model.onnx", "--labels", "voc", "--output", "aux"], "--output aux: the graph"),
        (
            "an existing sidecar",
            [fixed, ("old", lambda d: (d / "model.json").write_text("{}"))],
            ["model.onnx", "--labels", "voc"],
            "model.json exists (--force replaces it)",
        ),
        ("--out not a sidecar", [fixed], ["model.onnx", "--labels", "voc", "--out", "x.onnx"], "a sidecar is .json"),
        ("bad --mean", [fixed], ["model.onnx", "--labels", "voc", "--mean", "1,2"], "--mean takes three numbers"),
        ("bad --size", [fixed], ["model.onnx", "--labels", "voc", "--size", "big"], "--size must look like 256x448"),
        (
            "--weights with ONNX",
            [fixed],
            ["model.onnx", "--labels", "voc", "--weights", "w.pth"],
            "--weights goes with",
        ),
        ("zoo network without --weights", [], ["fcn_resnet50", "--labels", "voc"], "give its torchvision state dict"),
        ("no --labels", [fixed], ["model.onnx"], "the following arguments are required: --labels"),
    ]


@pytest.mark.parametrize(("files", "argv", "error"), [pytest.param(*r[1:], id=r[0]) for r in _bad_rows()])
def test_refusals(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    files: Any,
    argv: Any,
    error: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    for _, make in files:
        make(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["import-model", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("streamseg: error: ") and "Traceback" not in err, err
    assert error in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, nothing left over


def test_a_graph_that_fails_its_check_run_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A graph whose class axis only shows at run time (a Reshape to a computed shape) and disagrees."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    shape_of = helper.make_node("Shape", ["logits"], ["s"])
    nodes = [helper.make_node("Conv", ["image", "w"], ["logits"]), shape_of]
    nodes.append(helper.make_node("Reshape", ["logits", "s"], ["scores"]))
    graph = helper.make_graph(
        nodes,
        "t",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", "C", "H", "W"])],
        initializer=[w],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    with pytest.raises(ModelError, match=r"the check run refused the model: .*gave scores for 4"):
        import_onnx(path, str(label_file(tmp_path / "l.txt", 3)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.txt", "m.onnx"]


# --- an ONNX file exported from a torchvision model: import-model -> validate -> run ----------


@pytest.fixture(scope="module")
def torchvision_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """torchvision's LR-ASPP MobileNetV3-Large, random weights, exported as a user would: the dict output
    wrapped, dynamic batch, height and width."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'streamseg[train]')")
    if importlib.util.find_spec("torchvision") is None:  # not importorskip: the zoo's door must import it first
        pytest.skip("torchvision is not installed (pip install 'streamseg[train]')")
    from streamseg.models._torchvision import torchvision

    segmentation = torchvision().models.segmentation
    torch.manual_seed(0)
    net = segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21).eval()

    class Out(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.net(x)["out"]
            return out

    path = tmp_path_factory.mktemp("tv") / "lraspp.onnx"
    dynamic = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            Out(net),
            (torch.zeros(1, 3, 96, 128),),
            str(path),
            input_names=["pixel_values"],
            output_names=["out"],
            dynamic_axes={"pixel_values": dynamic, "out": dynamic},
            opset_version=17,
            dynamo=False,
        )
    return path


@pytest.mark.slow
def test_torchvision_onnx_imports_validates_and_runs(
    torchvision_onnx: Path, tmp_path: Path, bikes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "lraspp.onnx"
    model.write_bytes(torchvision_onnx.read_bytes())
    assert main(["import-model", str(model), "--labels", "voc", "--size", "144x256"]) == 0
    printed = capsys.readouterr().out
    assert "output out (logits), 21 classes; checked with onnxruntime" in printed
    assert "one frame -> (1, 21, 144, 256)" in printed
    c = load_model(str(model)).contract  # found beside the ONNX file
    assert (c.input.name, c.input.layout, c.input.height, c.input.width) == ("pixel_values", "NCHW", 144, 256)
    assert c.class_names[15] == "person" and c.sha256

    pipeline = tmp_path / "pipeline.yaml"
    stats = tmp_path / "stats.jsonl"
    pipeline.write_text(
        f"sources: [{{name: bikes, uri: '{bikes}'}}]\n"
        f"model: {{path: '{model.with_suffix('.json')}'}}\n"
        f"outputs: [{{type: jsonl, path: '{stats}'}}]\n"
        "http: {enabled: false}\n"
    )
    assert main(["validate", str(pipeline)]) == 0
    assert "model lraspp checked with onnxruntime" in capsys.readouterr().out
    assert main(["run", str(pipeline), "--max-frames", "4", "--status-interval", "0"]) == 0
    records = [json.loads(line) for line in stats.read_text().splitlines()]
    assert [r["frame"] for r in records] == [0, 1, 2, 3]
    for r in records:
        assert set(r["class_area_ratio"]) == set(c.class_names)
        assert abs(sum(r["class_area_ratio"].values()) - 1) < 1e-9


@pytest.mark.slow
def test_torchvision_onnx_with_the_wrong_label_set(torchvision_onnx: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The class axis behind torchvision's Resize is symbolic in the graph; shape inference at --size finds 21."""
    assert main(["import-model", str(torchvision_onnx), "--labels", "ade20k", "--size", "64x64"]) == 2
    err = capsys.readouterr().err
    assert (
        err.strip() == f"streamseg: error: {torchvision_onnx}: output 'out' has 21 classes, the label set 'ade20k' 150"
    )
    assert not torchvision_onnx.with_suffix(".json").exists()
