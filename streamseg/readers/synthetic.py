"""``synthetic://``: a deterministic moving disc on a gradient, for tests and benchmarks."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from ..config import SourceConfig
from ..errors import SourceError
from ..uri import SourceURI
from .base import Reader


class SyntheticReader:
    """A deterministic pattern: moving disc (class 'object') on a gradient, for tests and benchmarks."""

    def __init__(self, uri: SourceURI) -> None:
        try:
            self.width = int(uri.param("width", "640") or 640)
            self.height = int(uri.param("height", "360") or 360)
            self.fps: float | None = float(uri.param("fps", "25") or 25)
            frames = uri.param("frames")
            self.count = int(frames) if frames else None
            self.frame_count = self.count
        except ValueError as e:
            raise SourceError(f"synthetic source: bad parameter: {e}") from None
        # Bounded before the base image is allocated: width=100000&height=100000 would be 30 GB.
        if not (16 <= self.width <= 7680 and 16 <= self.height <= 4320 and 0 < self.fps <= 1000):
            raise SourceError(
                "synthetic source: width and height must be >= 16 and fps > 0 (at most 7680x4320, 1000 fps)"
            )
        ramp = np.linspace(40, 200, self.width, dtype=np.float32)
        self._base = np.repeat(np.repeat(ramp[None, :, None], self.height, 0), 3, 2).astype(np.uint8)

    def frames(self) -> Iterator[tuple[np.ndarray, float | None]]:
        i = 0
        while self.count is None or i < self.count:
            yield synthetic_frame(self._base, i), i / (self.fps or 25.0)
            i += 1

    def close(self) -> None:
        pass


def synthetic_frame(base: np.ndarray, i: int) -> np.ndarray:
    img = base.copy()
    h, w = img.shape[:2]
    cx = int((0.2 + 0.6 * ((i * 7) % 100) / 100) * w)
    cv2.circle(img, (cx, h // 2), max(4, h // 5), (30, 30, 220), -1)
    return img


def open_synthetic(uri: SourceURI, cfg: SourceConfig) -> Reader:
    return SyntheticReader(uri)
