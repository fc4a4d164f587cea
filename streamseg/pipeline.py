"""The pipeline: source -> batch -> preprocess -> infer -> postprocess -> outputs.

``Pipeline.run`` is the one loop, read top to bottom. Threads: one reader per source, this loop
(batch, preprocess, infer, postprocess), one output worker per stream (overlay, sinks, in frame
order). Bounded queues between them give back-pressure; ``stop()`` (SIGINT/SIGTERM) lets every
stage finish what it holds so outputs are finalized.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from . import __version__
from .backends import select_backend
from .backends.base import Backend
from .batching import Batcher
from .config import PipelineConfig
from .contract import LoadedModel, load_model
from .errors import OutputError, TransientBackendError
from .events.config import check_event_classes
from .frames import Batch, SegResult
from .media import describe_error
from .metrics import Metrics
from .outputs import Sink, build_sinks
from .overlay import Palette, Scratch, draw_legend, draw_zones, make_palette, render
from .postprocess import Smoother, area_ratios
from .preflight import check_overlay
from .preprocess import preprocess
from .rle import RleEncoder
from .server import HttpServer, LiveHub
from .shard import ALL, Shard
from .sources import Source
from .status import StreamStatus, StreamTracker, format_line
from .temporal import TemporalFilter
from .zones import ZoneMeter

log = logging.getLogger(__name__)

IDLE_WAIT_S = 0.25  # longest the loop waits for a frame before it checks its deadline and stop again
status_log = logging.getLogger("streamseg.status")  # its own name: an operator can quiet it alone


@dataclass
class RunSummary:
    """What a finished run did, per stream; ``failed`` holds one-line errors of streams that died."""

    frames: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    output_errors: list[str] = field(default_factory=list)  # one line per output write/close failure
    seconds: float = 0.0
    backend: str = ""


class StreamWorker:
    """Overlay and outputs for one stream, in frame order, on its own thread."""

    def __init__(
        self,
        name: str,
        sinks: list[Sink],
        palette: Palette,
        cfg: PipelineConfig,
        metrics: Metrics,
        tracker: StreamTracker,
    ) -> None:
        self.name = name
        self.tracker = tracker
        self.sinks = sinks
        self.palette = palette
        self.cfg = cfg
        self.metrics = metrics
        self.queue: queue.Queue[SegResult | None] = queue.Queue(maxsize=8)
        self.processed = 0
        self._scratch = Scratch()
        self._disabled: set[int] = set()
        self.errors: list[str] = []  # one line per output this stream disabled
        self._thread = threading.Thread(target=self._run, name=f"outputs-{name}", daemon=True)
        self._overlay_hist = metrics.stage_seconds.labels("overlay")
        self._latency = metrics.frame_latency.labels(name)
        self._processed = metrics.frames_processed.labels(name)
        zones = next((s.zones for s in cfg.sources if s.name == name), [])
        self._zone_outlines = [(z.name, z.polygon) for z in zones] if cfg.overlay.zones else []

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> None:
        self.queue.put(None)
        self._thread.join()

    def _write(self, i: int, sink: Sink, result: SegResult, image: np.ndarray | None) -> None:
        try:
            sink.write(result, image)
        except OutputError as e:
            # One broken output (disk full, bad path) stops itself, not the stream or the others.
            log.error("stream %s: %s; that output is disabled for this stream", self.name, e)
            self.errors.append(f"stream {self.name}: {e}")
            self._disabled.add(i)
            self.metrics.output_errors.labels(output_label(i, sink), self.name).inc()

    def _run(self) -> None:
        wants_overlay = any(s.wants_overlay for s in self.sinks)
        ov = self.cfg.overlay
        while (result := self.queue.get()) is not None:
            for i, sink in enumerate(self.sinks):
                if sink.wants_raw and i not in self._disabled:
                    self._write(i, sink, result, None)
            image = None
            if wants_overlay and result.overlay is not None:  # blended on the GPU already
                image = result.overlay
                if ov.legend:
                    draw_legend(image, self.palette, result.area_ratio)
            elif wants_overlay:
                start = time.perf_counter()
                image = render(
                    result.frame.image,
                    result.class_map,
                    self.palette,
                    ov.mode,
                    ov.alpha,
                    result.area_ratio,
                    ov.legend,
                    self._scratch,
                )
                self._overlay_hist.observe(time.perf_counter() - start)
            if image is not None and self._zone_outlines:
                # side by side: on the blend (right half), so the original stays untouched
                draw_zones(image[:, image.shape[1] // 2 :] if ov.mode == "side-by-side" else image, self._zone_outlines)
            for i, sink in enumerate(self.sinks):
                if not sink.wants_raw and i not in self._disabled:
                    self._write(i, sink, result, image)
            self.processed += 1
            self._processed.inc()
            latency = time.monotonic() - result.frame.capture_time
            self._latency.observe(latency)
            self.tracker.frame_done(latency, result.area_ratio)


class Pipeline:
    """Build with a validated config; ``run()`` blocks until the sources end or ``stop()``."""

    def __init__(
        self,
        cfg: PipelineConfig,
        max_frames: int | None = None,
        duration: float | None = None,
        status_interval: float = 0.0,
        shard: Shard = ALL,
    ) -> None:
        self.cfg = cfg
        self.shard = shard  # which of cfg.sources this replica runs (--shard I/N); ALL: every one
        self.max_frames = max_frames
        self.duration = duration
        self.status_interval = status_interval  # seconds between status lines on the log; 0: none
        self.metrics = Metrics()
        self.stop_event = threading.Event()
        self.model: LoadedModel = load_model(cfg.model.path)
        c = self.model.contract
        check_overlay(cfg, self.model)  # before make_palette, whose ValueError would be a traceback
        check_event_classes(cfg.events, c.class_names, c.name)
        # both raise a ConfigError here, before any output is opened (ema on a class-map model,
        # an unknown rle class, pycocotools missing)
        self.temporal = TemporalFilter(cfg.postprocess.temporal, c)
        self.rle = RleEncoder(cfg.postprocess.rle, c.class_names, c.name)
        self.palette = make_palette(c.class_names, [k.color for k in c.classes], cfg.overlay.transparent)
        self.http: HttpServer | None = None
        self.ready = threading.Event()  # set once every stage runs (tests wait on it)
        self.backend_description = ""
        self._sources: list[Source] = []
        self._trackers: dict[str, StreamTracker] = {}
        self._infer_dropped: dict[str, int] = {}  # frames of batches a backend failed to infer, per stream

    def stop(self) -> None:
        """Ask every stage to finish; safe from signal handlers and other threads."""
        self.stop_event.set()

    # --- the loop ------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        cfg, c, m = self.cfg, self.model.contract, self.metrics
        summary = RunSummary()
        started = time.monotonic()

        # start-up: backend first (a bad model fails before any stream is opened)
        backend = select_backend(
            cfg.model.backend,
            list(cfg.model.prefer),
            self.model,
            cfg.model.device,
            cfg.model.threads,
            cfg.batch.max_batch,
            cfg.model,
        )
        with backend:  # loads, checks the contract, warms up
            self.backend_description = summary.backend = backend.description
            rt = backend.runtime
            info = (__version__, backend.name, c.name, rt.device, rt.provider, rt.precision, str(self.shard))
            m.build_info.labels(*info).set(1)
            batcher = Batcher([], cfg.batch.max_batch, cfg.batch.max_wait_ms)
            # Sharding picks this replica's streams here, before any of them is opened.
            mine = [s for s in cfg.sources if self.shard.owns(s.name)]
            if self.shard.sharded:
                names = ", ".join(s.name for s in mine) or "none (idle: serving /metrics and /healthz)"
                log.info("shard %s: %d of %d stream(s): %s", self.shard, len(mine), len(cfg.sources), names)
            sources = [Source(s, m, batcher.notify, self.max_frames) for s in mine]
            batcher.sources = sources
            by_name = {s.name: s for s in sources}
            for s in sources:
                m.add_stream(s.name, c.class_names)
            for sc in mine:
                m.add_zones(sc.name, sc.zones, c.class_names)

            hub = LiveHub([s.name for s in sources]) if cfg.http.enabled else None
            # Bind the HTTP port before any sink opens (and truncates) a file: a run that cannot
            # start leaves the previous run's outputs as they were. It serves from start() on.
            if hub is not None:
                self.http = HttpServer(
                    cfg.http.host,
                    cfg.http.port,
                    cfg.name,
                    hub,
                    m.exposition,
                    lambda: self._health(sources),
                    self.status,
                    self.palette,
                    config=lambda: self.cfg,
                )
            try:
                fps_of = lambda n: by_name[n].fps  # noqa: E731
                sinks = build_sinks(list(cfg.outputs), c.class_names, fps_of, m, hub, cfg.events, list(by_name))
            except BaseException:
                if self.http is not None:
                    self.http.stop()
                raise
            trackers = {s.name: StreamTracker(c.class_names) for s in sources}
            workers = {s.name: StreamWorker(s.name, sinks, self.palette, cfg, m, trackers[s.name]) for s in sources}
            # trackers first: a progress poll between the two assignments must find every source's
            self._trackers = trackers
            self._sources = sources
            for s in sources:  # queue depths are read at scrape time: nothing to update per frame
                m.queue_depth.labels(s.name, "source").set_function(s.queue.__len__)
                m.queue_depth.labels(s.name, "outputs").set_function(workers[s.name].queue.qsize)
                for i, sink in enumerate(sinks):
                    m.output_errors.labels(output_label(i, sink), s.name)
            if hub is not None:
                m.live_viewers.set_function(hub.viewers)
            status_done = threading.Event()
            try:
                if self.http is not None:
                    self.http.start()
                    log.info("live view: %s  metrics: %smetrics", self.http.url, self.http.url)
                for w in workers.values():
                    w.start()
                for s in sources:
                    s.start()
                self.ready.set()
                if self.status_interval > 0:  # on its own clock: a stalled stage must not silence it
                    threading.Thread(target=self._log_status, args=(status_done,), name="status", daemon=True).start()
                self._loop(backend, batcher, sources, workers)
            finally:
                status_done.set()
                # shutdown: readers stop, workers drain in order, sinks finalize, server last
                for s in sources:
                    s.stop()
                for w in workers.values():
                    w.finish()
                close_errors = close_sinks(sinks, m)
                # one deadline for all: N readers stuck in a dead camera's open cost 2 s, not 2N s
                join_by = time.monotonic() + 2.0
                for s in sources:
                    s.join(max(0.0, join_by - time.monotonic()))
                if self.http is not None:
                    self.http.stop()
        summary.frames = {n: w.processed for n, w in workers.items()}
        summary.failed = {s.name: s.error for s in sources if s.error}
        summary.output_errors = [e for w in workers.values() for e in w.errors] + close_errors
        summary.seconds = time.monotonic() - started
        return summary

    def _loop(
        self, backend: Backend, batcher: Batcher, sources: list[Source], workers: dict[str, StreamWorker]
    ) -> None:
        cfg, c, m = self.cfg, self.model.contract, self.metrics
        smoother = Smoother(cfg.postprocess.smoothing)
        # Only streams with zones pay for them: their masks are built once per class-map shape.
        zone_meters = {s.name: ZoneMeter(s.zones, c.num_classes, s.homography) for s in cfg.sources if s.zones}
        h_pre, h_inf, h_post = (m.stage_seconds.labels(s) for s in ("preprocess", "infer", "postprocess"))
        deadline = None if self.duration is None else time.monotonic() + self.duration
        # On a GPU backend, frames are preprocessed, histogrammed and blended where the engine runs.
        on_device = backend.device_frames(self.palette, cfg.overlay.alpha, cfg.overlay.mode == "blend")
        if on_device is not None:
            log.info("pre/post-processing on %s", backend.description)
        while not self.stop_event.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                log.info("duration reached")
                break
            # The batcher gives up after a short wait so --duration holds while no stream sends a
            # frame (a dead camera beside a finished file); each source runs its own watchdog.
            wait = IDLE_WAIT_S if deadline is None else min(IDLE_WAIT_S, deadline - now)
            batch: Batch | None = batcher.next_batch(self.stop_event, timeout=wait)
            if batch is None:
                if sources and all(s.finished.is_set() for s in sources):
                    break
                if not sources:  # an empty shard idles until stopped (a StatefulSet must not crash-loop)
                    self.stop_event.wait(wait)
                continue
            m.batch_size.observe(len(batch))

            t0 = time.perf_counter()
            images = [f.image for f in batch.frames]
            tensor = preprocess(images, c.input) if on_device is None else on_device.preprocess(images)
            t1 = time.perf_counter()
            try:
                output = backend.infer(tensor)
            except TransientBackendError as e:  # the backend recovers on its own (a remote server)
                self._drop_batch(batch, e)
                continue
            t2 = time.perf_counter()
            maps = self.temporal.class_maps(batch.frames, output)  # to_class_maps, smoothed per stream if asked
            # the device's histograms and blend are of the unsmoothed labels: with smoothing, CPU does them
            done_on_device = on_device is not None and not self.temporal.active
            device_done = on_device.finish(backend.last_labels, c.num_classes) if done_on_device else None
            results = []
            for i, (frame, cmap) in enumerate(zip(batch.frames, maps, strict=True)):
                ratios, overlay = (area_ratios(cmap, c.num_classes), None) if device_done is None else device_done[i]
                shown = smoother.update(frame.stream, ratios)
                for name, value in zip(c.class_names, shown, strict=True):
                    m.class_area.labels(frame.stream, name).set(float(value))
                cmap = np.ascontiguousarray(cmap)
                meter = zone_meters.get(frame.stream)
                zones = meter.measure(cmap) if meter is not None else ()
                if zones:
                    m.set_zones(frame.stream, zones, c.class_names)
                results.append(SegResult(frame, cmap, ratios, overlay, zones, self.rle.encode(frame.index, cmap)))
            t3 = time.perf_counter()
            h_pre.observe(t1 - t0)
            h_inf.observe(t2 - t1)
            h_post.observe(t3 - t2)

            for r in results:  # blocks when a stream's outputs lag: back-pressure to the batcher
                workers[r.frame.stream].queue.put(r)

    def _drop_batch(self, batch: Batch, e: TransientBackendError) -> None:
        """A batch the backend could not infer but will retry later: its frames are counted as
        dropped (reason ``inference_error``) and its one-line error logged; the run goes on."""
        for f in batch.frames:
            self.metrics.frames_dropped.labels(f.stream, "inference_error").inc()
            self._infer_dropped[f.stream] = self._infer_dropped.get(f.stream, 0) + 1
        log.log(logging.DEBUG if e.repeat else logging.ERROR, "%s", e)

    def status(self) -> list[StreamStatus]:
        """Every stream now, in config order; empty before ``run()`` has opened the sources."""
        now = time.monotonic()
        out = []
        for s in self._sources:
            fps, frames, latency, ratios = self._trackers[s.name].snapshot(now)
            error = _without_uri(s.error, s) if s.error else None
            state = _state(s)
            fps = fps if state == "up" else 0.0  # not a rate decaying from frames that stopped coming
            dropped = s.dropped + self._infer_dropped.get(s.name, 0)
            out.append(StreamStatus(s.name, state, fps, frames, dropped, latency, ratios, error))
        return out

    def progress(self) -> tuple[int, int | None]:
        """Frames done (processed or dropped) over all streams, and the total once every stream
        is open and known to end (files, ``frames=``, ``max_frames``); None while unknown."""
        done = sum(s.frames + s.dropped for s in self.status())
        expected = [s.expected_frames for s in self._sources]
        total = None if not expected or None in expected else sum(e for e in expected if e is not None)
        return done, total

    def _log_status(self, done: threading.Event) -> None:
        while not done.wait(self.status_interval):
            streams = self.status()
            # The JSON log format carries each stream's fields too (``streams``), for log shippers.
            status_log.info("%s", format_line(streams), extra={"streams": [dataclasses.asdict(s) for s in streams]})

    def _health(self, sources: list[Source]) -> tuple[bool, dict[str, object]]:
        streams = {s.name: _state(s) for s in sources}
        ok = (
            self.ready.is_set()
            and not self.stop_event.is_set()
            and (not streams or any(v in ("up", "finished") for v in streams.values()))  # an empty shard is healthy
        )
        return ok, {"status": "ok" if ok else "degraded", "streams": streams}


def close_sinks(sinks: list[Sink], metrics: Metrics | None = None) -> list[str]:
    """Close every sink, each in isolation: one failing ``close()`` (disk full while finalizing)
    never keeps the others from finalizing. Returns one line per failure, naming the output, and
    counts it in ``streamseg_output_errors_total{output, stream=""}`` (a close is no one stream's)."""
    errors = []
    for i, sink in enumerate(sinks):
        try:
            sink.close()
        except Exception as e:  # any failure of one output's finalizing; the rest still close
            msg = f"{sink.describe()}: close failed: {describe_error(e)}"
            log.error("%s", msg)
            errors.append(msg)
            if metrics is not None:
                metrics.output_errors.labels(output_label(i, sink), "").inc()
    return errors


def output_label(i: int, sink: Sink) -> str:
    """The ``output`` label of an output's metrics: its position in the config and its kind
    (``1:video``); never its path or URL."""
    return f"{i}:{type(sink).__name__.removesuffix('Sink').lower()}"


def _state(s: Source) -> str:
    return "up" if s.up else "failed" if s.error else "finished" if s.finished.is_set() else "down"


def _without_uri(text: str, s: Source) -> str:
    """The error without the stream's URI: status goes to browsers, which see stream names only."""
    for uri in (s.cfg.uri, s.cfg.display_uri):
        text = text.replace(f" ({uri})", "").replace(uri, "<uri>")
    return text


__all__ = ["Pipeline", "RunSummary"]
