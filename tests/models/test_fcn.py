"""FCN-32s/16s/8s: the reference nets' crop offsets, sizes, parameter counts, upsampling and ONNX export."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from streamseg.models import build, count_params  # noqa: E402
from streamseg.models.fcn import crop_offsets  # noqa: E402
from streamseg.models.layers import bilinear_kernel  # noqa: E402

from ._onnx import export_and_run  # noqa: E402

VARIANTS = ("fcn32s", "fcn16s", "fcn8s")
PAPER_M = 134.3  # the registry's figure for FCN-VGG16 (the paper's Table 1: 134 M)


def _conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


# Hand count of the reference nets (21 classes): VGG-16 convs, fc6 (7x7), fc7, score layers, deconvs (no bias).
VGG16_CONVS = sum(
    _conv(a, b, 3)
    for a, b in [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256)]
    + [(256, 512)]
    + [(512, 512)] * 5
)
TRUNK = VGG16_CONVS + _conv(512, 4096, 7) + _conv(4096, 4096, 1) + _conv(4096, 21, 1)


def _deconv(k: int) -> int:
    return 21 * 21 * k * k


EXPECTED = {  # (all parameters, learned parameters with fixed_upsampling=True)
    "fcn32s": (TRUNK + _deconv(64), TRUNK),
    "fcn16s": (TRUNK + _conv(512, 21, 1) + _deconv(4) + _deconv(32), TRUNK + _conv(512, 21, 1)),
    "fcn8s": (
        TRUNK + _conv(512, 21, 1) + _conv(256, 21, 1) + 2 * _deconv(4) + _deconv(16),
        TRUNK + _conv(512, 21, 1) + _conv(256, 21, 1),
    ),
}


def test_crop_offsets_are_the_reference_nets() -> None:
    assert crop_offsets("32s") == {"output": 19}
    assert crop_offsets("16s") == {"pool4": 5, "output": 27}
    assert crop_offsets("8s") == {"pool4": 5, "pool3": 9, "output": 31}


@pytest.mark.parametrize("name", VARIANTS)
def test_parameter_counts(name) -> None:
    with torch.device("meta"):  # no memory, no initialisation cost
        model = build(name, 21)
        frozen = build(name, 21, fixed_upsampling=True)
    total, learned = EXPECTED[name]
    assert count_params(model, trainable_only=False) == total
    assert sum(p.numel() for p in frozen.parameters() if p.requires_grad) == learned
    # The paper's 134 M counts what is learned: VGG-16 without its ImageNet classifier, fc6/fc7
    # and the score layers. FCN-32s's fixed x32 kernel alone adds 1.8 M (1.4 %).
    assert abs(learned / 1e6 - PAPER_M) / PAPER_M < 0.01
    if name != "fcn32s":
        assert abs(total / 1e6 - PAPER_M) / PAPER_M < 0.01


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("size", [(1, 1), (17, 30), (64, 48)])
def test_logits_at_the_input_size(name, size) -> None:
    model = build(name, 5, base_channels=2).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 5, *size)


@pytest.mark.parametrize(
    ("fixed", "learned"),
    [
        (None, {"fcn32s": [], "fcn16s": ["upscore2"], "fcn8s": ["upscore2", "upscore_pool4"]}),
        (True, {"fcn32s": [], "fcn16s": [], "fcn8s": []}),
        (
            False,
            {
                "fcn32s": ["upscore"],
                "fcn16s": ["upscore2", "upscore16"],
                "fcn8s": ["upscore2", "upscore_pool4", "upscore8"],
            },
        ),
    ],
)
@pytest.mark.parametrize("name", VARIANTS)
def test_fixed_upsampling_freezes_the_transposed_convs(name, fixed, learned) -> None:
    model = build(name, 3, base_channels=2, fixed_upsampling=fixed)
    deconvs = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.ConvTranspose2d)}
    assert sorted(n for n, m in deconvs.items() if m.weight.requires_grad) == sorted(learned[name])
    for m in deconvs.values():
        assert torch.equal(m.weight, bilinear_kernel(3, m.kernel_size[0]))
    others = [p.requires_grad for n, p in model.named_parameters() if n.split(".")[0] not in deconvs]
    assert all(others)


def test_zero_score_layers_give_zero_logits() -> None:
    # The paper zero-initialises the class scoring layers; upsampling zeros stays zero.
    model = build("fcn8s", 4, base_channels=2).eval()
    with torch.no_grad():
        assert not model(torch.randn(1, 3, 20, 20)).any()


@pytest.mark.parametrize("name", VARIANTS)
def test_onnx_export_matches_torch(name) -> None:
    model = build(name, 3, base_channels=2).eval()
    with torch.no_grad():
        for p in model.parameters():  # non-zero scores, so the comparison means something
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.1)
        x = torch.randn(2, 3, 37, 50)
        ref = model(x).numpy()
    _, out = export_and_run(model, x[:1], x)
    np.testing.assert_allclose(out, ref, atol=1e-4 * max(1.0, float(np.abs(ref).max())), rtol=0)


def test_fcn32s_learned_parameters_match_the_paper() -> None:
    """The paper counts learned weights: FCN-32s's fixed x32 bilinear upsampling is not one."""
    model = build("fcn32s", 21)
    assert abs(count_params(model) / 134.3e6 - 1) < 0.01
    assert count_params(model, trainable_only=False) - count_params(model) == 21 * 21 * 64 * 64
