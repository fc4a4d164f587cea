"""Unpooling from standard operators equals PyTorch's max_unpool2d; bilinear kernels equal bilinear interpolation."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from streamseg.models.layers import bilinear_kernel, pool_with_switches, unpool_like  # noqa: E402

from ._onnx import export_and_run  # noqa: E402

SHAPES = [(1, 1, 2, 2), (2, 3, 8, 6), (3, 5, 7, 9), (1, 2, 5, 4), (2, 4, 3, 3), (1, 8, 16, 17)]


def _reference(x, y, stride=2):
    """max_pool2d with indices and max_unpool2d, restored to the input size."""
    pooled, indices = F.max_pool2d(x, stride, stride, return_indices=True)
    return pooled, F.max_unpool2d(y, indices, stride, stride, output_size=x.shape[-2:])


@pytest.mark.parametrize("shape", SHAPES)
def test_unpooling_equals_max_unpool2d_on_random_inputs(shape) -> None:
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=g)
    pooled, switches = pool_with_switches(x)
    y = torch.randn(pooled.shape, generator=g)  # decoder values: not the pooled ones
    ref_pooled, ref = _reference(x, y)
    assert torch.equal(pooled, ref_pooled)
    assert switches.shape == x.shape and switches.dtype == x.dtype
    assert int(switches.sum()) == pooled.numel()  # one switch per window
    assert torch.equal(unpool_like(y, switches), ref)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda g, s: torch.relu(torch.randn(s, generator=g)), id="relu-zeros"),
        pytest.param(lambda g, s: torch.randint(0, 2, s, generator=g).float(), id="binary"),
        pytest.param(lambda g, s: torch.zeros(s), id="all-equal"),
    ],
)
def test_ties_go_to_the_first_maximum_like_pytorch(make) -> None:
    g = torch.Generator().manual_seed(1)
    x = make(g, (2, 3, 9, 10))
    pooled, switches = pool_with_switches(x)
    y = torch.randn(pooled.shape, generator=g)
    assert torch.equal(unpool_like(y, switches), _reference(x, y)[1])


@pytest.mark.parametrize("shape", [(1, 2, 9, 9), (2, 1, 10, 7)])
def test_other_window_sizes(shape) -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 3, shape, generator=g).float()  # ties in most windows
    pooled, switches = pool_with_switches(x, 3, 3)
    y = torch.randn(pooled.shape, generator=g)
    assert torch.equal(unpool_like(y, switches, stride=3), _reference(x, y, stride=3)[1])


def test_mismatched_shapes_and_overlapping_windows_are_refused() -> None:
    _, switches = pool_with_switches(torch.randn(1, 1, 8, 8))
    with pytest.raises(ValueError, match="do not fit"):
        unpool_like(torch.randn(1, 1, 3, 4), switches)
    with pytest.raises(ValueError, match="non-overlapping"):
        pool_with_switches(torch.randn(1, 1, 8, 8), 3, 2)


class _PoolUnpool(torch.nn.Module):
    def forward(self, x):
        pooled, switches = pool_with_switches(x)
        return unpool_like(pooled * 3 - 1, switches)  # exact in float32 on every runtime


def test_onnx_export_has_no_maxunpool_nor_indices_output_and_matches() -> None:
    module = _PoolUnpool().eval()
    x = torch.randn(3, 3, 7, 9)  # odd size: the padding path is in the graph
    graph, out = export_and_run(module, x[:1], x)  # exported at batch 1, run at batch 3
    ops = {node.op_type for node in graph.graph.node}
    assert "MaxUnpool" not in ops
    assert [len(n.output) for n in graph.graph.node if n.op_type == "MaxPool"] == [1]
    with torch.no_grad():
        pooled, indices = F.max_pool2d(x, 2, 2, return_indices=True)
        ref = F.max_unpool2d(pooled * 3 - 1, indices, 2, 2, output_size=x.shape[-2:])
    np.testing.assert_array_equal(out, ref.numpy())


def test_bilinear_kernel_is_caffes_filler() -> None:
    k4 = bilinear_kernel(2, 4)
    assert k4.shape == (2, 2, 4, 4)
    np.testing.assert_allclose(k4[0, 0].numpy(), np.outer([0.25, 0.75, 0.75, 0.25], [0.25, 0.75, 0.75, 0.25]))
    np.testing.assert_allclose(k4[1, 1].numpy(), k4[0, 0].numpy())
    assert not k4[0, 1].any() and not k4[1, 0].any()  # each channel maps only to itself
    np.testing.assert_allclose(bilinear_kernel(1, 5)[0, 0, 2].numpy(), [1 / 3, 2 / 3, 1, 2 / 3, 1 / 3], rtol=1e-6)


@pytest.mark.parametrize("stride", [2, 3, 4, 8, 16])
@pytest.mark.parametrize("convention", ["padding", "crop"])
def test_bilinear_transposed_conv_equals_bilinear_interpolation(stride, convention) -> None:
    kernel, pad = 2 * stride - stride % 2, stride // 2
    x = torch.randn(1, 3, 6, 7, generator=torch.Generator().manual_seed(stride))
    up = torch.nn.ConvTranspose2d(
        3, 3, kernel, stride=stride, padding=pad if convention == "padding" else 0, bias=False
    )
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(3, kernel))
        out = up(x)
    if convention == "crop":  # FCN's way: no padding, crop the larger output
        out = out[..., pad : pad + 6 * stride, pad : pad + 7 * stride]
    ref = F.interpolate(x, scale_factor=stride, mode="bilinear", align_corners=False)
    assert out.shape == ref.shape == (1, 3, 6 * stride, 7 * stride)
    # Equal away from the border, where interpolation clamps and the transposed conv sees zeros.
    inner = (..., slice(stride, -stride), slice(stride, -stride))
    np.testing.assert_allclose(out[inner].numpy(), ref[inner].numpy(), atol=1e-5, rtol=0)
