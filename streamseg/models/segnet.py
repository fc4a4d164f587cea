"""SegNet: Badrinarayanan, Kendall, Cipolla. SegNet: A Deep Convolutional Encoder-Decoder Architecture
for Image Segmentation. TPAMI 2017 (arXiv:1511.00561), as the authors' Caffe model (SegNet-Tutorial
``segnet_train.prototxt``).

Encoder: the 13 convolutions of VGG-16, each 3x3 + BatchNorm + ReLU, five 2x2/2 max-poolings that
keep their switches (argmax positions). Decoder: the mirror image; each stage unpools with its
encoder's switches (no learned upsampling) and runs 3x3 conv + BatchNorm + ReLU blocks, the last of
a stage narrowing to the width of the encoder stage below. The last decoder convolution (the
reference's ``conv1_1_D``, 3x3) is the classifier: no BatchNorm, no ReLU. The fully connected layers
of VGG-16 are dropped, as in the paper. Parameters: 29,449,355 for 11 classes (CamVid; 15,872 of them
BatchNorm scales and shifts), 29,455,125 for 21.

Unpooling is built from standard ONNX operators (``layers.pool_with_switches``/``unpool_like``) so the
graph parses in TensorRT; it equals PyTorch's ``max_unpool2d`` exactly.

Departures: max-pooling rounds down (PyTorch's default) where Caffe rounded up; on odd sizes (360x480
gives 45 rows at stride 8) the last row is not pooled, and unpooling leaves it zero for the decoder's
convolutions to fill. Any H, W >= 32 works and the logits have the input's size. Convolutions start
He-initialised (the reference's "msra" filler). ``base_channels`` (64 as published) scales every
width, for tests and small devices.
"""

from __future__ import annotations

from ._torch import Tensor, nn
from .layers import ConvBNReLU, pool_with_switches, unpool_like

_VGG16 = ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))  # (block, convs)


class SegNet(nn.Module):
    """SegNet on VGG-16 with BatchNorm; encoder ``conv1_1`` .. ``conv5_3``, decoder ``dec5_3`` .. ``dec1_2``."""

    def __init__(self, num_classes: int, *, base_channels: int = 64) -> None:
        super().__init__()
        widths = [base_channels * m for m in (1, 2, 4, 8, 8)]
        self.encoder_names: list[list[str]] = []
        cin = 3
        for (block, convs), cout in zip(_VGG16, widths, strict=True):
            names = [f"conv{block}_{i}" for i in range(1, convs + 1)]
            for name in names:
                self.add_module(name, ConvBNReLU(cin, cout))
                cin = cout
            self.encoder_names.append(names)
        self.decoder_names: list[list[str]] = []
        for (block, convs), width in reversed(list(zip(_VGG16, widths, strict=True))):
            below = widths[block - 2] if block > 1 else width
            names = [f"dec{block}_{i}" for i in range(convs, 0, -1)]
            if block == 1:
                names = names[:-1]  # dec1_1 is the classifier
            for name in names:
                cout = below if name.endswith("_1") else width
                self.add_module(name, ConvBNReLU(width, cout))
            self.decoder_names.append(names)
        self.classifier = nn.Conv2d(widths[0], num_classes, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        switches = []
        for names in self.encoder_names:
            for name in names:
                x = self.get_submodule(name)(x)
            x, s = pool_with_switches(x)
            switches.append(s)
        for names in self.decoder_names:
            x = unpool_like(x, switches.pop())
            for name in names:
                x = self.get_submodule(name)(x)
        out: Tensor = self.classifier(x)
        return out


def segnet(num_classes: int, *, pretrained_backbone: str | None = None, base_channels: int = 64) -> SegNet:
    """SegNet (Badrinarayanan, Kendall, Cipolla, TPAMI 2017): VGG-16-BN encoder, decoder unpooling with switches.

    ``pretrained_backbone``: path to a torchvision ``vgg16_bn`` state dict for the encoder.
    """
    model = SegNet(num_classes, base_channels=base_channels)
    if pretrained_backbone is not None:
        from .backbones import load_backbone_weights

        load_backbone_weights(model, pretrained_backbone, "vgg16_bn")
    return model
