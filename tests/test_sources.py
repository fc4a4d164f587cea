"""streamseg/sources.py with real readers: synthetic patterns, the sample clip, dead files,
a closed RTSP port and a camera that does not exist. Counters are read from the Metrics registry."""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from streamseg.config import Reconnect, SourceConfig
from streamseg.frames import Frame
from streamseg.metrics import Metrics
from streamseg.sources import Backoff, FrameQueue, Source

TIMEOUT_S = 30.0  # a guard against hangs, far above what any of these takes


def run_source(
    cfg: dict[str, Any], max_frames: int | None = None, consume: bool = True
) -> tuple[Source, list[Frame], Metrics]:
    """Run one source to its end; return it, every frame it queued (in queue order) and its metrics.

    With ``consume=False`` nothing is taken until the reader finished, so a live queue overflows.
    """
    metrics = Metrics()
    wake = threading.Event()
    source = Source(SourceConfig.model_validate(cfg), metrics, max_frames)
    source.queue.notify = wake.set
    metrics.add_stream(source.name, [])
    source.start()
    frames: list[Frame] = []
    deadline = time.monotonic() + TIMEOUT_S
    if not consume:
        assert source.finished.wait(TIMEOUT_S)
    while True:
        frame = source.queue.get_nowait()
        if frame is not None:
            frames.append(frame)
            continue
        if source.finished.is_set() and len(source.queue) == 0:
            break
        assert time.monotonic() < deadline, "the source neither finished nor produced"
        wake.wait(0.05)
        wake.clear()
    source.join(TIMEOUT_S)
    return source, frames, metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def strictly_increasing(values: list[float]) -> bool:
    return all(b > a for a, b in itertools.pairwise(values))


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- synthetic ------------------------------------------------------------------------------


def test_synthetic_is_deterministic() -> None:
    cfg = {"name": "syn", "uri": "synthetic://?width=48&height=32&fps=10&frames=6"}
    _, first, _ = run_source(cfg)
    _, second, _ = run_source(cfg)
    assert [f.index for f in first] == list(range(6))
    assert [f.pts for f in first] == [i / 10 for i in range(6)]
    assert first[0].image.shape == (32, 48, 3)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
    assert not np.array_equal(first[0].image, first[1].image)  # the disc moves


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("width=wide", "synthetic source: bad parameter"),
        ("width=8", "width and height must be >= 16 and fps > 0"),
        ("fps=0", "width and height must be >= 16 and fps > 0"),
    ],
)
def test_synthetic_bad_parameters(query: str, error: str) -> None:
    source, frames, _ = run_source({"name": "syn", "uri": f"synthetic://?{query}"})
    assert frames == []
    assert source.error is not None
    assert source.error.startswith(f"stream 'syn' (synthetic://?{query}): ")
    assert error in source.error


def test_fps_cap_drops_and_counts() -> None:
    source, frames, metrics = run_source({"name": "syn", "uri": "synthetic://?width=16&height=16&frames=50", "fps": 5})
    # 25 fps in, 5 fps out: every 5th frame, with gaps in the index that show the drops
    assert [f.index for f in frames] == list(range(0, 50, 5))
    assert [f.pts for f in frames] == [i / 25 for i in range(0, 50, 5)]
    assert sample(metrics, "streamseg_frames_dropped_total", stream="syn", reason="fps_cap") == 40
    assert sample(metrics, "streamseg_frames_dropped_total", stream="syn", reason="queue_full") == 0
    assert source.frames_read == 50
    assert source.error is None


def test_live_queue_drops_the_oldest_and_counts() -> None:
    # realtime makes a synthetic stream live: it paces at its fps and never blocks on a full queue
    cfg = {"name": "live", "uri": "synthetic://?width=16&height=16&fps=1000", "realtime": True, "queue_size": 3}
    source, frames, metrics = run_source(cfg, max_frames=20, consume=False)
    assert source.live
    assert [f.index for f in frames] == [17, 18, 19]
    assert sample(metrics, "streamseg_frames_dropped_total", stream="live", reason="queue_full") == 17


