"""The ``events:`` section of a pipeline file: rules and where their events go."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .clips import ClipConfig
from .delivery import MqttConfig, WebhookConfig
from .rules import Rule


class EventsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    rules: list[Rule] = Field(min_length=1, description="event rules")
    mqtt: MqttConfig | None = Field(None, description="publish events to an MQTT broker")
    webhook: WebhookConfig | None = Field(None, description="POST events to an HTTP endpoint")
    jsonl: str | None = Field(None, min_length=1, description="append events to this JSON Lines file")
    snapshots: str | None = Field(
        "out/events",
        min_length=1,
        description="folder for each event's JPEG snapshot ({stream}/{id}-{kind}.jpg in it); null = none",
    )
    snapshot_image: Literal["overlay", "raw"] = Field(
        "overlay", description="snapshot the overlay (rendered for events if no other output wants it) or the frame"
    )
    snapshot_quality: int = Field(85, ge=10, le=100, description="JPEG quality of snapshots")
    clips: ClipConfig | None = Field(
        None, description="H.264 MP4 per event, from pre_s before the start to post_s after the end; null = none"
    )
    gap_s: float = Field(
        10.0, gt=0, le=86400, description="a stream silent this long ends its open events at its last frame"
    )
    close_timeout_s: float = Field(
        5.0, ge=0, le=600, description="at shutdown, time left to deliver queued events (all sinks together)"
    )

    @model_validator(mode="after")
    def _sinks_configured(self) -> EventsConfig:
        configured = {k for k in ("mqtt", "webhook", "jsonl") if getattr(self, k) is not None}
        if not configured:
            raise ValueError("configure at least one of mqtt, webhook or jsonl")
        seen: set[tuple[str, str]] = set()
        for i, r in enumerate(self.rules):
            if (r.name, r.stream) in seen:
                raise ValueError(f"rules.{i}: duplicate rule '{r.name}' for stream '{r.stream}'")
            seen.add((r.name, r.stream))
            missing = sorted(set(r.sinks or ()) - configured)
            if missing:
                raise ValueError(f"rules.{i} ({r.name}): sinks {', '.join(missing)} not configured under events")
        return self


def check_event_classes(
    events: EventsConfig | None, class_names: list[str], model: str, file: str | None = None
) -> None:
    """Each rule's class must be a class of the model (needs the model: checked at start and by validate)."""
    from ..config import key_line
    from ..errors import ConfigError

    for i, r in enumerate(events.rules if events else []):
        if r.class_name not in class_names:
            where = f"{file}:{key_line(file, ('events', 'rules', i, 'class'))}: " if file else ""
            raise ConfigError(
                f"{where}events.rules.{i}.class: {r.class_name} is not a class of model {model} "
                f"({', '.join(class_names)})"
            )
