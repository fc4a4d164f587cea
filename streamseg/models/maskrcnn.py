"""Mask R-CNN: He, Gkioxari, Dollar, Girshick. Mask R-CNN. ICCV 2017 (arXiv:1703.06870).

Instance segmentation on a ResNet-50-FPN: a region proposal network on the feature pyramid, RoIAlign
(the paper's fix of RoIPool's quantization), a box head (classes and box regression) and a mask
head (four 3x3 convs, a 2x deconvolution, a 28x28 mask per class). The network is torchvision's
``maskrcnn_resnet50_fpn`` (a well-kept implementation of the paper, the Detectron recipe), built
with ``weights=None, weights_backbone=None``: nothing is downloaded. ImageNet weights for the trunk
come, when wanted, from a local torchvision ``resnet50`` state dict (``pretrained_backbone``,
checked key by key by :func:`streamseg.models.backbones.load_backbone_weights`), with frozen batch
norm and the first ``trainable_layers`` stages frozen as in the paper; without them every layer
trains with ordinary batch norm (torchvision's choice for a randomly initialised trunk).

Parameters: 44,454,513 for COCO's 91 classes (torchvision reports 44.4 M), every one trainable
without a pretrained trunk; each class adds 5,382 (box classifier 1024 + 1, box regression
4 x (1024 + 1), mask predictor 256 + 1), so 2 classes have 43,975,515 (checked in the tests).

Input and output. ``forward`` is torchvision's: a list of RGB float images in 0..1 (and targets
when training); the ImageNet normalisation is inside. ``height``/``width`` pin its resize to the
serving size, so an image already at that size is not rescaled: the model contract then says mean
0, std 255. Exported (``streamseg export``) at a fixed input (1, 3, H, W), the graph gives
``boxes`` (K, 4) x1 y1 x2 y2 in input pixels, ``labels`` (K,) int64 (0 is the background),
``scores`` (K,) and ``masks`` (K, 1, H, W) probabilities at the input size, K <= ``detections``.

TensorRT (not executed here: no GPU): the exported graph uses ONNX ``RoiAlign`` (opset 16 for the
half-pixel mode) and ``NonMaxSuppression``; TensorRT 10 implements both natively (``IRoiAlignLayer``
and ``INMSLayer``, no plugins), and needs the data-dependent K handled as a dynamic output shape
(its ``NonZero``/``NMS`` outputs are sized at run time) and ``--max-batch 1``.
"""

from __future__ import annotations

from typing import Any

from ._torch import nn
from ._torchvision import torchvision


def maskrcnn(
    num_classes: int,
    *,
    height: int = 800,
    width: int = 1333,
    detections: int = 100,
    rpn_pre_nms: int = 1000,
    rpn_post_nms: int = 1000,
    rpn_pre_nms_train: int = 2000,
    rpn_post_nms_train: int = 2000,
    box_batch: int = 512,
    pretrained_backbone: str | None = None,
    trainable_layers: int = 3,
) -> nn.Module:
    """torchvision's Mask R-CNN ResNet-50-FPN with ``num_classes`` (background included).

    ``height`` x ``width``: the input size its resize keeps (torchvision's min/max size; the paper's
    800/1333 by default); ``detections``: at most that many instances per image; ``rpn_*``: proposals
    kept before/after NMS per level at test and train time; ``box_batch``: RoIs sampled per image
    for the box head in training. Small values are for tests and CPU demos.
    """
    tv = torchvision()
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.misc import FrozenBatchNorm2d

    kwargs: dict[str, Any] = {
        "min_size": min(height, width),
        "max_size": max(height, width),
        "box_detections_per_img": detections,
        "rpn_pre_nms_top_n_test": rpn_pre_nms,
        "rpn_post_nms_top_n_test": rpn_post_nms,
        "rpn_pre_nms_top_n_train": rpn_pre_nms_train,
        "rpn_post_nms_top_n_train": rpn_post_nms_train,
        "box_batch_size_per_image": box_batch,
    }
    if pretrained_backbone is None:
        # torchvision's own builder, exactly as it builds an untrained model (all layers train)
        model: nn.Module = tv.models.detection.maskrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=num_classes, **kwargs
        )
        return model
    from .backbones import load_backbone_weights

    plain = tv.models.resnet50()
    load_backbone_weights(plain, pretrained_backbone, "resnet50")  # strict, one-line errors naming the file
    trunk = tv.models.resnet50(norm_layer=FrozenBatchNorm2d)
    trunk.load_state_dict(plain.state_dict(), strict=False)  # FrozenBatchNorm2d has no num_batches_tracked
    if not 0 <= trainable_layers <= 5:
        from ..errors import ConfigError

        raise ConfigError(f"maskrcnn: trainable_layers must be 0..5, got {trainable_layers}")
    backbone = _resnet_fpn_extractor(trunk, trainable_layers)
    model = MaskRCNN(backbone, num_classes=num_classes, **kwargs)
    return model


class ExportWrapper(nn.Module):
    """A fixed (1, 3, H, W) tensor in, the four outputs as tensors out (what ONNX export traces)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Any) -> tuple[Any, Any, Any, Any]:
        (out,) = self.net([x[0]])
        return out["boxes"], out["labels"], out["scores"], out["masks"]
