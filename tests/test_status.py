"""Per-stream status: the rate/latency tracker (on a clock the test drives) and a real run's status."""

from __future__ import annotations

import pytest

from streamseg.config import parse_config
from streamseg.pipeline import Pipeline
from streamseg.status import StreamStatus, StreamTracker, format_line


def test_rate_is_frames_over_the_span_and_decays_when_frames_stop() -> None:
    t = StreamTracker(["bg", "person"], window_s=5.0)
    for i in range(11):  # 10 intervals of 0.1 s: 10 fps
        t.frame_done(0.05 + i * 0.001, [0.75, 0.25], now=100.0 + i * 0.1)
    fps, frames, latency, ratios = t.snapshot(now=101.0)
    assert fps == pytest.approx(10.0)
    assert frames == 11
    assert latency == pytest.approx(0.055)  # the median of the recent latencies
    assert ratios == {"bg": 0.75, "person": 0.25}
    assert t.snapshot(now=103.0)[0] == pytest.approx(10 / 3.0)  # stalled for 2 s: the rate falls
    fps, frames, _, _ = t.snapshot(now=106.5)  # every frame left the window
    assert (fps, frames) == (0.0, 11)


def test_a_tracker_without_frames_reports_nothing_yet() -> None:
    assert StreamTracker(["a"]).snapshot(now=5.0) == (0.0, 0, None, {"a": 0.0})


def test_status_rejects_an_unknown_state() -> None:
    with pytest.raises(ValueError, match="expected state in"):
        StreamStatus("cam", "sleeping", 0.0, 0, 0, None, {}, None)


def test_format_line() -> None:
    line = format_line(
        [
            StreamStatus("cam1", "up", 14.94, 120, 0, 0.0821, {}, None),
            StreamStatus("cam2", "down", 0.0, 0, 3, None, {}, None),
        ]
    )
    assert line == "status: cam1 up 14.9 fps drop 0 lat 82 ms | cam2 down 0.0 fps drop 3 lat -"


def test_a_finished_run_reports_every_stream() -> None:
    cfg = parse_config(
        """
sources:
  - {name: a, uri: "synthetic://?width=64&height=48&frames=12"}
  - {name: b, uri: "synthetic://?width=80&height=48&frames=7"}
model: {path: selfie_landscape}
""",
        "test.yaml",
    )
    p = Pipeline(cfg)
    assert p.status() == []  # nothing opened yet
    p.run()
    by_name = {s.name: s for s in p.status()}
    assert list(by_name) == ["a", "b"]
    assert [by_name[n].frames for n in ("a", "b")] == [12, 7]
    for s in by_name.values():
        assert s.state == "finished" and s.error is None and s.dropped == 0
        assert s.latency_s is not None and s.latency_s > 0
        assert set(s.class_area_ratio) == {"background", "person"}
        assert sum(s.class_area_ratio.values()) == pytest.approx(1.0)
