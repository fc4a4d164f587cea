"""torchvision's semantic segmentation networks in the zoo, loading torchvision state dicts from local files.

FCN-ResNet50/101 (Long et al., CVPR 2015, on a dilated ResNet), DeepLabV3 on ResNet-50/101 and
MobileNetV3-Large (Chen et al., arXiv:1706.05587) and LR-ASPP on MobileNetV3-Large (Howard et al.,
"Searching for MobileNetV3", ICCV 2019). torchvision's own modules are used, not rewritten; they are
built with ``weights=None, weights_backbone=None``, so nothing is ever downloaded.

- ``weights``: a local file with a state dict of the whole network in torchvision's format: one of
  torchvision's released files (``fcn_resnet50_coco-1167a1af.pth``, ...), or ``torch.save(model.
  state_dict())`` of a torchvision model. Loaded strictly: a missing, unexpected or misshapen key is a
  one-line :class:`~streamseg.errors.ModelError` naming the file.
- ``pretrained_backbone``: a local ImageNet state dict of the backbone (torchvision ``resnet50``,
  ``resnet101`` or ``mobilenet_v3_large``), for training from ImageNet as torchvision's recipes do.
- ``zero_init_residual`` (ResNet variants): torchvision ResNet's option for training from scratch.
- ``aux``: FCN and DeepLabV3 carry torchvision's auxiliary FCN head (on ResNet layer3, or
  MobileNetV3's stride-8 block), as all of torchvision's released weights do; ``aux=False`` builds
  without it, for state dicts saved without one. LR-ASPP has none.

The zoo's convention holds: logits at the input size (torchvision's bilinear upsampling,
``align_corners=False``), ``(main, aux)`` in training mode, ``main`` in eval mode. torchvision's own
forward returns a dict and computes the auxiliary head whenever it exists; :class:`TorchvisionSeg`
runs the same modules but skips it in eval mode, so an exported graph carries no dead branch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..errors import ModelError
from ._torch import F, Tensor, nn

# zoo name -> (torchvision builder, backbone kind, whether it has torchvision's auxiliary head option)
ARCHITECTURES: dict[str, tuple[str, str, bool]] = {
    "fcn_resnet50": ("fcn_resnet50", "resnet50", True),
    "fcn_resnet101": ("fcn_resnet101", "resnet101", True),
    "deeplabv3_resnet50": ("deeplabv3_resnet50", "resnet50", True),
    "deeplabv3_resnet101": ("deeplabv3_resnet101", "resnet101", True),
    "deeplabv3_mobilenet_v3_large": ("deeplabv3_mobilenet_v3_large", "mobilenet_v3_large", True),
    "lraspp_mobilenet_v3_large": ("lraspp_mobilenet_v3_large", "mobilenet_v3_large", False),
}

# The last layer of each classifier: its weight's first dimension is the class count.
_CLASSIFIER_KEYS = ("classifier.4.weight", "classifier.low_classifier.weight")
_AUX_PREFIX = "aux_classifier."


def _segmentation() -> Any:
    """torchvision.models.segmentation, through the zoo's one door to torchvision."""
    from ._torchvision import torchvision

    return torchvision().models.segmentation


class TorchvisionSeg(nn.Module):
    """A torchvision segmentation model under the zoo's convention (``net`` is torchvision's module)."""

    def __init__(self, net: nn.Module, lraspp: bool) -> None:
        super().__init__()
        self.net: Any = net  # torchvision's FCN, DeepLabV3 or LRASPP (attributes typed by torchvision only)
        self.lraspp = lraspp

    @property
    def has_aux(self) -> bool:
        return getattr(self.net, "aux_classifier", None) is not None

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        size = x.shape[-2:]
        features = self.net.backbone(x)
        # LR-ASPP's head takes both of its feature maps; FCN's and DeepLabV3's take "out"
        logits = self.net.classifier(features if self.lraspp else features["out"])
        main = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        if not self.training or not self.has_aux:
            return main
        aux = F.interpolate(self.net.aux_classifier(features["aux"]), size=size, mode="bilinear", align_corners=False)
        return main, aux


