"""GStreamer decoding, for hardware decoders (Jetson's nvv4l2decoder + nvvidconv): the only
module that imports ``gi``.

PyGObject comes from the system (Debian/Ubuntu/JetPack package ``python3-gi``), not from pip, so
a venv that cannot import ``gi`` retries with the system's dist-packages folder.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from .errors import MissingDependencyError, SourceError

SYSTEM_DIST_PACKAGES = "/usr/lib/python3/dist-packages"
_lock = threading.Lock()
_gst: Any = None


def _gst_module() -> Any:
    global _gst
    with _lock:
        if _gst is not None:
            return _gst
        try:
            gi = importlib.import_module("gi")
        except ImportError:
            sys.path.append(SYSTEM_DIST_PACKAGES)
            try:
                gi = importlib.import_module("gi")
            except ImportError:
                raise MissingDependencyError(
                    "gi", "gstreamer", "GStreamer decoding (apt-get install python3-gi gstreamer1.0-plugins-base)"
                ) from None
            finally:
                sys.path.remove(SYSTEM_DIST_PACKAGES)
        gi.require_version("Gst", "1.0")
        from gi.repository import Gst

        Gst.init(None)
        _gst = Gst
        return Gst


def has_element(name: str) -> bool:
    try:
        return _gst_module().ElementFactory.find(name) is not None
    except MissingDependencyError:
        return False


def hardware_decoder() -> str | None:
    """The hardware decode chain this host offers, if any (Jetson: nvv4l2decoder + nvvidconv)."""
    if has_element("nvv4l2decoder") and has_element("nvvidconv"):
        return "nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx"
    return None


def pipeline_string(kind: str, target: str, hardware: str | None, latency_ms: int = 200) -> str:
    """The decode pipeline ending in an appsink named 'sink' that yields BGR frames.

    ``parsebin`` finds the depayloader/demuxer and parser for H.264 or H.265; with ``hardware``
    the decoder is Jetson's, otherwise ``decodebin`` picks a software one.
    """
    if kind == "rtsp":
        src = f'rtspsrc location="{target}" protocols=tcp latency={latency_ms} drop-on-latency=true'
    elif kind == "file":
        src = f'filesrc location="{target}"'
    else:
        raise SourceError(f"GStreamer decoding supports rtsp and file sources, not {kind}")
    decode = f"parsebin ! {hardware}" if hardware else "decodebin"
    return (
        f"{src} ! {decode} ! videoconvert ! video/x-raw,format=BGR ! "
        "appsink name=sink max-buffers=4 drop=false sync=false emit-signals=false"
    )


class GstReader:
    """A source reader over a GStreamer pipeline (same interface as the FFmpeg reader)."""

    def __init__(self, kind: str, target: str, read_timeout_s: float, hardware: str | None) -> None:
        gst = _gst_module()
        self._gst = gst
        self._pipeline = gst.parse_launch(pipeline_string(kind, target, hardware))
        self._sink = self._pipeline.get_by_name("sink")
        self._timeout_ns = int(read_timeout_s * 1e9)
        self.fps: float | None = None
        if self._pipeline.set_state(gst.State.PLAYING) == gst.StateChangeReturn.FAILURE:
            try:
                self._raise_bus_error()
            finally:
                self.close()
            raise SourceError("GStreamer could not start the decode pipeline")

    def frames(self) -> Iterator[tuple[np.ndarray, float | None]]:
        gst = self._gst
        while True:
            sample = self._sink.emit("try-pull-sample", self._timeout_ns)
            if sample is None:
                self._raise_bus_error()
                return  # end of stream or read timeout: the caller treats both as an end
            caps = sample.get_caps().get_structure(0)
            width, height = caps.get_value("width"), caps.get_value("height")
            if self.fps is None:
                ok, num, den = caps.get_fraction("framerate")
                self.fps = num / den if ok and den and num else None
            buf = sample.get_buffer()
            ok, info = buf.map(gst.MapFlags.READ)
            if not ok:
                raise SourceError("GStreamer buffer could not be mapped")
            try:
                stride = len(info.data) // height
                image = np.frombuffer(info.data, np.uint8).reshape(height, stride)[:, : width * 3]
                image = image.reshape(height, width, 3).copy()
            finally:
                buf.unmap(info)
            pts = None if buf.pts == gst.CLOCK_TIME_NONE else buf.pts / 1e9
            yield image, pts

    def _raise_bus_error(self) -> None:
        gst = self._gst
        msg = self._pipeline.get_bus().pop_filtered(gst.MessageType.ERROR)
        if msg is not None:
            err, _debug = msg.parse_error()
            raise SourceError(f"GStreamer: {err.message}")

    def close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.set_state(self._gst.State.NULL)
            self._pipeline = None