def test_realtime_synthetic_is_paced() -> None:
    # 10 frames at 100 fps take at least 90 ms of stream time (a lower bound only: no speed claim)
    started = time.monotonic()
    _, frames, _ = run_source(
        {"name": "live", "uri": "synthetic://?width=16&height=16&fps=100", "realtime": True}, max_frames=10
    )
    assert frames[-1].index == 9
    assert time.monotonic() - started >= 0.09


def test_realtime_synthetic_paces_each_reconnection_from_its_own_start() -> None:
    # A 2-frame live clip at 4 fps reconnects after each end. pts keep rising across connections;
    # pacing connection k against the overall pts from its own start made its first frame wait
    # k * 0.5 s extra. Compare the gap across each reconnection with the gap inside a connection.
    cfg = {
        "name": "live",
        "uri": "synthetic://?width=16&height=16&fps=4&frames=2",
        "realtime": True,
        "reconnect": {"initial_s": 0.05, "max_s": 0.05},
    }
    _, frames, _ = run_source(cfg, max_frames=10)
    assert [f.index for f in frames] == list(range(10))
    assert all(b.pts > a.pts for a, b in itertools.pairwise(frames))
    across = sorted(frames[i].capture_time - frames[i - 1].capture_time for i in (2, 4, 6, 8))
    # expected ~0.3 s each (one frame period + the back-off); the old pacing gave 0.8, 1.3, 1.8, 2.3 s
    assert (across[1] + across[2]) / 2 < 0.6, f"gaps across reconnections: {across}"


def test_frame_queue_back_pressure_and_drop_oldest() -> None:
    image = np.zeros((2, 2, 3), np.uint8)
    dropped: list[int] = []
    frames = [Frame("q", i, i / 25, 0.0, 0.0, image) for i in range(4)]
    stop = threading.Event()

    live = FrameQueue(2, drop_oldest=True, on_drop=lambda: dropped.append(1))
    for f in frames:
        assert live.put(f, stop)
    assert len(dropped) == 2
    assert [live.get_nowait().index, live.get_nowait().index] == [2, 3]  # type: ignore[union-attr]
    assert live.get_nowait() is None

    blocking = FrameQueue(2, drop_oldest=False, on_drop=lambda: dropped.append(1))
    assert blocking.put(frames[0], stop) and blocking.put(frames[1], stop)
    stop.set()
    assert blocking.put(frames[2], stop) is False  # full, and asked to stop: gives up instead of blocking
    assert len(blocking) == 2 and len(dropped) == 2


def test_stop_ends_a_blocked_endless_source() -> None:
    metrics = Metrics()
    source = Source(SourceConfig(name="syn", uri="synthetic://?width=16&height=16"), metrics)
    source.start()
    deadline = time.monotonic() + TIMEOUT_S
    while len(source.queue) < source.cfg.queue_size:  # a file-like source blocks on its full queue
        assert time.monotonic() < deadline
        time.sleep(0.01)
    source.stop()
    assert source.finished.wait(5.0)
    assert source.error is None
    assert len(source.queue) == source.cfg.queue_size


# --- files ----------------------------------------------------------------------------------


def test_file_source_reads_every_frame(bikes: Path) -> None:
    source, frames, metrics = run_source({"name": "bikes", "uri": str(bikes)})
    assert source.error is None
    assert len(frames) == 250
    assert [f.index for f in frames] == list(range(250))
    assert strictly_increasing([f.pts for f in frames])
    assert frames[0].pts == 0.0 and frames[-1].pts == pytest.approx(249 / 25)
    assert all(f.size == (272, 640) and f.pixel_format == "yuv420p" and f.stream == "bikes" for f in frames[::50])
    assert source.fps == 25.0
    assert sample(metrics, "streamseg_stream_source_fps", stream="bikes") == 25.0
    assert sample(metrics, "streamseg_frames_dropped_total", stream="bikes", reason="queue_full") == 0
    assert sample(metrics, "streamseg_stream_up", stream="bikes") == 0  # down once it ended
    assert sample(metrics, "streamseg_stage_seconds_count", stage="decode") == 250


