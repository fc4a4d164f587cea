"""Event rules: the state machine on synthetic ratio sequences, and the config checks."""

from __future__ import annotations

import random

import pytest

from streamseg.config import parse_config
from streamseg.errors import ConfigError
from streamseg.events.config import check_event_classes
from streamseg.events.rules import Event, Rule, RuleState


def rule(**kw: object) -> Rule:
    base: dict[str, object] = {"name": "r", "stream": "a", "class": "person", "above": 0.3}
    base.update(kw)
    return Rule.model_validate(base)


def run(r: Rule, values: list[float], fps: float = 10.0, gap_s: float = 10.0) -> tuple[RuleState, list[Event]]:
    st = RuleState(r, "a", gap_s=gap_s)
    out: list[Event] = []
    for i, v in enumerate(values):
        out += st.update(i / fps, v, wall_time=1000.0 + i / fps, frame=i)
    return st, out


def kinds(events: list[Event]) -> list[tuple[str, int]]:
    return [(e.kind, e.frame) for e in events]


def test_start_and_end_at_the_thresholds():
    _, ev = run(rule(clear=0.2), [0.1, 0.31, 0.5, 0.25, 0.21, 0.19, 0.1])
    assert kinds(ev) == [("start", 1), ("end", 5)]
    start, end = ev
    assert end.id == start.id and end.reason == "clear"
    assert end.duration_s == pytest.approx(0.4)
    assert start.value == 0.31 and end.value == 0.19 and start.threshold == 0.3


def test_flicker_around_the_threshold_does_not_flap():
    values = [0.29, 0.31] * 50  # a mask flickering across 0.3 for 10 s
    _, ev = run(rule(clear=0.2), values)
    assert kinds(ev) == [("start", 1)]  # one event, still open: it never fell below 0.2
    _, ev = run(rule(), values)  # without hysteresis the same input flaps: the test can tell
    assert len(ev) == 100 - 1


def test_for_s_is_respected_and_one_off_frame_restarts_the_wait():
    r = rule(for_s=1.0)
    _, ev = run(r, [0.5] * 10 + [0.1])  # on for 0.9 s only
    assert ev == []
    _, ev = run(r, [0.5] * 11)  # frame 10 is 1.0 s after the onset at frame 0
    assert kinds(ev) == [("start", 10)]
    _, ev = run(r, [0.5] * 8 + [0.2] + [0.5] * 11)  # the wait starts again at frame 9
    assert kinds(ev) == [("start", 19)]


