"""Overlay video per stream: H.264 in MP4, finalized on exit (SIGINT/SIGTERM included)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..config import VideoOutput
from ..errors import OutputError
from ..frames import SegResult
from ..media import VideoEncoder, describe_error
from ..metrics import Metrics
from .base import Sink

log = logging.getLogger(__name__)


class VideoSink(Sink):
    wants_overlay = True

    def __init__(self, cfg: VideoOutput, fps_of: Callable[[str], float | None], metrics: Metrics) -> None:
        self.cfg = cfg
        self._fps_of = fps_of
        self._encoders: dict[str, VideoEncoder] = {}
        self._lock = threading.Lock()
        self._encode = metrics.stage_seconds.labels("encode")
        self.paths: dict[str, Path] = {}

    def path_for(self, stream: str) -> Path:
        return Path(self.cfg.path.replace("{stream}", stream))

    def _encoder(self, stream: str, width: int, height: int) -> VideoEncoder:
        enc = self._encoders.get(stream)
        if enc is None:
            path = self.path_for(stream)
            fps = self.cfg.fps or self._fps_of(stream) or 25.0
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                enc = VideoEncoder(path, width, height, fps, self.cfg.crf, self.cfg.preset)
            except Exception as e:  # FFmpeg raises OSError subclasses and ValueErrors
                raise OutputError(f"video output {path}: cannot open: {describe_error(e)}") from None
            with self._lock:
                self._encoders[stream] = enc
                self.paths[stream] = path
            log.info("writing %s (%dx%d, %.3g fps)", path, width, height, fps)
        return enc

    def write(self, result: SegResult, overlay: np.ndarray | None) -> None:
        if self.cfg.streams is not None and result.frame.stream not in self.cfg.streams:
            return
        image = overlay if overlay is not None else result.frame.image
        enc = self._encoder(result.frame.stream, image.shape[1], image.shape[0])
        start = time.perf_counter()
        try:
            enc.write(image, result.frame.pts)
        except Exception as e:  # FFmpeg errors: disk full, bad size
            raise OutputError(f"video output {self.paths[result.frame.stream]}: {describe_error(e)}") from None
        self._encode.observe(time.perf_counter() - start)

    def close(self) -> None:
        with self._lock:
            encoders = list(self._encoders.items())
            self._encoders.clear()
        for stream, enc in encoders:
            try:
                enc.close()
                log.info("finalized %s (%d frames)", self.paths[stream], enc.frames_written)
            except Exception as e:  # finalize the others even if one fails
                log.error("video output %s: finalize failed: %s", self.paths[stream], describe_error(e))
