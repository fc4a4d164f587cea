"""The typed values that travel between stages: Frame -> Batch -> SegResult.

They validate their shapes on construction so a wrong array fails where it is made, with the
expected and actual shape in the message, not three stages later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from .yuv import i420_to_bgr

if TYPE_CHECKING:
    from .zones import ZoneAreas


# How a frame's pixels are laid out. "yuv420p" is I420 as FFmpeg decodes H.264/H.265: the (H, W)
# luma plane, then the (H/2, W/2) U and V planes, packed in one uint8 (H * 3 / 2, W) array (OpenCV's
# COLOR_YUV2BGR_I420 layout). Frames stay in it from the decoder to the encoder: converting a 1080p
# frame to BGR and back costs about a third of the per-frame work (docs/benchmarks.md).
PixelFormat = Literal["bgr24", "yuv420p"]


def pixel_format_of(image: np.ndarray) -> PixelFormat:
    """The layout of a reader's array: 2-D is packed I420, 3-D is BGR."""
    return "yuv420p" if image.ndim == 2 else "bgr24"


def frame_size(image: np.ndarray, pixel_format: PixelFormat) -> tuple[int, int]:
    """(height, width) of the picture an array holds."""
    if pixel_format == "yuv420p":
        return image.shape[0] * 2 // 3, image.shape[1]
    return image.shape[0], image.shape[1]


def check_image(image: np.ndarray, pixel_format: PixelFormat, what: str) -> None:
    """ValueError naming ``what`` when the array is not a picture in ``pixel_format``."""
    if image.dtype == np.uint8:
        if pixel_format == "bgr24" and image.ndim == 3 and image.shape[2] == 3:
            return
        # I420 needs even sizes: one chroma sample per 2x2 block of luma
        even = image.ndim == 2 and image.shape[0] % 6 == 0 and image.shape[1] % 2 == 0
        if pixel_format == "yuv420p" and even:
            return
    want = "uint8 (H, W, 3) BGR" if pixel_format == "bgr24" else "uint8 (H * 3 / 2, W) I420 of even H and W"
    raise ValueError(f"{what}: expected {want}, got {image.dtype} {image.shape}")


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded picture of one stream, as the source produced it: BGR uint8 (H, W, 3), or the
    decoder's own I420 planes (``pixel_format`` "yuv420p"); ``bgr()`` gives BGR either way."""

    stream: str
    index: int  # per-stream sequence number from 0; gaps mean dropped frames
    pts: float  # presentation time in seconds from the stream's start
    capture_time: float  # time.monotonic() when the reader got it, for latency
    wall_time: float  # time.time() at capture, for records people read
    image: np.ndarray
    pixel_format: PixelFormat = "bgr24"

    def __post_init__(self) -> None:
        check_image(self.image, self.pixel_format, f"Frame {self.stream}#{self.index}")

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the picture."""
        return frame_size(self.image, self.pixel_format)

    def bgr(self) -> np.ndarray:
        """The picture as BGR (H, W, 3): the image itself, or a new array converted from I420."""
        if self.pixel_format == "bgr24":
            return self.image
        return i420_to_bgr(self.image)


@dataclass(frozen=True, slots=True)
class Batch:
    """Frames from one or more streams that go through the engine together."""

    frames: tuple[Frame, ...]
    formed_time: float = field(default=0.0)

    def __post_init__(self) -> None:
        if not self.frames:
            raise ValueError("Batch: expected at least one frame, got 0")

    def __len__(self) -> int:
        return len(self.frames)


@dataclass(frozen=True, slots=True)
class SegResult:
    """The engine's verdict on one frame: a class map at model resolution and its area ratios."""

    frame: Frame
    class_map: np.ndarray  # uint8 (h, w) class indices at the model's output resolution
    area_ratio: np.ndarray  # float64 (num_classes,), sums to 1 over all pixels of class_map
    overlay: np.ndarray | None = None  # blend already rendered where the frame was (GPU path)
    # per zone of the stream, in config order, the class shares inside it; () for streams without zones
    zones: tuple[ZoneAreas, ...] = ()
    # per class of postprocess.rle, its mask as COCO RLE at class-map resolution; None when not exported
    rle: dict[str, dict[str, object]] | None = None

    def __post_init__(self) -> None:
        cm = self.class_map
        if cm.dtype != np.uint8 or cm.ndim != 2:
            raise ValueError(
                f"SegResult {self.frame.stream}#{self.frame.index}: expected uint8 (h, w) "
                f"class map, got {cm.dtype} {cm.shape}"
            )
        if self.area_ratio.ndim != 1:
            raise ValueError(
                f"SegResult {self.frame.stream}#{self.frame.index}: expected 1-D area ratios, "
                f"got shape {self.area_ratio.shape}"
            )
