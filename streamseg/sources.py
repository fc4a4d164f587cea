"""Sources: one reader thread per stream feeding a bounded queue of Frames.

Live sources (RTSP, cameras) keep the freshest frames: a full queue drops its oldest frame and
counts it. Files never drop: a full queue blocks the reader (back-pressure). RTSP readers have
open/read timeouts, a last-frame watchdog and reconnect with capped exponential back-off; a
failing stream is marked down and never takes the others with it.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator

from .config import SourceConfig
from .errors import SourceError
from .frames import Frame, Image, pixel_format_of
from .media import describe_error
from .metrics import Metrics
from .readers import GST_KINDS, NVDEC_KINDS, READERS, DeviceReader, Reader, choose_decoder, open_nvdec
from .uri import parse_source_uri, password_of, scrub

log = logging.getLogger(__name__)


class FrameQueue:
    """Bounded FIFO between one reader and the batcher. ``notify`` (set by whoever consumes: the
    batcher, when it takes the queue in) is called after each put and once the reader closed it."""

    def __init__(
        self,
        maxsize: int,
        drop_oldest: bool,
        on_drop: Callable[[], None],
        notify: Callable[[], None] | None = None,
    ) -> None:
        self.maxsize = maxsize
        self.drop_oldest = drop_oldest
        self._items: collections.deque[Frame] = collections.deque()
        self._cond = threading.Condition()
        self.notify: Callable[[], None] = notify or (lambda: None)
        self._on_drop = on_drop
        self.closed = False  # the reader put its last frame

    def close(self) -> None:
        """No more frames will come; wakes the consumer so it can tell a drained queue is done."""
        self.closed = True
        self.notify()

    def put(self, frame: Frame, stop: threading.Event) -> bool:
        """Add a frame; False if ``stop`` was set while waiting for room."""
        with self._cond:
            if len(self._items) >= self.maxsize:
                if self.drop_oldest:
                    self._items.popleft()
                    self._on_drop()
                else:
                    while len(self._items) >= self.maxsize:
                        if stop.is_set():
                            return False
                        self._cond.wait(0.1)
            self._items.append(frame)
        self.notify()
        return True

    def get_nowait(self) -> Frame | None:
        with self._cond:
            if not self._items:
                return None
            frame = self._items.popleft()
            self._cond.notify()
            return frame

    def peek_time(self) -> float | None:
        with self._cond:
            return self._items[0].capture_time if self._items else None

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class Backoff:
    """Delays between reconnect attempts: ``initial_s``, growing by ``factor`` per failure up to ``max_s``.

    The cap is what bounds how late a returning camera is seen: at most ``max_s`` plus one open
    (config.Reconnect keeps it at 5 s so a stream is back within 10 s of its server, whatever the
    outage length). One probe per ``max_s`` is a refused connect or one open timeout, no load on a
    dead host, so a longer outage needs no slower probing.
    """

    def __init__(self, initial_s: float, factor: float, max_s: float) -> None:
        self.initial_s, self.factor, self.max_s = initial_s, factor, max_s
        self.failures = 0  # failed attempts in a row
        self._delay = min(initial_s, max_s)

    @property
    def delay(self) -> float:
        """The wait before the next attempt."""
        return self._delay

    def failed(self) -> None:
        """An attempt failed: count it and lengthen the next wait (up to the cap)."""
        if self.failures:
            self._delay = min(self._delay * self.factor, self.max_s)
        self.failures += 1

    def succeeded(self) -> None:
        """Frames came: the next outage starts again from ``initial_s``."""
        self.failures = 0
        self._delay = min(self.initial_s, self.max_s)


class PtsClock:
    """A stream's timestamps: from 0 at its first frame, rising across reconnects (a camera restarts
    its clock; PyAV gives the first RTSP frame no pts at all), strictly increasing.

    ``connect(fps)`` at each new connection, then ``stamp(raw_pts)`` per frame read; a frame without
    a pts is one nominal frame period after the previous one.
    """

    def __init__(self) -> None:
        self.last: float | None = None  # the latest stamp given, over all connections
        self.resume = 0.0  # where this connection's timestamps start
        self._step = 0.04
        self._base: float | None = None
        self._rel = -self._step

    def connect(self, fps: float | None) -> None:
        self._step = 1.0 / fps if fps else 0.04
        self.resume = 0.0 if self.last is None else self.last + self._step
        self._base = None
        self._rel = -self._step

    def stamp(self, raw_pts: float | None) -> float:
        if raw_pts is None:
            self._rel += self._step
        else:
            if self._base is None:
                self._base = raw_pts - (self._rel + self._step)
            self._rel = raw_pts - self._base
        pts = self.resume + self._rel
        if self.last is not None and pts <= self.last:
            pts = self.last + 1e-3
        self.last = pts
        return pts


class Source:
    """One stream: a reader thread, its queue, its up/down state and its counters.

    A live stream also gets a watchdog thread on its own clock: no frame for ``watchdog_s`` marks
    it down at once, even while its reader is still blocked in a read (up to ``read_s``), and makes
    the reader drop that connection and reconnect: a late frame from a stalled connection never
    marks the stream up again.
    """

    def __init__(
        self, cfg: SourceConfig, metrics: Metrics, max_frames: int | None = None, gpu_stage: bool = False
    ) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.uri = parse_source_uri(cfg.uri)
        self.live = cfg.live
        self.metrics = metrics
        self.max_frames = max_frames
        # The batcher takes the queue in (Batcher.add) and wakes on it: a source needs no batcher.
        self.queue = FrameQueue(cfg.queue_size, drop_oldest=self.live, on_drop=lambda: self._drop("queue_full"))
        self.fps: float | None = None
        self.finished = threading.Event()  # no more frames will come
        self.error: str | None = None  # set when the stream failed for good
        self.up = False
        self.frames_read = 0
        self.dropped = 0  # frames read but never queued or evicted from the queue
        self.expected_frames: int | None = None  # where a finite stream ends, once opened (progress bars)
        self.last_frame_time = 0.0
        self._clock = PtsClock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"source-{self.name}", daemon=True)
        self._watchdog = threading.Thread(target=self._watch, name=f"watchdog-{self.name}", daemon=True)
        self._state = threading.RLock()  # up, last_frame_time and _stale: reader and watchdog threads
        self._stale = False  # the watchdog gave up on the current connection
        self._reader: Reader | None = None
        self._secrets = [p for p in [password_of(cfg.uri)] if p]
        # NVDEC or software, decided once per stream (gpu_stage: the processing stage takes GPU frames)
        self.decoder = choose_decoder(cfg, gpu_stage)
        # NVDEC's frames stay on the GPU (torch NV12 tensors) when the stage takes them there; for a
        # CPU stage the reader copies each one to the host as I420 (decoder: nvdec asked by name)
        self.device_frames = self.decoder.name == "nvdec" and gpu_stage
        if self.uri.kind in NVDEC_KINDS:
            where = ""
            if self.decoder.name == "nvdec":
                where = "; frames stay on the GPU" if self.device_frames else "; frames copied to the host"
            log.info("stream %s: decoder %s (%s%s)", self.name, self.decoder.name, self.decoder.reason, where)

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        if self.live:
            self._watchdog.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        if self._watchdog.is_alive():
            self._watchdog.join(timeout)

    def _drop(self, reason: str) -> None:
        self.dropped += 1  # one writer: the reader thread (queue_full happens inside its put)
        self.metrics.frames_dropped.labels(self.name, reason).inc()

    def _set_up(self, up: bool) -> None:
        with self._state:
            if up == self.up:
                return
            self.up = up
            self.metrics.stream_up.labels(self.name).set(1 if up else 0)
        log.info("stream %s is %s", self.name, "up" if up else "down")

    def check_watchdog(self, now: float) -> bool:
        """Mark a live stream down when no frame came for ``watchdog_s`` (a frozen or throttled
        server) and have the reader drop that connection; True if it fired."""
        with self._state:
            silent = now - self.last_frame_time
            if not (self.live and self.up and silent > self.cfg.timeouts.watchdog_s):
                return False
            self._stale = True
            self._set_up(False)
        log.warning("%s", self._msg(f"no frame for {silent:.1f} s; reconnecting"))
        return True

    def _watch(self) -> None:
        # A quarter of watchdog_s (at most 0.25 s) between checks: down within watchdog_s + 0.25 s.
        period = min(0.25, self.cfg.timeouts.watchdog_s / 4)
        while not self._stop.wait(period) and not self.finished.is_set():
            self.check_watchdog(time.monotonic())

    def _msg(self, text: str) -> str:
        return f"stream '{self.name}' ({self.cfg.display_uri}): {scrub(text, self._secrets)}"

    # --- the reader thread -------------------------------------------------------------------
    def _open(self) -> Reader:
        kind = self.uri.kind
        try:
            if self.decoder.name == "nvdec":
                return open_nvdec(self.uri, self.cfg)
            if kind in GST_KINDS and self._use_gstreamer():
                from .gst import GstReader, hardware_decoder

                return GstReader(kind, self.uri.target, self.cfg.timeouts.read_s, hardware_decoder())
            return READERS[kind](self.uri, self.cfg)
        except SourceError:
            raise
        except Exception as e:  # FFmpeg/OpenCV raise many types for unreadable input
            raise SourceError(describe_error(e)) from None

    def _use_gstreamer(self) -> bool:
        if self.cfg.decoder == "gstreamer":
            if self.cfg.loop:
                raise SourceError("decoder: gstreamer does not loop files; use decoder: ffmpeg")
            return True
        if self.cfg.decoder == "ffmpeg" or self.cfg.loop or not os.path.exists("/etc/nv_tegra_release"):
            return False  # only Jetson has a hardware decoder worth leaving FFmpeg for
        from .gst import hardware_decoder

        return hardware_decoder() is not None

    def _run(self) -> None:
        rc = self.cfg.reconnect
        backoff = Backoff(rc.initial_s, rc.factor, rc.max_s)
        last_reason = ""
        try:
            while not self._stop.is_set():
                try:
                    self._reader = self._open()
                except SourceError as e:
                    self.metrics.read_errors.labels(self.name).inc()
                    self._set_up(False)
                    if not self.live:
                        self.error = self._msg(str(e))
                        log.error("%s", self.error)
                        return
                    backoff.failed()
                    last_reason = str(e)
                    log.warning("%s (attempt %d, retry in %.1f s)", self._msg(str(e)), backoff.failures, backoff.delay)
                else:
                    with self._state:
                        self._stale = False  # a new connection: the watchdog starts afresh
                    try:
                        got = self._pump(self._reader)
                    except SourceError as e:
                        self.error = self._msg(str(e))
                        log.error("%s", self.error)
                        return
                    finally:
                        self._reader.close()
                        self._reader = None
                    self._set_up(False)
                    if not self.live or self._done():
                        return
                    if got:
                        backoff.succeeded()
                    else:
                        backoff.failed()
                    last_reason = "the stream ended without a frame"
                    log.warning("%s: stream ended; reconnecting in %.1f s", self._msg("lost"), backoff.delay)
                if rc.max_attempts is not None and backoff.failures > rc.max_attempts:
                    self.error = self._msg(f"gave up after {backoff.failures} failure(s) in a row; last: {last_reason}")
                    log.error("%s", self.error)
                    return
                if self._stop.wait(backoff.delay):
                    return
                self.metrics.reconnects.labels(self.name).inc()
        finally:
            self._set_up(False)
            self.finished.set()
            self.queue.close()

    def _expected(self, reader: Reader) -> int | None:
        """Frames this stream will read in all: the file's count, capped by ``max_frames``; an endless
        stream (live, looping) ends at ``max_frames`` or never (None)."""
        count: int | None = None if self.live or self.cfg.loop else getattr(reader, "frame_count", None)
        # A synthetic pattern without ``frames=`` never ends; a file without a stated count does.
        endless = self.live or self.cfg.loop or (self.uri.kind == "synthetic" and count is None)
        if self.max_frames is None:
            return count
        if count is None:
            return self.max_frames if endless else None
        return min(count, self.max_frames)

    def _done(self) -> bool:
        return self._stop.is_set() or (self.max_frames is not None and self.frames_read >= self.max_frames)

    def _frames(self, reader: Reader) -> Iterator[tuple[Image, float | None]]:
        """The reader's frames: on the device when it decodes there and the stage takes them, else on the host."""
        if self.device_frames and isinstance(reader, DeviceReader):
            return reader.device_frames()
        return reader.frames()

    def _pump(self, reader: Reader) -> bool:
        """Read frames into the queue until the stream ends, fails or we stop; True if any came."""
        self.fps = reader.fps
        self.expected_frames = self._expected(reader)
        self.metrics.source_fps.labels(self.name).set(self.fps or 0)
        got = False
        min_gap = 1.0 / self.cfg.fps if self.cfg.fps else 0.0
        next_pts = 0.0
        started = time.monotonic()
        clock = self._clock
        clock.connect(self.fps)
        decode_hist = self.metrics.stage_seconds.labels("decode")
        last_frame = self.metrics.last_frame.labels(self.name)
        it = self._frames(reader)
        while not self._done():
            t0 = time.perf_counter()
            try:
                item = next(it, None)
            except Exception as e:  # a read error or timeout: the stream is down
                self.metrics.read_errors.labels(self.name).inc()
                if not self.live and not got:
                    raise SourceError(describe_error(e)) from None
                log.warning("%s", self._msg(f"read failed: {describe_error(e)}"))
                return got
            if item is None:
                return got
            decode_hist.observe(time.perf_counter() - t0)
            last_frame.set(time.time())
            image, raw_pts = item
            now = time.monotonic()
            pts = clock.stamp(raw_pts)
            if not got:
                got = True
            with self._state:
                if self._stale:  # the watchdog gave this connection up: a late frame is not "up"
                    log.info("%s", self._msg("dropping a stalled connection's late frame; reconnecting"))
                    return got
                self.last_frame_time = now  # before up: the watchdog reads both under the lock
                self._set_up(True)
            index = self.frames_read
            self.frames_read += 1
            if min_gap:
                if pts + 1e-6 < next_pts:
                    self._drop("fps_cap")
                    continue
                next_pts = max(next_pts + min_gap, pts)
            if self.cfg.realtime and self.uri.kind in ("file", "synthetic"):  # a live synthetic stream paces too
                # pace from this connection's start: pts carries the earlier connections' time too
                wait = started + (pts - clock.resume) - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return got
            frame = Frame(self.name, index, float(pts), time.monotonic(), time.time(), image, pixel_format_of(image))
            if not self.queue.put(frame, self._stop):
                return got
        return got
