"""What each stream is doing right now, for people: the status line on the log and the live
page's ``/api/streams``. (Prometheus gets the same events as counters and histograms.)

``StreamTracker`` is fed where the events happen (the stream's output worker after a frame is
written, the source when it drops one) and read by ``Pipeline.status()`` from other threads.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

STATES = ("up", "down", "finished", "failed")


@dataclass(frozen=True)
class StreamStatus:
    """One stream at one moment. Never holds a URL (it may carry a password)."""

    name: str
    state: str  # "up" | "down" | "finished" | "failed"
    fps: float  # processed frames/s over the last few seconds
    frames: int  # frames through all outputs since start
    dropped: int  # frames read but never processed (queue full, fps cap)
    latency_s: float | None  # recent capture -> all outputs written; None before the first frame
    class_area_ratio: dict[str, float]  # latest frame's pixel fraction per class
    error: str | None  # why the stream failed for good, else None

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"StreamStatus {self.name}: expected state in {STATES}, got {self.state!r}")


class StreamTracker:
    """Processed-frame rate over a sliding window, recent latency and the latest class areas.

    Thread-safe: one writer (the stream's output worker) and any number of readers.
    """

    def __init__(self, classes: list[str], window_s: float = 5.0) -> None:
        self.classes = list(classes)
        self.window_s = window_s
        self._times: collections.deque[float] = collections.deque()
        self._latencies: collections.deque[float] = collections.deque(maxlen=32)
        self._ratios: dict[str, float] = dict.fromkeys(self.classes, 0.0)
        self._frames = 0
        self._lock = threading.Lock()

    def frame_done(self, latency_s: float, ratios: Iterable[float], now: float | None = None) -> None:
        """Record one frame written to every output; ``ratios`` is per class, in class order."""
        now = time.monotonic() if now is None else now
        values = [float(v) for v in ratios]
        with self._lock:
            self._frames += 1
            self._times.append(now)
            self._latencies.append(latency_s)
            self._ratios = dict(zip(self.classes, values, strict=True))
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window_s:
            self._times.popleft()

    def snapshot(self, now: float | None = None) -> tuple[float, int, float | None, dict[str, float]]:
        """(fps over the window, frames, median recent latency, class areas)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            n = len(self._times)
            # Rate over the span the window actually covers: a stream that started 1 s ago is not
            # reported at a fifth of its rate, and one that stalled decays to 0 as frames age out.
            fps = 0.0
            if n >= 2:
                span = now - self._times[0]
                fps = (n - 1) / span if span > 0 else 0.0
            lat = sorted(self._latencies)[len(self._latencies) // 2] if self._latencies else None
            return fps, self._frames, lat, dict(self._ratios)


def format_line(streams: list[StreamStatus]) -> str:
    """One log line: ``status: cam1 up 14.9 fps drop 0 lat 82 ms | cam2 down ...``."""
    parts = []
    for s in streams:
        lat = "-" if s.latency_s is None else f"{s.latency_s * 1000:.0f} ms"
        parts.append(f"{s.name} {s.state} {s.fps:.1f} fps drop {s.dropped} lat {lat}")
    return "status: " + " | ".join(parts)