def test_file_uri_scheme(bikes: Path) -> None:
    source, frames, _ = run_source({"name": "bikes", "uri": f"file://{bikes}"}, max_frames=3)
    assert source.error is None
    assert [f.index for f in frames] == [0, 1, 2]


def test_looping_file_goes_on_with_monotonic_pts(bikes: Path) -> None:
    source, frames, _ = run_source({"name": "bikes", "uri": str(bikes), "loop": True}, max_frames=300)
    assert source.error is None
    assert len(frames) == 300
    assert [f.index for f in frames] == list(range(300))
    assert strictly_increasing([f.pts for f in frames])
    assert frames[250].pts == pytest.approx(250 / 25)  # the second pass continues the clock
    np.testing.assert_array_equal(frames[250].image, frames[0].image)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "missing.mp4"
    source, frames, _ = run_source({"name": "clip", "uri": str(path)})
    assert frames == []
    assert source.error is not None
    assert source.error.startswith(f"stream 'clip' ({path}): ")
    assert "\n" not in source.error
    assert source.finished.is_set()


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.mp4"
    path.write_bytes(bytes(range(256)) * 64)
    source, frames, _ = run_source({"name": "clip", "uri": str(path)})
    assert frames == []
    assert source.error is not None
    assert source.error.startswith(f"stream 'clip' ({path}): ")
    assert "\n" not in source.error


def test_cut_file_fails_cleanly(tmp_path: Path, bikes: Path) -> None:
    # The clip's index (moov atom) sits at its end, as in most recordings: a cut copy has none.
    path = tmp_path / "cut.mp4"
    path.write_bytes(bikes.read_bytes()[:400_000])
    source, frames, _ = run_source({"name": "clip", "uri": str(path)})
    assert frames == []
    assert source.error == f"stream 'clip' ({path}): Invalid data found when processing input"


# --- live sources that fail -----------------------------------------------------------------


def test_rtsp_closed_port_gives_up_without_leaking_the_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()
    cfg = {
        "name": "cam",
        "uri": f"rtsp://admin:Hunter2Secret@127.0.0.1:{port}/live",
        "timeouts": {"open_s": 2, "read_s": 2},
        "reconnect": {"max_attempts": 1, "initial_s": 0.05},
    }
    source, frames, metrics = run_source(cfg)
    assert frames == []
    assert source.error is not None
    assert source.error.startswith(f"stream 'cam' (rtsp://admin:***@127.0.0.1:{port}/live): ")
    assert "gave up after 2 failure(s) in a row; last: Connection refused" in source.error
    assert sample(metrics, "streamseg_stream_reconnects_total", stream="cam") == 1
    assert sample(metrics, "streamseg_stream_up", stream="cam") == 0
    assert caplog.records, "the failures were not logged"
    for text in [source.error, *(r.getMessage() for r in caplog.records)]:
        assert "Hunter2Secret" not in text


def test_missing_camera_fails_cleanly() -> None:
    cfg = {
        "name": "cam",
        "uri": "/dev/video99",
        "timeouts": {"open_s": 1, "read_s": 1},
        "reconnect": {"max_attempts": 0},
    }
    source, frames, metrics = run_source(cfg)
    assert source.live
    assert frames == []
    assert source.error is not None
    assert source.error.startswith("stream 'cam' (/dev/video99): gave up after 1 failure(s) in a row; last: ")
    assert sample(metrics, "streamseg_stream_reconnects_total", stream="cam") == 0


def test_rtsp_bad_port_fails_without_leaking_the_password(caplog: pytest.LogCaptureFixture) -> None:
    # Redacting a URI whose port is not a number once raised inside the reader's error handling.
    caplog.set_level(logging.DEBUG)
    cfg = {
        "name": "cam",
        "uri": "rtsp://admin:Hunter2Secret@127.0.0.1:notaport/live",
        "timeouts": {"open_s": 2, "read_s": 2},
        "reconnect": {"max_attempts": 0},
    }
    source, frames, _ = run_source(cfg)
    assert frames == []
    assert source.error.startswith(
        "stream 'cam' (rtsp://admin:***@127.0.0.1:notaport/live): gave up after 1 failure(s) in a row; last: "
    )
    assert all("Hunter2Secret" not in r.getMessage() for r in caplog.records)


