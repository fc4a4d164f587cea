"""PSPNet: Zhao, Shi, Qi, Wang, Jia. Pyramid Scene Parsing Network. CVPR 2017 (arXiv:1612.01105).

A dilated ResNet-50 (output stride 8) feeds a pyramid pooling module: average pooling to 1x1, 2x2,
3x3 and 6x6 bins, a 1x1 convolution to C/4 channels each (C = 2048), bilinear upsampling back and
concatenation with the features; then a 3x3 convolution to 512, dropout 0.1, a 1x1 classifier and
bilinear upsampling to the input size. An auxiliary head on layer3 (the paper's deep supervision,
loss weight 0.4 in the training loop) runs only in training mode.

Choices: the paper's ResNet has a deep stem (three 3x3 convolutions); this one has torchvision's
standard 7x7 stem so that torchvision's ImageNet ``resnet50`` state dict loads through
``pretrained_backbone``. Bilinear resizing uses ``align_corners=True`` like the reference (Caffe
``Interp``) implementation: the paper's sizes are 8k+1 (473 -> 60x60 features), whose corners line up.

Export: adaptive average pooling only exports to ONNX when the feature map divides by every bin
(1, 2, 3, 6), so the graph is fixed to its input size; 473x473 gives 60x60 features.
"""

from __future__ import annotations

from ._torch import F, Tensor, nn, torch
from .resnet import resnet50

BINS = (1, 2, 3, 6)


def _conv_bn_relu(cin: int, cout: int, kernel: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class PyramidPooling(nn.Module):
    """Pool to each bin size, reduce to ``channels // len(bins)``, upsample, concatenate with the input."""

    def __init__(self, channels: int, bins: tuple[int, ...] = BINS) -> None:
        super().__init__()
        reduced = channels // len(bins)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), *_conv_bn_relu(channels, reduced, 1)) for b in bins
        )
        self.out_channels = channels + reduced * len(bins)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        pooled = [F.interpolate(stage(x), size=size, mode="bilinear", align_corners=True) for stage in self.stages]
        return torch.cat([x, *pooled], dim=1)


class PSPNet(nn.Module):
    """PSPNet on a dilated ResNet-50; ``(main, aux)`` logits in training mode, ``main`` in eval mode."""

    def __init__(self, num_classes: int, *, width: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.backbone = resnet50(dilated=True, width=width)
        c3, c4 = self.backbone.channels[2:]
        self.ppm = PyramidPooling(c4)
        self.head = nn.Sequential(
            *_conv_bn_relu(self.ppm.out_channels, c4 // 4, 3), nn.Dropout2d(dropout), nn.Conv2d(c4 // 4, num_classes, 1)
        )
        self.aux = nn.Sequential(
            *_conv_bn_relu(c3, c3 // 4, 3), nn.Dropout2d(dropout), nn.Conv2d(c3 // 4, num_classes, 1)
        )

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        size = x.shape[-2:]
        _, _, c3, c4 = self.backbone(x)
        main = F.interpolate(self.head(self.ppm(c4)), size=size, mode="bilinear", align_corners=True)
        if not self.training:
            return main
        aux = F.interpolate(self.aux(c3), size=size, mode="bilinear", align_corners=True)
        return main, aux


def pspnet(
    num_classes: int, *, pretrained_backbone: str | None = None, width: int = 64, dropout: float = 0.1
) -> PSPNet:
    """PSPNet (ResNet-50, bins 1/2/3/6). ``pretrained_backbone``: a local torchvision resnet50 state dict.

    ``width`` scales every channel count (64 is the paper; small values are for tests).
    """
    model = PSPNet(num_classes, width=width, dropout=dropout)
    if pretrained_backbone is not None:
        from .backbones import load_backbone_weights

        load_backbone_weights(model.backbone, pretrained_backbone, "resnet50")
    return model
