"""What every reader is: the interface ``Source`` reads frames through."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np


class Reader(Protocol):
    """An opened stream: nominal fps (if known) and an iterator of (BGR image, pts or None)."""

    fps: float | None

    def frames(self) -> Iterator[tuple[np.ndarray, float | None]]: ...

    def close(self) -> None: ...
