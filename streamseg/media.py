"""Decoding and encoding through FFmpeg (PyAV): the only module that imports ``av``.

PyAV needs explicit timeouts for network inputs, and its decode loop ends without an error when a
server goes away; callers treat the end of a live stream as a disconnect.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ._deps import require
from .encoders import X264, EncoderChoice

X264_CHOICE = EncoderChoice(X264, "libx264")  # what callers that do not choose get


def _av() -> Any:
    return require("av", None, "video decoding and encoding")  # a base dependency


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
        self,
        target: str,
        options: dict[str, str] | None = None,
        timeout: tuple[float, float] | None = None,
        threads: int | None = None,
    ) -> None:
        av = _av()
        self._lock = threading.Lock()
        self._container = av.open(target, mode="r", options=options or {}, timeout=timeout)
        if not self._container.streams.video:
            self._container.close()
            raise ValueError("no video stream in the input")
        self._stream = self._container.streams.video[0]
        if threads is not None:
            # 0: FFmpeg picks (one per core, frame and slice threading; a frame of latency per
            # thread); 1: none. With several streams per core one thread each wastes least.
            self._stream.thread_type = "AUTO" if threads != 1 else "NONE"
            self._stream.codec_context.thread_count = threads
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.info = StreamInfo(
            width=self._stream.codec_context.width,
            height=self._stream.codec_context.height,
            fps=float(rate) if rate else None,
            frames=int(self._stream.frames) or None,
        )

    def frames(self, native: bool = False) -> Iterator[tuple[np.ndarray, float | None]]:
        """(picture, pts seconds) per frame: BGR (H, W, 3); with ``native``, the decoder's own I420
        planes (uint8 (H * 3 / 2, W), see ``streamseg.yuv``) whenever they are what ``streamseg.yuv``
        converts exactly (``_plain_i420``), which skips a full-resolution colour conversion per
        frame. Other frames are converted to BGR by FFmpeg, by their own colour tags, as before."""
        for frame in self._container.decode(self._stream):
            if native and _plain_i420(frame):
                yield frame.to_ndarray(format="yuv420p"), frame.time
            else:
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


def _video_frame(av: Any, image: np.ndarray, pixel_format: str, width: int, height: int) -> Any:
    """An ``av.VideoFrame`` of a picture for an encoder of (even) ``width`` x ``height``. An I420
    picture goes in as it is (x264 encodes I420: nothing to convert); BGR loses an odd last
    row/column and FFmpeg converts it."""
    if pixel_format == "yuv420p":
        if image.shape != (height * 3 // 2, width):
            raise ValueError(
                f"encoder of {width}x{height}: got an I420 picture of {image.shape[1]}x{image.shape[0] * 2 // 3}"
            )
        return av.VideoFrame.from_ndarray(image, format="yuv420p")
    if image.shape[1] != width or image.shape[0] != height:
        image = image[:height, :width]
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")


# AVColorSpace values whose matrix is BT.601, streamseg.yuv's (and OpenCV's): unspecified, which
# FFmpeg's own BGR conversion also treats as BT.601, BT470BG and SMPTE170M.
_BT601_SPACES = frozenset({2, 5, 6})
_FULL_RANGE = 2  # AVCOL_RANGE_JPEG


def _plain_i420(frame: Any) -> bool:
    """4:2:0 at an even size in studio-swing BT.601. A stream tagged BT.709 (common for HD cameras)
    or full range (MJPEG, some HEVC) keeps today's BGR path: converting it with BT.601 would move
    saturated colours by up to ~20 levels, and the model would see other colours than before."""
    return (
        frame.format.name == "yuv420p"
        and frame.width % 2 == 0
        and frame.height % 2 == 0
        and int(frame.colorspace) in _BT601_SPACES
        and int(frame.color_range) != _FULL_RANGE
    )


class VideoEncoder:
    """H.264 in MP4 through libx264; ``close`` flushes the encoder and finalizes the file.

    ``fragmented`` writes a fragmented MP4: an empty index up front, then one self-contained fragment
    (moof + mdat) per keyframe, flushed to the file as soon as the next keyframe starts. A process
    killed with SIGKILL leaves a file that plays up to the last whole fragment, about ``keyframe_s``
    before the kill; ``close`` still finalizes it normally. A standard MP4 writes its index (moov) only
    in ``close`` and decodes 0 frames ("moov atom not found") when the process dies first.

    ``fsync_s`` forces what was written onto the disk at least that often (and on close), so a power
    loss costs at most about ``fsync_s + keyframe_s`` seconds instead of what the OS had not yet
    written back (up to ~30 s on Linux).
    """

    # empty_moov: index before the first sample; frag_keyframe: a fragment starts at every keyframe,
    # so each one decodes on its own; default_base_moof: offsets relative to each fragment, what
    # browsers (MSE) and DASH players want.
    FRAGMENTED_MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        fps: float,
        crf: int = 23,
        preset: str = "ultrafast",
        *,
        fragmented: bool = True,
        keyframe_s: float | None = 1.0,
        fsync_s: float | None = None,
        codec: EncoderChoice | None = None,
        threads: int = 0,
    ) -> None:
        av = _av()
        codec = codec or X264_CHOICE
        # yuv420p needs even sizes; the last odd row/column is dropped rather than padded.
        self.width, self.height = width - width % 2, height - height % 2
        self.path = path
        self.fragmented = fragmented
        # FFmpeg's file output sits behind a write buffer (256 KiB in this build) that goes to disk
        # only when full: without flush_packets a killed low-rate run leaves just the 28-byte ftyp,
        # fragments and all. The muxer holds a fragment in memory until it is whole, so flushing
        # after each packet costs one write() per fragment, not per frame.
        options = {"movflags": self.FRAGMENTED_MOVFLAGS, "flush_packets": "1"} if fragmented else {}
        self._container = av.open(str(path), mode="w", container_options=options)
        rate = Fraction(fps).limit_denominator(1001)
        self.codec = codec.name
        self._stream = self._container.add_stream(codec.name, rate=rate)
        self._stream.width, self._stream.height = self.width, self.height
        self._stream.pix_fmt = "yuv420p"
        # zerolatency: no lookahead and no B-frames, so a frame is in a packet as soon as it is encoded
        # and memory stays flat.
        options = codec.options(crf, fast=preset in ("ultrafast", "superfast"))
        if not codec.hardware:
            options["preset"] = preset
            # 0: x264's choice (slice threads, one per core under zerolatency); 1 wastes least
            # CPU when the streams outnumber the cores (docs/benchmarks.md)
            options["threads"] = str(threads)
        self._stream.options = options
        if keyframe_s is not None:
            self._stream.codec_context.gop_size = max(1, round(fps * keyframe_s))
        self._stream.codec_context.time_base = Fraction(1, 1000)
        self._av = av
        self._last_pts = -1
        self._fsync_s = fsync_s
        self._synced = time.monotonic()
        self.frames_written = 0

    def write(self, image: np.ndarray, pts_seconds: float, pixel_format: str = "bgr24") -> None:
        """Encode one picture: BGR (converted to I420 by FFmpeg) or packed I420, taken as it is."""
        frame = _video_frame(self._av, image, pixel_format, self.width, self.height)
        pts = max(round(pts_seconds * 1000), self._last_pts + 1)  # strictly increasing
        frame.pts, frame.time_base = pts, Fraction(1, 1000)
        self._last_pts = pts
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1
        if self._fsync_s is not None and time.monotonic() - self._synced >= self._fsync_s:
            self._sync()

    def _sync(self) -> None:
        """fsync the file through a descriptor of our own (PyAV does not expose FFmpeg's)."""
        self._synced = time.monotonic()
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._container is None:
            return
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None
        if self._fsync_s is not None:
            self._sync()


class PacketEncoder:
    """H.264 packets without a file, for a ring buffer of encoded video (event clips): memory holds
    seconds of compressed video, not raw frames. A keyframe is forced every ``keyframe_s`` of pts
    (SPS/PPS repeated in each), so a clip can start at any keyframe in the buffer."""

    def __init__(
        self, width: int, height: int, crf: int = 28, keyframe_s: float = 1.0, codec: EncoderChoice | None = None
    ) -> None:
        av = _av()
        codec = codec or X264_CHOICE
        self.width, self.height = width - width % 2, height - height % 2
        ctx = av.CodecContext.create(codec.name, "w")
        ctx.width, ctx.height, ctx.pix_fmt = self.width, self.height, "yuv420p"
        ctx.time_base = Fraction(1, 1000)
        ctx.gop_size = 10_000  # keyframes come from keyframe_s on the pts clock, whatever the frame rate
        options = codec.options(crf)
        if not codec.hardware:
            options["threads"] = "1"  # clips are small (640 wide by default) and run for every stream, always
        ctx.options = options
        self._ctx = ctx
        self._av = av
        self._keyframe_s = keyframe_s
        self._last_key: float | None = None
        self._last_pts = -1

    def encode(self, image: np.ndarray, pts_seconds: float, pixel_format: str = "bgr24") -> list[Any]:
        """Encode one picture (BGR or packed I420); returns the packets it completed (``av.Packet``,
        pts in ms)."""
        frame = _video_frame(self._av, image, pixel_format, self.width, self.height)
        pts = max(round(pts_seconds * 1000), self._last_pts + 1)
        frame.pts, frame.time_base = pts, Fraction(1, 1000)
        self._last_pts = pts
        if self._last_key is None or pts_seconds - self._last_key >= self._keyframe_s - 1e-6:
            frame.pict_type = self._av.video.frame.PictureType.I
            self._last_key = pts_seconds
        return list(self._ctx.encode(frame))


class PacketWriter:
    """An MP4 of packets from a ``PacketEncoder``, starting at a keyframe; pts shifted to start at 0."""

    def __init__(self, path: Path, width: int, height: int) -> None:
        av = _av()
        self.path = path
        self._container = av.open(str(path), mode="w")
        self._stream = self._container.add_stream("h264", rate=25)
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
        self._stream.time_base = Fraction(1, 1000)
        self._av = av
        self._base: int | None = None
        self.last_pts = -1
        self.packets = 0

    def write(self, packet: Any) -> None:
        """Mux one packet; the first must be a keyframe (the caller starts the clip at one)."""
        if self._base is None:
            self._base = packet.dts if packet.dts is not None else packet.pts
        # a copy: the same packet goes to other clips of the stream, each with its own base
        p = self._av.Packet(bytes(packet))
        p.pts = packet.pts - self._base
        p.dts = (packet.dts if packet.dts is not None else packet.pts) - self._base
        p.time_base = Fraction(1, 1000)
        p.is_keyframe = packet.is_keyframe
        p.stream = self._stream
        self._container.mux(p)
        self.last_pts = p.pts
        self.packets += 1

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


def count_frames(path: Path) -> int:
    """Decode every frame of a file and count them (what a player would show). A packet that does
    not decode is skipped, as players skip it: a file cut by SIGKILL in the middle of writing a
    fragment ends in a truncated sample."""
    av = _av()
    n = 0
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        for packet in c.demux(stream):
            try:
                n += len(stream.codec_context.decode(packet))
            except av.error.InvalidDataError:
                continue
    return n


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
