"""U-Net: Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical Image Segmentation.
MICCAI 2015 (arXiv:1505.04597).

Contracting path: four levels of two unpadded 3x3 convs + ReLU then 2x2 max-pooling, widths 64, 128,
256, 512, and a bottom level of 1024. Expanding path: a 2x2 up-convolution halving the channels,
concatenation with the centre-cropped feature map of the same level, two 3x3 convs + ReLU; a final
1x1 conv to the classes. ``unet``: the paper's network, 572x572 in -> 388x388 out (:func:`unet_output_size`);
for seamless tiling pick inputs whose every pooled map is even, as the paper says. ``unet_padded``:
the same with padding 1, so the output has the input's size when H and W are divisible by 16.

Departures: 3 input channels (the paper's EM images had 1; 1,152 more weights). The paper's
"drop-out layers at the end of the contracting path" are one ``Dropout(0.5)`` after the bottom
level. Weights start as the paper says, Gaussian with std sqrt(2 / fan_in) (He et al.).
``base_channels`` (64 as published) scales every width, for tests and small devices.
Parameters, 2 classes: 31,031,810 (31,030,658 with the paper's single input channel).
"""

from __future__ import annotations

from ..errors import ConfigError
from ._torch import F, Tensor, nn, torch
from .layers import is_tracing


def unet_output_size(size: int, levels: int = 4) -> int:
    """Output height (or width) of the unpadded U-Net for an input of ``size`` (572 -> 388)."""
    for _ in range(levels):
        size = (size - 4) // 2
    size -= 4
    for _ in range(levels):
        size = size * 2 - 4
    return size


def _double_conv(cin: int, cout: int, padding: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=padding),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=padding),
        nn.ReLU(inplace=True),
    )


def _center_crop(x: Tensor, like: Tensor) -> Tensor:
    h, w = like.shape[-2:]
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[:, :, top : top + h, left : left + w]


class UNet(nn.Module):
    """The U-Net of the paper (``padded=False``) or with padded convolutions (``padded=True``)."""

    def __init__(
        self, num_classes: int, *, padded: bool = False, base_channels: int = 64, dropout: float = 0.5
    ) -> None:
        super().__init__()
        self.padded = padded
        pad = 1 if padded else 0
        w1, w2, w3, w4, w5 = (base_channels * 2**i for i in range(5))
        self.enc1 = _double_conv(3, w1, pad)
        self.enc2 = _double_conv(w1, w2, pad)
        self.enc3 = _double_conv(w2, w3, pad)
        self.enc4 = _double_conv(w3, w4, pad)
        self.enc5 = _double_conv(w4, w5, pad)
        self.drop = nn.Dropout(dropout)
        self.up4 = nn.ConvTranspose2d(w5, w4, 2, stride=2)
        self.dec4 = _double_conv(w5, w4, pad)
        self.up3 = nn.ConvTranspose2d(w4, w3, 2, stride=2)
        self.dec3 = _double_conv(w4, w3, pad)
        self.up2 = nn.ConvTranspose2d(w3, w2, 2, stride=2)
        self.dec2 = _double_conv(w3, w2, pad)
        self.up1 = nn.ConvTranspose2d(w2, w1, 2, stride=2)
        self.dec1 = _double_conv(w2, w1, pad)
        self.head = nn.Conv2d(w1, num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                # The paper: std sqrt(2/N), N = inputs of one neuron. For the up-convolution each output
                # pixel sees cin inputs (one tap of the 2x2 kernel); PyTorch's fan_in for a transposed
                # conv is weight.size(1) * k * k = cout * 4, so the std is given explicitly.
                fan_in = m.in_channels if isinstance(m, nn.ConvTranspose2d) else m.weight[0].numel()
                nn.init.normal_(m.weight, std=(2 / fan_in) ** 0.5)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @staticmethod
    def _up(up: nn.Module, dec: nn.Module, x: Tensor, skip: Tensor) -> Tensor:
        x = up(x)
        return dec(torch.cat([_center_crop(skip, x), x], dim=1))  # type: ignore[no-any-return]

    def forward(self, x: Tensor) -> Tensor:
        if self.padded and not is_tracing() and (x.shape[-2] % 16 or x.shape[-1] % 16):
            raise ConfigError(f"unet_padded needs H and W divisible by 16, got {tuple(x.shape[-2:])}")
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        e4 = self.enc4(F.max_pool2d(e3, 2))
        h = self.drop(self.enc5(F.max_pool2d(e4, 2)))
        h = self._up(self.up4, self.dec4, h, e4)
        h = self._up(self.up3, self.dec3, h, e3)
        h = self._up(self.up2, self.dec2, h, e2)
        h = self._up(self.up1, self.dec1, h, e1)
        out: Tensor = self.head(h)
        return out


def unet(num_classes: int, *, base_channels: int = 64, dropout: float = 0.5) -> UNet:
    """U-Net as published (Ronneberger, Fischer, Brox, MICCAI 2015): unpadded convs, 572 -> 388."""
    return UNet(num_classes, padded=False, base_channels=base_channels, dropout=dropout)


def unet_padded(num_classes: int, *, base_channels: int = 64, dropout: float = 0.5) -> UNet:
    """U-Net (Ronneberger et al. 2015) with padded 3x3 convs: output size == input size (H, W divisible by 16)."""
    return UNet(num_classes, padded=True, base_channels=base_channels, dropout=dropout)
