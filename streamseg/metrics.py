"""Prometheus metrics in a registry owned by one pipeline (nothing is registered at import).

Names follow Prometheus' guide: ``streamseg_`` prefix, base units, ``_total`` counters, ``_ratio``
fractions; labels are stream names, class names, stages and reasons, never URLs. The process's
own CPU, memory and file descriptors come from prometheus_client's ``ProcessCollector`` (the
standard ``process_*`` names, Linux only). The exposition leaves out the ``*_created`` series
prometheus_client adds to every counter and histogram: they double the series count and no
dashboard or alert here reads them (filtered per scrape, not by the library's process-wide switch).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.metrics_core import Metric

if TYPE_CHECKING:
    from .zones import ZoneAreas, ZoneConfig

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
            "Version, backend, model, device, execution provider, precision and shard (I/N) of this pipeline (value 1)",
            ["version", "backend", "model", "device", "provider", "precision", "shard"],
            registry=r,
        )
        self.read_errors = Counter(
            "streamseg_stream_read_errors",
            "Times a stream could not be opened, or a read or decode failed",
            ["stream"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "streamseg_stream_queue_depth",
            "Frames waiting in a stream's queue: source (reader to batcher) or outputs (model to outputs)",
            ["stream", "queue"],
            registry=r,
        )
        self.last_frame = Gauge(
            "streamseg_stream_last_frame_timestamp_seconds",
            "Unix time of the latest frame read from the stream (absent before the first)",
            ["stream"],
            registry=r,
        )
        self.output_errors = Counter(
            "streamseg_output_errors",
            'Write failures (the output is then disabled for that stream) and, with stream="", close failures;'
            " output is INDEX:TYPE",
            ["output", "stream"],
            registry=r,
        )
        self.live_viewers = Gauge("streamseg_live_viewers", "Clients watching a live view MJPEG stream", registry=r)
        self.rtsp_viewers = Gauge(
            "streamseg_rtsp_viewers",
            "RTSP clients set up on a stream's mount of the RTSP output",
            ["stream"],
            registry=r,
        )
        self.zone_class_area = Gauge(
            "streamseg_zone_class_area_ratio",
            "Fraction of a zone's pixels in each class, latest frame (unsmoothed)",
            ["stream", "zone", "class"],
            registry=r,
        )
        self.zone_class_m2 = Gauge(
            "streamseg_zone_class_area_square_meters",
            "Ground area of each class inside a ground zone, latest frame (needs the stream's homography)",
            ["stream", "zone", "class"],
            registry=r,
        )
        self.events_total = Counter(
            "streamseg_events",
            "Event starts and ends decided by the event rules",
            ["stream", "rule", "kind"],
            registry=r,
        )
        self.event_active = Gauge(
            "streamseg_event_active",
            "1 while a rule's event is open on the stream, else 0",
            ["stream", "rule"],
            registry=r,
        )
        self.events_dropped = Counter(
            "streamseg_events_dropped", "Events dropped because an event sink's queue was full", ["sink"], registry=r
        )
        self.events_failed = Counter(
            "streamseg_events_failed",
            "Events an event sink could not deliver after its retries (sink snapshot: JPEG not written)",
            ["sink"],
            registry=r,
        )
        self.instances = Gauge(
            "streamseg_instances",
            "Instances of each class in the latest frame (instance models: detections at or above the score threshold)",
            ["stream", "class"],
            registry=r,
        )
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ...
        # Create stage children up front so dashboards see every stage from the first scrape.
        for stage in STAGES:
            self.stage_seconds.labels(stage)

    def add_stream(self, stream: str, classes: list[str]) -> None:
        """Create a stream's series at zero so absent and zero are not confused."""
        self.frames_processed.labels(stream)
        self.reconnects.labels(stream)
        self.stream_up.labels(stream).set(0)
        self.frame_latency.labels(stream)
        self.read_errors.labels(stream)
        for reason in ("queue_full", "fps_cap", "inference_error"):
            self.frames_dropped.labels(stream, reason)
        for name in classes:
            self.class_area.labels(stream, name).set(0)

    def add_instances(self, stream: str, classes: list[str]) -> None:
        """Create a stream's instance-count series at zero (instance models; the background has none)."""
        for name in classes[1:]:
            self.instances.labels(stream, name).set(0)

    def set_instances(self, stream: str, counts: Sequence[int], classes: list[str]) -> None:
        """Record one frame's instance count per class (``counts`` indexed like ``classes``)."""
        for name, n in zip(classes[1:], counts[1:], strict=True):
            self.instances.labels(stream, name).set(int(n))

    def add_zones(self, stream: str, zones: Sequence[ZoneConfig], classes: list[str]) -> None:
        """Create a stream's zone series at zero (square metres for ground zones only)."""
        for z in zones:
            for name in classes:
                self.zone_class_area.labels(stream, z.name, name).set(0)
                if z.ground:
                    self.zone_class_m2.labels(stream, z.name, name).set(0)

    def set_zones(self, stream: str, zones: Sequence[ZoneAreas], classes: list[str]) -> None:
        """Record one frame's zone measurements."""
        for z in zones:
            for name, ratio in zip(classes, z.ratios, strict=True):
                self.zone_class_area.labels(stream, z.zone, name).set(float(ratio))
            if z.square_meters is not None:
                for name, m2 in zip(classes, z.square_meters, strict=True):
                    self.zone_class_m2.labels(stream, z.zone, name).set(float(m2))

    def remove_stream(self, stream: str) -> None:
        """Remove every series labelled with ``stream`` (a stream removed while running), so
        dashboards see it gone rather than frozen at its last value."""
        for metric in vars(self).values():
            names = getattr(metric, "_labelnames", ())
            if "stream" not in names:
                continue
            at = names.index("stream")
            # prometheus_client has no "remove by one label": its children are keyed by label tuples
            for labels in list(metric._metrics):
                if labels[at] == stream:
                    metric.remove(*labels)

    def exposition(self) -> bytes:
        return generate_latest(_WithoutCreated(self.registry))  # type: ignore[arg-type]


class _WithoutCreated:
    """A registry view for ``generate_latest`` without the ``*_created`` samples."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():  # fresh objects on every collect: safe to edit
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family
