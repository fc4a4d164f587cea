"""The one door to PyTorch: every zoo, training and export module imports torch from here, so a
missing install fails in one place with the extra to install."""

from __future__ import annotations

from ..errors import MissingDependencyError

try:
    import torch
    import torch.nn.functional as F  # noqa: N812 - the conventional name
    from torch import Tensor, nn
except ImportError:  # pragma: no cover - exercised only without torch
    raise MissingDependencyError("torch", "train", "the model zoo, training and export") from None

__all__ = ["F", "Tensor", "nn", "torch"]
