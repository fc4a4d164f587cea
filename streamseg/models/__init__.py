"""The model zoo: the networks that defined semantic segmentation, each in its own module.

The table below is the registry: explicit, filled by nobody at import time, and importing this
package does not import torch (``build`` does, through ``streamseg.models._torch``).
Every semantic network maps a float (N, 3, H, W) batch to logits (N, num_classes, H, W) at the input
size (the paper U-Net: 572 -> 388, as published); Mask R-CNN (``task="instances"``) is torchvision's
detection model (lists of images in, boxes, labels, scores and masks out). Networks with an auxiliary head return
``(main, aux)`` in training mode and ``main`` in eval mode.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    name: str
    module: str  # within streamseg.models
    builder: str  # function(num_classes, **options) -> nn.Module
    paper: str
    paper_params_m: float | None  # published parameter count (millions) of the paper configuration
    paper_classes: int  # classes of that configuration
    input_size: tuple[int, int]  # (H, W) used for export and FLOPs by default
    fixed_input: bool = False  # True when the graph only works at input_size (adaptive pooling)
    backbone: str | None = None  # torchvision state-dict format accepted by `pretrained_backbone`
    task: str = "semantic"  # "semantic": logits per pixel; "instances": torchvision detection (Mask R-CNN)


NETWORKS: dict[str, NetworkInfo] = {
    info.name: info
    for info in (
        NetworkInfo(
            "fcn32s",
            "fcn",
            "fcn32s",
            "Long, Shelhamer, Darrell. Fully Convolutional Networks for Semantic Segmentation. CVPR 2015",
            134.3,
            21,
            (512, 512),
            backbone="vgg16",
        ),
        NetworkInfo(
            "fcn16s", "fcn", "fcn16s", "Long, Shelhamer, Darrell. CVPR 2015", 134.3, 21, (512, 512), backbone="vgg16"
        ),
        NetworkInfo(
            "fcn8s", "fcn", "fcn8s", "Long, Shelhamer, Darrell. CVPR 2015", 134.3, 21, (512, 512), backbone="vgg16"
        ),
        NetworkInfo(
            "unet",
            "unet",
            "unet",
            "Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical Image Segmentation. MICCAI 2015",
            31.0,
            2,
            (572, 572),
        ),
        NetworkInfo(
            "unet_padded",
            "unet",
            "unet_padded",
            "Ronneberger et al. 2015, with padded convolutions",
            31.0,
            2,
            (512, 512),
        ),
        NetworkInfo(
            "segnet",
            "segnet",
            "segnet",
            "Badrinarayanan, Kendall, Cipolla. SegNet: A Deep "
            "Convolutional Encoder-Decoder Architecture for Image Segmentation. TPAMI 2017",
            29.4,
            11,
            (360, 480),
            backbone="vgg16_bn",
        ),
        NetworkInfo(
            "pspnet",
            "pspnet",
            "pspnet",
            "Zhao, Shi, Qi, Wang, Jia. Pyramid Scene Parsing Network. CVPR 2017",
            None,
            21,
            (473, 473),
            fixed_input=True,
            backbone="resnet50",
        ),
        NetworkInfo(
            "enet",
            "enet",
            "enet",
            "Paszke, Chaurasia, Kim, Culurciello. ENet: A Deep Neural Network "
            "Architecture for Real-Time Semantic Segmentation. arXiv:1606.02147",
            0.37,
            12,
            (360, 640),
        ),
        NetworkInfo(
            "linknet",
            "linknet",
            "linknet",
            "Chaurasia, Culurciello. LinkNet: Exploiting Encoder "
            "Representations for Efficient Semantic Segmentation. VCIP 2017",
            11.5,
            12,
            (360, 640),
            backbone="resnet18",
        ),
        NetworkInfo(
            "fcdensenet56",
            "fcdensenet",
            "fcdensenet56",
            "Jegou, Drozdzal, Vazquez, Romero, Bengio. The One Hundred Layers Tiramisu: "
            "Fully Convolutional DenseNets for Semantic Segmentation. CVPRW 2017",
            1.5,
            11,
            (360, 480),
        ),
        NetworkInfo("fcdensenet67", "fcdensenet", "fcdensenet67", "Jegou et al. CVPRW 2017", 3.5, 11, (360, 480)),
        NetworkInfo("fcdensenet103", "fcdensenet", "fcdensenet103", "Jegou et al. CVPRW 2017", 9.4, 11, (360, 480)),
        NetworkInfo(
            "refinenet",
            "refinenet",
            "refinenet",
            "Lin, Milan, Shen, Reid. RefineNet: Multi-Path Refinement Networks for "
            "High-Resolution Semantic Segmentation. CVPR 2017",
            None,
            21,
            (512, 512),
            backbone="resnet101",
        ),
        NetworkInfo(
            "decouplednet",
            "decoupled",
            "decouplednet",
            "Hong, Noh, Han. Decoupled Deep Neural Network for Semi-supervised Semantic Segmentation. NIPS 2015",
            None,
            21,
            (320, 320),
            backbone="vgg16",
        ),
        # torchvision's segmentation models (models/torchvision_seg.py); the published counts are
        # torchvision's (its weights' num_params: 21 classes, auxiliary head included).
        *(
            NetworkInfo(name, "torchvision_seg", name, paper, params, 21, (520, 520), backbone=backbone)
            for name, paper, params, backbone in (
                ("fcn_resnet50", "Long et al. CVPR 2015, torchvision's FCN-ResNet50", 35.322218, "resnet50"),
                ("fcn_resnet101", "Long et al. CVPR 2015, torchvision's FCN-ResNet101", 54.314346, "resnet101"),
                (
                    "deeplabv3_resnet50",
                    "Chen, Papandreou, Schroff, Adam. Rethinking Atrous Convolution for Semantic Image "
                    "Segmentation. arXiv:1706.05587; torchvision's DeepLabV3-ResNet50",
                    42.004074,
                    "resnet50",
                ),
                ("deeplabv3_resnet101", "Chen et al. 2017, torchvision's DeepLabV3-ResNet101", 60.996202, "resnet101"),
                (
                    "deeplabv3_mobilenet_v3_large",
                    "Chen et al. 2017, torchvision's DeepLabV3-MobileNetV3-Large",
                    11.029328,
                    "mobilenet_v3_large",
                ),
                (
                    "lraspp_mobilenet_v3_large",
                    "Howard et al. Searching for MobileNetV3. ICCV 2019 (LR-ASPP), torchvision's",
                    3.221538,
                    "mobilenet_v3_large",
                ),
            )
        ),
        NetworkInfo(
            "maskrcnn",
            "maskrcnn",
            "maskrcnn",
            "He, Gkioxari, Dollar, Girshick. Mask R-CNN. ICCV 2017 (torchvision's ResNet-50-FPN implementation)",
            44.4,
            91,
            (800, 1333),
            backbone="resnet50",
            task="instances",
        ),
    )
}


def network_info(name: str) -> NetworkInfo:
    if name not in NETWORKS:
        raise ConfigError(f"unknown network '{name}' (known: {', '.join(NETWORKS)})")
    return NETWORKS[name]


def build(name: str, num_classes: int | None = None, **options: Any) -> nn.Module:
    """Build a zoo network by name; ``num_classes`` defaults to its paper configuration."""
    info = network_info(name)
    module = importlib.import_module(f"{__name__}.{info.module}")
    builder = getattr(module, info.builder)
    accepted = [p.name for p in inspect.signature(builder).parameters.values() if p.kind == p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"network {name}: unknown option(s) {', '.join(unknown)} (accepted: {', '.join(accepted)})")
    model: nn.Module = builder(num_classes or info.paper_classes, **options)
    return model


def count_params(model: nn.Module, trainable_only: bool = True) -> int:
    """Learned parameters, as papers count them (FCN's fixed bilinear upsampling is not learned)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
