"""The typed values that travel between stages: Frame -> Batch -> SegResult.

They validate their shapes on construction so a wrong array fails where it is made, with the
expected and actual shape in the message, not three stages later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .zones import ZoneAreas


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded picture of one stream, BGR uint8 (H, W, 3), as the source produced it."""

    stream: str
    index: int  # per-stream sequence number from 0; gaps mean dropped frames
    pts: float  # presentation time in seconds from the stream's start
    capture_time: float  # time.monotonic() when the reader got it, for latency
    wall_time: float  # time.time() at capture, for records people read
    image: np.ndarray

    def __post_init__(self) -> None:
        img = self.image
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(
                f"Frame {self.stream}#{self.index}: expected uint8 (H, W, 3) BGR, got {img.dtype} {img.shape}"
            )


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
