"""``streamseg init``: a commented starter pipeline for a file, a camera, an RTSP camera or the
synthetic pattern, with the bundled model, so a pip install can start without the checkout."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ConfigError, OutputError
from .uri import parse_source_uri

KINDS = ("file", "camera", "rtsp", "synthetic")

DEFAULT_URIS = {
    "file": "samples/bikes.mp4",
    "camera": "/dev/video0",
    "rtsp": "rtsp://${CAM_USER:-admin}:${CAM_PASSWORD}@192.168.1.10:554/stream1",
    "synthetic": "synthetic://?width=640&height=360&fps=25&frames=250",
}

_HEADER = """\
# streamseg pipeline: @WHAT@.
# Written by `streamseg init`; every key is checked (an unknown or misspelt key is an error).
#   streamseg validate @PATH@     check it without running
#   streamseg run @PATH@          run it; Ctrl-C stops and finalizes the outputs
# Relative paths are taken from the directory you run streamseg in.
@NOTE@name: @NAME@
sources:                            # name: used in metrics, records and output file names
  - name: @STREAM@
    uri: @URI@
"""

_SOURCE = {
    "file": """\
    realtime: false                 # true: pace frames at the clip's rate (to watch the live view)
    loop: false                     # true: start again at the end (runs until Ctrl-C)
""",
    "camera": """\
    fps: 15                         # take at most 15 frames a second
    timeouts: {open_s: 10, read_s: 5, watchdog_s: 5}
    reconnect: {initial_s: 0.5, max_s: 5}
""",
    "rtsp": """\
    fps: 15                         # take at most 15 frames a second from the camera
    timeouts: {open_s: 10, read_s: 5, watchdog_s: 5}   # no frame for watchdog_s: reconnect
    reconnect: {initial_s: 0.5, max_s: 5}             # back-off between attempts
""",
    "synthetic": """\
    # frames=N in the uri ends the stream after N frames (without it: until Ctrl-C)
    realtime: false                 # true: pace at fps like a camera; false: as fast as it runs
""",
}

_BODY = """\
model:
  path: selfie_landscape            # the bundled model (streamseg models), or a sidecar .json path
  backend: auto                     # first available of tensorrt, torch, onnxruntime
  device: auto                      # auto | cpu | cuda
batch:
  max_batch: 4                      # frames of all streams share one inference call...
  max_wait_ms: 10                   # ...but none waits longer than this for company
overlay:
  mode: blend                       # blend | mask | side-by-side
  alpha: 0.5
outputs:
  - type: video                     # H.264 MP4 per stream, fragmented: a crash loses about 1 s
    path: out/{stream}.mp4
    # path: rec/{stream}/{start}.mp4  # NVR-style: {start} (UTC) or {index} in the file name, and
    # segment_s: 600                  # a new file every 10 minutes of video,
    # retention: {max_files: 144}     # the oldest deleted (also max_bytes, max_age_s)
  - type: jsonl                     # one JSON record per frame: class areas, latency
    path: out/stats.jsonl
  - type: live                      # MJPEG live view on the http server below
    max_fps: 10
http:                               # /metrics (Prometheus), /healthz and the live view
  host: 127.0.0.1                   # loopback only; 0.0.0.0 exposes it to the network
  port: 8080                        # 0 picks a free port (logged)
"""

_WHAT = {
    "file": "a video file through the bundled model",
    "camera": "a local camera (V4L2) through the bundled model",
    "rtsp": "an RTSP camera through the bundled model",
    "synthetic": "the synthetic test pattern through the bundled model (no camera or file needed)",
}

_NOTES = {
    "file": "# The demo clip: streamseg fetch-sample (writes samples/bikes.mp4); or put your own file in uri.\n",
    "rtsp": "# Credentials come from the environment, never from this file:\n"
    "#   export CAM_USER=viewer CAM_PASSWORD=...\n"
    "# Passwords are never logged, put in a metric label or shown on the live page.\n",
}


def _kind_of(uri: str) -> str:
    kind = parse_source_uri(uri).kind
    return kind if kind in KINDS else "file"


def starter_pipeline(kind: str | None = None, uri: str | None = None, path: str = "pipeline.yaml") -> str:
    """The YAML text of a starter pipeline; ``kind`` defaults to the kind of ``uri``, else file."""
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"usage: --source must be one of {', '.join(KINDS)}, got '{kind}'")
    if uri is not None:
        found = _kind_of(uri)  # raises ConfigError for an unknown scheme
        if kind is not None and found != kind:
            raise ConfigError(f"usage: --uri is a {found} URI but --source is {kind}")
        kind = found
    kind = kind or "file"
    uri = uri if uri is not None else DEFAULT_URIS[kind]
    stream = {"file": "clip", "camera": "camera", "rtsp": "entrance", "synthetic": "pattern"}[kind]
    header = (
        _HEADER.replace("@WHAT@", _WHAT[kind])
        .replace("@PATH@", path)
        .replace("@NOTE@", _NOTES.get(kind, ""))
        .replace("@NAME@", kind)
        .replace("@STREAM@", stream)
        .replace("@URI@", json.dumps(uri))  # a JSON string is a valid YAML scalar, whatever the URI holds
    )
    return header + _SOURCE[kind] + _BODY


def has_literal_password(uri: str) -> bool:
    """True when a URI carries a password written out rather than as ${VAR}."""
    try:
        password = urlsplit(uri).password
    except ValueError:
        return False
    return bool(password) and "${" not in (password or "")


def write_starter(path: Path, kind: str | None, uri: str | None, force: bool) -> str:
    """Write the starter pipeline to ``path``; refuses to replace a file unless ``force``."""
    text = starter_pipeline(kind, uri, str(path))
    if path.exists() and not force:
        raise ConfigError(f"{path}: already exists (use --force to overwrite it)")
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise OutputError(f"{path}: cannot write: {e.strerror or e}") from None
    return text
