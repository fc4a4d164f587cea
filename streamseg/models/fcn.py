"""FCN-32s, FCN-16s, FCN-8s: Long, Shelhamer, Darrell. Fully Convolutional Networks for Semantic
Segmentation. CVPR 2015 (and TPAMI 2016), as the reference Caffe nets of fcn.berkeleyvision.org.

VGG-16 made fully convolutional: conv1_1 is padded by 100 so that any input size survives the 7x7
``fc6`` (unpadded, 4096) and ``fc7`` (1x1, 4096), each with ReLU and dropout 0.5; ``score_fr``
scores the classes at stride 32. Max-pooling rounds up (Caffe's rounding, ``ceil_mode=True``).

- FCN-32s: upsample the scores x32 with a transposed conv (kernel 64, stride 32, no bias).
- FCN-16s: x2 (kernel 4, stride 2), add the scored pool4 (1x1 conv), x16 (kernel 32, stride 16).
- FCN-8s: as 16s up to the fused pool4, x2, add the scored pool3, x8 (kernel 16, stride 8).

Every sum and the final output crop the larger map at an offset derived from the layers' coordinate
maps (Caffe's ``coord_map.crop``): :func:`crop_offsets` computes them (FCN-8s: pool4 at 5, pool3 at 9,
output at 31, the numbers in the reference prototxts). Transposed convs start as bilinear
interpolation; score layers start at zero (the paper: random initialisation helped neither accuracy
nor convergence).

``fixed_upsampling``: ``None`` (default) is the paper's choice, the last upsampling fixed to bilinear
and the x2 ones learned; ``True`` freezes every transposed conv, as the released reference nets do
(``lr_mult: 0``); ``False`` learns them all. Frozen weights are still parameters (``requires_grad``
False) so checkpoints keep the reference layout; they count in ``count_params``.

Parameters, 21 classes: FCN-32s 136,152,917, of which 134,346,581 without its fixed x32 kernel (the
paper's "134 M" for FCN-VGG16); FCN-16s 134,815,994; FCN-8s 134,489,759.

Departures, for tests and small devices: ``base_channels`` scales every width (64 as published;
``fc6``/``fc7`` get 64x it). Score layers are not rescaled as in the "at-once" variants.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from ._torch import F, Tensor, nn, torch
from .layers import bilinear_kernel

_VGG16 = ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))  # (block, convs)
_CONV1_PAD = 100


@dataclass(frozen=True)
class _Coords:
    """Where element ``i`` of a feature map sits in the input image: ``scale * i + shift`` (pixel centres)."""

    scale: Fraction
    shift: Fraction

    def conv(self, kernel: int, stride: int = 1, pad: int = 0) -> _Coords:
        # Output i of a conv/pool looks at inputs centred on stride * i + (kernel - 1) / 2 - pad.
        return _Coords(self.scale * stride, self.scale * (Fraction(kernel - 1, 2) - pad) + self.shift)

    def deconv(self, kernel: int, stride: int) -> _Coords:
        # The inverse map of the conv with the same parameters (padding 0).
        return _Coords(self.scale / stride, self.shift - self.scale * Fraction(kernel - 1, 2 * stride))

    def offset_in(self, other: _Coords) -> int:
        """Crop offset of ``other`` (a larger map at the same stride) that aligns it with this map."""
        off = (self.shift - other.shift) / other.scale
        if other.scale != self.scale or off.denominator != 1 or off < 0:
            raise ValueError(f"cannot align {other} with {self}")
        return int(off)


def crop_offsets(variant: str) -> dict[str, int]:
    """Crop offsets of the reference nets, from the coordinate maps of their layers.

    Keys: ``pool4`` (score_pool4 against the x2-upsampled scores; 16s, 8s), ``pool3`` (8s) and
    ``output`` (the final upsampled scores against the input image).
    """
    image = _Coords(Fraction(1), Fraction(0))
    c = image.conv(3, pad=_CONV1_PAD)  # conv1_1; the other 3x3 convs (pad 1) keep coordinates
    pools = {}
    for block, _ in _VGG16:
        c = c.conv(2, 2)
        pools[block] = c
    score = c.conv(7)  # fc6; fc7 and score_fr are 1x1
    if variant == "32s":
        return {"output": image.offset_in(score.deconv(64, 32))}
    up2 = score.deconv(4, 2)
    out = {"pool4": up2.offset_in(pools[4])}
    if variant == "16s":
        return {**out, "output": image.offset_in(up2.deconv(32, 16))}
    if variant != "8s":
        raise ValueError(f"unknown FCN variant '{variant}'")
    up4 = up2.deconv(4, 2)
    return {**out, "pool3": up4.offset_in(pools[3]), "output": image.offset_in(up4.deconv(16, 8))}


def _score(cin: int, num_classes: int) -> nn.Conv2d:
    conv = nn.Conv2d(cin, num_classes, 1)
    _zero(conv)
    return conv


def _zero(conv: nn.Conv2d) -> None:
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _upsampling(num_classes: int, stride: int, learned: bool) -> nn.ConvTranspose2d:
    up = nn.ConvTranspose2d(num_classes, num_classes, 2 * stride, stride=stride, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(num_classes, 2 * stride))
    up.weight.requires_grad_(learned)
    return up


def _crop(x: Tensor, offset: int, like: Tensor) -> Tensor:
    h, w = like.shape[-2:]
    return x[:, :, offset : offset + h, offset : offset + w]


class FCN(nn.Module):
    """FCN-``variant`` (32s, 16s, 8s) on VGG-16; logits at the input size."""

    def __init__(
        self,
        num_classes: int,
        variant: str = "8s",
        *,
        base_channels: int = 64,
        fixed_upsampling: bool | None = None,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.variant = variant
        self.offsets = crop_offsets(variant)
        widths = [base_channels * m for m in (1, 2, 4, 8, 8)]
        cin = 3
        self.conv_names: list[list[str]] = []
        for (block, convs), cout in zip(_VGG16, widths, strict=True):
            names = []
            for i in range(1, convs + 1):
                name = f"conv{block}_{i}"
                pad = _CONV1_PAD if name == "conv1_1" else 1
                self.add_module(name, nn.Conv2d(cin, cout, 3, padding=pad))
                names.append(name)
                cin = cout
            self.conv_names.append(names)
        fc = base_channels * 64
        self.fc6 = nn.Conv2d(cin, fc, 7)
        self.fc7 = nn.Conv2d(fc, fc, 1)
        self.drop6 = nn.Dropout(dropout)
        self.drop7 = nn.Dropout(dropout)
        self.score_fr = nn.Conv2d(fc, num_classes, 1)
        # The paper fixes the last upsampling to bilinear and learns the x2 ones.
        learn_x2 = not fixed_upsampling
        learn_last = fixed_upsampling is False
        if variant == "32s":
            self.upscore = _upsampling(num_classes, 32, learn_last)
        else:
            self.upscore2 = _upsampling(num_classes, 2, learn_x2)
            self.score_pool4 = _score(widths[3], num_classes)
            if variant == "16s":
                self.upscore16 = _upsampling(num_classes, 16, learn_last)
            else:
                self.upscore_pool4 = _upsampling(num_classes, 2, learn_x2)
                self.score_pool3 = _score(widths[2], num_classes)
                self.upscore8 = _upsampling(num_classes, 8, learn_last)
        _zero(self.score_fr)

    def _block(self, x: Tensor, i: int) -> Tensor:
        for name in self.conv_names[i]:
            x = F.relu(self.get_submodule(name)(x), inplace=True)
        return F.max_pool2d(x, 2, 2, ceil_mode=True)

    def forward(self, x: Tensor) -> Tensor:
        h = self._block(self._block(x, 0), 1)
        pool3 = self._block(h, 2)
        pool4 = self._block(pool3, 3)
        h = self._block(pool4, 4)
        h = self.drop6(F.relu(self.fc6(h), inplace=True))
        h = self.drop7(F.relu(self.fc7(h), inplace=True))
        h = self.score_fr(h)
        if self.variant == "32s":
            return _crop(self.upscore(h), self.offsets["output"], x)
        h = self.upscore2(h)
        h = h + _crop(self.score_pool4(pool4), self.offsets["pool4"], h)
        if self.variant == "16s":
            return _crop(self.upscore16(h), self.offsets["output"], x)
        h = self.upscore_pool4(h)
        h = h + _crop(self.score_pool3(pool3), self.offsets["pool3"], h)
        return _crop(self.upscore8(h), self.offsets["output"], x)


def fcn32s(
    num_classes: int,
    *,
    pretrained_backbone: str | None = None,
    fixed_upsampling: bool | None = None,
    base_channels: int = 64,
    dropout: float = 0.5,
) -> FCN:
    """FCN-32s (Long, Shelhamer, Darrell, CVPR 2015): VGG-16 scores upsampled x32.

    ``pretrained_backbone``: path to a torchvision ``vgg16`` state dict (convs and fc6/fc7).
    """
    return _build(num_classes, "32s", pretrained_backbone, fixed_upsampling, base_channels, dropout)


def fcn16s(
    num_classes: int,
    *,
    pretrained_backbone: str | None = None,
    fixed_upsampling: bool | None = None,
    base_channels: int = 64,
    dropout: float = 0.5,
) -> FCN:
    """FCN-16s (Long, Shelhamer, Darrell, CVPR 2015): stride-32 scores fused with scored pool4, upsampled x16."""
    return _build(num_classes, "16s", pretrained_backbone, fixed_upsampling, base_channels, dropout)


def fcn8s(
    num_classes: int,
    *,
    pretrained_backbone: str | None = None,
    fixed_upsampling: bool | None = None,
    base_channels: int = 64,
    dropout: float = 0.5,
) -> FCN:
    """FCN-8s (Long, Shelhamer, Darrell, CVPR 2015): FCN-16s fused further with scored pool3, upsampled x8."""
    return _build(num_classes, "8s", pretrained_backbone, fixed_upsampling, base_channels, dropout)


def _build(
    num_classes: int,
    variant: str,
    pretrained_backbone: str | None,
    fixed_upsampling: bool | None,
    base_channels: int,
    dropout: float,
) -> FCN:
    model = FCN(num_classes, variant, base_channels=base_channels, fixed_upsampling=fixed_upsampling, dropout=dropout)
    if pretrained_backbone is not None:
        from .backbones import load_backbone_weights

        load_backbone_weights(model, pretrained_backbone, "vgg16")
    return model
