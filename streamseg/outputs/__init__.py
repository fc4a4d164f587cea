"""Outputs: video files, JSON Lines statistics, the live view, RTSP, PNG snapshots, a window."""

from __future__ import annotations

from collections.abc import Callable

from ..config import DisplayOutput, JsonlOutput, LiveOutput, Output, RtspOutput, SnapshotOutput, VideoOutput
from ..metrics import Metrics
from ..server import LiveHub
from .base import Sink


def build_sinks(
    outputs: list[Output],
    class_names: list[str],
    fps_of: Callable[[str], float | None],
    metrics: Metrics,
    hub: LiveHub | None,
) -> list[Sink]:
    """One sink per configured output; a sink that cannot open raises OutputError."""
    from .display import DisplaySink
    from .jsonl import JsonlSink
    from .live import LiveSink
    from .rtsp import RtspSink
    from .snapshot import SnapshotSink
    from .video import VideoSink

    sinks: list[Sink] = []
    try:
        for o in outputs:
            if isinstance(o, VideoOutput):
                sinks.append(VideoSink(o, fps_of, metrics))
            elif isinstance(o, JsonlOutput):
                sinks.append(JsonlSink(o, class_names))
            elif isinstance(o, LiveOutput):
                assert hub is not None, "config validation requires http for live outputs"
                sinks.append(LiveSink(o, hub, metrics))
            elif isinstance(o, SnapshotOutput):
                sinks.append(SnapshotSink(o))
            elif isinstance(o, DisplayOutput):
                sinks.append(DisplaySink())
            elif isinstance(o, RtspOutput):
                sinks.append(RtspSink(o, fps_of, metrics))
    except BaseException:
        for s in sinks:
            s.close()
        raise
    return sinks


__all__ = ["Sink", "build_sinks"]
