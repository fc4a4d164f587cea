"""Events against real servers: Debian's mosquitto (started per test on a free loopback port) and a
stdlib HTTP server as the webhook receiver. Nothing is mocked: paho talks MQTT to the broker,
urllib3 POSTs to the receiver, and the pipeline test runs the bundled model on the sample clip."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from streamseg.config import parse_config
from streamseg.events.config import EventsConfig
from streamseg.events.rules import RuleState
from streamseg.events.sink import EventsSink
from streamseg.frames import Frame, Picture, SegResult
from streamseg.media import VideoInput, count_frames
from streamseg.metrics import Metrics
from tests.support.mqtt import Mosquitto, Subscriber, free_port, mosquitto_binary

from .conftest import RunningPipeline

pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto not installed (install-system-deps)")

CLASSES = ["background", "person"]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path)
    b.start()
    yield b
    b.stop()


class Receiver:
    """A webhook receiver on 127.0.0.1: answers 503 to the first ``fail`` POSTs, then 204."""

    def __init__(self, fail: int = 0, port: int = 0) -> None:
        self.fail = fail
        self.requests = 0
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests += 1
                if outer.requests <= outer.fail:
                    self.send_response(503)
                    self.end_headers()
                    return
                outer.bodies.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail=2)
    yield r
    r.close()


def result(i: int, person: float, stream: str = "a") -> SegResult:
    image = np.full((48, 64, 3), (i * 5) % 256, np.uint8)
    frame = Frame(stream, i, i / 10, time.monotonic(), 1_800_000_000 + i / 10, image)
    return SegResult(frame, np.zeros((12, 16), np.uint8), np.array([1 - person, person]))


# two events: frames 5..15 and 20..30 (above 0.3, clear 0.2)
PATTERN = [0.0] * 5 + [0.5] * 10 + [0.1] * 5 + [0.5] * 10 + [0.0] * 10


def events_cfg(tmp_path: Path, **kw: Any) -> EventsConfig:
    base: dict[str, Any] = {
        "rules": [{"name": "r", "stream": "a", "class": "person", "above": 0.3, "clear": 0.2}],
        "snapshots": str(tmp_path / "snap"),
        "close_timeout_s": 20,
    }
    base.update(kw)
    return EventsConfig.model_validate(base)


def feed(sink: EventsSink, values: list[float], start: int = 0) -> float:
    """Feed results with the overlay; returns the longest write() in seconds."""
    longest = 0.0
    for i, v in enumerate(values, start):
        r = result(i, v)
        t = time.perf_counter()
        sink.write(r, Picture(r.frame.image.copy(), "bgr24"))
        longest = max(longest, time.perf_counter() - t)
    return longest


def pairs(records: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return sorted((r["id"], r["kind"], r["frame"]) for r in records)


def test_one_event_reaches_mqtt_webhook_and_jsonl_alike(tmp_path: Path, broker: Mosquitto, receiver: Receiver):
    sub = Subscriber(broker.port, "streamseg/#")
    m = Metrics()
    cfg = events_cfg(
        tmp_path,
        mqtt={"host": "127.0.0.1", "port": broker.port},
        webhook={"url": receiver.url, "backoff_s": 0.05},
        jsonl=str(tmp_path / "events.jsonl"),
    )
    sink = EventsSink(cfg, CLASSES, m, ["a"])
    feed(sink, PATTERN)
    sink.close()

    lines = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["frame"]) for r in lines] == [("start", 5), ("end", 15), ("start", 20), ("end", 30)]
    assert lines[0]["id"] == lines[1]["id"] != lines[2]["id"] == lines[3]["id"]
    assert lines[1]["duration_s"] == pytest.approx(1.0) and lines[1]["reason"] == "clear"
    assert lines[0]["class"] == "person" and lines[0]["zone"] is None and lines[0]["value"] == 0.5

    msgs = sub.wait_for(4)
    assert {t for t, _ in msgs} == {"streamseg/a/r"}
    mqtt = [json.loads(p) for _, p in msgs]
    snaps = sub.wait_for(4, suffix="/snapshot")
    sub.close()
    assert receiver.requests == 4 + 2  # the first two POSTs got 503 and were retried
    assert pairs(mqtt) == pairs(lines) == pairs(receiver.bodies)

    for rec in lines:  # the snapshot file is the overlay of the event's frame, as JPEG
        img = cv2.imread(rec["snapshot"])
        assert img is not None and img.shape == (48, 64, 3)
        assert abs(int(img.mean()) - (rec["frame"] * 5) % 256) <= 2
        assert Path(rec["snapshot"]).name == f"{rec['id']}-{rec['kind']}.jpg"
    for body in receiver.bodies:
        jpeg = base64.b64decode(body["snapshot_jpeg"])
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
    assert len(snaps) == 4
    assert all(cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR) is not None for _, p in snaps)

    def value(name: str, **labels: str) -> float | None:
        return m.registry.get_sample_value(name, labels)

    assert value("streamseg_events_total", stream="a", rule="r", kind="start") == 2
    assert value("streamseg_events_total", stream="a", rule="r", kind="end") == 2
    assert value("streamseg_event_active", stream="a", rule="r") == 0
    assert value("streamseg_events_dropped_total", sink="mqtt") == 0
    assert value("streamseg_events_failed_total", sink="webhook") == 0


def test_a_password_broker_accepts_the_login_and_refusals_never_log_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    b = Mosquitto(tmp_path, users={"cam": "right-pw-123"})
    b.start()
    try:
        sub = Subscriber(b.port, "streamseg/#", "cam", "right-pw-123")
        caplog.set_level(logging.DEBUG)
        mqtt = {"host": "127.0.0.1", "port": b.port, "username": "cam", "password": "right-pw-123"}
        sink = EventsSink(events_cfg(tmp_path, mqtt=mqtt), CLASSES, Metrics(), ["a"])
        feed(sink, PATTERN)
        sink.close()
        assert len(sub.wait_for(4)) == 4
        sub.close()

        m = Metrics()
        bad = {**mqtt, "password": "wrong-pw-456"}
        sink = EventsSink(events_cfg(tmp_path, mqtt=bad, close_timeout_s=1.5), CLASSES, m, ["a"])
        feed(sink, PATTERN[:10])
        sink.close()
        assert "refused the connection" in caplog.text
        assert caplog.text.count("refused the connection") == 1  # once, not per reconnect attempt
        # the start and its stream_end end were never delivered: counted as failed at shutdown
        assert m.registry.get_sample_value("streamseg_events_failed_total", {"sink": "mqtt"}) == 2
        assert "right-pw-123" not in caplog.text and "wrong-pw-456" not in caplog.text
    finally:
        b.stop()


def test_a_full_queue_drops_and_counts_without_blocking(tmp_path: Path):
    m = Metrics()
    dead = {"host": "127.0.0.1", "port": free_port(), "queue_size": 2}  # nothing listens there
    sink = EventsSink(events_cfg(tmp_path, mqtt=dead, close_timeout_s=0.5), CLASSES, m, ["a"])
    longest = feed(sink, [0.5])  # the first event: the worker takes it and waits for the broker
    time.sleep(0.3)
    longest = max(longest, feed(sink, [0.0] + [0.5, 0.0] * 4, start=1))  # 9 more: 2 queue, 7 drop
    sink.close()
    assert longest < 0.5
    assert m.registry.get_sample_value("streamseg_events_dropped_total", {"sink": "mqtt"}) == 7
    assert m.registry.get_sample_value("streamseg_events_total", {"stream": "a", "rule": "r", "kind": "end"}) == 5


def test_a_webhook_receiver_that_was_down_gets_the_events_after_it_returns(tmp_path: Path):
    port = free_port()  # nothing listens yet: connection refused, retried with back-off
    url = f"http://127.0.0.1:{port}/hook"
    m = Metrics()
    sink = EventsSink(events_cfg(tmp_path, webhook={"url": url, "backoff_s": 0.1, "retries": 10}), CLASSES, m, ["a"])
    longest = feed(sink, PATTERN[:20])
    time.sleep(1.5)
    r = Receiver(port=port)
    try:
        sink.close()
        assert [(b["kind"], b["frame"]) for b in r.bodies] == [("start", 5), ("end", 15)]
        assert m.registry.get_sample_value("streamseg_events_failed_total", {"sink": "webhook"}) == 0
        assert longest < 0.5
    finally:
        r.close()


def test_pipeline_on_the_clip_with_the_broker_killed_mid_run(
    tmp_path: Path, clip: Path, broker: Mosquitto, caplog: pytest.LogCaptureFixture
):
    """The bundled model on the sample clip (paced, 10 s): a person crosses the frame. The broker
    goes down after the first event and comes back 2 s later; every frame is still processed and
    MQTT, the webhook and the events JSONL carry the same starts and ends, which are the rule run
    over the pipeline's own per-frame statistics."""
    caplog.set_level(logging.INFO, logger="streamseg.events")
    sub = Subscriber(broker.port, "streamseg/#")
    receiver = Receiver()
    stats, events = tmp_path / "stats.jsonl", tmp_path / "events.jsonl"
    text = f"""
sources: [{{name: bikes, uri: "{clip}", realtime: true}}]
model: {{path: selfie_landscape}}
outputs: [{{type: jsonl, path: "{stats}"}}]
http: {{enabled: false}}
events:
  jsonl: "{events}"
  snapshots: "{tmp_path}/snap"
  mqtt: {{host: 127.0.0.1, port: {broker.port}, reconnect_max_s: 1}}
  webhook: {{url: "{receiver.url}"}}
  clips: {{path: "{tmp_path}/clips", pre_s: 1, post_s: 1}}
  close_timeout_s: 20
  rules:
    - {{name: person, stream: bikes, class: person, above: 0.2, clear: 0.05, for_s: 0.1}}
"""
    try:
        run = RunningPipeline(parse_config(text))
        assert len(sub.wait_for(1, timeout=15)) == 1, "no event within 15 s"
        broker.stop()
        time.sleep(2)
        broker.start()
        summary = run.wait(60)
        assert summary.frames == {"bikes": 250}
        assert "reconnecting" in caplog.text and caplog.text.count("events mqtt: connected to") == 2
        assert not summary.output_errors

        rule = parse_config(text).events.rules[0]  # type: ignore[union-attr]
        st = RuleState(rule, "bikes")
        expected = []
        for line in stats.read_text().splitlines():
            r = json.loads(line)
            ratio = r["class_area_ratio"]["person"]
            expected += [(e.kind, e.frame) for e in st.update(r["pts"], ratio, r["time"], r["frame"])]
        expected += [(e.kind, e.frame) for e in st.finish()]
        assert len(expected) >= 2, expected

        lines = [json.loads(x) for x in events.read_text().splitlines()]
        assert [(r["kind"], r["frame"]) for r in lines] == expected
        mqtt = [json.loads(p) for _, p in sub.wait_for(len(expected))]
        assert pairs(mqtt) == pairs(lines) == pairs(receiver.bodies)
        for start, end in zip(lines[::2], lines[1::2], strict=True):  # 25 fps: 1 s before, the event, 1 s after
            assert start["clip"] == end["clip"] and Path(start["clip"]).exists()
            assert count_frames(Path(start["clip"])) >= (end["frame"] - start["frame"]) + 25 + 25 - 1
        for rec in lines:
            if rec["snapshot"]:
                img = cv2.imread(rec["snapshot"])
                assert img is not None and img.shape == (272, 640, 3)
    finally:
        sub.close()
        receiver.close()


