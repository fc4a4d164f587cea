"""The GPU stage: pre- and post-processing as torch tensor ops, for frames that live on a GPU.

Each function mirrors a CPU function and is tested against it: ``i420_to_bgr`` (OpenCV's
COLOR_YUV2BGR_I420, its fixed-point BT.601 arithmetic reproduced: equal), ``preprocess`` (resize,
channel order, normalize, layout), ``area_ratios`` (class histogram) and ``blend`` (colorize,
nearest upscale, alpha blend through the painted mask). Labels match exactly (the
nearest-neighbour indices are OpenCV's own, from ``postprocess.nearest_index``); overlay pixels
match within 1 (float32 vs OpenCV's fixed-point arithmetic). ``TorchStage`` puts them behind the
stage interface (``streamseg.stages``): a frame crosses the bus once each way, the uint8 frame
(BGR or I420) up, the uint8 overlay down, plus the small class maps. A frame NVDEC decoded
(pixel format "nv12_device") is already on the GPU: ``nv12_to_bgr`` converts it there (OpenCV's
NV12 arithmetic, equal to ``i420_to_bgr`` of the same planes) and it never goes up. torch comes
through ``streamseg.models._torch``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .contract import InputSpec, ModelContract
from .errors import BackendError
from .frames import Frame
from .models._torch import F, Tensor, torch
from .overlay import Palette
from .postprocess import area_ratios as cpu_area_ratios
from .postprocess import nearest_index
from .stages import OverlaySpec, Processed, Stage

if TYPE_CHECKING:
    from .temporal import TemporalFilter

# OpenCV's BT.601 limited-range YUV -> RGB coefficients in 20-bit fixed point (ITUR_BT_601_* in
# its color_yuv code): with the same integer arithmetic the device's BGR equals cv2.cvtColor's.
_SHIFT = 20
_CY, _CVR, _CVG, _CUG, _CUB = 1220542, 1673527, -852492, -409993, 2116026


def resize_labels(class_map: Tensor, height: int, width: int) -> Tensor:
    """Nearest-neighbour resize of (h, w) labels, index-for-index equal to ``postprocess.resize_labels``."""
    h, w = class_map.shape[-2:]
    if (h, w) == (height, width):
        return class_map
    rows = torch.from_numpy(nearest_index(h, height).copy()).to(class_map.device)
    cols = torch.from_numpy(nearest_index(w, width).copy()).to(class_map.device)
    return class_map.index_select(-2, rows).index_select(-1, cols)


def i420_to_bgr(data: Tensor) -> Tensor:
    """Packed I420 (H * 3 / 2, W) uint8 -> BGR (H, W, 3) uint8 on the same device, equal to
    ``cv2.cvtColor(data, cv2.COLOR_YUV2BGR_I420)``: each 2x2 block of luma shares its chroma sample."""
    rows, w = data.shape
    h = rows * 2 // 3
    u, v = data[h:].reshape(2, h // 2, w // 2)  # U plane, then V plane
    return _yuv420_to_bgr(data[:h], u, v)


def nv12_to_bgr(data: Tensor) -> Tensor:
    """NV12 (H * 3 / 2, W) uint8, NVDEC's surface layout (luma, then U and V interleaved) -> BGR
    (H, W, 3) uint8 on the same device, equal to ``cv2.cvtColor(data, cv2.COLOR_YUV2BGR_NV12)`` and
    so to ``i420_to_bgr`` of the same planes: NVDEC frames and decoded I420 give the model one input."""
    rows, w = data.shape
    h = rows * 2 // 3
    uv = data[h:].reshape(h // 2, w // 2, 2)
    return _yuv420_to_bgr(data[:h], uv[..., 0], uv[..., 1])


def _yuv420_to_bgr(luma: Tensor, u_plane: Tensor, v_plane: Tensor) -> Tensor:
    """OpenCV's YUV 4:2:0 -> BGR in its integer arithmetic: (H, W) luma, (H/2, W/2) chroma planes."""
    y = (luma.to(torch.int32) - 16).clamp_(min=0) * _CY + (1 << (_SHIFT - 1))  # the rounding half, as OpenCV adds it
    u, v = (
        (c.to(torch.int32) - 128).repeat_interleave(2, dim=0).repeat_interleave(2, dim=1) for c in (u_plane, v_plane)
    )
    b = y + _CUB * u
    g = y + _CVG * v + _CUG * u
    r = y + _CVR * v
    # an arithmetic shift floors, as OpenCV's >> does on its int sums
    return (torch.stack((b, g, r), dim=-1) >> _SHIFT).clamp_(0, 255).to(torch.uint8)


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


