"""Overlay streams served over RTSP (H.264), for VLC, ffplay, NVRs and other pipelines.

The server is GStreamer's gst-rtsp-server (``streamseg.gst``, the only module that imports
``gi``). A stream's mount appears with its first overlay, at that overlay's size rounded down to
even numbers (H.264 in I420 needs them; an odd 853x480 is published as 852x480); later frames of
another size (a camera that reconnected at a new resolution) are resized to it, because a
viewer's decoder was configured for the first. A stream added while running gets its mount the
same way; a removed one's mount stays, without frames, until the server stops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ..frames import Picture, SegResult
from ..gst import RtspServer, even_size  # gi itself loads only when a server starts
from ..schema import MAX_FPS
from .base import OutputConfig, OutputKind, Sink

if TYPE_CHECKING:
    from ..metrics import Metrics

log = logging.getLogger(__name__)


class RtspOutput(OutputConfig):
    type: Literal["rtsp"]
    host: str = Field("127.0.0.1", description="bind address; loopback unless you mean it")
    port: int = Field(8554, ge=0, le=65535, description="RTSP port; 0 picks a free one (logged)")
    bitrate_kbps: int = Field(4000, ge=100, le=100_000, description="x264 target bitrate per stream")
    fps: float | None = Field(
        None, gt=0, le=MAX_FPS, description="nominal rate in the stream's caps; default: the source's"
    )
    streams: list[str] | None = Field(None, description="only these streams; null = all")
    width: int | None = Field(
        None, ge=64, le=7680, description="scale down to this width (height in proportion) before encoding"
    )
    max_fps: float | None = Field(
        None, gt=0, le=MAX_FPS, description="send at most this many frames a second (by the stream's clock)"
    )

    def selected_streams(self) -> list[str] | None:
        return self.streams


class RtspSink(Sink):
    wants_overlay = True

    def __init__(self, cfg: RtspOutput, fps_of: Callable[[str], float | None], metrics: Metrics) -> None:
        self.cfg = cfg
        self._fps_of = fps_of
        self._encode = metrics.stage_seconds.labels("encode")
        self._viewers = metrics.rtsp_viewers
        self._counted: set[str] = set()  # streams whose viewer gauge reads the server
        self._next_due: dict[str, float] = {}  # max_fps: per stream, the pts of the next frame to send
        self.server = RtspServer(cfg.host, cfg.port)

    def write(self, result: SegResult, picture: Picture | None) -> None:
        stream = result.frame.stream
        if self.cfg.streams is not None and stream not in self.cfg.streams:
            return
        picture = picture or Picture.of(result.frame)
        size = self.server.size(stream)
        if size is None:
            ph, pw = picture.size
            if self.cfg.width is not None and pw > self.cfg.width:  # the size scaled() will give
                ph, pw = max(2, round(ph * self.cfg.width / pw)), self.cfg.width
            w, h = even_size(pw, ph)
            fps = self.cfg.fps or self._fps_of(stream) or 25.0
            if self.cfg.max_fps is not None:  # the caps' rate and the keyframe interval follow what is sent
                fps = min(fps, self.cfg.max_fps)
            url = self.server.publish(stream, w, h, fps, self.cfg.bitrate_kbps)
            log.info("rtsp output: stream %s at %s (%dx%d, %.3g fps)", stream, url, w, h, fps)
            size = (w, h)
        if stream not in self._counted:  # again after a removal took the series away
            self._counted.add(stream)
            self._viewers.labels(stream).set_function(lambda: self.server.clients(stream))
        if not self.server.viewers(stream):
            return  # nobody watches: no scaling, no encoding
        if not self._due(stream, result.frame.pts):
            return
        start = time.perf_counter()
        picture = picture.scaled(self.cfg.width)
        h, w = picture.size
        if not (0 <= w - size[0] <= 1 and 0 <= h - size[1] <= 1):
            picture = picture.resized(*size)  # a camera back at another size: the viewers' decoders know the first
        self.server.push(stream, picture.i420())  # an odd BGR size loses its last row/column here
        self._encode.observe(time.perf_counter() - start)

    def _due(self, stream: str, pts: float) -> bool:
        """max_fps: one frame per 1/max_fps of the stream's clock; a clock that went back restarts."""
        if self.cfg.max_fps is None:
            return True
        gap = 1.0 / self.cfg.max_fps
        due = self._next_due.get(stream)
        if due is not None and due - 2 * gap <= pts < due - 1e-6:
            return False
        ok_grid = due is not None and due - 2 * gap <= pts < due + gap
        self._next_due[stream] = due + gap if ok_grid and due is not None else pts + gap
        return True

    def close_stream(self, stream: str) -> None:
        # The mount stays (gst-rtsp-server would cut its viewers); added again, the stream
        # publishes to it at its first size.
        self._counted.discard(stream)

    def close(self) -> None:
        self.server.close()


KIND = OutputKind(RtspOutput, lambda cfg, ctx: RtspSink(cfg, ctx.fps_of, ctx.metrics))
