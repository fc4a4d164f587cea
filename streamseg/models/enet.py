"""ENet: Paszke, Chaurasia, Kim, Culurciello. ENet: A Deep Neural Network Architecture for Real-Time
Semantic Segmentation. arXiv:1606.02147 (2016).

The layers are the paper's Table 1: an initial block (13 strided 3x3 filters concatenated with a
2x2 max pool: 16 channels at 1/2), stage 1 (a downsampling bottleneck to 64 channels at 1/4 and four
regular ones), stage 2 (a downsampling bottleneck to 128 at 1/8, then regular, dilated 2,
asymmetric 5, dilated 4, regular, dilated 8, asymmetric 5, dilated 16), stage 3 (stage 2 without its
downsampling), the decoder (stage 4: upsampling to 64 at 1/4 and two regular; stage 5: upsampling
to 16 at 1/2 and one regular) and a 2x2 full (transposed) convolution to the classes.

A bottleneck (Fig. 2b) is a 1x1 projection to a quarter of the output width (a 2x2 stride-2
convolution when downsampling), the main convolution, a 1x1 expansion, spatial dropout, added to the
shortcut, then PReLU. Batch normalisation and PReLU (one slope per channel) sit between the
convolutions; projections have no bias (Sec. 3). A downsampling shortcut max-pools and pads the
channels with zeros; an upsampling shortcut is a bias-free 1x1 convolution and batch norm, then
max unpooling with the switches of the matching downsampling bottleneck. Pooling and unpooling go
through ``layers.pool_with_switches`` / ``layers.unpool_like``: equal to ``max_unpool2d`` with
PyTorch's indices, but built from standard ONNX operators (no ``MaxUnpool``, which TensorRT lacks).

Choices where the paper is silent, taken from the authors' Torch code (e-lab/ENet-training):
batch-norm epsilon 1e-3, internal width = output width / 4 also in the decoder, no bias on the 5x1
half of an asymmetric convolution, batch norm and PReLU after the initial block. Where the two
differ we follow the paper: PReLU in the decoder too (Sec. 4 discusses the decoder's PReLU slopes;
the code uses ReLU), and spatial dropout 0.1 in every bottleneck after 2.0 (the code has none in
the decoder). Dropout and the activation have no effect on the parameter count beyond PReLU's
one slope per channel.

Sizes: the network has output stride 8, and any H, W that divide by 8 (360x640 among them) go
through unchanged. Other sizes are zero-padded at the bottom and right up to the next multiple of 8
and the logits cropped back, so every size maps to logits at the input size.
"""

from __future__ import annotations

from ._torch import F, Tensor, nn, torch
from .layers import pool_with_switches, unpool_like

EPS = 1e-3  # batch-norm epsilon of the authors' code
STRIDE = 8  # output stride: inputs are padded up to a multiple of it


def _bn_prelu(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels, eps=EPS), nn.PReLU(channels)]


