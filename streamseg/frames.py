"""The typed values that travel between stages: Frame -> Batch -> SegResult.

They validate their shapes on construction so a wrong array fails where it is made, with the
expected and actual shape in the message, not three stages later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import cv2
import numpy as np

from .yuv import bgr_to_i420, i420_to_bgr, resize_i420

if TYPE_CHECKING:
    from .instances import Instance
    from .zones import ZoneAreas


# How a frame's pixels are laid out. "yuv420p" is I420 as FFmpeg decodes H.264/H.265: the (H, W)
# luma plane, then the (H/2, W/2) U and V planes, packed in one uint8 (H * 3 / 2, W) array (OpenCV's
# COLOR_YUV2BGR_I420 layout). Frames stay in it from the decoder to the encoder: converting a 1080p
# frame to BGR and back costs about a third of the per-frame work (docs/benchmarks.md).
# "nv12_device" is NVDEC's surface left where it was decoded: a torch uint8 (H * 3 / 2, W) tensor,
# the luma plane then the interleaved UV plane (U, V, U, V, ...) of H/2 rows. The GPU stage reads it
# there; anything on the host (the CPU stage, sinks, the worker's overlay) gets it downloaded once
# as packed I420 (``Frame.host_image``).
HostFormat = Literal["bgr24", "yuv420p"]
PixelFormat = Literal["bgr24", "yuv420p", "nv12_device"]


class DeviceImage(Protocol):
    """A picture in a device's memory: what this module needs of a torch tensor, named by its
    attributes so that importing it (and ``streamseg``) never imports torch."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> object: ...

    @property
    def device(self) -> object: ...


Image = np.ndarray | DeviceImage


def is_device_image(image: object) -> bool:
    """True for a tensor-like picture (shape, dtype and device, not a numpy array)."""
    return not isinstance(image, np.ndarray) and all(hasattr(image, a) for a in ("shape", "dtype", "device"))


def pixel_format_of(image: Image) -> PixelFormat:
    """The layout of a reader's picture: a device tensor is NV12, a 2-D array packed I420, 3-D BGR."""
    if not isinstance(image, np.ndarray):
        return "nv12_device"
    return "yuv420p" if image.ndim == 2 else "bgr24"


def frame_size(image: Image, pixel_format: PixelFormat) -> tuple[int, int]:
    """(height, width) of the picture an array or tensor holds."""
    if pixel_format == "bgr24":
        return image.shape[0], image.shape[1]
    return image.shape[0] * 2 // 3, image.shape[1]  # I420 and NV12: both planes of chroma below the luma


def check_image(image: Image, pixel_format: PixelFormat, what: str) -> None:
    """ValueError naming ``what`` when the array (or device tensor) is not a picture in ``pixel_format``."""
    shape = tuple(image.shape)
    # I420/NV12 need even sizes: one chroma sample per 2x2 block of luma. H * 3 / 2 rows for an even
    # H is any multiple of 3 (H = 270 has 405): H / 2 may be odd
    even = len(shape) == 2 and shape[0] % 3 == 0 and shape[1] % 2 == 0
    if pixel_format == "nv12_device":
        # duck-typed: torch's dtype prints as "torch.uint8"
        if is_device_image(image) and str(image.dtype).rsplit(".", 1)[-1] == "uint8" and even:
            return
        got = f"{type(image).__name__} {image.dtype} {shape}"
        raise ValueError(f"{what}: expected a uint8 (H * 3 / 2, W) NV12 device tensor of even H and W, got {got}")
    if isinstance(image, np.ndarray) and image.dtype == np.uint8:
        if pixel_format == "bgr24" and image.ndim == 3 and image.shape[2] == 3:
            return
        if pixel_format == "yuv420p" and even:
            return
    want = "uint8 (H, W, 3) BGR" if pixel_format == "bgr24" else "uint8 (H * 3 / 2, W) I420 of even H and W"
    got = f"{image.dtype} {shape}" if isinstance(image, np.ndarray) else f"{type(image).__name__} {image.dtype} {shape}"
    raise ValueError(f"{what}: expected {want}, got {got}")