def test_end_only_below_clear_and_after_clear_for_s():
    _, ev = run(rule(clear=0.2), [0.5] + [0.25] * 100)
    assert kinds(ev) == [("start", 0)]  # between clear and threshold: stays on
    _, ev = run(rule(clear=0.2, clear_for_s=0.5), [0.5, 0.1, 0.1, 0.1, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert kinds(ev) == [("start", 0), ("end", 10)]  # frames 5..10 span 0.5 s; 1..3 did not


def test_equal_to_the_threshold_is_not_past_it():
    _, ev = run(rule(clear=0.2), [0.3, 0.3, 0.5, 0.2, 0.2])
    assert kinds(ev) == [("start", 2)]


def test_below_rule():
    _, ev = run(rule(above=None, below=0.1, clear=0.2), [0.5, 0.05, 0.15, 0.19, 0.21, 0.05])
    assert kinds(ev) == [("start", 1), ("end", 4), ("start", 5)]


def test_a_restarted_pts_keeps_durations_whole():
    st = RuleState(rule(clear=0.2), "a")
    ev = st.update(100.0, 0.5, 1.0) + st.update(101.0, 0.5, 2.0)
    ev += st.update(0.0, 0.5, 3.0)  # reconnected: the stream's clock starts again
    ev += st.update(1.0, 0.1, 4.0)
    assert kinds(ev) == [("start", 0), ("end", 0)]
    assert ev[1].duration_s == pytest.approx(2.0)  # 100 -> 101 -> (101) -> 102


def test_a_gap_ends_the_open_event_at_the_last_frame_before_it():
    st = RuleState(rule(clear=0.2), "a", gap_s=5.0)
    ev = st.update(0.0, 0.5, 1000.0, 0) + st.update(1.0, 0.5, 1001.0, 1)
    ev += st.update(30.0, 0.5, 1030.0, 2)  # the stream was down 29 s and is still above
    assert kinds(ev) == [("start", 0), ("end", 1), ("start", 2)]
    assert ev[1].reason == "gap" and ev[1].duration_s == pytest.approx(1.0)
    assert ev[2].id != ev[0].id


def test_finish_ends_an_open_event_and_nothing_else():
    st, ev = run(rule(clear=0.2), [0.5, 0.6])
    (end,) = st.finish()
    assert end.kind == "end" and end.reason == "stream_end" and end.id == ev[0].id and end.frame == 1
    assert st.finish() == []
    st, _ = run(rule(for_s=5), [0.5, 0.6])  # pending only
    assert st.finish() == []


@pytest.mark.parametrize("seed", range(20))
def test_random_sequences_keep_the_invariants(seed: int):
    rng = random.Random(seed)
    r = rule(clear=0.2, for_s=rng.choice([0, 0.3, 1.0]))
    values = [rng.choice([0.0, 0.15, 0.25, 0.35, 0.6]) for _ in range(300)]
    st, ev = run(r, values)
    ev += st.finish()
    assert [e.kind for e in ev] == ["start", "end"] * (len(ev) // 2)
    for start, end in zip(ev[::2], ev[1::2], strict=True):
        assert start.id == end.id and end.duration_s is not None and end.duration_s >= 0
        assert start.value > 0.3
        # the condition held for for_s before the start
        onset = start.frame - round(r.for_s * 10)
        assert all(v > 0.3 for v in values[onset : start.frame + 1])
        # nothing between start and end was below clear; the end is (or it is the stream's end)
        assert all(v >= 0.2 for v in values[start.frame : end.frame])
        assert end.reason == "stream_end" or values[end.frame] < 0.2


CFG = """
sources:
  - {name: a, uri: "synthetic://", zones: [{name: door, polygon: [[0, 0], [1, 0], [1, 1]]}]}
model: {path: selfie_landscape}
events:
  jsonl: out/events.jsonl
  rules:
    - {name: r, stream: a, class: person, above: 0.3, clear: 0.2}
"""


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        ("above: 0.3, clear: 0.2", "above: 0.3, clear: 0.2", None),
        ("above: 0.3, clear: 0.2", "above: 0.3, clear: 0.4", "clear (0.4) must not exceed above (0.3)"),
        ("above: 0.3, clear: 0.2", "below: 0.3, clear: 0.2", "clear (0.2) must not be under below (0.3)"),
        ("above: 0.3, clear: 0.2", "above: 0.3, below: 0.1", "give exactly one of above or below"),
        ("above: 0.3, clear: 0.2", "clear: 0.2", "give exactly one of above or below"),
        ("above: 0.3", "above: 1.5", "less than or equal to 1"),
        ("stream: a", "stream: b", "rules.0.stream: no stream named 'b' (a)"),
        ("clear: 0.2}", "clear: 0.2, zone: door}", None),
        ("clear: 0.2}", "clear: 0.2, zone: gate}", "rules.0.zone: stream 'a' has no zone 'gate' (its zones: door)"),
        ("clear: 0.2}", "clear: 0.2, sinks: [mqtt]}", "rules.0 (r): sinks mqtt not configured under events"),
        ("clear: 0.2}", "clear: 0.2, sinks: [sms]}", "'mqtt', 'webhook' or 'jsonl'"),
        ("  jsonl: out/events.jsonl\n", "", "configure at least one of mqtt, webhook or jsonl"),
        ("clear: 0.2}", "clear: 0.2}\n    - {name: r, stream: a, class: person, below: 0.1}", "duplicate rule 'r'"),
        ("clear: 0.2}", "clear: 0.2, for_s: -1}", "greater than or equal to 0"),
    ],
)
def test_config_table(old: str, new: str, error: str | None):
    text = CFG.replace(old, new)
    if error is None:
        parse_config(text)
        return
    with pytest.raises(ConfigError) as e:
        parse_config(text, "p.yaml")
    assert error in str(e.value)
    assert "\n" not in str(e.value) and str(e.value).startswith("p.yaml:")


def test_mqtt_password_is_not_in_the_config_repr(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MQTT_PASS", "s3cret-pw")
    text = CFG.replace("  jsonl:", "  mqtt: {host: localhost, username: u, password: '${MQTT_PASS}'}\n  jsonl:")
    cfg = parse_config(text)
    assert cfg.events is not None and cfg.events.mqtt is not None
    assert cfg.events.mqtt.password is not None and cfg.events.mqtt.password.get_secret_value() == "s3cret-pw"
    assert "s3cret-pw" not in repr(cfg) and "s3cret-pw" not in cfg.model_dump_json()


def test_a_class_the_model_lacks_is_one_line_naming_the_key(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(CFG.replace("class: person", "class: car"))
    cfg = parse_config(f.read_text(), str(f))
    with pytest.raises(ConfigError) as e:
        check_event_classes(cfg.events, ["background", "person"], "selfie", str(f))
    assert str(e.value) == f"{f}:8: events.rules.0.class: car is not a class of model selfie (background, person)"


def test_a_zone_rule_reads_the_zone_ratio_not_the_frame(tmp_path):
    import json
    import time

    import numpy as np

    from streamseg.events.config import EventsConfig
    from streamseg.events.sink import EventsSink
    from streamseg.frames import Frame, SegResult
    from streamseg.metrics import Metrics
    from streamseg.zones import ZoneAreas

    cfg = EventsConfig.model_validate(
        {
            "rules": [
                {"name": "door", "stream": "a", "zone": "door", "class": "person", "above": 0.5, "clear": 0.2},
                {"name": "frame", "stream": "a", "class": "person", "above": 0.5},
            ],
            "jsonl": str(tmp_path / "e.jsonl"),
            "snapshots": None,
        }
    )
    sink = EventsSink(cfg, ["background", "person"], Metrics(), ["a"])
    assert not sink.wants_overlay and not sink.wants_raw  # no snapshots: no overlay rendered for events
    # the person fills the door zone but only 10% of the frame
    for i, in_door in enumerate([0.0, 0.9, 0.9, 0.1]):
        f = Frame("a", i, i / 10, time.monotonic(), 1.0 + i / 10, np.zeros((4, 4, 3), np.uint8))
        zone = ZoneAreas("door", np.array([1 - in_door, in_door]), 16)
        sink.write(SegResult(f, np.zeros((4, 4), np.uint8), np.array([0.9, 0.1]), zones=(zone,)), None)
    sink.close()
    lines = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [(r["rule"], r["zone"], r["kind"], r["frame"]) for r in lines] == [
        ("door", "door", "start", 1),
        ("door", "door", "end", 3),
    ]
    assert lines[0]["snapshot"] is None


def test_a_pipeline_refuses_a_rule_on_a_class_the_model_lacks_before_it_opens_anything(tmp_path):
    from streamseg.pipeline import Pipeline

    text = CFG.replace("class: person", "class: car").replace("out/events.jsonl", str(tmp_path / "e.jsonl"))
    with pytest.raises(ConfigError) as e:
        Pipeline(parse_config(text))
    assert str(e.value) == "events.rules.0.class: car is not a class of model selfie_landscape (background, person)"
    assert not (tmp_path / "e.jsonl").exists()
