"""The events output: runs every rule's state machine on its stream's results, in frame order (it
is a Sink, called from the stream's output worker), writes a JPEG snapshot per start and end, and
hands each event to its channels without waiting for them."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import cv2

from ..errors import OutputError
from ..frames import Picture, SegResult
from ..metrics import Metrics
from ..outputs.base import Sink
from .clips import StreamClips
from .config import EventsConfig
from .delivery import Channel, JsonlChannel, MqttChannel, WebhookChannel
from .rules import Event, RuleState

log = logging.getLogger(__name__)


class EventsSink(Sink):
    def __init__(self, cfg: EventsConfig, class_names: list[str], metrics: Metrics, streams: list[str]) -> None:
        self.cfg = cfg
        self.metrics = metrics
        snap = cfg.snapshots is not None or cfg.clips is not None
        self.wants_overlay = snap and cfg.snapshot_image == "overlay"
        self.wants_raw = snap and cfg.snapshot_image == "raw"
        self._class = {r.class_name: class_names.index(r.class_name) for r in cfg.rules if r.class_name in class_names}
        self._states: dict[str, list[RuleState]] = {}
        for r in cfg.rules:
            if r.stream in streams:  # a shard runs some streams only
                self._states.setdefault(r.stream, []).append(RuleState(r, r.stream, gap_s=cfg.gap_s))
                for kind in ("start", "end"):
                    metrics.events_total.labels(r.stream, r.name, kind)
                metrics.event_active.labels(r.stream, r.name).set(0)
        self.clips: dict[str, StreamClips] = {}
        if cfg.clips is not None:
            self.clips = {s: StreamClips(cfg.clips, s, metrics.events_failed.labels("clip")) for s in self._states}
        self._clip_of: dict[str, str] = {}  # event id -> clip path, from start to end
        self.channels: dict[str, Channel] = {}
        try:
            d, f = metrics.events_dropped, metrics.events_failed
            if cfg.jsonl is not None:
                self.channels["jsonl"] = JsonlChannel(Path(cfg.jsonl), d, f)
            if cfg.webhook is not None:
                self.channels["webhook"] = WebhookChannel(cfg.webhook, d, f)
            if cfg.mqtt is not None:
                self.channels["mqtt"] = MqttChannel(cfg.mqtt, d, f)
        except BaseException:
            self._close_channels(0.0)
            raise
        for name in (*self.channels, "snapshot", "clip"):
            d.labels(name)
            f.labels(name)
        for ch in self.channels.values():
            ch.start()

    def describe(self) -> str:
        return "events output"

    def write(self, result: SegResult, picture: Picture | None) -> None:
        f = result.frame
        image = picture
        clips = self.clips.get(f.stream)
        if clips is not None and image is not None:
            clips.frame(image, f.pts)
        for st in self._states.get(f.stream, ()):
            value = self._value(st, result)
            for ev in st.update(f.pts, value, f.wall_time, f.index):
                # an end for a gap concerns an earlier frame: no picture (or mask) of it is at hand
                if ev.reason == "gap":
                    self._emit(ev, None, f.pts)
                else:
                    self._emit(ev if result.rle is None else replace(ev, rle=result.rle), image, f.pts)
            self.metrics.event_active.labels(f.stream, st.rule.name).set(1 if st.active else 0)

    def _value(self, st: RuleState, result: SegResult) -> float:
        k = self._class[st.rule.class_name]
        if st.rule.zone is None:
            return float(result.area_ratio[k])
        for z in result.zones:  # a handful per stream: a scan beats keeping an index in step
            if z.zone == st.rule.zone:
                return float(z.ratios[k])
        # the config cross-check names only zones of the rule's stream; a hand-built result may not
        raise OutputError(f"events: rule {st.rule.name}: stream {result.frame.stream} has no zone {st.rule.zone}")

    def _emit(self, ev: Event, image: Picture | None, pts: float | None = None) -> None:
        clips = self.clips.get(ev.stream)
        if clips is not None:
            if ev.kind == "start":
                path = clips.start(ev.id)
                if path is not None:
                    self._clip_of[ev.id] = str(path)
            elif pts is not None:
                clips.end(ev.id, pts)
            ev = replace(ev, clip=self._clip_of.get(ev.id))
            if ev.kind == "end":
                self._clip_of.pop(ev.id, None)
        jpeg = None
        if image is not None and self.cfg.snapshots is not None:
            jpeg, path = self._snapshot(ev, image)
            if path is not None:
                ev = replace(ev, snapshot=str(path))
        self.metrics.events_total.labels(ev.stream, ev.rule, ev.kind).inc()
        log.info(
            "event %s %s on %s (%s %.3f)%s",
            ev.rule,
            ev.kind,
            ev.stream,
            ev.class_name,
            ev.value,
            f" after {ev.duration_s:.1f} s ({ev.reason})" if ev.kind == "end" else "",
        )
        wanted = self._rule_sinks(ev.rule, ev.stream)
        for name, ch in self.channels.items():
            if name in wanted:
                ch.offer(ev, jpeg)

    def _rule_sinks(self, rule: str, stream: str) -> tuple[str, ...]:
        for st in self._states.get(stream, ()):
            if st.rule.name == rule:
                return tuple(st.rule.sinks) if st.rule.sinks is not None else tuple(self.channels)
        return ()

    def _snapshot(self, ev: Event, image: Picture) -> tuple[bytes | None, Path | None]:
        """Encode now (the overlay buffer is reused by the next frame) and write the file; a failure
        costs the snapshot, counted, never the event."""
        assert self.cfg.snapshots is not None
        path = Path(self.cfg.snapshots) / ev.stream / f"{ev.id}-{ev.kind}.jpg"
        try:
            ok, buf = cv2.imencode(".jpg", image.bgr(), [cv2.IMWRITE_JPEG_QUALITY, self.cfg.snapshot_quality])
            if not ok:
                raise OSError("JPEG encoding failed")
            jpeg = buf.tobytes()
        except (OSError, cv2.error) as e:
            self.metrics.events_failed.labels("snapshot").inc()
            log.error("events: snapshot of %s %s: %s", ev.rule, ev.kind, e)
            return None, None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg)
        except OSError as e:
            self.metrics.events_failed.labels("snapshot").inc()
            log.error("events: snapshot %s: %s", path, e.strerror or e)
            return jpeg, None
        return jpeg, path

    def close(self) -> None:
        for stream, states in self._states.items():
            for st in states:
                for ev in st.finish():
                    self._emit(ev, None)
                self.metrics.event_active.labels(stream, st.rule.name).set(0)
        for c in self.clips.values():
            c.close()
        self._close_channels(self.cfg.close_timeout_s)

    def _close_channels(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for name, ch in self.channels.items():  # each in isolation
            try:
                ch.close(max(0.0, deadline - time.monotonic()))
            except Exception as e:
                log.error("events %s: close: %s", name, e)
            if ch.queue.qsize():
                log.warning("events %s: %d event(s) not delivered at shutdown", name, ch.queue.qsize())