def download_nv12(image: DeviceImage) -> np.ndarray:
    """A device NV12 picture as packed I420 in host memory: rearranged on its device (exact), then
    copied over in one transfer."""
    from .readers.nvdec import nv12_to_i420  # torch, only once a device frame exists

    tensor: Any = image  # a torch tensor; this module names no torch type
    return np.ascontiguousarray(nv12_to_i420(tensor).cpu().numpy())


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded picture of one stream, as the source produced it: BGR uint8 (H, W, 3), the
    decoder's own I420 planes (``pixel_format`` "yuv420p"), or NVDEC's NV12 surface still on the
    GPU ("nv12_device": a torch tensor); ``bgr()`` gives host BGR whichever it is."""

    stream: str
    index: int  # per-stream sequence number from 0; gaps mean dropped frames
    pts: float  # presentation time in seconds from the stream's start
    capture_time: float  # time.monotonic() when the reader got it, for latency
    wall_time: float  # time.time() at capture, for records people read
    image: Image
    pixel_format: PixelFormat = "bgr24"
    # a device frame's host copy (I420), made on the first need and shared by everyone after
    _host: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_image(self.image, self.pixel_format, f"Frame {self.stream}#{self.index}")

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the picture."""
        return frame_size(self.image, self.pixel_format)

    @property
    def on_device(self) -> bool:
        """The picture is a device tensor (NV12), not a host array."""
        return self.pixel_format == "nv12_device"

    @property
    def host_format(self) -> HostFormat:
        """The pixel format of ``host_image()``: the frame's own, I420 for a device frame."""
        return "yuv420p" if self.pixel_format == "nv12_device" else self.pixel_format

    def host_image(self) -> np.ndarray:
        """The picture in host memory in ``host_format``: the image itself, or a device frame
        downloaded as I420 on the first call (later calls, from any stage, share that copy)."""
        image = self.image
        if isinstance(image, np.ndarray):
            return image
        host = self._host
        if host is None:
            host = download_nv12(image)
            # frozen for the stages, but this cache is the frame's own; a race only downloads twice
            object.__setattr__(self, "_host", host)
        return host

    def host(self) -> Frame:
        """This frame with its picture in host memory: itself, or for a device frame a copy whose
        image is the I420 download (``host_image``)."""
        if not self.on_device:
            return self
        return Frame(self.stream, self.index, self.pts, self.capture_time, self.wall_time, self.host_image(), "yuv420p")

    def bgr(self) -> np.ndarray:
        """The picture as BGR (H, W, 3): the image itself, or a new array converted from I420 (a
        device frame: from its host copy)."""
        image = self.host_image()
        return image if self.host_format == "bgr24" else i420_to_bgr(image)


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
    instances: tuple[Instance, ...] = ()  # an instance model's detections above its score threshold, by score

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
    own pixel format, in host memory. ``bgr()`` and ``i420()`` convert once and keep the result, so
    outputs that need the other format share one conversion and the rest pay nothing. The picture
    of a device frame (``Picture.of``) is downloaded on first use of its pixels (``data``, ``bgr()``,
    ``i420()``): a run whose outputs never look at them never copies the frame off the GPU. Not for
    use across threads."""

    __slots__ = ("_bgr", "_data", "_frame", "_i420", "pixel_format")

    def __init__(self, data: np.ndarray, pixel_format: HostFormat) -> None:
        check_image(data, pixel_format, "Picture")
        self._data: np.ndarray | None = data
        self._frame: Frame | None = None
        self.pixel_format: HostFormat = pixel_format
        self._bgr: np.ndarray | None = data if pixel_format == "bgr24" else None
        self._i420: np.ndarray | None = data if pixel_format == "yuv420p" else None

    @classmethod
    def of(cls, frame: Frame) -> Picture:
        """The frame's picture as it is (no copy); a device frame's is its host I420, fetched when needed."""
        if not frame.on_device:
            return cls(frame.host_image(), frame.host_format)
        picture = cls.__new__(cls)
        picture._data = picture._bgr = picture._i420 = None
        picture._frame = frame
        picture.pixel_format = frame.host_format
        return picture

    @property
    def data(self) -> np.ndarray:
        """The pixels in ``pixel_format``. Writes go into the picture (and, for a frame's, the frame)."""
        if self._data is None:
            assert self._frame is not None  # only Picture.of leaves the data to fetch
            self._data = self._i420 = self._frame.host_image()
        return self._data

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        if self._data is None and self._frame is not None:
            return self._frame.size  # no download for a size
        return frame_size(self.data, self.pixel_format)

    def bgr(self) -> np.ndarray:
        """BGR (H, W, 3); for an I420 picture a new array, made on the first call. Do not write to it."""
        if self._bgr is None:
            self._bgr = i420_to_bgr(self.data)
        return self._bgr

    def i420(self) -> np.ndarray:
        """Packed I420 (even size; a BGR picture's odd last row or column is dropped). Do not write to it."""
        if self._i420 is None:
            self._i420 = self.data if self.pixel_format == "yuv420p" else bgr_to_i420(self.data)
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
