"""SegNet: sizes, parameter counts, decoder unpooling equal to max_unpool2d, ONNX export without MaxUnpool."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from streamseg.models import build, count_params  # noqa: E402

from ._onnx import export_and_run  # noqa: E402

PAPER_M = 29.4  # the registry's figure for SegNet (VGG-16 encoder + mirrored decoder, with BatchNorm)


def _conv(cin: int, cout: int, k: int = 3) -> int:
    return cin * cout * k * k + cout


ENCODER = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256)]
ENCODER += [(256, 512)] + [(512, 512)] * 5
DECODER = [(512, 512)] * 5 + [(512, 256), (256, 256), (256, 256), (256, 128), (128, 128), (128, 64), (64, 64)]


def _expected_params(num_classes: int) -> int:
    """Hand count: 13 + 12 conv+BN (2 BN parameters per channel) and the 3x3 classifier."""
    blocks = ENCODER + DECODER
    return sum(_conv(a, b) + 2 * b for a, b in blocks) + _conv(64, num_classes)


@pytest.mark.parametrize("num_classes", [11, 21])
def test_parameter_count(num_classes) -> None:
    with torch.device("meta"):
        model = build("segnet", num_classes)
    assert count_params(model) == _expected_params(num_classes)
    assert abs(count_params(model) / 1e6 - PAPER_M) / PAPER_M < 0.01
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in model.modules())  # no learned upsampling


@pytest.mark.parametrize("size", [(32, 32), (45, 61), (64, 96)])
def test_logits_at_the_input_size(size) -> None:
    model = build("segnet", 5, base_channels=2).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, *size)).shape == (2, 5, *size)


def _reference_forward(model, x):
    """The same network with PyTorch's max_pool2d indices and max_unpool2d."""
    indices, sizes = [], []
    for names in model.encoder_names:
        for name in names:
            x = model.get_submodule(name)(x)
        sizes.append(x.shape[-2:])
        x, idx = F.max_pool2d(x, 2, 2, return_indices=True)
        indices.append(idx)
    for names in model.decoder_names:
        x = F.max_unpool2d(x, indices.pop(), 2, 2, output_size=sizes.pop())
        for name in names:
            x = model.get_submodule(name)(x)
    return model.classifier(x)


@pytest.mark.parametrize("size", [(64, 64), (45, 61)])
def test_decoder_unpools_exactly_like_max_unpool2d(size) -> None:
    model = build("segnet", 4, base_channels=2).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        assert torch.equal(model(x), _reference_forward(model, x))


@pytest.mark.slow
def test_onnx_export_has_no_maxunpool_and_matches() -> None:
    model = build("segnet", 4, base_channels=2).eval()
    with torch.no_grad():
        for m in model.modules():  # non-trivial BatchNorm statistics
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        x = torch.randn(2, 3, 45, 61)
        ref = model(x).numpy()
    graph, out = export_and_run(model, x[:1], x)
    assert "MaxUnpool" not in {n.op_type for n in graph.graph.node}
    assert {len(n.output) for n in graph.graph.node if n.op_type == "MaxPool"} == {1}
    np.testing.assert_allclose(out, ref, atol=1e-4 * max(1.0, float(np.abs(ref).max())), rtol=0)
