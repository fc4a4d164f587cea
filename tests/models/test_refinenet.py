"""RefineNet: the parameter count derived by hand from the architecture, sizes, backbones, ONNX export."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'streamseg[train]')")

from streamseg.errors import ConfigError  # noqa: E402
from streamseg.models import build, count_params  # noqa: E402
from streamseg.models.backbones import load_backbone_weights  # noqa: E402
from streamseg.models.refinenet import ChainedResidualPooling, refinenet  # noqa: E402

from ._onnx import export_and_run  # noqa: E402

TRUNKS = {"resnet101": 44_549_160 - 2_049_000, "resnet50": 25_557_032 - 2_049_000}  # torchvision minus fc


def conv3x3(cin: int, cout: int, bias: bool = False) -> int:
    return cin * cout * 9 + (cout if bias else 0)


def rcu(c: int) -> int:
    return conv3x3(c, c, bias=True) + conv3x3(c, c)


def block(cin: int, c: int, coarser: int | None, crp: int = 2, out_rcus: int = 1) -> int:
    """Adaptation conv + 2 RCUs, fusion convs (two inputs only), chained residual pooling, output RCUs."""
    fusion = conv3x3(c, c) + conv3x3(coarser, c) if coarser else 0
    return conv3x3(cin, c) + 2 * rcu(c) + fusion + crp * conv3x3(c, c) + out_rcus * rcu(c)


REFINE = [
    block(2048, 512, None),  # RefineNet-4
    block(1024, 256, 512),  # RefineNet-3
    block(512, 256, 256),  # RefineNet-2
    block(256, 256, 256, out_rcus=3),  # RefineNet-1 and the two RCUs before the classifier
]
CLASSIFIER = conv3x3(256, 21, bias=True)


def test_parameter_count_derived_from_the_architecture(capsys: pytest.CaptureFixture[str]) -> None:
    """The paper gives no total; the decoder is written out above from its description and the authors' code."""
    assert REFINE == [28_313_088, 8_848_128, 7_078_656, 8_848_640]
    decoder = sum(REFINE) + CLASSIFIER
    assert decoder == 53_136_917
    for backbone, total in (("resnet101", 95_637_077), ("resnet50", 76_644_949)):
        model = build("refinenet", backbone=backbone)
        with capsys.disabled():
            print(f"\nRefineNet ({backbone}, 21 classes): {count_params(model):,} parameters")
        assert count_params(model.encoder) == TRUNKS[backbone]
        assert count_params(model) == TRUNKS[backbone] + decoder == total


def test_chained_residual_pooling_chains_the_pooled_stages() -> None:
    crp = ChainedResidualPooling(1, 2)
    for conv in crp.convs:
        torch.nn.init.zeros_(conv.weight)
        conv.weight.data[0, 0, 1, 1] = 1.0  # identity 3x3 conv: each stage is only its pooling
    x = torch.zeros(1, 1, 11, 11)
    x[0, 0, 5, 5] = 1.0
    with torch.no_grad():
        out = crp(x)
    # stage 1 spreads the peak over 5x5, stage 2 (pooling stage 1's output) over 9x9: 1 + 1 + 1 at the centre
    assert out[0, 0, 5, 5] == 3 and out[0, 0, 3, 3] == 2 and out[0, 0, 1, 1] == 1 and out[0, 0, 0, 0] == 0


@pytest.mark.parametrize("backbone", ["resnet101", "resnet50"])
@pytest.mark.parametrize(("height", "width"), [(64, 96), (97, 131)])
def test_logits_at_the_input_size(backbone: str, height: int, width: int) -> None:
    with torch.no_grad():
        out = refinenet(5, backbone=backbone, width=4).eval()(torch.randn(1, 3, height, width))
    assert out.shape == (1, 5, height, width)


def test_unknown_backbone_is_refused() -> None:
    with pytest.raises(ConfigError, match="resnet101, resnet50"):
        refinenet(3, backbone="resnet18")


def test_pretrained_backbone_loads_into_the_encoder(tmp_path) -> None:
    donor = refinenet(3, width=4).encoder
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in donor.state_dict().items()}
    path = tmp_path / "resnet101.pth"
    torch.save(state, path)
    model = refinenet(3, width=4, pretrained_backbone=str(path))
    assert torch.equal(model.encoder.layer3[22].conv2.weight, state["layer3.22.conv2.weight"])
    other = refinenet(3, width=4, backbone="resnet50").encoder
    with pytest.raises(Exception, match="resnet50"):
        load_backbone_weights(other, path, "resnet50")


@pytest.mark.slow
def test_training_forward_and_backward() -> None:
    model = refinenet(3, width=4).train()
    out = model(torch.randn(2, 3, 64, 96))
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.slow
def test_onnx_export_at_an_odd_size_matches_onnxruntime() -> None:
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = refinenet(7, width=8)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    model.eval()
    x = torch.randn(2, 3, 97, 131)
    _, got = export_and_run(model, x[:1], x)
    with torch.no_grad():
        expected = model(x).numpy()
    assert got.shape == (2, 7, 97, 131)
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
