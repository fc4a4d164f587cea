"""The live view's producer: JPEG-encodes each stream's overlay at most ``max_fps`` times a second,
and only while a browser watches (the latest picture is still kept for /stream/NAME.jpg)."""

from __future__ import annotations

import time

import cv2
import numpy as np

from ..config import LiveOutput
from ..frames import SegResult
from ..metrics import Metrics
from ..server import LiveHub
from .base import Sink


class LiveSink(Sink):
    wants_overlay = True

    def __init__(self, cfg: LiveOutput, hub: LiveHub, metrics: Metrics) -> None:
        self.cfg = cfg
        self.hub = hub
        self._last: dict[str, float] = {}
        self._encode = metrics.stage_seconds.labels("encode")
        self._idle_gap = 1.0  # without viewers, refresh the still picture once a second

    def write(self, result: SegResult, overlay: np.ndarray | None) -> None:
        if overlay is None:
            return
        stream = result.frame.stream
        now = time.monotonic()
        gap = 1.0 / self.cfg.max_fps if self.hub.clients else max(self._idle_gap, 1.0 / self.cfg.max_fps)
        if now - self._last.get(stream, -1e9) < gap:
            return
        self._last[stream] = now
        start = time.perf_counter()
        image = overlay
        if self.cfg.width and image.shape[1] > self.cfg.width:
            h = round(image.shape[0] * self.cfg.width / image.shape[1])
            image = cv2.resize(image, (self.cfg.width, h), interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.quality])
        if ok:
            self.hub.publish(stream, jpeg.tobytes())
        self._encode.observe(time.perf_counter() - start)
