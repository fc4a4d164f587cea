"""The one door to torchvision (Mask R-CNN's detection code), imported lazily by the zoo.

PyPI's torchvision wheels for Linux are CUDA builds: beside torch's CPU wheel their C++ ops
(``torchvision::nms``, ``torchvision::roi_align``) fail to load (``libc10_cuda.so`` is missing),
and ``import torchvision`` then fails outright. Where that happens, this module registers the two
ops Mask R-CNN needs under torchvision's own names, before torchvision is imported:
``roi_align`` is torchvision's own pure-PyTorch implementation (``torchvision.ops.roi_align.
_roi_align``, transcribed from its CUDA kernel; its backward by autograd through it), ``nms`` a
greedy NMS with torchvision's IoU and ``> iou_threshold`` rule. Being real dispatcher ops with
torchvision's names, tracing records them as such and torchvision's own ONNX symbolics export them
as ONNX ``RoiAlign`` and ``NonMaxSuppression``. Where the C++ extension loads (a CUDA torch with
its matching torchvision), nothing is registered and torchvision runs as shipped.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from .._deps import require
from ..errors import MissingDependencyError
from ._torch import Tensor, torch

_FALLBACK: list[Any] = []  # keeps the registered ops alive; non-empty when the fallback is in use
_PURPOSE = "Mask R-CNN (torchvision's detection models)"
_READY: list[Any] = []  # the torchvision module once prepared


def _extension_loads() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return False
    found = sorted(Path(spec.origin).parent.glob("_C*.so"))
    if not found:
        return False
    try:
        torch.ops.load_library(str(found[0]))  # type: ignore[no-untyped-call]
    except OSError:
        return False
    return True


def _nms(dets: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS: indices of the kept boxes, by decreasing score (torchvision's CPU kernel's rule)."""
    if dets.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=dets.device)
    b = dets.detach().cpu().double().numpy()
    order = np.argsort(-scores.detach().cpu().double().numpy(), kind="stable")
    b = b[order]
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    suppressed = np.zeros(len(b), bool)
    keep: list[int] = []
    for i in range(len(b)):
        if suppressed[i]:
            continue
        keep.append(i)
        w = np.clip(np.minimum(b[i, 2], b[i + 1 :, 2]) - np.maximum(b[i, 0], b[i + 1 :, 0]), 0, None)
        h = np.clip(np.minimum(b[i, 3], b[i + 1 :, 3]) - np.maximum(b[i, 1], b[i + 1 :, 1]), 0, None)
        inter = w * h
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = inter / (area[i] + area[i + 1 :] - inter)
        suppressed[i + 1 :] |= iou > iou_threshold
    return torch.from_numpy(order[np.array(keep, np.int64)]).to(dets.device)


