"""FC-DenseNet: parameter counts at Table 2's configurations, sizes, only new maps upsampled, ONNX export."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'streamseg[train]')")

from streamseg.models import build, count_params  # noqa: E402
from streamseg.models.fcdensenet import FCDenseNet, fcdensenet56, fcdensenet103  # noqa: E402

from ._onnx import export_and_run  # noqa: E402

BLOCKS = {
    "fcdensenet56": ((4,) * 11, 12),
    "fcdensenet67": ((5,) * 11, 16),
    "fcdensenet103": ((4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4), 16),
}
# (learned, with batch norm's running statistics as Lasagne counts them, paper) with 11 classes (CamVid)
COUNTS = {
    "fcdensenet56": (1_376_795, 1_397_963, 1.5e6),
    "fcdensenet67": (3_463_243, 3_502_923, 3.5e6),
    "fcdensenet103": (9_322_091, 9_425_163, 9.4e6),
}


def by_hand(blocks: tuple[int, ...], growth: int, classes: int = 11) -> tuple[int, int]:
    """(learned parameters, batch-norm channels) of FC-DenseNet written out from the paper's description."""
    params, bn = 3 * 48 * 9 + 48, 0  # first 3x3 convolution, 48 filters, bias

    def block(cin: int, layers: int) -> int:
        nonlocal params, bn
        for i in range(layers):
            c = cin + i * growth
            params += 2 * c + c * growth * 9 + growth  # BN (gamma, beta), 3x3 conv with bias
            bn += c
        return layers * growth

    channels, skips = 48, []
    for n in blocks[:5]:
        channels += block(channels, n)
        skips.append(channels)
        params += 2 * channels + channels * channels + channels  # transition down: BN, 1x1 conv
        bn += channels
    new = block(channels, blocks[5])
    for n, skip in zip(blocks[6:], reversed(skips), strict=True):
        params += new * new * 9 + new  # transition up: 3x3 transposed conv of the new maps only
        channels = skip + new
        new = block(channels, n)
    params += (channels + new) * classes + classes  # 1x1 classifier
    return params, bn


@pytest.mark.parametrize("name", list(BLOCKS))
def test_parameter_counts_at_the_papers_configurations(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    model = build(name)
    learned, with_stats, paper = COUNTS[name]
    stats = sum(b.numel() for k, b in model.named_buffers() if k.endswith(("running_mean", "running_var")))
    with capsys.disabled():
        print(
            f"\n{name} (11 classes): {learned:,} learned ({learned / paper - 1:+.2%}), {with_stats:,} with BN "
            f"statistics ({with_stats / paper - 1:+.2%}); paper {paper / 1e6} M"
        )
    params, bn = by_hand(*BLOCKS[name])
    assert count_params(model) == params == learned
    assert learned + stats == learned + 2 * bn == with_stats
    assert abs(with_stats / paper - 1) < 0.02 or name == "fcdensenet56"  # the paper's 56 is 1.4 M by any count


def test_only_the_new_maps_are_upsampled() -> None:
    model = fcdensenet103(11)
    assert [m.in_channels for m in model.transitions_up] == [16 * n for n in (15, 12, 10, 7, 5)]
    # Table 2's last dense block: m = 256 (skip 48 + 4 * 16, upsampled 5 * 16, new 4 * 16)
    assert model.classifier.in_channels == (48 + 4 * 16) + 5 * 16 + 4 * 16 == 256


@pytest.mark.parametrize(("height", "width"), [(64, 96), (45, 77)])
def test_logits_at_the_input_size(height: int, width: int) -> None:
    """Pooling rounds down (45 -> 22 -> 11 -> 5 -> 2 -> 1); each transposed conv is cropped to its skip."""
    with torch.no_grad():
        out = fcdensenet56(11).eval()(torch.randn(1, 3, height, width))
    assert out.shape == (1, 11, height, width)


def test_dropout_only_in_training() -> None:
    model = FCDenseNet(3, (1,) * 11, growth=4)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), model(x))
    out = model.train()(x)
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.slow
def test_onnx_export_at_an_odd_size_matches_onnxruntime() -> None:
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = fcdensenet56(11)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    model.eval()
    x = torch.randn(2, 3, 45, 77)
    _, got = export_and_run(model, x[:1], x)
    with torch.no_grad():
        expected = model(x).numpy()
    assert got.shape == (2, 11, 45, 77)
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
