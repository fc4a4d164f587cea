"""One URI grammar for sources, dispatched from one table that also produces the help text.

The table maps a scheme to a source kind; ``parse_source_uri`` is the only place that reads a
URI's shape, and ``redact`` the only place that decides what of a URI may be shown to people.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from .errors import ConfigError


@dataclass(frozen=True, slots=True)
class SchemeInfo:
    kind: str
    example: str
    help: str


SCHEMES: dict[str, SchemeInfo] = {
    "rtsp": SchemeInfo(
        "rtsp",
        "rtsp://user:${CAM_PASSWORD}@10.0.0.5:554/stream1",
        "RTSP over TCP, with open/read timeouts, watchdog and reconnect",
    ),
    "rtsps": SchemeInfo("rtsp", "rtsps://camera.local/stream", "RTSP over TLS"),
    "file": SchemeInfo(
        "file", "file:///videos/clip.mp4 or samples/clip.mp4", "a video file (optional loop and real-time pacing)"
    ),
    "v4l2": SchemeInfo("camera", "v4l2:///dev/video0, /dev/video0 or 0", "a local camera"),
    "synthetic": SchemeInfo(
        "synthetic",
        "synthetic://?width=640&height=360&fps=25&frames=100",
        "a deterministic moving pattern for tests and benchmarks",
    ),
}


@dataclass(frozen=True, slots=True)
class SourceURI:
    """A parsed source URI; ``target`` is what the reader opens (never shown to people)."""

    kind: str
    target: str
    params: tuple[tuple[str, str], ...] = ()

    def param(self, key: str, default: str | None = None) -> str | None:
        return dict(self.params).get(key, default)


_DEVICE = re.compile(r"^/dev/video\d+$")


def parse_source_uri(uri: str) -> SourceURI:
    """Classify a source URI; raises ConfigError naming the (redacted) URI when it has no kind."""
    text = uri.strip()
    if not text:
        raise ConfigError("empty source URI")
    if text.isdigit():
        return SourceURI("camera", text)
    if _DEVICE.match(text):
        return SourceURI("camera", text)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if not scheme or (len(scheme) == 1 and text[1:3] in (":\\", ":/")):
        return SourceURI("file", str(Path(text)))
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise ConfigError(f"source '{redact(text)}': unknown scheme '{scheme}' (known: {known})")
    kind = SCHEMES[scheme].kind
    if kind == "file":
        return SourceURI("file", parts.path)
    if kind == "camera":
        return SourceURI("camera", parts.path or parts.netloc)
    if kind == "synthetic":
        return SourceURI("synthetic", "", tuple(parse_qsl(parts.query)))
    return SourceURI(kind, text)


def redact(uri: str) -> str:
    """Return the URI with any password replaced by '***' (user names stay: they help debugging)."""
    try:
        parts = urlsplit(uri)
        password = parts.password
    except ValueError:
        return "<unparseable URI>"
    if password is None:
        return uri
    # host[:port] exactly as written: parts.port raises on a bad port, parts.hostname drops IPv6 brackets.
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


def scrub(text: str, secrets: list[str]) -> str:
    """Remove each secret from free text (e.g. an FFmpeg error message that echoes the URL)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def password_of(uri: str) -> str | None:
    try:
        return urlsplit(uri).password
    except ValueError:
        return None


def help_text() -> str:
    """The source URI grammar, one line per scheme, for `streamseg run --help` and the docs."""
    return "\n".join(f"  {s + '://':<13}{i.help}; e.g. {i.example}" for s, i in SCHEMES.items())
