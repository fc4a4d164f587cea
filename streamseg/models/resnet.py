"""ResNet-18, -50 and -101 trunks (He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016).

The module names follow torchvision's layout (``conv1``, ``bn1``, ``layer1``..``layer4``; blocks with
``conv1``/``bn1``/``conv2``/``bn2``(/``conv3``/``bn3``) and ``downsample.0``/``.1``), so a torchvision
``resnet18``/``resnet50``/``resnet101`` state dict loads through ``backbones.load_backbone_weights`` (its ``fc.*``
keys have no home here: the trunk stops at ``layer4``). As in torchvision (ResNet "v1.5"), a
bottleneck strides in its 3x3 convolution, not in its first 1x1.

``dilated=True`` gives the output-stride-8 ResNet-50 of PSPNet and DeepLab: layer3 and layer4 keep
stride 1 and every 3x3 convolution in them is dilated by 2 and 4 (the first block of each stage
too, as in the PSPNet reference code; torchvision's ``replace_stride_with_dilation`` keeps the first
block at the previous dilation). The weights are the same either way; only the sampling changes.
"""

from __future__ import annotations

from ._torch import Tensor, nn

Features = tuple[Tensor, Tensor, Tensor, Tensor]


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def _downsample(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(cin, planes, stride) if stride != 1 or cin != planes else None

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        result: Tensor = self.relu(out + identity)
        return result


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, dilated), 1x1 expand by 4, and a shortcut (ResNet-50/101/152)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, cout, stride) if stride != 1 or cin != cout else None

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        result: Tensor = self.relu(out + identity)
        return result


class ResNet(nn.Module):
    """A ResNet without its classifier: ``forward`` returns the outputs of layer1..layer4.

    Strides of those outputs: 4, 8, 16, 32 (4, 8, 8, 8 when dilated). ``channels`` lists their widths.
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, int, int, int],
        *,
        dilated: bool = False,
        width: int = 64,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        strides, dilations = ((1, 2, 1, 1), (1, 1, 2, 4)) if dilated else ((1, 2, 2, 2), (1, 1, 1, 1))
        cin = width
        stages: list[nn.Sequential] = []
        for i, (n, stride, dilation) in enumerate(zip(layers, strides, dilations, strict=True)):
            planes = width * 2**i
            blocks = [block(cin, planes, stride, dilation)]
            cin = planes * block.expansion
            blocks += [block(cin, planes, 1, dilation) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.channels = tuple(width * 2**i * block.expansion for i in range(4))
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Features:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return c1, c2, c3, c4


def resnet18(*, width: int = 64) -> ResNet:
    """ResNet-18 trunk (11.18 M parameters without the ImageNet classifier)."""
    return ResNet(BasicBlock, (2, 2, 2, 2), width=width)


def resnet50(*, dilated: bool = False, width: int = 64) -> ResNet:
    """ResNet-50 trunk (23.51 M parameters without the classifier); ``dilated`` for output stride 8."""
    return ResNet(Bottleneck, (3, 4, 6, 3), dilated=dilated, width=width)


def resnet101(*, width: int = 64) -> ResNet:
    """ResNet-101 trunk (42.50 M parameters without the classifier)."""
    return ResNet(Bottleneck, (3, 4, 23, 3), width=width)
