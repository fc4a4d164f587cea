"""Pre- and post-processing as torch tensor ops, for frames that live on a GPU.

Each function mirrors a CPU function and is tested against it: ``preprocess`` (resize, channel
order, normalize, layout), ``area_ratios`` (class histogram) and ``blend`` (colorize, nearest
upscale, alpha blend through the painted mask). Labels match exactly (the nearest-neighbour
indices are OpenCV's own, from ``postprocess.nearest_index``); overlay pixels match within 1 (float32 vs
OpenCV's fixed-point arithmetic). With these, a frame crosses the bus once each way: the uint8
frame up, the uint8 overlay down. torch comes through ``streamseg.models._torch``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .contract import InputSpec
from .models._torch import F, Tensor, torch
from .overlay import Palette
from .postprocess import nearest_index


def resize_labels(class_map: Tensor, height: int, width: int) -> Tensor:
    """Nearest-neighbour resize of (h, w) labels, index-for-index equal to ``postprocess.resize_labels``."""
    h, w = class_map.shape[-2:]
    if (h, w) == (height, width):
        return class_map
    rows = torch.from_numpy(nearest_index(h, height).copy()).to(class_map.device)
    cols = torch.from_numpy(nearest_index(w, width).copy()).to(class_map.device)
    return class_map.index_select(-2, rows).index_select(-1, cols)


def preprocess(frames: Tensor, spec: InputSpec) -> Tensor:
    """uint8 BGR frames (N, H, W, 3) on any device -> the contract's float32 batch on that device."""
    x = frames.permute(0, 3, 1, 2).float()  # NCHW for interpolate
    if x.shape[-2:] != (spec.height, spec.width):
        # bilinear without antialiasing and with half-pixel centers: what cv2.INTER_LINEAR does
        x = F.interpolate(x, size=(spec.height, spec.width), mode="bilinear", align_corners=False, antialias=False)
    if spec.color == "RGB":
        x = x.flip(1)
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.contiguous() if spec.layout == "NCHW" else x.permute(0, 2, 3, 1).contiguous()


def area_ratios(class_map: Tensor, num_classes: int) -> Tensor:
    """Per-class fraction of the class map's pixels (float64), like ``postprocess.area_ratios``."""
    counts = torch.bincount(class_map.reshape(-1).long(), minlength=num_classes)
    return counts.double() / class_map.numel()


def blend(frame: Tensor, class_map: Tensor, palette: Palette, alpha: float) -> Tensor:
    """(H, W, 3) uint8 frame and (h, w) labels -> the blended overlay, like ``overlay.blend``."""
    h, w = frame.shape[:2]
    lut = torch.from_numpy(palette.lut).to(frame.device)
    big = resize_labels(class_map, h, w).long()
    bgra = lut[big]  # (H, W, 4)
    painted = bgra[..., 3:4] > 0
    mixed = torch.round(frame.float() * (1.0 - alpha) + bgra[..., :3].float() * alpha).clamp_(0, 255).to(torch.uint8)
    return torch.where(painted, mixed, frame)


class DeviceFrames:
    """One batch's frames kept on the device from preprocess to overlay, so each frame crosses the
    bus once up (uint8) and its overlay once down (uint8); class histograms are computed there too."""

    def __init__(self, device: Any, spec: InputSpec, palette: Palette, alpha: float, blend_overlay: bool) -> None:
        self.device, self.spec, self.palette, self.alpha = device, spec, palette, alpha
        self.blend_overlay = blend_overlay
        self.frames: list[Tensor] = []

    def preprocess(self, images: list[np.ndarray]) -> Tensor:
        """Upload each uint8 frame once (pinned, asynchronous) and preprocess it on the device."""
        pin = torch.device(self.device).type == "cuda"  # pinned memory makes the copy asynchronous
        self.frames = [
            (torch.from_numpy(img).pin_memory() if pin else torch.from_numpy(img)).to(self.device, non_blocking=True)
            for img in images
        ]
        # frames of different streams may differ in size: resize each, then stack
        return torch.cat([preprocess(f.unsqueeze(0), self.spec) for f in self.frames])

    def finish(self, labels: Tensor, num_classes: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Per frame: (area ratios, blended overlay or None) from the device class maps."""
        out = []
        for frame, cmap in zip(self.frames, labels, strict=True):
            ratios = to_numpy(area_ratios(cmap, num_classes))
            overlay = to_numpy(blend(frame, cmap, self.palette, self.alpha)) if self.blend_overlay else None
            out.append((ratios, overlay))
        self.frames = []
        return out


def to_numpy(t: Tensor) -> np.ndarray[Any, Any]:
    return np.asarray(t.detach().cpu().numpy())
