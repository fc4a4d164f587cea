"""ImageNet backbones from torchvision-format state dicts in local files (nothing is ever downloaded).

``load_backbone_weights(module, path, kind)`` reads a state dict saved by ``torch.save`` from a
torchvision ``vgg16``, ``vgg16_bn``, ``resnet18``, ``resnet50`` or ``resnet101`` and copies it into ``module``
under our names. The layouts it expects in ``module``:

- ``vgg16``: ``conv1_1`` .. ``conv5_3`` plain ``Conv2d`` (torchvision's ``features.0`` .. ``features.28``),
  and, if the module has them, ``fc6`` (7x7 conv) and ``fc7`` (1x1 conv) from ``classifier.0`` and
  ``classifier.3`` reshaped (FCN's "convolutionalization"; the flattening order of torchvision's
  classifier is channel, row, column, which is the conv weight's own order).
- ``vgg16_bn``: the same names, each a ``ConvBNReLU`` with ``.conv`` and ``.bn``.
- ``resnet18`` / ``resnet50`` / ``resnet101``: torchvision's own names (``conv1``, ``bn1``, ``layer1`` .. ``layer4``,
  blocks with ``conv1``/``bn1``/``conv2``/``bn2``(/``conv3``/``bn3``)/``downsample.0``/``.1``).

ImageNet classifier heads (``classifier.6``, ``fc``, and ``fc6``/``fc7`` when the module has none)
are dropped. Anything else is strict: a key the file lacks, a key torchvision's architecture does not
have, or a shape that does not fit raises :class:`~streamseg.errors.ModelError` naming the file.
``num_batches_tracked`` may be absent (files saved before PyTorch 0.4.1 lack it; PyTorch fills it).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping

from ..errors import ConfigError, ModelError
from ._torch import Tensor, nn, torch

KINDS = ("vgg16", "vgg16_bn", "resnet18", "resnet50", "resnet101")

_VGG16 = ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))  # (block, convs per block)
_BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_RESNET_BLOCKS = {  # (blocks per layer, bottleneck)
    "resnet18": ((2, 2, 2, 2), False),
    "resnet50": ((3, 4, 6, 3), True),
    "resnet101": ((3, 4, 23, 3), True),
}
_FC = ("fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias")  # loaded only when the module has them
_RESHAPED = ("fc6.weight", "fc7.weight")  # torchvision Linear -> our conv


def _vgg_layout(bn: bool) -> dict[str, str | None]:
    layout: dict[str, str | None] = {}
    index = 0
    for block, convs in _VGG16:
        for i in range(1, convs + 1):
            name = f"conv{block}_{i}"
            if bn:
                for p in ("weight", "bias"):
                    layout[f"features.{index}.{p}"] = f"{name}.conv.{p}"
                for p in _BN_KEYS:
                    layout[f"features.{index + 1}.{p}"] = f"{name}.bn.{p}"
                index += 3  # conv, bn, relu
            else:
                for p in ("weight", "bias"):
                    layout[f"features.{index}.{p}"] = f"{name}.{p}"
                index += 2  # conv, relu
        index += 1  # max-pool
    for tv, ours in (("classifier.0", "fc6"), ("classifier.3", "fc7"), ("classifier.6", None)):
        for p in ("weight", "bias"):
            layout[f"{tv}.{p}"] = None if ours is None else f"{ours}.{p}"
    return layout


def _resnet_layout(blocks: tuple[int, ...], bottleneck: bool) -> dict[str, str | None]:
    keys = ["conv1.weight", *(f"bn1.{p}" for p in _BN_KEYS)]
    convs = 3 if bottleneck else 2
    for layer, n in enumerate(blocks, start=1):
        for b in range(n):
            prefix = f"layer{layer}.{b}"
            for c in range(1, convs + 1):
                keys += [f"{prefix}.conv{c}.weight", *(f"{prefix}.bn{c}.{p}" for p in _BN_KEYS)]
            # The first block of a layer changes width (always with a bottleneck's 4x expansion) or stride.
            if b == 0 and (layer > 1 or bottleneck):
                keys += [f"{prefix}.downsample.0.weight", *(f"{prefix}.downsample.1.{p}" for p in _BN_KEYS)]
    layout: dict[str, str | None] = {k: k for k in keys}
    layout.update({"fc.weight": None, "fc.bias": None})
    return layout


def torchvision_layout(kind: str) -> dict[str, str | None]:
    """Every key of torchvision's ``kind`` state dict -> our name for it (None: a classifier head we drop)."""
    if kind == "vgg16":
        return _vgg_layout(bn=False)
    if kind == "vgg16_bn":
        return _vgg_layout(bn=True)
    if kind in _RESNET_BLOCKS:
        return _resnet_layout(*_RESNET_BLOCKS[kind])
    raise ConfigError(f"unknown backbone kind '{kind}' (known: {', '.join(KINDS)})")


def _read_state_dict(path: str | os.PathLike[str]) -> Mapping[str, Tensor]:
    if str(path).startswith(("http://", "https://")):
        raise ModelError(f"{path}: pretrained_backbone must be a local file (nothing is downloaded)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        raise ModelError(f"{path}: cannot read backbone weights: {str(e).splitlines()[0]}") from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise ModelError(f"{path}: not a state dict (a mapping of names to tensors, as torch.save(model.state_dict()))")
    return state


def _listing(keys: list[str], limit: int = 5) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_backbone_weights(module: nn.Module, path: str | os.PathLike[str], kind: str) -> None:
    """Load torchvision ``kind`` ImageNet weights from the local file ``path`` into ``module`` (in place)."""
    layout = torchvision_layout(kind)
    state = _read_state_dict(path)
    own = module.state_dict()
    unexpected = [k for k in state if k not in layout]
    if unexpected:
        raise ModelError(f"{path}: not a torchvision {kind} state dict: unexpected keys {_listing(unexpected)}")
    mapped: dict[str, Tensor] = {}
    missing: list[str] = []
    mismatched: list[str] = []
    for tv_key, ours in layout.items():
        if ours is None or (ours in _FC and ours not in own):
            continue  # a classifier head this network does not have
        if ours not in own:  # a bug in the network, not in the file
            raise ModelError(f"{type(module).__name__} has no '{ours}' for torchvision {kind}'s '{tv_key}'")
        if tv_key not in state:
            if not tv_key.endswith(".num_batches_tracked"):
                missing.append(tv_key)
            continue
        value, expected = state[tv_key], own[ours].shape
        if value.shape != expected and ours in _RESHAPED and value.numel() == expected.numel():
            value = value.reshape(expected)
        if value.shape != expected:
            mismatched.append(f"{tv_key} {tuple(value.shape)} for {ours} {tuple(expected)}")
        mapped[ours] = value
    if missing:
        raise ModelError(f"{path}: torchvision {kind} state dict lacks {_listing(missing)}")
    if mismatched:
        raise ModelError(f"{path}: {kind} weights do not fit {type(module).__name__}: {_listing(mismatched, 3)}")
    module.load_state_dict(mapped, strict=False)
