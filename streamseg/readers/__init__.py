"""Readers, one module per source kind of the URI grammar (``uri.SCHEMES``): each opens a stream
and yields its frames. ``READERS`` is the one table ``Source`` opens them through; the kinds in
``GST_KINDS`` may open through GStreamer instead (``streamseg.gst``: decoder gstreamer, or auto
on Jetson), and files and RTSP may be decoded on an NVIDIA GPU (``nvdec``: ``choose_decoder`` says
which, once per stream). Reconnecting, pacing, timestamps and queues are the ``Source``'s, not a reader's."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .base import DeviceReader, Reader
from .camera import open_camera
from .file import open_file
from .nvdec import NVDEC_KINDS, DecoderChoice, choose_decoder, open_nvdec
from .rtsp import open_rtsp
from .synthetic import open_synthetic

if TYPE_CHECKING:
    from ..config import SourceConfig
    from ..uri import SourceURI

# Source kind -> how its reader opens.
READERS: dict[str, Callable[[SourceURI, SourceConfig], Reader]] = {
    "file": open_file,
    "rtsp": open_rtsp,
    "camera": open_camera,
    "synthetic": open_synthetic,
}
GST_KINDS = ("file", "rtsp")

__all__ = [
    "GST_KINDS",
    "NVDEC_KINDS",
    "READERS",
    "DecoderChoice",
    "DeviceReader",
    "Reader",
    "choose_decoder",
    "open_nvdec",
]
