"""What every reader is: the interface ``Source`` reads frames through."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from ..frames import DeviceImage


class Reader(Protocol):
    """An opened stream: nominal fps (if known) and an iterator of (picture, pts or None); a picture
    is BGR (H, W, 3) or packed I420 (H * 3 / 2, W) as ``frames.pixel_format_of`` tells them apart."""

    fps: float | None

    def frames(self) -> Iterator[tuple[np.ndarray, float | None]]: ...

    def close(self) -> None: ...


@runtime_checkable
class DeviceReader(Reader, Protocol):
    """A reader that can also hand its frames over where it decoded them (NVDEC: torch NV12 tensors
    on the GPU); ``Source`` reads ``device_frames`` instead of ``frames`` when the stage takes them."""

    def device_frames(self) -> Iterator[tuple[DeviceImage, float | None]]: ...
