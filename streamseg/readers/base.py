"""What every reader is: the interface ``Source`` reads frames through."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np


class Reader(Protocol):
    """An opened stream: nominal fps (if known) and an iterator of (picture, pts or None); a picture
    is BGR (H, W, 3) or packed I420 (H * 3 / 2, W) as ``frames.pixel_format_of`` tells them apart."""

    fps: float | None

    def frames(self) -> Iterator[tuple[np.ndarray, float | None]]: ...

    def close(self) -> None: ...