def test_an_event_clip_runs_from_pre_s_before_the_start_to_post_s_after_the_end(tmp_path: Path):
    import av

    def index(image: np.ndarray) -> int:
        return 10 * round(float(image[:, 4:28].mean()) / 20) + round(float(image[:, 36:60].mean()) / 20)

    m = Metrics()
    clips = {"path": str(tmp_path / "clips"), "pre_s": 2, "post_s": 1, "width": 64, "crf": 0}
    sink = EventsSink(events_cfg(tmp_path, jsonl=str(tmp_path / "e.jsonl"), clips=clips), CLASSES, m, ["a"])
    # 10 fps; frame i shows its tens and units as grey levels 20 apart on the left and right halves,
    # so a decoded frame tells which frame it was (YUV round trips are off by a level or two)
    values = [0.0] * 50 + [0.5] * 20 + [0.0] * 30  # start at frame 50 (5.0 s), end at 70 (7.0 s)
    for i, v in enumerate(values):
        r = result(i, v)
        image = np.zeros((48, 64, 3), np.uint8)
        image[:, :32], image[:, 32:] = 20 * (i // 10), 20 * (i % 10)
        sink.write(r, Picture(image, "bgr24"))
    sink.close()
    lines = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["frame"]) for r in lines] == [("start", 50), ("end", 70)]
    path = lines[0]["clip"]
    assert path == lines[1]["clip"] == str(tmp_path / "clips" / "a" / f"{lines[0]['id']}.mp4")
    with av.open(path) as c:
        frames = [(f.time, index(f.to_ndarray(format="bgr24"))) for f in c.decode(video=0)]
    first, last = frames[0][1], frames[-1][1]
    assert 50 - 30 <= first <= 50 - 20  # pre_s = 2 s before, back to a keyframe (1 s apart)
    assert last == 70 + 10  # post_s = 1 s after the end
    assert [i for _, i in frames] == list(range(first, last + 1))  # whole: no frame missing
    assert frames[0][0] == 0.0 and frames[-1][0] == pytest.approx((last - first) / 10, abs=0.002)
    assert m.registry.get_sample_value("streamseg_events_failed_total", {"sink": "clip"}) == 0


