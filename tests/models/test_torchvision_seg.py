"""torchvision's segmentation networks in the zoo: torchvision's parameter counts, the zoo's output
convention, whole-network and backbone state dicts in torchvision's format (saved from randomly
initialised torchvision models), and import-model -> export (parity gate) -> pipeline."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'streamseg[train]')")
if importlib.util.find_spec("torchvision") is None:  # not importorskip: the zoo's door must import it first
    pytest.skip("torchvision is not installed (pip install 'streamseg[train]')", allow_module_level=True)

from streamseg.cli import main  # noqa: E402
from streamseg.contract import load_model  # noqa: E402
from streamseg.errors import ModelError  # noqa: E402
from streamseg.models import NETWORKS, build, count_params  # noqa: E402
from streamseg.models._torchvision import torchvision  # noqa: E402
from streamseg.models.torchvision_seg import ARCHITECTURES, TorchvisionSeg, documented_params  # noqa: E402

from .test_pspnet import randomize_batch_norm  # noqa: E402

MOBILE = ["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large"]
RESNET = ["fcn_resnet50", "deeplabv3_resnet50", "fcn_resnet101", "deeplabv3_resnet101"]
# Building a ResNet-101 network takes a few seconds on two cores
slow_resnets = [pytest.param(n, marks=pytest.mark.slow) for n in RESNET]


def torchvision_model(name: str, classes: int = 21, aux: bool | None = True, seed: int = 0) -> torch.nn.Module:
    """The network as torchvision builds it (random weights, batch norm with non-trivial statistics)."""
    torch.manual_seed(seed)
    options: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": classes}
    if ARCHITECTURES[name][2]:
        options["aux_loss"] = aux
    net = getattr(torchvision().models.segmentation, name)(**options)
    randomize_batch_norm(net, seed)
    if "resnet101" in name:
        # Untrained, ResNet-101's 23-block layer3 grows the logits to ~1e4 (trained ones are tens): float32
        # noise at that scale fails the export's absolute parity gate. Damp each residual branch instead.
        for block in net.backbone.modules():
            if hasattr(block, "bn3"):
                block.bn3.weight.data.mul_(0.1)
    return net.eval()


def save_torchvision(net: torch.nn.Module, path: Path) -> Path:
    torch.save(net.state_dict(), path)  # torchvision's format: the torchvision module's own state dict
    return path


def test_every_torchvision_network_is_registered() -> None:
    tv = {name for name, info in NETWORKS.items() if info.module == "torchvision_seg"}
    assert tv == set(ARCHITECTURES) == set(MOBILE + RESNET)
    for name in tv:
        assert NETWORKS[name].paper_classes == 21 and NETWORKS[name].backbone in (
            "resnet50",
            "resnet101",
            "mobilenet_v3_large",
        )


@pytest.mark.parametrize("name", [*MOBILE, *slow_resnets])
def test_parameter_count_is_torchvisions(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """torchvision's weight metadata states the count of its released 21-class networks (auxiliary head included)."""
    model = build(name)
    n = count_params(model)
    assert n == documented_params(name)
    assert NETWORKS[name].paper_params_m == pytest.approx(n / 1e6, abs=5e-7)
    with capsys.disabled():
        print(f"\n{name}: {n:,} parameters (torchvision: {documented_params(name):,})")


@pytest.mark.parametrize("name", [*MOBILE, *slow_resnets])
def test_zoo_convention_matches_torchvisions_dict_output(name: str, tmp_path: Path) -> None:
    """Logits at the input size; (main, aux) in training, main in eval; the same numbers as torchvision's forward."""
    net = torchvision_model(name, classes=5)
    model = build(name, 5, weights=str(save_torchvision(net, tmp_path / "w.pth")))
    x = torch.randn(2, 3, 67, 91)  # odd sizes: the upsampling goes back to exactly these
    with torch.no_grad():
        expected = net(x)
        got = model.eval()(x)
        assert isinstance(got, torch.Tensor) and got.shape == (2, 5, 67, 91)
        assert torch.equal(got, expected["out"])
        net.train()
        torch.manual_seed(3)  # the heads' dropout draws the same masks in both
        expected = net(x)
        torch.manual_seed(3)
        trained = model.train()(x)
    if name.startswith("lraspp"):
        assert isinstance(trained, torch.Tensor) and torch.equal(trained, expected["out"])
    else:
        main_out, aux = trained
        assert torch.equal(main_out, expected["out"]) and torch.equal(aux, expected["aux"])
        assert aux.shape == (2, 5, 67, 91)


