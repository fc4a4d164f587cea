"""The one door to PyTorch: every zoo, training and export module imports torch from here, so a
missing install fails in one place with the extra to install."""

from __future__ import annotations

from .._deps import require

# require() raises the one-line error without torch; the plain imports below keep mypy's types.
require("torch", "torch", "the model zoo, the torch backend, training and export")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402, N812 - the conventional name
from torch import Tensor, nn  # noqa: E402

__all__ = ["F", "Tensor", "nn", "torch"]