def test_a_clip_goes_on_when_the_camera_comes_back_at_another_size(tmp_path: Path) -> None:
    # the ring's encoder keeps its first size: later frames are resized to it (they were refused,
    # with an ERROR per frame, and no clip was written); I420 frames as decoded video gives them
    from streamseg.yuv import bgr_to_i420

    m = Metrics()
    clips = {"path": str(tmp_path / "clips"), "pre_s": 1, "post_s": 1, "width": 64}
    sink = EventsSink(events_cfg(tmp_path, jsonl=str(tmp_path / "e.jsonl"), clips=clips), CLASSES, m, ["a"])
    values = [0.0] * 20 + [0.5] * 20 + [0.0] * 20
    for i, v in enumerate(values):
        size = (48, 64) if i < 25 else (90, 160)  # 4:3, then 16:9 and larger
        frame = bgr_to_i420(np.full((*size, 3), 20 * (i % 10), np.uint8))
        sink.write(result(i, v), Picture(frame, "yuv420p"))
    sink.close()
    lines = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["frame"]) for r in lines] == [("start", 20), ("end", 40)]
    assert m.registry.get_sample_value("streamseg_events_failed_total", {"sink": "clip"}) == 0
    video = VideoInput(lines[0]["clip"])
    try:
        assert (video.info.width, video.info.height) == (64, 48)
        assert sum(1 for _ in video.frames()) >= 30  # from 1 s before the start to 1 s after the end
    finally:
        video.close()