def state_dict_classes(state: Mapping[str, Tensor]) -> int | None:
    """The class count of a torchvision segmentation state dict (its classifier's last layer), if it has one."""
    for key in _CLASSIFIER_KEYS:
        if key in state:
            return int(state[key].shape[0])
    return None


def state_dict_has_aux(state: Mapping[str, Tensor]) -> bool:
    return any(k.startswith(_AUX_PREFIX) for k in state)


def read_state_dict(path: str | os.PathLike[str]) -> Mapping[str, Tensor]:
    """A local state dict (never a URL), as a one-line ModelError when it is not one."""
    from .backbones import _read_state_dict

    return _read_state_dict(path)


def _listing(keys: list[str], limit: int = 4) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_torchvision_weights(model: TorchvisionSeg, path: str | os.PathLike[str], name: str) -> None:
    """Load a whole-network torchvision state dict into ``model`` (in place), strictly."""
    state = read_state_dict(path)
    own = model.net.state_dict()
    file_aux, own_aux = state_dict_has_aux(state), model.has_aux
    if file_aux != own_aux:
        has = "has an" if file_aux else "has no"
        raise ModelError(
            f"{path}: the state dict {has} auxiliary head ({_AUX_PREFIX}*): build {name} with aux={file_aux}"
        )
    unexpected = [k for k in state if k not in own]
    if unexpected:
        raise ModelError(f"{path}: not a torchvision {name} state dict: unexpected keys {_listing(unexpected)}")
    missing = [k for k in own if k not in state and not k.endswith(".num_batches_tracked")]
    if missing:
        raise ModelError(f"{path}: torchvision {name} state dict lacks {_listing(missing)}")
    theirs, ours = state_dict_classes(state), state_dict_classes(own)
    if theirs != ours:
        raise ModelError(f"{path}: the state dict has {theirs} classes, the {name} being built {ours}")
    mismatched = [
        f"{k} {tuple(v.shape)} for {tuple(own[k].shape)}" for k, v in state.items() if v.shape != own[k].shape
    ]
    if mismatched:
        raise ModelError(f"{path}: {name} weights do not fit: {_listing(mismatched, 3)}")
    model.net.load_state_dict(state, strict=False)  # every key was checked above; num_batches_tracked may be absent


def _load_backbone(model: TorchvisionSeg, path: str | os.PathLike[str], kind: str) -> None:
    """torchvision ImageNet weights of the backbone, from the local file ``path``."""
    if kind != "mobilenet_v3_large":
        from .backbones import load_backbone_weights

        # IntermediateLayerGetter keeps torchvision's ResNet names (conv1, bn1, layer1..4) and drops fc
        load_backbone_weights(model.net.backbone, path, kind)
        return
    state = read_state_dict(path)
    own = model.net.backbone.state_dict()
    # The segmentation backbone is MobileNetV3's ``features`` (the classifier is dropped): features.N -> N
    mapped = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    unexpected = [k for k in state if not k.startswith(("features.", "classifier."))]
    unexpected += [f"features.{k}" for k in mapped if k not in own]
    if unexpected:
        raise ModelError(f"{path}: not a torchvision {kind} state dict: unexpected keys {_listing(unexpected)}")
    missing = [f"features.{k}" for k in own if k not in mapped and not k.endswith(".num_batches_tracked")]
    if missing:
        raise ModelError(f"{path}: torchvision {kind} state dict lacks {_listing(missing)}")
    bad = [f"features.{k} {tuple(v.shape)}" for k, v in mapped.items() if v.shape != own[k].shape]
    if bad:
        raise ModelError(f"{path}: {kind} weights do not fit the backbone: {_listing(bad, 3)}")
    model.net.backbone.load_state_dict(mapped, strict=False)