def device_tensor(frame: Frame) -> Tensor:
    """A device frame's picture as a torch tensor: the tensor itself, or (another DLPack producer,
    a CuPy array) a zero-copy view of it."""
    image = frame.image
    if isinstance(image, torch.Tensor):
        return image
    if not hasattr(image, "__dlpack__"):
        raise BackendError(
            f"frame {frame.stream}#{frame.index}: a device picture must be a torch tensor or support DLPack, "
            f"got {type(image).__name__}"
        )
    return torch.from_dlpack(image)  # type: ignore[attr-defined]


def to_numpy(t: Tensor) -> np.ndarray[Any, Any]:
    return np.asarray(t.detach().cpu().numpy())


class TorchStage(Stage[Tensor]):
    """The stage for a backend that takes torch tensors on ``device``: host frames are uploaded once
    (pinned, asynchronous; I420 frames converted to BGR there), NVDEC's device frames are converted
    where they are, all are preprocessed, and after ``infer``
    the class maps, histograms and blend are computed where the output already is.

    The uploaded frames of the batch last preprocessed are kept for its postprocess (the blend
    needs the full-resolution pictures); a postprocess of other frames uploads them again.
    With temporal smoothing the class maps are smoothed on the CPU and the area ratios are those
    of the smoothed maps; the stream's worker then draws the overlay, as on the CPU stage.
    """

    def __init__(
        self,
        device: Any,
        contract: ModelContract,
        overlay: OverlaySpec | None = None,
        temporal: TemporalFilter | None = None,
    ) -> None:
        super().__init__(contract, temporal)
        self.device = torch.device(device)
        self.overlay = overlay
        self._held: tuple[Sequence[Frame], list[Tensor]] | None = None

    @property
    def description(self) -> str:
        return str(self.device)

    @property
    def takes_device_frames(self) -> bool:
        return True

    def upload(self, frames: Sequence[Frame]) -> list[Tensor]:
        """Each frame as a BGR uint8 (H, W, 3) tensor on the device: host frames copied up, device
        (NVDEC) frames converted where they are, with no trip through host memory."""
        pin = self.device.type == "cuda"  # pinned memory makes the copy asynchronous
        out = []
        for f in frames:
            if f.on_device:
                # already there when NVDEC decoded on this GPU (.to is then a no-op); NV12 -> BGR there
                out.append(nv12_to_bgr(device_tensor(f).to(self.device, non_blocking=True)))
                continue
            host = torch.from_numpy(f.host_image())
            t = (host.pin_memory() if pin else host).to(self.device, non_blocking=True)
            out.append(i420_to_bgr(t) if f.pixel_format == "yuv420p" else t)
        return out

    def preprocess(self, frames: Sequence[Frame]) -> Tensor:
        images = self.upload(frames)
        self._held = (frames, images)
        # frames of different streams may differ in size: resize each, then stack
        return torch.cat([preprocess(img.unsqueeze(0), self.contract.input) for img in images])

    def labels(self, output: Tensor) -> Tensor:
        """uint8 class maps (N, h, w) on the device from the backend's output."""
        c = self.contract
        if c.output.kind == "class_map":
            return (output[:, 0] if output.ndim == 4 else output).to(torch.uint8)
        return output.argmax(dim=1 if c.input.layout == "NCHW" else 3).to(torch.uint8)

    def postprocess(self, frames: Sequence[Frame], output: Tensor) -> list[Processed]:
        held, self._held = self._held, None
        images = held[1] if held is not None and held[0] is frames else None
        n = self.contract.num_classes
        if self.smoothing:
            host = to_numpy(output if self.contract.output.kind == "class_map" else output.float())
            maps = self._class_maps(frames, host)
            return [Processed(np.ascontiguousarray(m), cpu_area_ratios(m, n)) for m in maps]
        labels = self.labels(output)
        maps = np.ascontiguousarray(to_numpy(labels))  # small: model resolution, one byte a pixel
        if maps.size and (high := int(maps.max())) >= n:  # it would count in the next frame's bins
            raise BackendError(f"model '{self.contract.name}' produced class index {high} but has {n} classes")
        counts = to_numpy(batch_counts(labels, n))
        spec = self.overlay if self.overlay is not None and self.overlay.blend else None
        if spec is not None and images is None:
            images = self.upload(frames)
        out = []
        for i, cmap in enumerate(maps):
            overlay = None
            if spec is not None and images is not None:
                overlay = to_numpy(blend(images[i], labels[i], spec.palette, spec.alpha))
            # the same division as postprocess.area_ratios (int64 counts / pixels, in float64): equal
            out.append(Processed(cmap, counts[i] / cmap.size, overlay))
        return out


def batch_counts(labels: Tensor, num_classes: int) -> Tensor:
    """Per-class pixel counts (N, num_classes) of a batch of class maps in one bincount (each
    frame's labels offset into its own bins); class indices must be below ``num_classes``."""
    n = labels.shape[0]
    offsets = torch.arange(n, device=labels.device).view(n, 1) * num_classes
    flat = labels.reshape(n, -1).long() + offsets
    return torch.bincount(flat.reshape(-1), minlength=n * num_classes).view(n, num_classes)
