"""Building blocks shared by the zoo: max-pooling with switches, unpooling, bilinear kernels, conv+BN+ReLU.

Unpooling from standard operators. SegNet and ENet upsample with the *switches* (argmax positions)
saved by the encoder's max-pooling. In PyTorch that is ``max_pool2d(return_indices=True)`` +
``max_unpool2d``, but TensorRT's ONNX parser has neither ``MaxUnpool`` nor ``MaxPool``'s second
(indices) output. Here the switches are a 0/1 mask the size of the pooled input, built from ops
every runtime has::

    pooled   = MaxPool(x)                                   (one output)
    hits     = Cast(Equal(x, Resize_nearest(pooled)))       1 where an element equals its window's max
    switches = first hit of each window                     Reshape/Transpose, CumSum, Equal, Mul, DepthToSpace
    unpooled = Resize_nearest(y) * switches                 (+ Slice/Pad for odd sizes)

Ties. Several elements of a window can equal its max, and after a ReLU that is common: a window of
four negative pre-activations is four exact zeros. Then ``hits`` has several ones, and unpooling
would copy the decoder's (non-zero) value into all of them, where ``max_unpool2d`` writes it once.
So ties are broken the way PyTorch's max-pooling breaks them (CPU and CUDA kernels keep the first
maximum in row-major scan order, comparing with ``>``): a cumulative sum over the window's
elements, in that order, keeps only the hit whose running count is 1. The result equals
``max_unpool2d(y, indices, output_size=x.shape)`` exactly, ties included. (NaN is the one
difference: ``NaN == NaN`` is false, so a window whose max is NaN gets no switch, where PyTorch
points at the NaN.)

Only non-overlapping windows (``kernel == stride``) are supported, which is what SegNet (2x2/2) and
ENet (2x2/2) use; floor rounding as PyTorch's default: rows/columns beyond the last full window are
never a switch, and unpooling pads them with zeros, like ``max_unpool2d(..., output_size=x.shape)``.
"""

from __future__ import annotations

from ._torch import F, Tensor, nn, torch


def is_tracing() -> bool:
    """True while ``torch.jit.trace`` (and so the ONNX exporter) records: shape checks would be frozen in."""
    return bool(torch.jit.is_tracing())  # type: ignore[attr-defined,no-untyped-call]


def _check_window(kernel: int, stride: int) -> None:
    if kernel != stride or kernel < 1:
        raise ValueError(
            f"pooling with switches needs non-overlapping windows (kernel == stride >= 1), got {kernel}/{stride}"
        )


def pool_with_switches(x: Tensor, kernel: int = 2, stride: int = 2) -> tuple[Tensor, Tensor]:
    """Max-pool ``x`` (N, C, H, W) and return ``(pooled, switches)``.

    ``switches`` has the shape and dtype of ``x``: 1 at the first maximum of each window (row-major,
    as PyTorch's own indices), 0 elsewhere. Feed it to :func:`unpool_like`.
    """
    _check_window(kernel, stride)
    pooled = F.max_pool2d(x, kernel, stride)
    h, w = x.shape[-2:]
    hp, wp = pooled.shape[-2:]
    hc, wc = hp * stride, wp * stride  # the region the windows cover (floor rounding)
    # Slice and pad unconditionally (no-ops on even sizes): a Python branch on sizes would be frozen
    # into a traced graph and be wrong for other input sizes.
    hits = (x[..., :hc, :wc] == F.interpolate(pooled, scale_factor=stride, mode="nearest")).to(x.dtype)
    # One window per channel group of stride*stride elements in row-major order (SpaceToDepth);
    # keep the hit whose running count within its window is 1.
    c = x.shape[1]
    windows = F.pixel_unshuffle(hits, stride).reshape(-1, c, stride * stride, hp, wp)
    first = windows * (windows.cumsum(dim=2) == 1).to(x.dtype)
    hits = F.pixel_shuffle(first.reshape(-1, c * stride * stride, hp, wp), stride)
    return pooled, F.pad(hits, (0, w - wc, 0, h - hc))


def unpool_like(y: Tensor, switches: Tensor, *, stride: int = 2) -> Tensor:
    """Place each value of ``y`` at its window's switch: ``max_unpool2d`` with ``output_size=switches.shape``.

    ``y`` has the pooled shape (N, C, H // stride, W // stride) of the ``switches`` (N, C, H, W)
    returned by :func:`pool_with_switches` with that ``stride``; the result has the shape of ``switches``.
    """
    h, w = switches.shape[-2:]
    hy, wy = y.shape[-2:]
    if not is_tracing() and (h // stride, w // stride) != (hy, wy):
        raise ValueError(
            f"unpool_like: values of shape {tuple(y.shape)} do not fit switches of shape "
            f"{tuple(switches.shape)} at stride {stride}"
        )
    up = F.interpolate(y, scale_factor=stride, mode="nearest")
    return F.pad(up, (0, w - wy * stride, 0, h - hy * stride)) * switches


def bilinear_kernel(channels: int, kernel_size: int) -> Tensor:
    """Weights (channels, channels, k, k) that make a ``ConvTranspose2d(channels, channels, k)`` upsample bilinearly.

    Caffe's ``BilinearFiller`` / FCN's ``upsample_filt``: each channel maps to itself (off-diagonal
    zero). For a factor ``s`` use ``kernel_size = 2 * s - s % 2``, ``stride = s`` and
    ``padding = s // 2`` (that is ``ceil((s - 1) / 2)``): the output then equals
    ``F.interpolate(mode="bilinear", align_corners=False)`` away from the borders.
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float64)
    filt1d = 1 - (og - center).abs() / factor
    filt = (filt1d[:, None] * filt1d[None, :]).to(torch.float32)
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    idx = torch.arange(channels)
    weight[idx, idx] = filt
    return weight


class ConvBNReLU(nn.Sequential):
    """3x3 convolution (padding 1), BatchNorm, ReLU; the modules are named ``conv``, ``bn``, ``relu``."""

    def __init__(self, cin: int, cout: int, kernel: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
