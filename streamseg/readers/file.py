"""Files (and anything FFmpeg opens) through PyAV: ``file://`` and paths; RTSP uses the same reader."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..config import SourceConfig
from ..media import VideoInput
from ..uri import SourceURI
from .base import Reader


class AvReader:
    def __init__(
        self, target: str, options: dict[str, str], timeout: tuple[float, float] | None, loop: bool, threads: int = 1
    ) -> None:
        # threads: the source's decode_threads (1 by default: docs/benchmarks.md, "Decoder threads")
        self._input = VideoInput(target, options, timeout, threads=threads)
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
    return AvReader(uri.target, {}, None, cfg.loop, cfg.decode_threads)
