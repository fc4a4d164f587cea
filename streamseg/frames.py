"""The typed values that travel between stages: Frame -> Batch -> SegResult.

They validate their shapes on construction so a wrong array fails where it is made, with the
expected and actual shape in the message, not three stages later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np

from .yuv import bgr_to_i420, i420_to_bgr, resize_i420

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


class Picture:
    """A picture handed to outputs: the overlay (or the frame, for outputs that want it raw) in its
    own pixel format. ``bgr()`` and ``i420()`` convert once and keep the result, so outputs that need
    the other format share one conversion and the rest pay nothing. Not for use across threads."""

    __slots__ = ("_bgr", "_i420", "data", "pixel_format")

    def __init__(self, data: np.ndarray, pixel_format: PixelFormat) -> None:
        check_image(data, pixel_format, "Picture")
        self.data = data
        self.pixel_format: PixelFormat = pixel_format
        self._bgr: np.ndarray | None = data if pixel_format == "bgr24" else None
        self._i420: np.ndarray | None = data if pixel_format == "yuv420p" else None

    @classmethod
    def of(cls, frame: Frame) -> Picture:
        return cls(frame.image, frame.pixel_format)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return frame_size(self.data, self.pixel_format)

    def bgr(self) -> np.ndarray:
        """BGR (H, W, 3); for an I420 picture a new array, made on the first call. Do not write to it."""
        if self._bgr is None:
            self._bgr = i420_to_bgr(self.data)
        return self._bgr

    def i420(self) -> np.ndarray:
        """Packed I420 (even size; a BGR picture's odd last row or column is dropped). Do not write to it."""
        if self._i420 is None:
            self._i420 = bgr_to_i420(self.data)
        return self._i420

    def resized(self, width: int, height: int) -> Picture:
        """This picture at (width, height), resized in its own format (I420: even sizes)."""
        if self.pixel_format == "yuv420p":
            return Picture(resize_i420(self.data, width, height), "yuv420p")
        return Picture(np.asarray(cv2.resize(self.data, (width, height), interpolation=cv2.INTER_AREA)), "bgr24")

    def scaled(self, width: int | None) -> Picture:
        """This picture no wider than ``width`` (aspect kept, even size), resized in its own format;
        itself when it is narrow enough or ``width`` is None."""
        h, w = self.size
        if width is None or w <= width:
            return self
        return self.resized(width, max(2, round(h * width / w)))
