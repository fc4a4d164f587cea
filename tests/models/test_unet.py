"""U-Net: the paper's 572 -> 388 tile, the padded variant, parameter count, crops and ONNX export."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from streamseg.errors import ConfigError  # noqa: E402
from streamseg.models import build, count_params  # noqa: E402
from streamseg.models import unet as unet_module  # noqa: E402
from streamseg.models.unet import unet_output_size  # noqa: E402

from ._onnx import export_and_run  # noqa: E402

PAPER_M = 31.0


def _conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def _expected_params(num_classes: int, in_channels: int = 3) -> int:
    """Hand count: 2 convs per level (64..1024), 2x2 up-convs halving, 2 convs after each concat, 1x1 head."""
    widths = [64, 128, 256, 512, 1024]
    total, cin = 0, in_channels
    for w in widths:
        total += _conv(cin, w, 3) + _conv(w, w, 3)
        cin = w
    for w in reversed(widths[:-1]):
        total += _conv(2 * w, w, 2) + _conv(2 * w, w, 3) + _conv(w, w, 3)
    return total + _conv(64, num_classes, 1)


def test_paper_tile_572_gives_388() -> None:
    assert unet_output_size(572) == 388
    model = build("unet", 2, base_channels=2).eval()  # the sizes do not depend on the width
    with torch.no_grad():
        assert model(torch.randn(1, 3, 572, 572)).shape == (1, 2, 388, 388)


@pytest.mark.parametrize("size", [188, 189, 204])
def test_unpadded_output_size(size) -> None:
    model = build("unet", 3, base_channels=1).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size + 16))
    assert out.shape == (2, 3, unet_output_size(size), unet_output_size(size + 16))


def test_center_crop() -> None:
    x = torch.arange(2 * 10 * 12).reshape(1, 2, 10, 12)
    assert torch.equal(unet_module._center_crop(x, torch.empty(1, 1, 6, 6)), x[..., 2:8, 3:9])


def test_skips_are_cropped_as_in_the_paper_figure(monkeypatch) -> None:
    crops = []
    original = unet_module._center_crop

    def spy(x, like):
        crops.append((x.shape[-1], like.shape[-1]))
        return original(x, like)

    monkeypatch.setattr(unet_module, "_center_crop", spy)
    with torch.no_grad():
        build("unet", 2, base_channels=1).eval()(torch.randn(1, 3, 572, 572))
    assert crops == [(64, 56), (136, 104), (280, 200), (568, 392)]  # Fig. 1 of the paper


def test_padded_keeps_the_input_size() -> None:
    model = build("unet_padded", 4, base_channels=2).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 48, 80)).shape == (2, 4, 48, 80)


def test_padded_refuses_sizes_not_divisible_by_16() -> None:
    with pytest.raises(ConfigError, match="divisible by 16"):
        build("unet_padded", 2, base_channels=1)(torch.randn(1, 3, 40, 48))


@pytest.mark.parametrize("name", ["unet", "unet_padded"])
def test_parameter_count(name) -> None:
    with torch.device("meta"):
        model = build(name, 2)
    assert count_params(model) == _expected_params(2) == _expected_params(2, in_channels=1) + 64 * 2 * 9
    assert abs(count_params(model) / 1e6 - PAPER_M) / PAPER_M < 0.01


@pytest.mark.slow
@pytest.mark.parametrize(("name", "size"), [("unet", 188), ("unet_padded", 64)])
def test_onnx_export_matches_torch(name, size) -> None:
    model = build(name, 2, base_channels=2).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ref = model(x).numpy()
    _, out = export_and_run(model, x[:1], x)
    np.testing.assert_allclose(out, ref, atol=1e-4 * max(1.0, float(np.abs(ref).max())), rtol=0)
