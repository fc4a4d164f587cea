"""Event clips: an H.264 MP4 from ``pre_s`` before an event's start to ``post_s`` after its end.

Each stream with rules keeps a ring buffer of *encoded* packets (``media.PacketEncoder``, a keyframe
every ``keyframe_s``), pruned to the newest keyframe at least ``pre_s`` old, so memory holds
seconds of compressed video, never raw frames. A start opens ``{path}/{stream}/{id}.mp4``, writes
the buffer from that keyframe, then every new packet until ``post_s`` after the end: the clip
begins between ``pre_s`` and ``pre_s + keyframe_s`` before the start. Encoding runs on the stream's
output worker, like the video output (x264 ultrafast at ``width``).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..encoders import choose_h264
from ..frames import Picture
from ..media import PacketEncoder, PacketWriter, describe_error

log = logging.getLogger(__name__)


class ClipConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    path: str = Field("out/events", min_length=1, description="folder for clips: {stream}/{id}.mp4 in it")
    pre_s: float = Field(5.0, ge=0, le=120, description="seconds of video before the start (from the buffer)")
    post_s: float = Field(5.0, ge=0, le=600, description="seconds of video after the end")
    width: int | None = Field(640, ge=64, le=7680, description="downscale to this width; null = as is")
    crf: int = Field(28, ge=0, le=51, description="x264 quality (lower is better)")
    keyframe_s: float = Field(1.0, ge=0.1, le=10, description="keyframe interval: the clip starts at one")


@dataclass
class _Clip:
    writer: PacketWriter
    stop_at: float | None = None  # pts after which the clip is finalized (set by the end)


class StreamClips:
    """One stream's packet ring and the clips being written from it."""

    def __init__(self, cfg: ClipConfig, stream: str, failed: Any) -> None:
        self.cfg = cfg
        self.stream = stream
        self._failed = failed
        self._encoder: PacketEncoder | None = None
        self._ring: deque[tuple[float, Any]] = deque()
        self._open: dict[str, _Clip] = {}
        self._last_pts: float | None = None
        self.done: list[Path] = []

    def frame(self, picture: Picture, pts: float) -> None:
        """Encode one frame into the ring and the open clips; finalize clips past their end."""
        if self._last_pts is not None and pts < self._last_pts:  # the stream's clock restarted
            self.close()
            self._encoder, self._ring = None, deque()
        self._last_pts = pts
        small = picture.scaled(self.cfg.width)
        enc = self._encoder
        if enc is not None:
            h, w = small.size
            if not (0 <= w - enc.width <= 1 and 0 <= h - enc.height <= 1):
                # a camera back at another size: the ring's packets and open clips are of the first
                small = small.resized(enc.width, enc.height)
        height, width = small.size
        try:
            if enc is None:
                codec = choose_h264("auto")
                enc = self._encoder = PacketEncoder(width, height, self.cfg.crf, self.cfg.keyframe_s, codec)
            # what x264 takes: no conversion at all for decoded video
            packets = enc.encode(small.i420(), pts, "yuv420p")
        except Exception as e:  # FFmpeg: this stream's clips start over with a new encoder, events go on
            self.close()
            self._encoder, self._ring = None, deque()
            self._fail(f"encoding: {describe_error(e)}")
            return
        for p in packets:
            self._ring.append((pts, p))
            for cid, clip in list(self._open.items()):
                self._write(cid, clip, p)
        self._prune(pts)
        for cid, clip in list(self._open.items()):
            if clip.stop_at is not None and pts >= clip.stop_at:
                self._finish(cid)

    def _prune(self, now: float) -> None:
        cutoff = now - self.cfg.pre_s
        ring = self._ring
        while True:  # drop up to the newest keyframe that is still at or before the cutoff
            k = next((i for i in range(1, len(ring)) if ring[i][1].is_keyframe), None)
            if k is None or ring[k][0] > cutoff:
                return
            for _ in range(k):
                ring.popleft()

    def start(self, event_id: str) -> Path | None:
        """Open a clip for an event that starts now; returns its path (being written)."""
        if self._encoder is None:
            return None
        path = Path(self.cfg.path) / self.stream / f"{event_id}.mp4"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            clip = _Clip(PacketWriter(path, self._encoder.width, self._encoder.height))
        except Exception as e:
            self._fail(f"{path}: {describe_error(e)}")
            return None
        self._open[event_id] = clip
        first = next((i for i, (_, p) in enumerate(self._ring) if p.is_keyframe), None)
        for _, p in list(self._ring)[first:] if first is not None else []:
            self._write(event_id, clip, p)
        return path

    def end(self, event_id: str, pts: float) -> None:
        clip = self._open.get(event_id)
        if clip is not None:
            clip.stop_at = pts + self.cfg.post_s

    def _write(self, cid: str, clip: _Clip, packet: Any) -> None:
        try:
            clip.writer.write(packet)
        except Exception as e:
            self._fail(f"{clip.writer.path}: {describe_error(e)}")
            self._finish(cid)

    def _finish(self, cid: str) -> None:
        clip = self._open.pop(cid)
        try:
            clip.writer.close()
            self.done.append(clip.writer.path)
        except Exception as e:
            self._fail(f"{clip.writer.path}: {describe_error(e)}")

    def _fail(self, what: str) -> None:
        self._failed.inc()
        log.error("events: clip of stream %s: %s", self.stream, what)

    def close(self) -> None:
        """Finalize every open clip as it is (the stream ended before post_s passed)."""
        for cid in list(self._open):
            self._finish(cid)