def _build(
    name: str,
    num_classes: int,
    weights: str | None,
    pretrained_backbone: str | None,
    aux: bool,
    zero_init_residual: bool = False,
) -> TorchvisionSeg:
    builder, kind, has_aux_option = ARCHITECTURES[name]
    options: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": num_classes}
    if has_aux_option:
        options["aux_loss"] = aux
    model = TorchvisionSeg(getattr(_segmentation(), builder)(**options), lraspp=not has_aux_option)
    if zero_init_residual:
        # torchvision ResNet's option, which its segmentation builders do not pass on: the last batch
        # norm of each bottleneck starts at zero, so every block starts as the identity (Goyal et al.,
        # arXiv:1706.02677), and an untrained ResNet-101's logits stay near 1 instead of ~1e4.
        for block in model.net.backbone.modules():
            if hasattr(block, "bn3"):
                nn.init.zeros_(block.bn3.weight)
    if pretrained_backbone is not None:
        _load_backbone(model, pretrained_backbone, kind)
    if weights is not None:
        load_torchvision_weights(model, weights, name)
    return model


def fcn_resnet50(
    num_classes: int,
    *,
    weights: str | None = None,
    pretrained_backbone: str | None = None,
    aux: bool = True,
    zero_init_residual: bool = False,
) -> TorchvisionSeg:
    """torchvision FCN-ResNet50 (dilated, output stride 8). ``weights``: a local torchvision state dict."""
    return _build("fcn_resnet50", num_classes, weights, pretrained_backbone, aux, zero_init_residual)


def fcn_resnet101(
    num_classes: int,
    *,
    weights: str | None = None,
    pretrained_backbone: str | None = None,
    aux: bool = True,
    zero_init_residual: bool = False,
) -> TorchvisionSeg:
    """torchvision FCN-ResNet101 (dilated, output stride 8). ``weights``: a local torchvision state dict."""
    return _build("fcn_resnet101", num_classes, weights, pretrained_backbone, aux, zero_init_residual)


def deeplabv3_resnet50(
    num_classes: int,
    *,
    weights: str | None = None,
    pretrained_backbone: str | None = None,
    aux: bool = True,
    zero_init_residual: bool = False,
) -> TorchvisionSeg:
    """torchvision DeepLabV3-ResNet50 (ASPP, output stride 8). ``weights``: a local torchvision state dict."""
    return _build("deeplabv3_resnet50", num_classes, weights, pretrained_backbone, aux, zero_init_residual)


def deeplabv3_resnet101(
    num_classes: int,
    *,
    weights: str | None = None,
    pretrained_backbone: str | None = None,
    aux: bool = True,
    zero_init_residual: bool = False,
) -> TorchvisionSeg:
    """torchvision DeepLabV3-ResNet101 (ASPP, output stride 8). ``weights``: a local torchvision state dict."""
    return _build("deeplabv3_resnet101", num_classes, weights, pretrained_backbone, aux, zero_init_residual)


def deeplabv3_mobilenet_v3_large(
    num_classes: int, *, weights: str | None = None, pretrained_backbone: str | None = None, aux: bool = True
) -> TorchvisionSeg:
    """torchvision DeepLabV3 on a dilated MobileNetV3-Large (output stride 16)."""
    return _build("deeplabv3_mobilenet_v3_large", num_classes, weights, pretrained_backbone, aux)


def lraspp_mobilenet_v3_large(
    num_classes: int, *, weights: str | None = None, pretrained_backbone: str | None = None
) -> TorchvisionSeg:
    """torchvision LR-ASPP on a dilated MobileNetV3-Large (stride-8 and stride-16 features, no auxiliary head)."""
    return _build("lraspp_mobilenet_v3_large", num_classes, weights, pretrained_backbone, False)


def documented_params(name: str) -> int:
    """The parameter count torchvision's weight metadata states for ``name`` (21 classes, auxiliary head
    included), read from the installed torchvision (the enum is local; nothing is downloaded)."""
    weights = {
        "fcn_resnet50": "FCN_ResNet50_Weights",
        "fcn_resnet101": "FCN_ResNet101_Weights",
        "deeplabv3_resnet50": "DeepLabV3_ResNet50_Weights",
        "deeplabv3_resnet101": "DeepLabV3_ResNet101_Weights",
        "deeplabv3_mobilenet_v3_large": "DeepLabV3_MobileNet_V3_Large_Weights",
        "lraspp_mobilenet_v3_large": "LRASPP_MobileNet_V3_Large_Weights",
    }[name]
    return int(getattr(_segmentation(), weights).COCO_WITH_VOC_LABELS_V1.meta["num_params"])