# --- reconnect back-off and the watchdog (issue 9, items 9 and 10) ------------------------------


def test_backoff_grows_to_its_cap_and_starts_over_after_frames() -> None:
    b = Backoff(initial_s=0.5, factor=2.0, max_s=5.0)
    delays = []
    for _ in range(8):
        b.failed()
        delays.append(b.delay)
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0]
    assert b.failures == 8
    b.succeeded()
    assert (b.failures, b.delay) == (0, 0.5)
    assert Backoff(initial_s=9.0, factor=2.0, max_s=5.0).delay == 5.0


def test_reconnect_cap_is_at_most_five_seconds() -> None:
    # A camera must be back within 10 s of its return: one capped wait, one open, one keyframe.
    assert Reconnect().max_s <= 5.0
    with pytest.raises(ValidationError, match="less than or equal to 5"):
        Reconnect(max_s=30)
    with pytest.raises(ValidationError, match=r"initial_s \(3\) must not exceed max_s \(2\)"):
        Reconnect(initial_s=3, max_s=2)


@pytest.mark.slow  # waits out a real watchdog period, ~4 s
def test_watchdog_marks_a_silent_live_stream_down_and_a_late_frame_does_not_bring_it_up() -> None:
    # A live pattern sending one frame per 2 s is a camera stalling after every frame. The watchdog
    # runs on its own clock (no pipeline loop here) and the frame that comes late belongs to a
    # connection it gave up on: it is dropped and the source reconnects instead.
    metrics = Metrics()
    cfg = SourceConfig(
        name="cam",
        uri="synthetic://?width=16&height=16&fps=0.5",
        realtime=True,
        timeouts={"watchdog_s": 0.5},
        reconnect={"initial_s": 0.05},
    )
    source = Source(cfg, metrics)
    metrics.add_stream("cam", [])
    changes: list[tuple[float, bool]] = []
    source.start()
    try:
        deadline = time.monotonic() + 4.5
        while time.monotonic() < deadline:
            if not changes or changes[-1][1] != source.up:
                changes.append((time.monotonic(), source.up))
            time.sleep(0.01)
    finally:
        source.stop()
        source.join(5)
    ups = [t for t, up in changes if up]
    downs = [t for t, up in changes if not up and ups and t > ups[0]]
    assert ups and downs, changes
    assert downs[0] - ups[0] <= 0.5 + 0.5, f"down {downs[0] - ups[0]:.2f} s after the last frame (watchdog 0.5 s)"
    # A late frame never brought it up: every "up" after the first came from a new connection.
    reconnects = metrics.registry.get_sample_value("streamseg_stream_reconnects_total", {"stream": "cam"}) or 0
    assert reconnects >= 1
    assert len(ups) <= reconnects + 1, (len(ups), reconnects)


def test_every_kind_of_the_uri_grammar_has_a_reader() -> None:
    """A scheme added to uri.SCHEMES without a reader in readers.READERS fails here, not at run time."""
    from streamseg.readers import GST_KINDS, READERS
    from streamseg.uri import SCHEMES, parse_source_uri

    kinds = {info.kind for info in SCHEMES.values()} | {parse_source_uri(u).kind for u in ("0", "clip.mp4")}
    assert kinds == set(READERS)
    assert set(GST_KINDS) <= set(READERS)


def test_pts_clock_starts_at_zero_and_keeps_rising_across_reconnects() -> None:
    from streamseg.sources import PtsClock

    clock = PtsClock()
    clock.connect(25.0)
    assert [round(clock.stamp(p), 6) for p in (None, 10.04, 10.08)] == [0.0, 0.04, 0.08]  # first frame lacks a pts
    clock.connect(25.0)  # the camera restarted its clock at 3.0
    assert [round(clock.stamp(p), 6) for p in (3.0, 3.04)] == [0.12, 0.16]
    assert round(clock.stamp(3.04), 6) == 0.161  # a repeated pts still moves forward
    clock.connect(None)
    assert [round(clock.stamp(None), 6) for _ in range(2)] == [0.201, 0.241]
