"""Outputs: video files, JSON Lines statistics, the live view, RTSP, PNG snapshots, a window."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from ..config import DisplayOutput, JsonlOutput, LiveOutput, Output, RtspOutput, SnapshotOutput, VideoOutput
from ..errors import ConfigError
from ..events.config import EventsConfig
from ..metrics import Metrics
from ..server import LiveHub
from .base import Sink

log = logging.getLogger(__name__)


def build_sinks(
    outputs: list[Output],
    class_names: list[str],
    fps_of: Callable[[str], float | None],
    metrics: Metrics,
    hub: LiveHub | None,
    events: EventsConfig | None = None,
    streams: Sequence[str] = (),
) -> list[Sink]:
    """One sink per configured output, then the events output of ``streams`` when ``events`` is
    set; a sink that cannot open raises OutputError."""
    from .display import DisplaySink
    from .jsonl import JsonlSink
    from .live import LiveSink
    from .rtsp import RtspSink
    from .snapshot import SnapshotSink
    from .video import VideoSink

    def build(o: Output) -> Sink:
        if isinstance(o, VideoOutput):
            return VideoSink(o, fps_of, metrics)
        if isinstance(o, JsonlOutput):
            return JsonlSink(o, class_names)
        if isinstance(o, LiveOutput):
            if hub is None:  # the config's cross-check refuses this; a caller building sinks by hand may not
                raise ConfigError("a live output needs http.enabled: true")
            return LiveSink(o, hub, metrics)
        if isinstance(o, SnapshotOutput):
            return SnapshotSink(o)
        if isinstance(o, DisplayOutput):
            return DisplaySink()
        if isinstance(o, RtspOutput):
            return RtspSink(o, fps_of, metrics)
        raise TypeError(f"no sink for {type(o).__name__}")  # a bug: an output model without its sink

    # Outputs that claim a port or a window open first, files after them, and JSON Lines (which
    # truncates its file as it opens) last: a port in use or a bad video path fails the run before
    # any file output has truncated what the previous run left.
    def rank(o: Output) -> int:
        return 2 if isinstance(o, JsonlOutput) else 1 if isinstance(o, VideoOutput | SnapshotOutput) else 0

    order = sorted(range(len(outputs)), key=lambda i: rank(outputs[i]))
    built: dict[int, Sink] = {}
    try:
        for i in order:
            built[i] = build(outputs[i])
        if events is not None:  # last: it appends to its file and connects in the background
            from ..events.sink import EventsSink

            built[len(outputs)] = EventsSink(events, class_names, metrics, list(streams))
    except BaseException:
        for s in built.values():  # each in isolation: the error that stopped the start is the one to report
            try:
                s.close()
            except Exception as e:
                log.error("%s: close after a failed start: %s", s.describe(), e)
        raise
    return [built[i] for i in sorted(built)]


__all__ = ["Sink", "build_sinks"]
