"""RefineNet: Lin, Milan, Shen, Reid. RefineNet: Multi-Path Refinement Networks for High-Resolution
Semantic Segmentation. CVPR 2017 (arXiv:1611.06612).

A ResNet (101 in the paper, 50 as an option) gives features at 1/4, 1/8, 1/16 and 1/32 of the input.
Four RefineNet blocks are cascaded from the deepest (RefineNet-4) to the finest (RefineNet-1). In
each, the ResNet features are adapted to the block's width (512 for RefineNet-4, 256 for the others)
and pass two residual conv units (RCU: ReLU, 3x3 conv, ReLU, 3x3 conv, plus the input; no batch
norm); multi-resolution fusion brings each path to the smallest width with a 3x3 conv, upsamples to
the largest resolution (bilinear) and sums (a single input, RefineNet-4, passes unchanged); chained
residual pooling (a ReLU, then a chain of 5x5 max pooling with stride 1 and a 3x3 conv, each stage
pooling the previous one's output and every stage's output summed onto the input) gathers context;
one RCU is the output conv. RefineNet-1 adds two more RCUs before the classifier, whose logits at
1/4 of the input are bilinearly upsampled to the input size.

Where the paper is silent we follow the authors' code (guosheng/refinenet, MatConvNet, and its
PyTorch port by V. Nekrasov): the adaptation to 512/256 is a 3x3 conv without bias before the RCUs;
the previous block's output enters fusion through its 3x3 conv only (the RCUs are on the ResNet
paths); an RCU's first conv has a bias, its second none; pooling, fusion and adaptation convs have
none; the classifier is a 3x3 conv with bias. Chained residual pooling has ``crp_blocks`` = 2
pooling blocks as in the paper (Sec. 3.2; the later code uses 4). Bilinear resizing uses
``align_corners=False``.

Parameters (the paper gives no total; derived from this architecture, counted in the tests by hand
and by ``count_params``), 21 classes: the four RefineNet blocks and the classifier have 53,136,917
(RefineNet-4 28,313,088, -3 8,848,128, -2 7,078,656, -1 8,848,640, classifier 48,405); with the
ResNet-101 trunk (42,500,160) 95,637,077, with ResNet-50 (23,508,032) 76,644,949.
"""

from __future__ import annotations

from ._torch import F, Tensor, nn
from .resnet import ResNet, resnet50, resnet101

BACKBONES = {"resnet101": resnet101, "resnet50": resnet50}


def _conv3x3(cin: int, cout: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=bias)


class RCU(nn.Module):
    """Residual conv unit: ReLU, 3x3 conv, ReLU, 3x3 conv, plus the input (no batch norm)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(channels, channels, bias=True)
        self.conv2 = _conv3x3(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.conv2(F.relu(self.conv1(F.relu(x)))) + x
        return out


class ChainedResidualPooling(nn.Module):
    """ReLU, then ``blocks`` stages of 5x5 max pooling (stride 1) and a 3x3 conv, each summed onto the input."""

    def __init__(self, channels: int, blocks: int) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(5, stride=1, padding=2)
        self.convs = nn.ModuleList(_conv3x3(channels, channels) for _ in range(blocks))

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(x)
        stage = x
        for conv in self.convs:
            stage = conv(self.pool(stage))
            x = x + stage
        return x


class RefineNetBlock(nn.Module):
    """Adapt the ResNet path (3x3 conv, 2 RCUs), fuse with the coarser block's output, pool, output RCUs.

    ``coarser``: width of the previous block's output (None for RefineNet-4, which has one input).
    """

    def __init__(self, cin: int, channels: int, coarser: int | None, crp_blocks: int, output_rcus: int = 1) -> None:
        super().__init__()
        self.adapt = nn.Sequential(_conv3x3(cin, channels), RCU(channels), RCU(channels))
        self.fuse_own = _conv3x3(channels, channels) if coarser is not None else None
        self.fuse_coarser = _conv3x3(coarser, channels) if coarser is not None else None
        self.crp = ChainedResidualPooling(channels, crp_blocks)
        self.out = nn.Sequential(*(RCU(channels) for _ in range(output_rcus)))

    def forward(self, x: Tensor, coarser: Tensor | None = None) -> Tensor:
        x = self.adapt(x)
        if self.fuse_own is not None and self.fuse_coarser is not None and coarser is not None:
            up = F.interpolate(self.fuse_coarser(coarser), size=x.shape[-2:], mode="bilinear", align_corners=False)
            x = self.fuse_own(x) + up
        out: Tensor = self.out(self.crp(x))
        return out


class RefineNet(nn.Module):
    """4-cascaded RefineNet on a ResNet encoder (``encoder`` in torchvision's module layout)."""

    def __init__(self, num_classes: int, *, backbone: str = "resnet101", width: int = 64, crp_blocks: int = 2) -> None:
        super().__init__()
        self.encoder: ResNet = BACKBONES[backbone](width=width)
        wide, narrow = 8 * width, 4 * width  # 512 and 256 at the paper's width
        c1, c2, c3, c4 = self.encoder.channels
        self.refine4 = RefineNetBlock(c4, wide, None, crp_blocks)
        self.refine3 = RefineNetBlock(c3, narrow, wide, crp_blocks)
        self.refine2 = RefineNetBlock(c2, narrow, narrow, crp_blocks)
        self.refine1 = RefineNetBlock(c1, narrow, narrow, crp_blocks, output_rcus=3)  # + 2 before the classifier
        self.classifier = nn.Conv2d(narrow, num_classes, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        l1, l2, l3, l4 = self.encoder(x)
        r = self.refine4(l4)
        r = self.refine3(l3, r)
        r = self.refine2(l2, r)
        r = self.refine1(l1, r)
        return F.interpolate(self.classifier(r), size=x.shape[-2:], mode="bilinear", align_corners=False)


def refinenet(
    num_classes: int,
    *,
    backbone: str = "resnet101",
    pretrained_backbone: str | None = None,
    width: int = 64,
    crp_blocks: int = 2,
) -> RefineNet:
    """4-cascaded RefineNet (95.64 M parameters on ResNet-101 with 21 classes; 76.64 M on ResNet-50).

    ``backbone``: ``resnet101`` (the paper) or ``resnet50``; ``pretrained_backbone``: a local
    torchvision state dict of that kind. ``width`` scales every channel count (64 is the paper;
    small values are for tests).
    """
    if backbone not in BACKBONES:
        from ..errors import ConfigError

        raise ConfigError(f"refinenet: backbone must be one of {', '.join(BACKBONES)}, got '{backbone}'")
    model = RefineNet(num_classes, backbone=backbone, width=width, crp_blocks=crp_blocks)
    if pretrained_backbone is not None:
        from .backbones import load_backbone_weights

        load_backbone_weights(model.encoder, pretrained_backbone, backbone)
    return model