def test_without_the_auxiliary_head(tmp_path: Path) -> None:
    net = torchvision_model("deeplabv3_mobilenet_v3_large", classes=3, aux=False)
    path = save_torchvision(net, tmp_path / "w.pth")
    model = build("deeplabv3_mobilenet_v3_large", 3, weights=str(path), aux=False)
    assert not model.has_aux
    out = model.train()(torch.randn(2, 3, 32, 32))
    assert isinstance(out, torch.Tensor)  # no aux head: the main logits alone, in training too
    with pytest.raises(ModelError, match=r"has no auxiliary head \(aux_classifier\.\*\): build .* with aux=False"):
        build("deeplabv3_mobilenet_v3_large", 3, weights=str(path))


@pytest.mark.parametrize(
    ("saved", "built", "classes", "error"),
    [
        ("lraspp_mobilenet_v3_large", "lraspp_mobilenet_v3_large", 4, "the state dict has 3 classes, the lraspp"),
        (
            "lraspp_mobilenet_v3_large",
            "deeplabv3_mobilenet_v3_large",
            3,
            "build deeplabv3_mobilenet_v3_large with aux=False",
        ),
        ("deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large", 3, "has an auxiliary head"),
    ],
)
def test_state_dicts_that_do_not_fit(saved: str, built: str, classes: int, error: str, tmp_path: Path) -> None:
    path = save_torchvision(torchvision_model(saved, classes=3), tmp_path / "w.pth")
    with pytest.raises(ModelError, match=error) as info:
        build(built, classes, weights=str(path))
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_a_state_dict_of_another_architecture_is_named(tmp_path: Path) -> None:
    net = torchvision_model("lraspp_mobilenet_v3_large", classes=3)
    state = net.state_dict()
    state["classifier.extra.weight"] = torch.zeros(1)
    del state["backbone.0.0.weight"]
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(ModelError, match=r"unexpected keys classifier\.extra\.weight"):
        build("lraspp_mobilenet_v3_large", 3, weights=str(tmp_path / "extra.pth"))
    del state["classifier.extra.weight"]
    torch.save(state, tmp_path / "lacks.pth")
    with pytest.raises(ModelError, match=r"state dict lacks backbone\.0\.0\.weight"):
        build("lraspp_mobilenet_v3_large", 3, weights=str(tmp_path / "lacks.pth"))
    (tmp_path / "text.pth").write_text("not a state dict")
    with pytest.raises(ModelError, match=r"text\.pth: cannot read backbone weights"):
        build("lraspp_mobilenet_v3_large", 3, weights=str(tmp_path / "text.pth"))
    with pytest.raises(ModelError, match="must be a local file"):
        build("lraspp_mobilenet_v3_large", 3, weights="https://download.pytorch.org/models/x.pth")


def test_mobilenet_backbone_from_an_imagenet_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(1)
    imagenet = torchvision().models.mobilenet_v3_large(weights=None)
    path = save_torchvision(imagenet, tmp_path / "mobilenet_v3_large.pth")
    model = build("lraspp_mobilenet_v3_large", 3, pretrained_backbone=str(path))
    ours = model.net.backbone.state_dict()
    for key, value in imagenet.state_dict().items():
        if key.startswith("features."):
            assert torch.equal(ours[key.removeprefix("features.")], value), key
    bad = imagenet.state_dict()
    bad["features.0.0.weight"] = torch.zeros(1, 3, 3, 3)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ModelError, match=r"weights do not fit the backbone: features.0.0.weight \(1, 3, 3, 3\)"):
        build("lraspp_mobilenet_v3_large", 3, pretrained_backbone=str(tmp_path / "bad.pth"))


@pytest.mark.slow
def test_resnet_backbone_from_an_imagenet_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(2)
    imagenet = torchvision().models.resnet50(weights=None)
    path = save_torchvision(imagenet, tmp_path / "resnet50.pth")
    model = build("fcn_resnet50", 3, pretrained_backbone=str(path))
    ours = model.net.backbone.state_dict()
    for key, value in imagenet.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(ours[key], value), key


