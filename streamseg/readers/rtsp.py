"""RTSP cameras and servers through PyAV over TCP, with open and read timeouts."""

from __future__ import annotations

from ..config import SourceConfig
from ..uri import SourceURI
from .base import Reader
from .file import AvReader


def open_rtsp(uri: SourceURI, cfg: SourceConfig) -> Reader:
    t = cfg.timeouts
    # TCP: UDP loses packets on busy networks and smears frames.
    return AvReader(uri.target, {"rtsp_transport": "tcp"}, (t.open_s, t.read_s), False, cfg.decode_threads)
