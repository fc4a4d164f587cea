"""Where events go: MQTT, a webhook, a JSON Lines file. Each is a ``Channel``: a bounded queue and
one worker thread, so a dead broker or a slow receiver costs queued events, never a stream's
frame. A full queue drops the new event and counts it in ``streamseg_events_dropped_total{sink}``;
a delivery that failed for good counts in ``streamseg_events_failed_total{sink}``.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from .._deps import require
from ..errors import OutputError
from .rules import Event

log = logging.getLogger(__name__)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class MqttConfig(_Strict):
    host: str = Field(description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="broker port")
    username: str | None = Field(None, description="user name; null = anonymous")
    password: SecretStr | None = Field(None, description="password (use ${VAR}); never logged")
    client_id: str = Field("", max_length=64, description="MQTT client id; empty = one made up by the client")
    topic: str = Field(
        "streamseg/{stream}/{rule}",
        min_length=1,
        description="topic of the JSON payload; {stream} and {rule} are replaced; the JPEG goes to TOPIC/snapshot",
    )
    qos: int = Field(1, ge=0, le=2, description="MQTT QoS of every message")
    snapshot: bool = Field(True, description="also publish the JPEG snapshot on TOPIC/snapshot (not retained)")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive")
    reconnect_max_s: float = Field(10.0, ge=1, le=600, description="reconnect back-off cap (it starts at 1 s)")
    queue_size: int = Field(1000, ge=1, le=1_000_000, description="events waiting for the broker before new ones drop")


class WebhookConfig(_Strict):
    url: str = Field(pattern=r"^https?://", description="http(s) URL that receives each event as a JSON POST")
    timeout_s: float = Field(5.0, gt=0, le=300, description="connect and read timeout per attempt")
    retries: int = Field(6, ge=0, le=100, description="retries after a failed attempt (errors, 429, 5xx)")
    backoff_s: float = Field(0.5, ge=0, le=60, description="first back-off; doubles per retry")
    backoff_max_s: float = Field(30.0, gt=0, le=3600, description="back-off cap")
    snapshot: bool = Field(True, description="carry the JPEG as base64 in snapshot_jpeg")
    headers: dict[str, str] = Field(default_factory=dict, description="extra headers (an Authorization: ${TOKEN})")
    queue_size: int = Field(1000, ge=1, le=1_000_000, description="events waiting to be posted before new ones drop")


class Channel:
    """A bounded queue and one worker; ``offer`` never blocks."""

    name = "channel"

    def __init__(self, queue_size: int, dropped: Any, failed: Any) -> None:
        self.queue: queue.Queue[tuple[Event, bytes | None] | None] = queue.Queue(maxsize=queue_size)
        self._dropped = dropped.labels(self.name)
        self._failed = failed.labels(self.name)
        self.delivered = 0
        self._thread = threading.Thread(target=self._run, name=f"events-{self.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer(self, event: Event, jpeg: bytes | None) -> bool:
        try:
            self.queue.put_nowait((event, jpeg))
            return True
        except queue.Full:
            self._dropped.inc()
            log.warning("events %s: queue full, event %s %s %s dropped", self.name, event.rule, event.kind, event.id)
            return False

    def close(self, timeout: float) -> None:
        """Deliver what is queued within ``timeout`` seconds, then stop."""
        deadline = time.monotonic() + timeout
        self._deadline = deadline
        if self._thread.ident is None:  # never started (a later channel failed to open)
            self._stop()
            return
        while True:  # the sentinel must get in even when the queue is full
            try:
                self.queue.put(None, timeout=0.05)
                break
            except queue.Full:
                if time.monotonic() >= deadline:
                    break
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self._stop()

    _deadline: float | None = None

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            event, jpeg = item
            try:
                self.deliver(event, jpeg)
                self.delivered += 1
            except Exception as e:  # one event's failure must not end the worker
                self._failed.inc()
                log.error("events %s: event %s %s %s not delivered: %s", self.name, event.rule, event.kind, event.id, e)

    def deliver(self, event: Event, jpeg: bytes | None) -> None:
        raise NotImplementedError

    def _stop(self) -> None:
        pass


class JsonlChannel(Channel):
    """Appends one line per event start and end (never truncates: events outlive a run)."""

    name = "jsonl"

    def __init__(self, path: Path, dropped: Any, failed: Any) -> None:
        super().__init__(100_000, dropped, failed)
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._f = path.open("a", encoding="utf-8")
        except OSError as e:
            raise OutputError(f"events.jsonl {path}: {e.strerror or e}") from None

    def deliver(self, event: Event, jpeg: bytes | None) -> None:
        self._f.write(json.dumps(event.to_json(), separators=(",", ":")) + "\n")
        self._f.flush()

    def _stop(self) -> None:
        self._f.close()


class WebhookChannel(Channel):
    """POSTs each event as JSON. urllib3's ``Retry`` does the retries with exponential back-off
    (connection errors, 429 and 5xx, POST included) honouring Retry-After; urllib3 is already
    in every install (requests, pip), so this adds no new library to the service."""

    name = "webhook"

    def __init__(self, cfg: WebhookConfig, dropped: Any, failed: Any) -> None:
        super().__init__(cfg.queue_size, dropped, failed)
        urllib3 = require("urllib3", None, "event webhooks")
        self.cfg = cfg
        self._retry = urllib3.Retry(
            total=cfg.retries,
            connect=cfg.retries,
            read=cfg.retries,
            status=cfg.retries,
            backoff_factor=cfg.backoff_s,
            backoff_max=cfg.backoff_max_s,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=None,  # retry POST too: receivers de-duplicate on the event id
            raise_on_status=False,
        )
        self._http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=cfg.timeout_s, read=cfg.timeout_s))
        self._urllib3 = urllib3

    def deliver(self, event: Event, jpeg: bytes | None) -> None:
        body = event.to_json()
        if self.cfg.snapshot and jpeg is not None:
            body["snapshot_jpeg"] = base64.b64encode(jpeg).decode("ascii")
        headers = {"Content-Type": "application/json", **self.cfg.headers}
        try:
            r = self._http.request(
                "POST", self.cfg.url, body=json.dumps(body).encode(), headers=headers, retries=self._retry
            )
        except self._urllib3.exceptions.HTTPError as e:
            raise OutputError(f"webhook: {type(e).__name__}: {_reason(e)}") from None
        if r.status >= 300:
            raise OutputError(f"webhook: HTTP {r.status} after {self.cfg.retries} retries")

    def _stop(self) -> None:
        self._http.clear()


def _reason(e: Exception) -> str:
    reason = getattr(e, "reason", None)
    return str(reason or e).splitlines()[0]


class MqttChannel(Channel):
    """Publishes JSON (and the JPEG on TOPIC/snapshot) with paho-mqtt. paho reconnects on its own
    network thread with back-off 1 s .. reconnect_max_s; the worker waits for a connection before
    each publish, so events queue (bounded) while the broker is away and go out once it is back."""

    name = "mqtt"

    def __init__(self, cfg: MqttConfig, dropped: Any, failed: Any) -> None:
        super().__init__(cfg.queue_size, dropped, failed)
        mqtt = require("paho.mqtt.client", None, "MQTT events")
        self.cfg = cfg
        self.connected = threading.Event()
        self._closing = threading.Event()
        self._refused = False
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cfg.client_id)
        if cfg.username is not None:
            c.username_pw_set(cfg.username, cfg.password.get_secret_value() if cfg.password else None)
        c.reconnect_delay_set(1, max(1, int(cfg.reconnect_max_s)))
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        self._acked: set[int] = set()
        self._acked_cv = threading.Condition()
        self._client = c
        self._mqtt = mqtt

    def start(self) -> None:
        # connect_async: a broker that is down at start is retried like one that went away later
        self._client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self._client.loop_start()
        super().start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            # a refused login (said once until a connection succeeds, never with the password);
            # paho keeps retrying: the broker's password file may be fixed while we run
            if not self._refused:
                log.error("events mqtt: %s:%d refused the connection: %s", self.cfg.host, self.cfg.port, reason)
            self._refused = True
            return
        self._refused = False
        log.info("events mqtt: connected to %s:%d", self.cfg.host, self.cfg.port)
        self.connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if self.connected.is_set() and not self._closing.is_set():
            log.warning("events mqtt: lost %s:%d (%s); reconnecting", self.cfg.host, self.cfg.port, reason)
        self.connected.clear()

    def topic(self, event: Event) -> str:
        return self.cfg.topic.replace("{stream}", event.stream).replace("{rule}", event.rule)

    def deliver(self, event: Event, jpeg: bytes | None) -> None:
        topic = self.topic(event)
        messages = [(topic, json.dumps(event.to_json()).encode())]
        if self.cfg.snapshot and jpeg is not None:
            messages.append((topic + "/snapshot", jpeg))
        for t, payload in messages:
            # Wait for a connection first: while the broker is away, events wait in our bounded
            # queue (counted when it overflows), not in paho's unbounded one.
            while not self.connected.wait(0.2):
                if self._past_deadline():
                    raise OutputError(f"mqtt: not connected to {self.cfg.host}:{self.cfg.port} at shutdown")
            info = self._client.publish(t, payload, qos=self.cfg.qos)
            if self.cfg.qos == 0:
                continue
            # QoS 1/2: wait for the broker's acknowledgement. paho keeps the message across a lost
            # connection and sends it again after reconnecting (at least once; the event id tells
            # a duplicate apart), so this waits through an outage rather than publishing twice.
            with self._acked_cv:
                while info.mid not in self._acked:
                    if self._past_deadline():
                        raise OutputError(f"mqtt: {t} not acknowledged by {self.cfg.host}:{self.cfg.port} at shutdown")
                    self._acked_cv.wait(0.2)
                self._acked.discard(info.mid)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self._acked_cv:
            self._acked.add(mid)
            self._acked_cv.notify_all()

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _stop(self) -> None:
        self._closing.set()
        self._client.disconnect()
        self._client.loop_stop()
