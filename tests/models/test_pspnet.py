"""PSPNet: parameter count, (main, aux) in training and main in eval, and ONNX export at its fixed 473x473."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'streamseg[train]')")

from streamseg.models import NETWORKS, build, count_params  # noqa: E402
from streamseg.models.pspnet import BINS, pspnet  # noqa: E402

from ._onnx import export_and_run  # noqa: E402

# The standard-stem network with 21 classes (no published count to compare with):
# ResNet-50 trunk 23,508,032 + pyramid pooling 4 x (2048*512 + 2*512) + head (4096*512*9 + 2*512 + 512*21 + 21)
# + auxiliary head (1024*256*9 + 2*256 + 256*21 + 21)
TRUNK, PPM, HEAD, AUX = 23_508_032, 4 * (2048 * 512 + 2 * 512), 4096 * 512 * 9 + 2 * 512 + 512 * 21 + 21, 2_365_205


def randomize_batch_norm(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every batch norm non-trivial statistics, so that eval-mode comparisons test something."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def test_parameter_count_of_the_paper_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    model = build("pspnet")
    assert count_params(model) == TRUNK + PPM + HEAD + AUX == 48_957_802
    assert count_params(model.aux) == AUX
    with capsys.disabled():
        print(
            f"\nPSPNet (ResNet-50, standard stem, 21 classes): {count_params(model):,} parameters, "
            f"{count_params(model) - AUX:,} without the auxiliary head"
        )


@pytest.mark.slow
def test_training_returns_main_and_aux_eval_returns_main() -> None:
    model = pspnet(5, width=8)
    x = torch.randn(2, 3, 65, 65)  # two samples: batch norm after the 1x1 bin needs more than one value
    main, aux = model.train()(x)
    assert main.shape == aux.shape == (2, 5, 65, 65)
    with torch.no_grad():
        out = model.eval()(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5, 65, 65)


@pytest.mark.slow
def test_full_width_forward_at_a_small_size() -> None:
    model = build("pspnet").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 97, 97))
    assert out.shape == (1, 21, 97, 97)
    assert torch.isfinite(out).all()


def test_473_gives_features_that_divide_by_every_bin() -> None:
    info = NETWORKS["pspnet"]
    assert info.fixed_input and info.input_size == (473, 473)
    with torch.no_grad():
        features = pspnet(21, width=4).backbone.eval()(torch.zeros(1, 3, *info.input_size))[-1]
    assert features.shape[-2:] == (60, 60)
    assert all(60 % b == 0 for b in BINS)


@pytest.mark.slow
def test_exports_at_473_with_a_dynamic_batch_and_matches_onnxruntime() -> None:
    """Narrow (width 8) for speed: the graph has the same operators as the full network."""
    pytest.importorskip("onnxruntime")
    model = pspnet(21, width=8)
    randomize_batch_norm(model)
    model.eval()
    x = torch.randn(2, 3, 473, 473)
    graph, got = export_and_run(model, x[:1], x)  # exported at batch 1, run at batch 2
    ops = {node.op_type for node in graph.graph.node}
    assert "AveragePool" in ops and "GlobalAveragePool" in ops  # the bins, from adaptive pooling
    with torch.no_grad():
        expected = model(x).numpy()
    assert got.shape == (2, 21, 473, 473)
    # untrained logits reach a few hundred; float32 summation order differs between the two runtimes
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()


@pytest.mark.slow
def test_full_width_forward_at_473() -> None:
    """The paper configuration at its export size (a few seconds on two CPU cores)."""
    with torch.no_grad():
        out = build("pspnet").eval()(torch.randn(1, 3, 473, 473))
    assert out.shape == (1, 21, 473, 473)
