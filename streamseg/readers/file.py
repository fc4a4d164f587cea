"""Files (and anything FFmpeg opens) through PyAV: ``file://`` and paths; RTSP uses the same reader."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..config import SourceConfig
from ..media import VideoInput
from ..uri import SourceURI
from .base import Reader


class AvReader:
    def __init__(self, target: str, options: dict[str, str], timeout: tuple[float, float] | None, loop: bool) -> None:
        # Decoder threads left at FFmpeg's default (slice threading): for the usual unsliced H.264 it
        # decodes on one thread, which costs the least CPU per frame; frame threading lowers the wall
        # time of one stream by spending more CPU and a frame of latency per thread, and streams
        # already decode in parallel, one reader thread each (docs/benchmarks.md, "Decoder threads").
        self._input = VideoInput(target, options, timeout)
        self.fps = self._input.info.fps
        self.frame_count = None if loop else self._input.info.frames  # as the container states it
        self._loop = loop

    def frames(self) -> Iterator[tuple[np.ndarray, float | None]]:
        offset = 0.0
        while True:
            last = None
            for image, pts in self._input.frames(native=True):
                if pts is not None:
                    last = pts
                yield image, None if pts is None else pts + offset
            if not self._loop or last is None:
                return
            offset += last + (1.0 / self.fps if self.fps else 0.04)
            self._input.seek_start()

    def close(self) -> None:
        self._input.close()


def open_file(uri: SourceURI, cfg: SourceConfig) -> Reader:
    return AvReader(uri.target, {}, None, cfg.loop)
