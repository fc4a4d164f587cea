"""Count the multiply-accumulates (MACs) of a network's convolutions and linear layers with forward hooks.

Only ``Conv2d``, ``ConvTranspose2d`` and ``Linear`` are counted (biases, batch norm, activations,
pooling and resizing are left out: together they are a few percent at most). ``macs`` is the count
of multiply-accumulates; ``flops`` is ``2 * macs``, counting the multiply and the add separately.
Papers differ on which of the two they call "FLOPs": ENet's 3.83 GFLOPs and LinkNet's 21.2 GFLOPs
at 3x360x640 are close to ``2 * macs`` of these networks, i.e. true FLOPs (see tests/models/test_flops.py).

Per layer: a convolution does ``C_in / groups * kH * kW`` MACs per output element; a transposed
convolution ``C_out / groups * kH * kW`` per input element (each input pixel scatters a kernel); a
linear layer ``in_features`` per output element.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._torch import Tensor, nn, torch


@dataclass(frozen=True, slots=True)
class OpCount:
    """MACs of one forward pass, in total and per counted module (by its qualified name)."""

    macs: int
    by_module: dict[str, int] = field(default_factory=dict)

    @property
    def flops(self) -> int:
        """Floating-point operations, a multiply-accumulate being two."""
        return 2 * self.macs

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def gflops(self) -> float:
        return self.flops / 1e9


def _macs(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> int:
    if isinstance(module, nn.ConvTranspose2d):
        kh, kw = module.kernel_size
        x: Tensor = inputs[0]
        return x.numel() * module.out_channels // module.groups * kh * kw
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        out: Tensor = output
        return out.numel() * module.in_channels // module.groups * kh * kw
    if isinstance(module, nn.Linear):
        out = output
        return out.numel() * module.in_features
    return 0  # pragma: no cover - hooks are only registered on the types above


def count_ops(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 360, 640)) -> OpCount:
    """MACs of ``model`` on one zero batch of ``input_shape``, run in eval mode (auxiliary heads off).

    The model's training mode is restored afterwards; a module called twice is counted twice.
    """
    counts: dict[str, int] = {}
    names = {module: name for name, module in model.named_modules()}

    def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        name = names[module]
        counts[name] = counts.get(name, 0) + _macs(module, inputs, output)

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(input_shape))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return OpCount(sum(counts.values()), counts)
