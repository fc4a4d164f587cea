"""ENet: the paper's parameter count, sizes (360x640 in, 360x640 out), unpooling equal to max_unpool2d, and an
ONNX export without MaxUnpool that onnxruntime runs like torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'streamseg[train]')")

import torch.nn.functional as F  # noqa: E402, N812

from streamseg.models import build, count_params  # noqa: E402
from streamseg.models import enet as enet_module  # noqa: E402
from streamseg.models.enet import enet  # noqa: E402

from ._onnx import export_and_run  # noqa: E402

PAPER_PARAMS = 0.37e6  # Paszke et al., Table 3 (12 classes, CamVid/Cityscapes configuration)


def randomized(num_classes: int = 12, seed: int = 0) -> torch.nn.Module:
    """An eval-mode ENet whose batch norms have non-trivial statistics (so comparisons test something)."""
    torch.manual_seed(seed)
    model = enet(num_classes)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def test_parameter_count_is_the_papers(capsys: pytest.CaptureFixture[str]) -> None:
    n = count_params(build("enet"))
    with capsys.disabled():
        print(f"\nENet (12 classes): {n:,} parameters; paper 0.37 M ({n / PAPER_PARAMS - 1:+.1%})")
    assert n == 364_192
    assert abs(n / PAPER_PARAMS - 1) < 0.05


@pytest.mark.parametrize(("height", "width"), [pytest.param(360, 640, marks=pytest.mark.slow), (97, 131), (8, 8)])
def test_logits_at_the_input_size(height: int, width: int) -> None:
    """360x640 divides by the output stride 8; the other sizes are padded and cropped back."""
    with torch.no_grad():
        out = enet(12).eval()(torch.randn(1, 3, height, width))
    assert out.shape == (1, 12, height, width)


@pytest.mark.slow
def test_training_forward_and_backward() -> None:
    model = enet(4).train()
    out = model(torch.randn(2, 3, 64, 96))
    assert out.shape == (2, 4, 64, 96)
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_unpooling_equals_max_unpool2d(monkeypatch: pytest.MonkeyPatch) -> None:
    """The switches-mask unpooling gives the network exactly what PyTorch's indices and max_unpool2d give."""
    model = randomized()
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        ours = model(x)

    def pool(x: torch.Tensor, kernel: int = 2, stride: int = 2) -> tuple[torch.Tensor, tuple[torch.Tensor, int, int]]:
        pooled, indices = F.max_pool2d(x, kernel, stride, return_indices=True)
        return pooled, (indices, x.shape[-2], x.shape[-1])

    def unpool(y: torch.Tensor, switches: tuple[torch.Tensor, int, int]) -> torch.Tensor:
        indices, h, w = switches
        return F.max_unpool2d(y, indices, 2, 2, output_size=(h, w))

    monkeypatch.setattr(enet_module, "pool_with_switches", pool)
    monkeypatch.setattr(enet_module, "unpool_like", unpool)
    with torch.no_grad():
        reference = model(x)
    assert torch.equal(ours, reference)


@pytest.mark.slow
def test_onnx_export_has_no_maxunpool_and_matches_onnxruntime() -> None:
    pytest.importorskip("onnxruntime")
    model = randomized()
    x = torch.randn(2, 3, 96, 160)
    graph, got = export_and_run(model, x[:1], x)  # exported at batch 1, run at batch 2
    assert "MaxUnpool" not in {n.op_type for n in graph.graph.node}
    assert all(len(n.output) == 1 for n in graph.graph.node if n.op_type == "MaxPool")  # no indices output either
    with torch.no_grad():
        expected = model(x).numpy()
    assert got.shape == (2, 12, 96, 160)
    # Two maxima one float32 ulp apart can compare the other way round in onnxruntime's convolutions; that
    # window's switch moves and the decoder spreads the change over some pixels (seen: <0.1 % at 360x640).
    off = np.abs(got - expected) > 1e-5 * np.abs(expected).max()
    assert off.mean() < 1e-3