def roi_align_grid(
    input: Tensor,
    rois: Tensor,
    spatial_scale: float,
    pooled_height: int,
    pooled_width: int,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """RoIAlign (He et al., Mask R-CNN) as torchvision's kernel computes it, through ``grid_sample``
    (native, its backward too) rather than torchvision's pure-PyTorch reference, whose gather of
    every corner is ~10x slower in eager mode (and with ``sampling_ratio <= 0`` samples the whole map).

    ``sampling_ratio`` > 0: that many points per bin side; <= 0: ``ceil(box side / pooled side)``
    per box (boxes grouped by their grid, one call per group).

    The kernel's rules: a box of ``aligned=False`` is at least 1x1; a point above -1 and below the
    map's size is clamped into it and interpolated bilinearly (``padding_mode="border"`` with
    ``align_corners=True``: pixel centres at integers); a point outside that is 0.
    """
    out = input.new_zeros((rois.shape[0], input.shape[1], pooled_height, pooled_width))
    if rois.shape[0] == 0:
        return out
    offset = 0.5 if aligned else 0.0
    if sampling_ratio > 0:
        everything = torch.arange(rois.shape[0], device=rois.device)
        return _roi_align_fixed(
            out, input, rois, everything, spatial_scale, sampling_ratio, sampling_ratio, offset, aligned
        )
    box = rois[:, 1:5] * spatial_scale - offset
    bw, bh = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    if not aligned:
        bw, bh = bw.clamp(min=1.0), bh.clamp(min=1.0)
    grids = torch.stack([torch.ceil(bh / pooled_height), torch.ceil(bw / pooled_width)], 1).clamp(min=1).long()
    for sh, sw in torch.unique(grids, dim=0).tolist():
        chosen = ((grids[:, 0] == sh) & (grids[:, 1] == sw)).nonzero().flatten()
        out = _roi_align_fixed(out, input, rois, chosen, spatial_scale, sh, sw, offset, aligned)
    return out


def _roi_align_fixed(
    out: Tensor,
    input: Tensor,
    rois: Tensor,
    chosen: Tensor,
    spatial_scale: float,
    sh: int,
    sw: int,
    offset: float,
    aligned: bool,
) -> Tensor:
    """``out`` with the rows ``chosen`` filled by RoIAlign on an ``sh`` x ``sw`` grid per bin."""
    from ._torch import F

    n, c, height, width = input.shape
    pooled_height, pooled_width = out.shape[2], out.shape[3]
    rois = rois[chosen]
    box = rois[:, 1:5] * spatial_scale - offset
    x0, y0 = box[:, 0], box[:, 1]
    bw, bh = box[:, 2] - x0, box[:, 3] - y0
    if not aligned:
        bw, bh = bw.clamp(min=1.0), bh.clamp(min=1.0)
    # sample k of bin p sits at start + (p + (k + 0.5) / s) * size / pooled
    fy = (torch.arange(pooled_height * sh, device=input.device, dtype=input.dtype) + 0.5) / (sh * pooled_height)
    fx = (torch.arange(pooled_width * sw, device=input.device, dtype=input.dtype) + 0.5) / (sw * pooled_width)
    ys = y0[:, None] + fy[None, :] * bh[:, None]  # (K, PH*s)
    xs = x0[:, None] + fx[None, :] * bw[:, None]  # (K, PW*s)
    valid = ((ys >= -1) & (ys <= height))[:, :, None] & ((xs >= -1) & (xs <= width))[:, None, :]
    gy = ys.clamp(0, height - 1) / max(height - 1, 1) * 2 - 1
    gx = xs.clamp(0, width - 1) / max(width - 1, 1) * 2 - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # type: ignore[no-untyped-call]  # (K, PH*s, PW*s, 2)
    index = rois[:, 0].long()
    for b in range(n):
        mine = (index == b).nonzero().flatten()
        if mine.numel() == 0:
            continue
        g = grid[mine].reshape(1, -1, pooled_width * sw, 2)  # the image's boxes stacked along y
        points = F.grid_sample(input[b : b + 1], g, mode="bilinear", padding_mode="border", align_corners=True)
        points = points.reshape(c, mine.numel(), pooled_height * sh, pooled_width * sw).transpose(0, 1)
        points = points * valid[mine, None].to(input.dtype)
        out = out.index_copy(0, chosen[mine], F.avg_pool2d(points, (sh, sw)))
    return out


def _register_fallback() -> None:
    from torch.library import custom_op

    @custom_op("torchvision::nms", mutates_args=())
    def nms(dets: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
        return _nms(dets, scores, iou_threshold)

    @nms.register_fake
    def _(dets: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
        ctx = torch.library.get_ctx()
        return dets.new_empty(ctx.new_dynamic_size(), dtype=torch.int64)

    @custom_op("torchvision::qnms", mutates_args=())
    def qnms(dets: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
        raise RuntimeError("quantized NMS needs torchvision's C++ ops")

    def reference(*args: Any) -> Tensor:
        return roi_align_grid(*args)

    @custom_op("torchvision::roi_align", mutates_args=())
    def roi_align(
        input: Tensor,
        rois: Tensor,
        spatial_scale: float,
        pooled_height: int,
        pooled_width: int,
        sampling_ratio: int,
        aligned: bool,
    ) -> Tensor:
        return reference(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)

    @roi_align.register_fake
    def _(
        input: Tensor,
        rois: Tensor,
        spatial_scale: float,
        pooled_height: int,
        pooled_width: int,
        sampling_ratio: int,
        aligned: bool,
    ) -> Tensor:
        return input.new_empty((rois.shape[0], input.shape[1], pooled_height, pooled_width))

    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.save_for_backward(inputs[0], inputs[1])
        ctx.params = inputs[2:]

    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, rois = ctx.saved_tensors
        with torch.enable_grad():
            leaf = x.detach().requires_grad_()
            out = reference(leaf, rois, *ctx.params)
            # no boxes on this level: nothing flows back
            g = torch.autograd.grad(out, leaf, grad)[0] if out.requires_grad else torch.zeros_like(x)
        return (g, None, None, None, None, None, None)

    roi_align.register_autograd(backward, setup_context=setup_context)
    _FALLBACK.extend([nms, qnms, roi_align])


def _ops_present() -> bool:
    # a plain function, not a lambda: tracing scripts torchvision's batched NMS, and TorchScript
    # compiles what it calls from source
    return True


def torchvision() -> Any:
    """The torchvision module, with the ops Mask R-CNN needs whether or not its C++ ops load."""
    if _READY:
        return _READY[0]
    if importlib.util.find_spec("torchvision") is None:
        raise MissingDependencyError("torchvision", "train", _PURPOSE)
    if not _FALLBACK and not _extension_loads():
        _register_fallback()
    tv = require("torchvision", "train", _PURPOSE)  # one-line error for an install that does not import

    if _FALLBACK:
        # nms and roi_align ask the extension whether the ops exist; they do now (and roi_align
        # then calls the op, not its torch.compile'd fallback, which would need a C compiler)
        tv.extension._has_ops = _ops_present
        importlib.import_module("torchvision.ops.roi_align")._has_ops = _ops_present  # type: ignore[attr-defined]
    _READY.append(tv)
    return tv


def using_fallback_ops() -> bool:
    """True when nms and roi_align are this module's registrations (torchvision's C++ ops did not load)."""
    return bool(_FALLBACK)
