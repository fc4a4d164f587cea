"""Prometheus metrics in a registry owned by one pipeline (nothing is registered at import).

Names follow Prometheus' guide: ``streamseg_`` prefix, base units, ``_total`` counters, ``_ratio``
fractions; labels are stream names, class names, stages and reasons, never URLs.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

STAGES = ("decode", "preprocess", "infer", "postprocess", "overlay", "encode")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    """Every series streamseg exports. Call the methods where the event happens."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.frames_processed = Counter(
            "streamseg_frames_processed", "Frames that went through the model and all outputs", ["stream"], registry=r
        )
        self.frames_dropped = Counter(
            "streamseg_frames_dropped", "Frames read but not processed, by reason", ["stream", "reason"], registry=r
        )
        self.class_area = Gauge(
            "streamseg_class_area_ratio",
            "Fraction of the latest frame's pixels in each class (smoothed when postprocess.smoothing > 0)",
            ["stream", "class"],
            registry=r,
        )
        self.stream_up = Gauge(
            "streamseg_stream_up", "1 while the stream delivers frames, else 0", ["stream"], registry=r
        )
        self.reconnects = Counter(
            "streamseg_stream_reconnects", "Reconnection attempts after a stream went down", ["stream"], registry=r
        )
        self.source_fps = Gauge(
            "streamseg_stream_source_fps", "Nominal frame rate of the source (0 when unknown)", ["stream"], registry=r
        )
        self.stage_seconds = Histogram(
            "streamseg_stage_seconds",
            "Time spent in each stage per frame or batch",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "streamseg_batch_size", "Frames per engine call", buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64), registry=r
        )
        self.frame_latency = Histogram(
            "streamseg_frame_latency_seconds",
            "Capture to all outputs written",
            ["stream"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.build_info = Gauge(
            "streamseg_build_info",
            "Version, backend and model of this pipeline (value 1)",
            ["version", "backend", "model"],
            registry=r,
        )
        # Create stage children up front so dashboards see every stage from the first scrape.
        for stage in STAGES:
            self.stage_seconds.labels(stage)

    def add_stream(self, stream: str, classes: list[str]) -> None:
        """Create a stream's series at zero so absent and zero are not confused."""
        self.frames_processed.labels(stream)
        self.reconnects.labels(stream)
        self.stream_up.labels(stream).set(0)
        self.frame_latency.labels(stream)
        for reason in ("queue_full", "fps_cap"):
            self.frames_dropped.labels(stream, reason)
        for name in classes:
            self.class_area.labels(stream, name).set(0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
