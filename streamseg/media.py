"""Decoding and encoding through FFmpeg (PyAV): the only module that imports ``av``.

PyAV needs explicit timeouts for network inputs, and its decode loop ends without an error when a
server goes away; callers treat the end of a live stream as a disconnect.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MissingDependencyError


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise MissingDependencyError("av", "video", "video decoding and encoding") from None
    return av


def describe_error(e: BaseException) -> str:
    """FFmpeg's message without the file name PyAV appends (a URL there may hold a password)."""
    strerror = getattr(e, "strerror", None)
    if isinstance(strerror, str) and strerror:
        return strerror
    return str(e).splitlines()[0] if str(e) else type(e).__name__


@dataclass(frozen=True, slots=True)
class StreamInfo:
    width: int
    height: int
    fps: float | None  # nominal rate, when the container states one
    frames: int | None  # frame count, when the container states one


class VideoInput:
    """An opened input: ``info`` and ``frames()`` yielding (BGR image, pts seconds)."""

    def __init__(
        self, target: str, options: dict[str, str] | None = None, timeout: tuple[float, float] | None = None
    ) -> None:
        av = _av()
        self._lock = threading.Lock()
        self._container = av.open(target, mode="r", options=options or {}, timeout=timeout)
        if not self._container.streams.video:
            self._container.close()
            raise ValueError("no video stream in the input")
        self._stream = self._container.streams.video[0]
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.info = StreamInfo(
            width=self._stream.codec_context.width,
            height=self._stream.codec_context.height,
            fps=float(rate) if rate else None,
            frames=int(self._stream.frames) or None,
        )

    def frames(self) -> Iterator[tuple[np.ndarray, float | None]]:
        for frame in self._container.decode(self._stream):
            yield frame.to_ndarray(format="bgr24"), frame.time

    def seek_start(self) -> None:
        self._container.seek(0)

    def close(self) -> None:
        with self._lock:
            if self._container is not None:
                try:
                    self._container.close()
                finally:
                    self._container = None


class VideoEncoder:
    """H.264 in MP4 through libx264; ``close`` flushes the encoder and finalizes the file."""

    def __init__(
        self, path: Path, width: int, height: int, fps: float, crf: int = 23, preset: str = "ultrafast"
    ) -> None:
        av = _av()
        # yuv420p needs even sizes; the last odd row/column is dropped rather than padded.
        self.width, self.height = width - width % 2, height - height % 2
        self._container = av.open(str(path), mode="w")
        rate = Fraction(fps).limit_denominator(1001)
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height = self.width, self.height
        self._stream.pix_fmt = "yuv420p"
        # zerolatency keeps memory flat and lets a killed run leave a file with every frame flushed so far.
        self._stream.options = {"crf": str(crf), "preset": preset, "tune": "zerolatency"}
        self._stream.codec_context.time_base = Fraction(1, 1000)
        self._av = av
        self._last_pts = -1
        self.frames_written = 0

    def write(self, image: np.ndarray, pts_seconds: float) -> None:
        if image.shape[1] != self.width or image.shape[0] != self.height:
            image = image[: self.height, : self.width]
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        pts = max(round(pts_seconds * 1000), self._last_pts + 1)  # strictly increasing
        frame.pts, frame.time_base = pts, Fraction(1, 1000)
        self._last_pts = pts
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        if self._container is None:
            return
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None


def count_frames(path: Path) -> int:
    """Decode every frame of a file and count them (what a player would show)."""
    av = _av()
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def encoder_names() -> dict[str, bool]:
    """Which encoders and decoders streamseg relies on exist in this FFmpeg build."""
    av = _av()
    names = {"libx264": "w", "h264": "r", "hevc": "r", "mjpeg": "r"}
    out = {}
    for name, mode in names.items():
        try:
            av.codec.Codec(name, mode)
            out[f"{name} ({'encode' if mode == 'w' else 'decode'})"] = True
        except Exception:  # PyAV raises UnknownCodecError, not exported on every version
            out[f"{name} ({'encode' if mode == 'w' else 'decode'})"] = False
    return out


def av_version() -> str:
    return str(_av().__version__)