@pytest.mark.slow
def test_zero_init_residual_starts_every_block_as_the_identity() -> None:
    model = build("fcn_resnet101", 3, zero_init_residual=True).eval()
    blocks = [m for m in model.net.backbone.modules() if hasattr(m, "bn3")]
    assert len(blocks) == 3 + 4 + 23 + 3 and all(float(b.bn3.weight.abs().sum()) == 0 for b in blocks)
    with torch.no_grad():
        assert float(model(torch.randn(1, 3, 64, 96)).abs().max()) < 100


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (
            ["lraspp_mobilenet_v3_large", "--weights", "w.pth", "--labels", "voc"],
            "has 3 classes, the label set 'voc' 21",
        ),
        (["lraspp_mobilenet_v3_large", "--weights", "none.pth", "--labels", "voc"], "none.pth: no such file"),
        (["unet", "--weights", "w.pth", "--labels", "voc"], "unet is not a torchvision network"),
        (
            ["lraspp_mobilenet_v3_large", "--weights", "w.pth", "--labels", "l.txt", "--out", "x.onnx"],
            "checkpoint (.pt)",
        ),
        (
            ["lraspp_mobilenet_v3_large", "--weights", "w.pth", "--labels", "l.txt", "--layout", "NHWC"],
            "for ONNX files",
        ),
        (["deeplabv3_resnet50", "--weights", "w.pth", "--labels", "l.txt"], "unexpected keys backbone.0.0.weight"),
    ],
)
def test_import_refusals(
    argv: list[str], error: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    save_torchvision(torchvision_model("lraspp_mobilenet_v3_large", classes=3), tmp_path / "w.pth")
    (tmp_path / "l.txt").write_text("a\nb\nc\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["import-model", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("streamseg: error: ") and error in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no checkpoint, no sidecar, no folder


# --- a torchvision state dict through import-model, export and the pipeline ------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", [*MOBILE, *RESNET])
def test_torchvision_weights_import_export_and_run(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    net = torchvision_model(name)
    weights = save_torchvision(net, tmp_path / f"{name}_coco.pth")
    assert main(["import-model", name, "--weights", str(weights), "--labels", "voc", "--size", "64x96"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {name}/{name}.json" in printed and "checked with torch (cpu): one frame -> (1, 64, 96)" in printed
    checkpoint = tmp_path / name / f"{name}.pt"
    loaded = load_model(str(checkpoint.with_suffix(".json")))
    assert loaded.checkpoint_path == checkpoint and loaded.contract.class_names[15] == "person"

    # the checkpoint holds torchvision's weights: the zoo network gives torchvision's logits
    from streamseg.models.checkpoint import load_network

    zoo, meta = load_network(checkpoint)
    assert isinstance(zoo, TorchvisionSeg) and (meta.height, meta.width) == (64, 96)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(zoo.eval()(x), net(x)["out"])

    onnx_path = tmp_path / "onnx" / f"{name}.onnx"
    assert main(["export", str(checkpoint), "--out", str(onnx_path)]) == 0
    printed = capsys.readouterr().out
    diff = float(printed.split("max |logit diff| ")[1].split(",")[0])
    assert diff < 1e-3 and "label agreement 1.00000" in printed
    with capsys.disabled():
        print(f"\n{name}: export parity max |logit diff| {diff:.3g}")

    stats = tmp_path / "stats.jsonl"
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        "sources: [{name: s, uri: 'synthetic://?width=192&height=128&frames=3'}]\n"
        f"model: {{path: '{onnx_path.with_suffix('.json')}'}}\n"
        f"outputs: [{{type: jsonl, path: '{stats}'}}]\n"
        "http: {enabled: false}\n"
    )
    assert main(["run", str(pipeline), "--status-interval", "0"]) == 0
    records = [json.loads(line) for line in stats.read_text().splitlines()]
    assert len(records) == 3
    ratios = np.array([list(r["class_area_ratio"].values()) for r in records])
    assert ratios.shape == (3, 21) and np.allclose(ratios.sum(1), 1)
