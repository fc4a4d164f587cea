"""LinkNet: Chaurasia, Culurciello. LinkNet: Exploiting Encoder Representations for Efficient Semantic
Segmentation. VCIP 2017 (arXiv:1707.03718).

The encoder is ResNet-18 (initial 7x7 stride-2 convolution and 3x3 max pool, then its four stages).
Each decoder block (Fig. 3) is a 1x1 convolution m -> m/4, a 3x3 full (transposed) convolution
m/4 -> m/4 that doubles the resolution, and a 1x1 convolution m/4 -> n, each followed by batch norm
and ReLU (convolutions followed by batch norm have no bias); its output is added to the encoder
features of the same resolution (the "links"). The final block is a 3x3 full convolution 64 -> 32
(2x), a 3x3 convolution 32 -> 32 and a 2x2 full convolution 32 -> classes (2x).

Choice: the paper's Fig. 2 draws every encoder block with stride 2, but ResNet-18's layer1 keeps the
resolution of the max pool, so decoder block 1 (paired with it) has stride 1, as in e-lab's PyTorch
code; the output stride is 32 and the parameter count the published 11.5 M.

Sizes: the encoder rounds every halving up (360 -> 180 -> 90 -> 45 -> 23 -> 12), and each decoder
full convolution is given the size of the encoder features it is added to (output padding 0 or 1),
so any H, W works; the last 2x full convolution is cropped to the input only for odd sizes.
360x640 maps to 360x640.
"""

from __future__ import annotations

from ._torch import Tensor, nn
from .resnet import resnet18


class DecoderBlock(nn.Module):
    """1x1 conv m -> m/4, 3x3 full conv (``stride``), 1x1 conv m/4 -> n; batch norm and ReLU after each."""

    def __init__(self, m: int, n: int, stride: int = 2) -> None:
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(m, m // 4, 1, bias=False), nn.BatchNorm2d(m // 4), nn.ReLU(inplace=True))
        self.fullconv = nn.ConvTranspose2d(m // 4, m // 4, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(m // 4)
        self.expand = nn.Sequential(nn.Conv2d(m // 4, n, 1, bias=False), nn.BatchNorm2d(n), nn.ReLU(inplace=True))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor, size: list[int]) -> Tensor:
        """Decode ``x`` to spatial ``size`` (that of the encoder features the result is added to)."""
        y = self.fullconv(self.reduce(x), output_size=size)
        out: Tensor = self.expand(self.relu(self.bn(y)))
        return out


class FinalBlock(nn.Module):
    """3x3 full conv m -> n to ``size`` (2x), 3x3 conv n -> n, 2x2 full conv n -> classes (2x)."""

    def __init__(self, m: int, n: int, num_classes: int) -> None:
        super().__init__()
        self.fullconv1 = nn.ConvTranspose2d(m, n, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(n)
        self.conv = nn.Conv2d(n, n, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(n)
        self.relu = nn.ReLU(inplace=True)
        self.fullconv2 = nn.ConvTranspose2d(n, num_classes, 2, stride=2)

    def forward(self, x: Tensor, size: list[int]) -> Tensor:
        y = self.relu(self.bn1(self.fullconv1(x, output_size=size)))
        out: Tensor = self.fullconv2(self.relu(self.bn2(self.conv(y))))
        return out


class LinkNet(nn.Module):
    """LinkNet with a ResNet-18 encoder (``encoder`` in torchvision's module layout)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.encoder = resnet18()
        self.decoder4 = DecoderBlock(512, 256)
        self.decoder3 = DecoderBlock(256, 128)
        self.decoder2 = DecoderBlock(128, 64)
        self.decoder1 = DecoderBlock(64, 64, stride=1)
        self.final = FinalBlock(64, 32, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        e1, e2, e3, e4 = self.encoder(x)
        d = self.decoder4(e4, list(e3.shape[-2:])) + e3
        d = self.decoder3(d, list(e2.shape[-2:])) + e2
        d = self.decoder2(d, list(e1.shape[-2:])) + e1
        d = self.decoder1(d, list(e1.shape[-2:]))
        y: Tensor = self.final(d, [-(-height // 2), -(-width // 2)])  # to the stem's size, then 2x
        return y[..., :height, :width] if y.shape[-2:] != x.shape[-2:] else y


def linknet(num_classes: int, *, pretrained_backbone: str | None = None) -> LinkNet:
    """LinkNet (11.53 M parameters with 12 classes; the paper: 11.5 M).

    ``pretrained_backbone``: a local torchvision resnet18 state dict for the encoder.
    """
    model = LinkNet(num_classes)
    if pretrained_backbone is not None:
        from .backbones import load_backbone_weights

        load_backbone_weights(model.encoder, pretrained_backbone, "resnet18")
    return model
