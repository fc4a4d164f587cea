"""The live view's producer: JPEG-encodes each stream's overlay at most ``max_fps`` times a second,
and only while a browser watches (the latest picture is still kept for /stream/NAME.jpg)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

import cv2
from pydantic import Field

from ..errors import ConfigError
from ..frames import Picture, SegResult
from .base import OutputConfig, OutputKind, Sink, SinkContext

if TYPE_CHECKING:
    from ..metrics import Metrics
    from ..server import LiveHub


class LiveOutput(OutputConfig):
    type: Literal["live"]
    max_fps: float = Field(10.0, gt=0, le=120, description="MJPEG frames per second per stream")
    quality: int = Field(80, ge=10, le=100, description="JPEG quality")
    width: int | None = Field(None, ge=64, le=7680, description="downscale for the browser; null = as is")


class LiveSink(Sink):
    wants_overlay = True

    def __init__(self, cfg: LiveOutput, hub: LiveHub, metrics: Metrics) -> None:
        self.cfg = cfg
        self.hub = hub
        self._last: dict[str, float] = {}
        self._encode = metrics.stage_seconds.labels("encode")
        self._idle_gap = 1.0  # without viewers, refresh the still picture once a second

    def write(self, result: SegResult, picture: Picture | None) -> None:
        if picture is None:
            return
        stream = result.frame.stream
        now = time.monotonic()
        gap = 1.0 / self.cfg.max_fps if self.hub.viewers() else max(self._idle_gap, 1.0 / self.cfg.max_fps)
        if now - self._last.get(stream, -1e9) < gap:
            return
        self._last[stream] = now
        start = time.perf_counter()
        image = picture.scaled(self.cfg.width).bgr()  # scaled first: the conversion costs pixels
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.quality])
        if ok:
            self.hub.publish(stream, jpeg.tobytes())
        self._encode.observe(time.perf_counter() - start)


def _open(cfg: LiveOutput, ctx: SinkContext) -> LiveSink:
    if ctx.hub is None:  # the config's cross-check refuses this; a caller building sinks by hand may not
        raise ConfigError("a live output needs http.enabled: true")
    return LiveSink(cfg, ctx.hub, ctx.metrics)


KIND = OutputKind(LiveOutput, _open, needs_http=True)
