"""FC-DenseNet: Jégou, Drozdzal, Vazquez, Romero, Bengio. The One Hundred Layers Tiramisu: Fully
Convolutional DenseNets for Semantic Segmentation. CVPRW 2017 (arXiv:1611.09326).

A 3x3 convolution with 48 filters, then five times a dense block (layers of batch norm, ReLU, 3x3
convolution with ``growth`` filters and dropout 0.2, each fed the concatenation of the block's input
and every earlier layer's output) whose input and new maps are concatenated, kept as a skip, and
reduced by a transition down (batch norm, ReLU, 1x1 convolution keeping the channels, dropout, 2x2
max pooling). A bottleneck dense block follows. On the way up, a transition up (3x3 transposed
convolution, stride 2) upsamples **only the new feature maps of the previous dense block**
(``growth x layers`` channels, the paper's fix for the growing feature count), concatenates them
with the skip, and a dense block follows; the last block's input and new maps go to a 1x1
classifier. Table 2: FC-DenseNet56 (4 layers per block, growth 12), 67 (5 layers, growth 16), 103
(blocks 4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4, growth 16).

Parameters with 11 classes (CamVid), learned: 1,376,795 / 3,463,243 / 9,322,091 against the
paper's 1.5 M / 3.5 M / 9.4 M (-8.2 % / -1.1 % / -0.8 %). Counting batch norm's running mean and
variance too, as Lasagne's ``count_params`` does (the authors' framework): 1,397,963 / 3,502,923 /
9,425,163 (-6.8 % / +0.1 % / +0.3 %). No reading of the paper's 56 configuration gives 1.5 M
(growth 16 gives 2.3 M); we keep Table 2's configuration and report the gap. Convolutions carry
biases, as in the authors' code.

Choices: the authors' code crops the transposed convolution's output (2n + 1) to the skip's size
from the top left ("center" crop of one extra row or column); so does this, so any H, W works
(pooling rounds down, e.g. 360 -> 180 -> 90 -> 45 -> 22 -> 11).
"""

from __future__ import annotations

from ._torch import Tensor, nn, torch

FIRST_FILTERS = 48
POOLS = 5


class DenseLayer(nn.Sequential):
    """Batch norm, ReLU, 3x3 convolution to ``growth`` maps, dropout."""

    def __init__(self, cin: int, growth: int, dropout: float) -> None:
        super().__init__(
            nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, growth, 3, padding=1), nn.Dropout2d(dropout)
        )


class DenseBlock(nn.Module):
    """``layers`` dense layers; returns only the new maps (``growth * layers`` channels) in layer order."""

    def __init__(self, cin: int, layers: int, growth: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(cin + i * growth, growth, dropout) for i in range(layers))
        self.out_channels = layers * growth

    def forward(self, x: Tensor) -> Tensor:
        new: list[Tensor] = []
        for layer in self.layers:
            new.append(layer(torch.cat([x, *new], dim=1)))
        return torch.cat(new, dim=1)


class TransitionDown(nn.Sequential):
    """Batch norm, ReLU, 1x1 convolution (same channels), dropout, 2x2 max pooling."""

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__(
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1),
            nn.Dropout2d(dropout),
            nn.MaxPool2d(2),
        )


class FCDenseNet(nn.Module):
    """FC-DenseNet with ``blocks`` = layers per dense block (2 * 5 + 1 of them, down, bottleneck, up)."""

    def __init__(self, num_classes: int, blocks: tuple[int, ...], growth: int, dropout: float = 0.2) -> None:
        super().__init__()
        if len(blocks) != 2 * POOLS + 1:
            raise ValueError(f"FC-DenseNet needs {2 * POOLS + 1} dense blocks, got {len(blocks)}")
        self.first = nn.Conv2d(3, FIRST_FILTERS, 3, padding=1)
        channels = FIRST_FILTERS
        skips: list[int] = []
        self.down = nn.ModuleList()
        self.transitions_down = nn.ModuleList()
        for n in blocks[:POOLS]:
            self.down.append(DenseBlock(channels, n, growth, dropout))
            channels += n * growth
            skips.append(channels)
            self.transitions_down.append(TransitionDown(channels, dropout))
        self.bottleneck = DenseBlock(channels, blocks[POOLS], growth, dropout)
        self.transitions_up = nn.ModuleList()
        self.up = nn.ModuleList()
        new = blocks[POOLS] * growth  # only these are upsampled
        for n, skip in zip(blocks[POOLS + 1 :], reversed(skips), strict=True):
            self.transitions_up.append(nn.ConvTranspose2d(new, new, 3, stride=2))
            channels = skip + new
            self.up.append(DenseBlock(channels, n, growth, dropout))
            new = n * growth
        self.classifier = nn.Conv2d(channels + new, num_classes, 1)
        for m in self.modules():  # the authors' HeUniform (gain relu), zero biases
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.first(x)
        skips: list[Tensor] = []
        for block, down in zip(self.down, self.transitions_down, strict=True):
            x = torch.cat([x, block(x)], dim=1)
            skips.append(x)
            x = down(x)
        new = self.bottleneck(x)
        for up, block, skip in zip(self.transitions_up, self.up, reversed(skips), strict=True):
            height, width = skip.shape[-2:]
            x = torch.cat([skip, up(new)[..., :height, :width]], dim=1)  # 2n + 1 cropped to the skip
            new = block(x)
        out: Tensor = self.classifier(torch.cat([x, new], dim=1))
        return out


def fcdensenet56(num_classes: int, *, growth: int = 12, dropout: float = 0.2) -> FCDenseNet:
    """FC-DenseNet56: 4 layers per dense block, growth 12 (1.38 M learned parameters with 11 classes)."""
    return FCDenseNet(num_classes, (4,) * 11, growth, dropout)


def fcdensenet67(num_classes: int, *, growth: int = 16, dropout: float = 0.2) -> FCDenseNet:
    """FC-DenseNet67: 5 layers per dense block, growth 16 (3.46 M learned parameters with 11 classes)."""
    return FCDenseNet(num_classes, (5,) * 11, growth, dropout)


def fcdensenet103(num_classes: int, *, growth: int = 16, dropout: float = 0.2) -> FCDenseNet:
    """FC-DenseNet103: blocks 4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4, growth 16 (9.32 M learned, 11 classes)."""
    return FCDenseNet(num_classes, (4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4), growth, dropout)