class InitialBlock(nn.Module):
    """3x3 stride-2 convolution with 13 filters, concatenated with a 2x2 max pool of the RGB input."""

    def __init__(self, out_channels: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, out_channels - 3, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn, self.act = _bn_prelu(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.act(self.bn(torch.cat([self.conv(x), self.pool(x)], dim=1)))
        return out


class Bottleneck(nn.Module):
    """Regular, dilated (``dilation``) or asymmetric (``asymmetric`` = 5) bottleneck with an identity shortcut."""

    def __init__(self, channels: int, dropout: float, *, dilation: int = 1, asymmetric: int = 0) -> None:
        super().__init__()
        internal = channels // 4
        main: nn.Module
        if asymmetric:
            pad = asymmetric // 2
            main = nn.Sequential(
                nn.Conv2d(internal, internal, (asymmetric, 1), padding=(pad, 0), bias=False),
                nn.Conv2d(internal, internal, (1, asymmetric), padding=(0, pad)),
            )
        else:
            main = nn.Conv2d(internal, internal, 3, padding=dilation, dilation=dilation)
        self.branch = nn.Sequential(
            nn.Conv2d(channels, internal, 1, bias=False),
            *_bn_prelu(internal),
            main,
            *_bn_prelu(internal),
            nn.Conv2d(internal, channels, 1, bias=False),
            nn.BatchNorm2d(channels, eps=EPS),
            nn.Dropout2d(dropout),
        )
        self.act = nn.PReLU(channels)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.act(self.branch(x) + x)
        return out


class DownsamplingBottleneck(nn.Module):
    """Bottleneck that halves the resolution; the shortcut max-pools and returns its switches."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float) -> None:
        super().__init__()
        internal = out_channels // 4
        self.extra_channels = out_channels - in_channels
        self.branch = nn.Sequential(
            nn.Conv2d(in_channels, internal, 2, stride=2, bias=False),
            *_bn_prelu(internal),
            nn.Conv2d(internal, internal, 3, padding=1),
            *_bn_prelu(internal),
            nn.Conv2d(internal, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels, eps=EPS),
            nn.Dropout2d(dropout),
        )
        self.act = nn.PReLU(out_channels)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pooled, switches = pool_with_switches(x, kernel=2, stride=2)
        shortcut = F.pad(pooled, (0, 0, 0, 0, 0, self.extra_channels))  # zero feature maps up to the width
        return self.act(self.branch(x) + shortcut), switches


class UpsamplingBottleneck(nn.Module):
    """Bottleneck that doubles the resolution: full convolution in the branch, unpooling in the shortcut."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float) -> None:
        super().__init__()
        internal = out_channels // 4
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels, eps=EPS)
        )
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, internal, 1, bias=False), *_bn_prelu(internal))
        self.fullconv = nn.ConvTranspose2d(internal, internal, 3, stride=2, padding=1, output_padding=1)  # 2x
        self.expand = nn.Sequential(
            *_bn_prelu(internal),
            nn.Conv2d(internal, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels, eps=EPS),
            nn.Dropout2d(dropout),
        )
        self.act = nn.PReLU(out_channels)

    def forward(self, x: Tensor, switches: Tensor) -> Tensor:
        shortcut = unpool_like(self.shortcut(x), switches)
        branch = self.fullconv(self.reduce(x))
        out: Tensor = self.act(self.expand(branch) + shortcut)
        return out


def _stage23(dropout: float) -> list[nn.Module]:
    """Bottlenecks x.1 to x.8 of stages 2 and 3 (Table 1)."""
    return [
        Bottleneck(128, dropout),
        Bottleneck(128, dropout, dilation=2),
        Bottleneck(128, dropout, asymmetric=5),
        Bottleneck(128, dropout, dilation=4),
        Bottleneck(128, dropout),
        Bottleneck(128, dropout, dilation=8),
        Bottleneck(128, dropout, asymmetric=5),
        Bottleneck(128, dropout, dilation=16),
    ]


class ENet(nn.Module):
    """ENet as in Table 1 of the paper (output stride 8, any input size)."""

    def __init__(self, num_classes: int, *, dropout_stage1: float = 0.01, dropout: float = 0.1) -> None:
        super().__init__()
        self.initial = InitialBlock(16)
        self.down1 = DownsamplingBottleneck(16, 64, dropout_stage1)
        self.stage1 = nn.Sequential(*(Bottleneck(64, dropout_stage1) for _ in range(4)))
        self.down2 = DownsamplingBottleneck(64, 128, dropout)
        self.stage2 = nn.Sequential(*_stage23(dropout))
        self.stage3 = nn.Sequential(*_stage23(dropout))
        self.up4 = UpsamplingBottleneck(128, 64, dropout)
        self.stage4 = nn.Sequential(Bottleneck(64, dropout), Bottleneck(64, dropout))
        self.up5 = UpsamplingBottleneck(64, 16, dropout)
        self.stage5 = nn.Sequential(Bottleneck(16, dropout))
        self.fullconv = nn.ConvTranspose2d(16, num_classes, 2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % STRIDE, -width % STRIDE
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        y: Tensor = self.initial(x)
        y, switches1 = self.down1(y)
        y = self.stage1(y)
        y, switches2 = self.down2(y)
        y = self.stage3(self.stage2(y))
        y = self.stage4(self.up4(y, switches2))
        y = self.stage5(self.up5(y, switches1))
        y = self.fullconv(y)
        return y[..., :height, :width] if pad_h or pad_w else y


def enet(num_classes: int, *, dropout_stage1: float = 0.01, dropout: float = 0.1) -> ENet:
    """ENet (364,192 parameters with 12 classes; the paper: 0.37 M)."""
    return ENet(num_classes, dropout_stage1=dropout_stage1, dropout=dropout)
