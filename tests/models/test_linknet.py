"""LinkNet: the paper's parameter count, sizes (360x640 in, 360x640 out, odd sizes too) and ONNX export."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'streamseg[train]')")

from streamseg.models import build, count_params  # noqa: E402
from streamseg.models.linknet import linknet  # noqa: E402

from ._onnx import export_and_run  # noqa: E402

PAPER_PARAMS = 11.5e6  # Chaurasia & Culurciello, Table 2 (12 classes)
# ResNet-18 trunk (torchvision without fc) + decoder blocks 4..1 + final block with 12 classes
TRUNK = 11_176_512
DECODERS = sum(m * m // 4 + (m // 4) ** 2 * 9 + m // 4 * n + 2 * (m // 4 + m // 4 + n) for m, n in
               ((512, 256), (256, 128), (128, 64), (64, 64)))  # fmt: skip
FINAL = 64 * 32 * 9 + 2 * 32 + 32 * 32 * 9 + 2 * 32 + 32 * 12 * 4 + 12


def test_parameter_count_is_the_papers(capsys: pytest.CaptureFixture[str]) -> None:
    n = count_params(build("linknet"))
    with capsys.disabled():
        print(f"\nLinkNet (12 classes): {n:,} parameters; paper 11.5 M ({n / PAPER_PARAMS - 1:+.2%})")
    assert n == TRUNK + DECODERS + FINAL == 11_534_732
    assert abs(n / PAPER_PARAMS - 1) < 0.01


@pytest.mark.parametrize(("height", "width"), [pytest.param(360, 640, marks=pytest.mark.slow), (97, 131), (32, 32)])
def test_logits_at_the_input_size(height: int, width: int) -> None:
    """360 does not divide by 32 (360 -> 180 -> 90 -> 45 -> 23 -> 12): the decoder follows the encoder's sizes."""
    with torch.no_grad():
        out = linknet(12).eval()(torch.randn(1, 3, height, width))
    assert out.shape == (1, 12, height, width)


@pytest.mark.slow
def test_training_forward_and_backward() -> None:
    model = linknet(3).train()
    out = model(torch.randn(2, 3, 64, 96))
    assert out.shape == (2, 3, 64, 96)
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.slow
def test_onnx_export_at_an_odd_size_matches_onnxruntime() -> None:
    """90x160 (-> 45x80 -> ... 3x5 in the encoder) exercises the decoder's output padding 0 and 1."""
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = linknet(12)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    model.eval()
    x = torch.randn(2, 3, 90, 160)
    _, got = export_and_run(model, x[:1], x)  # exported at batch 1, run at batch 2
    with torch.no_grad():
        expected = model(x).numpy()
    assert got.shape == (2, 12, 90, 160)
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()
