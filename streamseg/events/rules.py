"""Event rules and their state machine.

A rule watches one class's area ratio on one stream (the whole frame, or one zone) and is *on*
while the ratio is above (or below) ``threshold``. The machine per (rule, stream):

    idle --(on)--> pending --(on for for_s)--> active --(past clear for clear_for_s)--> idle
                   pending --(off)--> idle                 emits "start"      emits "end"

``clear`` is the hysteresis: an event that started above 0.3 with ``clear: 0.2`` ends only once the
ratio falls below 0.2, so a mask flickering around 0.3 starts one event and never flaps. Pending
needs the condition on every frame for ``for_s`` (one frame off starts the wait again).

Time is the stream's presentation time (pts, seconds), so durations are video time for files
processed faster than real time. A pts that goes backwards (a live stream reconnected and its
clock restarted) is rebased onto the machine's own clock, which therefore never runs backwards.
A stream that ends, or a pipeline that stops, ends its open events (``reason: "stream_end"``);
a stream that returned from a gap longer than ``gap_s`` ends the open event at the last frame
seen before the gap (``reason: "gap"``) before the new frame is judged.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Kind = Literal["start", "end"]
SINKS = ("mqtt", "webhook", "jsonl")
_EPS = 1e-6  # pts are sums of frame durations: 1.9 - 0.9 must count as the full 1.0 s


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="rule name in topics, metrics and records")
    stream: str = Field(description="the stream (a sources[].name) this rule watches")
    zone: str | None = Field(None, description="a zone of that stream; null = the whole frame")
    class_name: str = Field(alias="class", description="model class whose area ratio is watched")
    above: float | None = Field(None, ge=0, le=1, description="on while the ratio is above this (give above or below)")
    below: float | None = Field(None, ge=0, le=1, description="on while the ratio is below this (give above or below)")
    clear: float | None = Field(
        None,
        ge=0,
        le=1,
        description="hysteresis: an event ends only past this (below it for above, above it for below); "
        "null = the threshold itself",
    )
    for_s: float = Field(0.0, ge=0, le=86400, description="the condition must hold this long before the start")
    clear_for_s: float = Field(0.0, ge=0, le=86400, description="past clear this long before the end")
    sinks: list[Literal["mqtt", "webhook", "jsonl"]] | None = Field(
        None, description="where this rule's events go; null = every configured one"
    )

    @model_validator(mode="after")
    def _one_direction(self) -> Rule:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of above or below")
        if self.clear is not None:
            if self.above is not None and self.clear > self.above:
                raise ValueError(f"clear ({self.clear:g}) must not exceed above ({self.above:g}): it ends the event")
            if self.below is not None and self.clear < self.below:
                raise ValueError(f"clear ({self.clear:g}) must not be under below ({self.below:g}): it ends the event")
        return self

    @property
    def threshold(self) -> float:
        return self.above if self.above is not None else self.below  # type: ignore[return-value]

    @property
    def clear_at(self) -> float:
        return self.threshold if self.clear is None else self.clear

    def on(self, value: float) -> bool:
        """The start condition (strict: a ratio equal to the threshold is not past it)."""
        return value > self.threshold if self.above is not None else value < self.threshold

    def cleared(self, value: float) -> bool:
        """The end condition (strict, against ``clear``)."""
        return value < self.clear_at if self.above is not None else value > self.clear_at


@dataclass(frozen=True, slots=True)
class Event:
    """One start or end; an end carries its start's ``id`` and the event's ``duration_s``."""

    id: str
    rule: str
    stream: str
    zone: str | None
    class_name: str
    kind: Kind
    time: float  # the machine's clock (pts, rebased), seconds
    wall_time: float  # time.time() of the frame that decided it
    frame: int  # that frame's index
    value: float  # the ratio on that frame
    threshold: float
    duration_s: float | None = None  # end only
    reason: str | None = None  # end only: "clear", "gap" or "stream_end"
    snapshot: str | None = None  # path of the JPEG written for it, when snapshots are on
    clip: str | None = None  # path of the event's MP4 (complete post_s after the end), when clips are on
    rle: dict[str, dict[str, object]] | None = None  # the deciding frame's masks, when postprocess.rle exports it

    def to_json(self) -> dict[str, object]:
        d: dict[str, object] = {
            "id": self.id,
            "kind": self.kind,
            "rule": self.rule,
            "stream": self.stream,
            "zone": self.zone,
            "class": self.class_name,
            "time": round(self.time, 6),
            "wall_time": round(self.wall_time, 6),
            "frame": self.frame,
            "value": round(self.value, 6),
            "threshold": self.threshold,
        }
        if self.kind == "end":
            d["duration_s"] = None if self.duration_s is None else round(self.duration_s, 6)
            d["reason"] = self.reason
        d["snapshot"] = self.snapshot
        d["clip"] = self.clip
        if self.rle is not None:
            d["rle"] = self.rle
        return d


@dataclass
class RuleState:
    """The state machine of one rule on one stream; ``update`` per frame, ``finish`` at the end."""

    rule: Rule
    stream: str
    gap_s: float = 10.0  # a frame this long after the previous ends the open event first (reason "gap")
    state: Literal["idle", "pending", "active"] = "idle"
    since: float = 0.0  # pending: when the condition came on
    clearing: float | None = None  # active: when the ratio went past clear (None: it is not)
    started: Event | None = None
    _offset: float = 0.0
    _last_raw: float | None = None
    _last: tuple[float, float, int, float] | None = field(default=None)  # (t, wall, frame, value)

    def _clock(self, pts: float) -> float:
        if self._last_raw is not None and pts < self._last_raw:
            # pts restarted (reconnect): continue from the last time so durations stay whole
            self._offset += self._last_raw - pts
        self._last_raw = pts
        return pts + self._offset

    def update(self, pts: float, value: float, wall_time: float = 0.0, frame: int = 0) -> list[Event]:
        """Feed one frame's ratio; returns the events it decided (0, 1, or an end and a start)."""
        r = self.rule
        out: list[Event] = []
        t = self._clock(pts)
        if self._last is not None and wall_time - self._last[1] > self.gap_s and self.state != "idle":
            if self.state == "active":
                lt, lw, lf, lv = self._last
                out.append(self._end(lt, lw, lf, lv, "gap"))
            self.state, self.clearing = "idle", None
        self._last = (t, wall_time, frame, value)
        if self.state == "active":
            if r.cleared(value):
                if self.clearing is None:
                    self.clearing = t
                if t - self.clearing >= r.clear_for_s - _EPS:
                    out.append(self._end(t, wall_time, frame, value, "clear"))
                    self.state, self.clearing = "idle", None
            else:
                self.clearing = None
            return out
        if not r.on(value):
            self.state = "idle"
            return out
        if self.state == "idle":
            self.state, self.since = "pending", t
        if t - self.since >= r.for_s - _EPS:
            self.state, self.clearing = "active", None
            self.started = Event(
                uuid.uuid4().hex, r.name, self.stream, r.zone, r.class_name, "start", t, wall_time, frame, value,
                r.threshold,
            )  # fmt: skip
            out.append(self.started)
        return out

    def finish(self) -> list[Event]:
        """The stream ended: an open event ends at the last frame seen (reason "stream_end")."""
        if self.state != "active" or self._last is None:
            self.state = "idle"
            return []
        t, w, f, v = self._last
        return [self._end(t, w, f, v, "stream_end")]

    @property
    def active(self) -> bool:
        return self.state == "active"

    def _end(self, t: float, wall: float, frame: int, value: float, reason: str) -> Event:
        s = self.started
        assert s is not None  # active implies a start; not user input
        self.state, self.started = "idle", None
        r = self.rule
        return Event(
            s.id, r.name, self.stream, r.zone, r.class_name, "end", t, wall, frame, value, r.threshold,
            duration_s=t - s.time, reason=reason,
        )  # fmt: skip
