"""Outputs: video files, JSON Lines statistics, the live view, RTSP, PNG snapshots, a window."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .base import Sink, SinkContext
from .registry import kind_of

if TYPE_CHECKING:
    from ..config import Output
    from ..events.config import EventsConfig
    from ..metrics import Metrics
    from ..server import LiveHub

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
    ctx = SinkContext(class_names, fps_of, metrics, hub)
    # Outputs that claim a port or a window open first, files after them, and JSON Lines (which
    # truncates its file as it opens) last: a port in use or a bad video path fails the run before
    # any file output has truncated what the previous run left.
    order = sorted(range(len(outputs)), key=lambda i: kind_of(outputs[i]).rank)
    built: dict[int, Sink] = {}
    try:
        for i in order:
            built[i] = kind_of(outputs[i]).open(outputs[i], ctx)
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
