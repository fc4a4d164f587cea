"""The pipeline: source -> batch -> preprocess -> infer -> postprocess -> outputs.

``Pipeline.run`` is the one loop, read top to bottom. Threads: one reader per source, this loop
(batch, preprocess, infer, postprocess), one output worker per stream (overlay, sinks, in frame
order). Bounded queues between them give back-pressure; ``stop()`` (SIGINT/SIGTERM) lets every
stage finish what it holds so outputs are finalized.

Streams change while the loop runs: ``add_stream``, ``remove_stream`` and ``change_stream`` (the
API, SIGHUP through ``reload``) open or finalize one stream's reader, worker and outputs and hand
its queue to or take it from the batcher; the other streams never wait on it.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from pydantic import ValidationError

from . import __version__
from .backends import select_backend
from .backends.base import Backend
from .batching import Batcher
from .config import PipelineConfig, SourceConfig, describe_validation, load_config
from .contract import LoadedModel, load_model
from .errors import ConfigError, OutputError, StreamChangeError, TransientBackendError
from .events.config import check_event_classes
from .frames import Batch, Picture, SegResult
from .instances import Instance, counts, draw_outlines, draw_outlines_i420
from .media import describe_error
from .metrics import Metrics
from .outputs import Sink, build_sinks
from .overlay import Palette, Scratch, draw_legend, draw_on, draw_zone_outlines, make_palette, render, zone_thickness
from .postprocess import Smoother
from .preflight import check_overlay
from .rle import RleEncoder
from .server import HttpServer, LiveHub
from .shard import ALL, Shard
from .sources import Source
from .stages import OverlaySpec
from .status import StreamStatus, StreamTracker, format_line
from .temporal import TemporalFilter
from .yuv import i420_size
from .zones import ZoneMeter

log = logging.getLogger(__name__)

DRAIN_S = 5.0  # longest a removed stream's queued frames may take to go through the model
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
        zones = next((s.zones for s in cfg.sources if s.name == name), [])  # cfg: the one it was added with
        self._zone_outlines = [(z.name, z.polygon) for z in zones] if cfg.overlay.zones else []
        self._colors_rgb = np.array([c[::-1] for c in palette.colors_bgr], np.uint8)  # for instance outlines

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> None:
        self.queue.put(None)
        self._thread.join()

    def _write(self, i: int, sink: Sink, result: SegResult, picture: Picture | None) -> None:
        try:
            sink.write(result, picture)
        except OutputError as e:
            # One broken output (disk full, bad path) stops itself, not the stream or the others.
            log.error("stream %s: %s; that output is disabled for this stream", self.name, e)
            self.errors.append(f"stream {self.name}: {e}")
            self._disabled.add(i)
            self.metrics.output_errors.labels(output_label(i, sink), self.name).inc()

    def _outline(self, picture: Picture, found: tuple[Instance, ...], side_by_side: bool) -> None:
        """Each instance's outline in its class colour, as wide as zone outlines (1 px up to about 360p)."""
        colors = self._colors_rgb
        draw_on(
            picture,
            side_by_side,
            lambda image: draw_outlines(image, found, colors, zone_thickness(*image.shape[:2])),
            lambda data: draw_outlines_i420(data, found, colors, zone_thickness(*i420_size(data))),
        )

    def _run(self) -> None:
        wants_overlay = any(s.wants_overlay for s in self.sinks)
        ov = self.cfg.overlay
        while (result := self.queue.get()) is not None:
            frame = result.frame
            # before the overlay is drawn into the frame; a device frame's is downloaded on first use only
            raw = Picture.of(frame)
            for i, sink in enumerate(self.sinks):
                if sink.wants_raw and i not in self._disabled:
                    self._write(i, sink, result, raw)
            picture = None
            if wants_overlay and result.overlay is not None:  # blended on the GPU already (BGR)
                if ov.legend:
                    draw_legend(result.overlay, self.palette, result.area_ratio)
                picture = Picture(result.overlay, "bgr24")
            elif wants_overlay:
                # in the frame's own pixel format: decoded video stays I420 on its way to the encoder;
                # a frame still on the GPU (NVDEC, the stage did not blend) is drawn on its host copy
                start = time.perf_counter()
                image = render(
                    raw.data,
                    result.class_map,
                    self.palette,
                    ov.mode,
                    ov.alpha,
                    result.area_ratio,
                    ov.legend,
                    self._scratch,
                    raw.pixel_format,
                )
                picture = Picture(image, raw.pixel_format)
                self._overlay_hist.observe(time.perf_counter() - start)
            if picture is not None and self._zone_outlines:
                draw_zone_outlines(picture, self._zone_outlines, ov.mode == "side-by-side")
            if picture is not None and result.instances:  # instance models: each one outlined
                self._outline(picture, result.instances, ov.mode == "side-by-side")
            for i, sink in enumerate(self.sinks):
                if not sink.wants_raw and i not in self._disabled:
                    self._write(i, sink, result, picture)
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
        self._gpu_stage = False  # the backend's stage takes device frames (set by run())
        # Per stream, replaced whole (never edited) by add/remove: readers of a snapshot need no lock.
        self._sources: list[Source] = []
        self._trackers: dict[str, StreamTracker] = {}
        self._workers: dict[str, StreamWorker] = {}
        self._zone_meters: dict[str, ZoneMeter] = {}
        self._infer_dropped: dict[str, int] = {}  # frames of batches a backend failed to infer, per stream
        # What a runtime change needs, set while run() runs (None before and after).
        self._batcher: Batcher | None = None
        self._sinks: list[Sink] = []
        self._hub: LiveHub | None = None
        self._smoother = Smoother(cfg.postprocess.smoothing)
        self._change = threading.Lock()  # one change at a time (API requests, SIGHUP)
        self._barriers: queue.SimpleQueue[threading.Event] = queue.SimpleQueue()
        self._loop_ended = threading.Event()
        self._removed_frames: dict[str, int] = {}  # frames processed by streams removed while running
        self._removed_errors: list[str] = []
        self._orphaned = 0  # results whose stream had no worker any more (dropped)

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
            batcher = Batcher(cfg.batch.max_batch, cfg.batch.max_wait_ms)
            # Sharding picks this replica's streams here, before any of them is opened.
            mine = [s for s in cfg.sources if self.shard.owns(s.name)]
            if self.shard.sharded:
                names = ", ".join(s.name for s in mine) or "none (idle: serving /metrics and /healthz)"
                log.info("shard %s: %d of %d stream(s): %s", self.shard, len(mine), len(cfg.sources), names)
            # NVDEC frames stay on the GPU only for a stage that takes them there (choose_decoder)
            self._gpu_stage = backend.stage().takes_device_frames
            sources = [Source(s, m, self.max_frames, self._gpu_stage) for s in mine]
            for s in sources:
                m.add_stream(s.name, c.class_names)
                if c.output.kind == "instances":
                    m.add_instances(s.name, c.class_names)
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
                    self._health,
                    self.status,
                    self.palette,
                    config=lambda: self.cfg,
                    streams=self,
                )
            try:
                mine_names = [s.name for s in sources]
                sinks = build_sinks(list(cfg.outputs), c.class_names, self._fps_of, m, hub, cfg.events, mine_names)
            except BaseException:
                if self.http is not None:
                    self.http.stop()
                raise
            trackers = {s.name: StreamTracker(c.class_names) for s in sources}
            workers = {s.name: StreamWorker(s.name, sinks, self.palette, cfg, m, trackers[s.name]) for s in sources}
            # Only streams with zones pay for them: their masks are built once per class-map shape.
            self._zone_meters = {s.name: ZoneMeter(s.zones, c.num_classes, s.homography) for s in mine if s.zones}
            # trackers first: a progress poll between the two assignments must find every source's
            self._trackers = trackers
            self._workers = workers
            self._sources = sources
            for s in sources:
                self._stream_series(s, workers[s.name], sinks)
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
                    batcher.add(s.name, s.queue)
                    s.start()
                self._batcher, self._sinks, self._hub = batcher, sinks, hub  # runtime changes may begin
                self.ready.set()
                if self.status_interval > 0:  # on its own clock: a stalled stage must not silence it
                    threading.Thread(target=self._log_status, args=(status_done,), name="status", daemon=True).start()
                self._loop(backend, batcher)
            finally:
                status_done.set()
                self._loop_ended.set()  # a change waiting on the loop stops waiting (it ended by itself)
                with self._change:  # a change under way finishes first; none starts after this
                    self._batcher = None
                sources, workers = self._sources, self._workers
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
        summary.frames = dict(self._removed_frames)
        for n, w in workers.items():
            summary.frames[n] = summary.frames.get(n, 0) + w.processed
        summary.failed = {s.name: s.error for s in sources if s.error}
        summary.output_errors = [*self._removed_errors, *(e for w in workers.values() for e in w.errors), *close_errors]
        summary.seconds = time.monotonic() - started
        return summary

    def _loop(self, backend: Backend, batcher: Batcher) -> None:
        cfg, c, m = self.cfg, self.model.contract, self.metrics
        smoother = self._smoother
        h_pre, h_inf, h_post = (m.stage_seconds.labels(s) for s in ("preprocess", "infer", "postprocess"))
        deadline = None if self.duration is None else time.monotonic() + self.duration
        # The backend's stage: numpy/OpenCV, or (torch on CUDA) the GPU, where the engine's output is.
        blend = cfg.overlay.mode == "blend" and any(s.wants_overlay for s in self._sinks)
        stage = backend.stage(OverlaySpec(self.palette, cfg.overlay.alpha, blend), self.temporal)
        log.info("pre/post-processing on %s", stage.description)
        instance_model = c.output.kind == "instances"
        try:
            while not self.stop_event.is_set():
                self._pass_barriers()  # a removal waits here: no batch in flight holds its stream's frames
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    log.info("duration reached")
                    break
                # The batcher gives up after a short wait so --duration holds while no stream sends a
                # frame (a dead camera beside a finished file); each source runs its own watchdog.
                wait = IDLE_WAIT_S if deadline is None else min(IDLE_WAIT_S, deadline - now)
                batch: Batch | None = batcher.next_batch(self.stop_event, timeout=wait)
                if batch is None:
                    sources = self._sources
                    if sources and all(s.finished.is_set() for s in sources):
                        break
                    if not sources:  # an empty shard idles until stopped (a StatefulSet must not crash-loop)
                        self.stop_event.wait(wait)
                    continue
                m.batch_size.observe(len(batch))

                t0 = time.perf_counter()
                tensor = stage.preprocess(batch.frames)
                t1 = time.perf_counter()
                try:
                    # an instance model's stage takes its detections per frame, not one array
                    output = backend.infer_instances(tensor) if instance_model else backend.infer(tensor)
                except TransientBackendError as e:  # the backend recovers on its own (a remote server)
                    self._drop_batch(batch, e)
                    continue
                t2 = time.perf_counter()
                processed = stage.postprocess(batch.frames, output)  # class maps smoothed per stream if asked
                results = []
                for frame, p in zip(batch.frames, processed, strict=True):
                    cmap, ratios, overlay = p.class_map, p.area_ratio, p.overlay
                    shown = smoother.update(frame.stream, ratios)
                    for name, value in zip(c.class_names, shown, strict=True):
                        m.class_area.labels(frame.stream, name).set(float(value))
                    meter = self._zone_meters.get(frame.stream)
                    zones = meter.measure(cmap) if meter is not None else ()
                    if zones:
                        m.set_zones(frame.stream, zones, c.class_names)
                    if instance_model:
                        m.set_instances(frame.stream, counts(p.instances, c.num_classes).tolist(), c.class_names)
                    rle = self.rle.encode(frame.index, cmap)
                    results.append(SegResult(frame, cmap, ratios, overlay, zones, rle, p.instances))
                t3 = time.perf_counter()
                h_pre.observe(t1 - t0)
                h_inf.observe(t2 - t1)
                h_post.observe(t3 - t2)

                workers = self._workers
                for r in results:  # blocks when a stream's outputs lag: back-pressure to the batcher
                    worker = workers.get(r.frame.stream)
                    if worker is None:  # removed meanwhile (a bug if it happens: removal waits for the batch)
                        self._orphaned += 1
                        log.debug("stream %s: a result after its removal dropped", r.frame.stream)
                        continue
                    worker.queue.put(r)
        finally:  # a change waiting on the barrier goes on, also when the loop raised
            self._pass_barriers()

    def _pass_barriers(self) -> None:
        while True:
            try:
                self._barriers.get_nowait().set()
            except queue.Empty:
                return

    def _after_batch(self) -> None:
        """Wait until the loop has finished the batch it holds now (if any), so no result of a
        stream the batcher no longer feeds is still on its way to that stream's worker."""
        done = threading.Event()
        self._barriers.put(done)
        # Not on stop_event: after a stop the loop still finishes the batch it holds, which may
        # carry the removed stream's frames; the loop passes the barriers when it exits.
        while not done.wait(0.1):
            if self._loop_ended.is_set():
                return  # the loop ended; shutdown drains what remains

    # --- streams at runtime --------------------------------------------------------------------
    def _fps_of(self, name: str) -> float | None:
        return next((s.fps for s in self._sources if s.name == name), None)

    def _stream_series(self, s: Source, worker: StreamWorker, sinks: list[Sink]) -> None:
        m = self.metrics
        # queue depths are read at scrape time: nothing to update per frame
        m.queue_depth.labels(s.name, "source").set_function(s.queue.__len__)
        m.queue_depth.labels(s.name, "outputs").set_function(worker.queue.qsize)
        for i, sink in enumerate(sinks):
            m.output_errors.labels(output_label(i, sink), s.name)

    def stream_config(self, name: str) -> SourceConfig:
        """The running config of stream ``name``; StreamChangeError 404 when there is none."""
        for s in self._sources:
            if s.name == name:
                return s.cfg
        raise StreamChangeError(f"no stream named '{name}'", 404)

    def validate_source(self, data: object) -> tuple[SourceConfig, PipelineConfig]:
        """A source config from the API (the same model as the file) and the pipeline config with
        it added; StreamChangeError 422 with the bad key's path when either is invalid."""
        sc = _source_from_api(data)
        if any(s.name == sc.name for s in self.cfg.sources):
            raise StreamChangeError(f"name: a stream named '{sc.name}' exists already", 409, "name")
        if not self.shard.owns(sc.name):
            raise StreamChangeError(
                f"name: stream '{sc.name}' belongs to another shard than this replica's ({self.shard}); "
                "add it to the replica that owns it",
                409,
                "name",
            )
        return sc, self._with_sources([*self.cfg.sources, sc])

    def _with_sources(self, sources: list[SourceConfig]) -> PipelineConfig:
        """The config with these sources, through the file's cross-checks (per-stream paths, rules)."""
        data = self.cfg.model_dump(mode="python", exclude={"sources"})
        try:
            return PipelineConfig.model_validate({**data, "sources": [s.model_dump() for s in sources]})
        except ValidationError as e:
            loc, msg = describe_validation(e)
            key = ".".join(str(p) for p in loc) or "(top level)"
            raise StreamChangeError(f"{key}: {msg}", 422, key) from None

    def add_stream(self, data: object) -> SourceConfig:
        """Open a stream while the loop runs: its reader, worker and series; the batcher takes its
        queue last, so the other streams never see it half-built. Raises StreamChangeError."""
        with self._change:
            sc, new_cfg = self.validate_source(data)
            self._add(sc, new_cfg)
            return sc

    def _add(self, sc: SourceConfig, new_cfg: PipelineConfig) -> None:
        batcher, c, m = self._batcher, self.model.contract, self.metrics
        if batcher is None or self.stop_event.is_set() or self._loop_ended.is_set():
            raise StreamChangeError("the pipeline is not running", 503)
        meter = ZoneMeter(sc.zones, c.num_classes, sc.homography) if sc.zones else None
        source = Source(sc, m, self.max_frames, self._gpu_stage)
        before = (self._sources, self._zone_meters, self._trackers, self._workers, self.cfg)
        worker: StreamWorker | None = None
        try:
            m.add_stream(sc.name, c.class_names)
            if c.output.kind == "instances":
                m.add_instances(sc.name, c.class_names)
            m.add_zones(sc.name, sc.zones, c.class_names)
            tracker = StreamTracker(c.class_names)
            worker = StreamWorker(sc.name, self._sinks, self.palette, new_cfg, m, tracker)
            self._stream_series(source, worker, self._sinks)
            worker.start()
            if meter is not None:
                self._zone_meters = {**self._zone_meters, sc.name: meter}
            self._trackers = {**self._trackers, sc.name: tracker}
            self._workers = {**self._workers, sc.name: worker}
            self._sources = [*self._sources, source]
            if self._hub is not None:
                self._hub.add_stream(sc.name)
            self.cfg = new_cfg
            batcher.add(sc.name, source.queue)
            source.start()
        except BaseException:
            # Undo what was registered, so a failed add leaves the pipeline as it was.
            batcher.remove(sc.name)
            source.stop()
            self._sources, self._zone_meters, self._trackers, self._workers, self.cfg = before
            if self._hub is not None:
                self._hub.remove_stream(sc.name)
            if worker is not None and worker.started:
                worker.finish()
            m.remove_stream(sc.name)
            raise
        log.info("stream %s added (%s)", sc.name, sc.display_uri)

    def remove_stream(self, name: str) -> int:
        """Stop stream ``name`` and finalize its outputs (its MP4 closed whole) while the others
        run on; its series leave /metrics. Returns the frames it processed. Raises StreamChangeError."""
        with self._change:
            return self._remove(name)

    def _remove(self, name: str) -> int:
        self.stream_config(name)  # 404 first
        self._check_rules(name)
        batcher, m = self._batcher, self.metrics
        if batcher is None or self.stop_event.is_set() or self._loop_ended.is_set():
            raise StreamChangeError("the pipeline is not running", 503)
        source = next(s for s in self._sources if s.name == name)
        source.stop()
        source.join(2.0)
        # What the reader queued still goes through the model: the outputs get every frame read.
        drain_by = time.monotonic() + DRAIN_S
        while len(source.queue) and time.monotonic() < drain_by and not self._loop_ended.is_set():
            time.sleep(0.01)
        batcher.remove(name)
        self._after_batch()
        worker = self._workers[name]
        self._sources = [s for s in self._sources if s.name != name]
        self._workers = {k: v for k, v in self._workers.items() if k != name}
        self._zone_meters = {k: v for k, v in self._zone_meters.items() if k != name}
        worker.finish()  # writes what it holds, in order
        errors = list(worker.errors)
        for sink in self._sinks:  # each in isolation, as at shutdown
            try:
                sink.close_stream(name)
            except Exception as e:
                msg = f"stream {name}: {sink.describe()}: close failed: {describe_error(e)}"
                log.error("%s", msg)
                errors.append(msg)
        self._trackers = {k: v for k, v in self._trackers.items() if k != name}
        self._smoother.forget(name)
        if self._hub is not None:
            self._hub.remove_stream(name)
        m.remove_stream(name)
        self._removed_frames[name] = self._removed_frames.get(name, 0) + worker.processed
        self._removed_errors.extend(errors)
        self.cfg = self.cfg.model_copy(update={"sources": [s for s in self.cfg.sources if s.name != name]})
        log.info("stream %s removed after %d frame(s)", name, worker.processed)
        return worker.processed

    def _check_rules(self, name: str) -> None:
        """Event rules are built for the streams of the start: a rule's stream stays until a restart (409)."""
        rules = [r.name for r in self.cfg.events.rules if r.stream == name] if self.cfg.events else []
        if rules:
            raise StreamChangeError(
                f"stream '{name}' is named by event rule(s) {', '.join(rules)}; rules change with a restart", 409
            )

    def change_stream(self, name: str, data: object) -> SourceConfig:
        """Change stream ``name``'s settings: ``data`` (keys of a source config) over its current
        ones, then remove and add it (its outputs start new files, its frame numbers start at 0).
        Nothing changes when the result is invalid. Raises StreamChangeError."""
        with self._change:
            old = self.stream_config(name)
            if not isinstance(data, dict):
                raise StreamChangeError("(top level): a mapping of source settings is expected", 422)
            if data.get("name", name) != name:
                raise StreamChangeError("name: a stream cannot be renamed; remove it and add the new one", 422, "name")
            merged = {**old.model_dump(exclude_unset=True), **data}
            others = [s for s in self.cfg.sources if s.name != name]
            sc = _source_from_api(merged)
            new_cfg = self._with_sources([*others, sc])
            if sc == old:
                return sc
            self._remove(name)
            self._add(sc, new_cfg)
            return sc

    def reload(self, path: str) -> None:
        """SIGHUP: read the pipeline file again and make the running streams equal to its sources
        (removed, changed, added; streams added over the API are removed too); other changes need a
        restart and are named in one warning. The whole change is checked first: a file that does
        not validate, or a change that would be refused, is one error line and changes nothing."""
        if self._batcher is None or not self.ready.is_set():
            log.error("reload ignored: the pipeline is not running yet")
            return
        try:
            new = load_config(path)
        except ConfigError as e:
            log.error("reload ignored: %s", e)
            return
        with self._change:
            if self._batcher is None or self.stop_event.is_set() or self._loop_ended.is_set():
                log.error("reload ignored: the pipeline is not running")
                return
            old_cfg = self.cfg
            rest = {"sources"}
            if new.model_dump(exclude=rest) != old_cfg.model_dump(exclude=rest):
                keys = [k for k in type(new).model_fields if k not in rest and getattr(new, k) != getattr(old_cfg, k)]
                log.warning("reload: %s changed; that needs a restart (sources are applied)", ", ".join(keys))
            old = {s.name: s for s in old_cfg.sources}
            now = {s.name: s for s in new.sources}
            removed = [n for n in old if n not in now]
            changed = [n for n in old if n in now and now[n] != old[n]]
            added = [n for n in now if n not in old]
            running = {s.name for s in self._sources}
            # The plan, checked whole before anything changes: each step's config through the
            # file's cross-checks against the running outputs, and the rules' streams.
            try:
                for n in removed + changed:
                    if n in running:
                        self._check_rules(n)
                sources = [s for s in old_cfg.sources if s.name not in removed + changed]
                steps = []
                for n in changed + added:
                    sources = [*sources, now[n]]
                    steps.append((n, self._with_sources(sources)))
            except StreamChangeError as e:
                log.error("reload refused, nothing changed: %s", e)
                return
            try:
                for n in removed + changed:
                    if n in running:
                        self._remove(n)
                    else:  # another shard's stream: the config only
                        self.cfg = self.cfg.model_copy(update={"sources": [s for s in self.cfg.sources if s.name != n]})
                for n, cfg in steps:
                    if self.shard.owns(n):
                        self._add(now[n], cfg)
                    else:
                        self.cfg = cfg
            except StreamChangeError as e:  # the pipeline stopped meanwhile
                log.error("reload stopped: %s", e)
                return
            if removed or changed or added:
                log.info(
                    "reload: %d stream(s) added, %d removed, %d changed",
                    len(added),
                    len(removed),
                    len(changed),
                )
            else:
                log.info("reload: no stream changed")

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

    def _health(self) -> tuple[bool, dict[str, object]]:
        streams = {s.name: _state(s) for s in self._sources}
        ok = (
            self.ready.is_set()
            and not self.stop_event.is_set()
            and (not streams or any(v in ("up", "finished") for v in streams.values()))  # an empty shard is healthy
        )
        return ok, {"status": "ok" if ok else "degraded", "streams": streams}


def _source_from_api(data: object) -> SourceConfig:
    """A source config from the API, by the file's model; StreamChangeError 422 naming the bad key."""
    try:
        return SourceConfig.model_validate(data)
    except ValidationError as e:
        loc, msg = describe_validation(e)
        key = ".".join(str(p) for p in loc) or "(top level)"
        raise StreamChangeError(f"{key}: {msg}", 422, key) from None


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
