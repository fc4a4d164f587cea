"""streamseg/batching.py with real synthetic Sources: every frame once and in order, batches within
max_batch and fair across streams, and no lone frame waiting much past max_wait_ms."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import pytest

from streamseg.batching import Batcher
from streamseg.config import SourceConfig
from streamseg.frames import Batch
from streamseg.metrics import Metrics
from streamseg.sources import Source

TIMEOUT_S = 30.0  # a guard against hangs only


def make(streams: dict[str, int | None], max_batch: int, max_wait_ms: float) -> tuple[Batcher, list[Source]]:
    """A batcher over synthetic sources; ``streams`` maps a name to its frame count (None: endless)."""
    metrics = Metrics()
    batcher = Batcher(max_batch, max_wait_ms)
    sources = []
    for name, count in streams.items():
        uri = "synthetic://?width=16&height=16" + (f"&frames={count}" if count is not None else "")
        sources.append(Source(SourceConfig(name=name, uri=uri), metrics))
        batcher.add(name, sources[-1].queue)
    return batcher, sources


class FakeClock:
    """The batcher's clock, stepped only by its own waits: what it waits for is then exact."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.waits: list[float] = []
        self._lock = threading.Lock()  # readers still notify from their threads

    def monotonic(self) -> float:
        return self.now

    def wait(self, timeout: float) -> bool:
        self.waits.append(timeout)
        self.now += timeout
        return False

    def notify_all(self) -> None:
        pass

    def __enter__(self) -> FakeClock:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def install(self, monkeypatch: pytest.MonkeyPatch, batcher: Batcher) -> None:
        import streamseg.batching

        monkeypatch.setattr(streamseg.batching, "time", self)  # time.monotonic() in the batcher
        batcher.cond = self  # type: ignore[assignment]  # its waits move this clock, not the wall's


def drain(batcher: Batcher, stop: threading.Event | None = None) -> list[Batch]:
    stop = stop or threading.Event()
    batches = []
    deadline = time.monotonic() + TIMEOUT_S
    while (batch := batcher.next_batch(stop)) is not None:
        batches.append(batch)
        assert time.monotonic() < deadline, "the batcher never ran dry"
    return batches


@pytest.mark.parametrize(
    ("counts", "max_batch"),
    [
        ({"a": 40}, 1),
        ({"a": 40}, 4),
        ({"a": 30, "b": 45, "c": 7}, 4),
        ({"a": 25, "b": 25}, 3),
        ({"a": 1, "b": 60, "c": 0}, 8),
    ],
)
def test_every_frame_once_in_order_within_max_batch(counts: dict[str, int], max_batch: int) -> None:
    batcher, sources = make(counts, max_batch, max_wait_ms=5)
    for s in sources:
        s.start()
    batches = drain(batcher)
    seen: dict[str, list[int]] = defaultdict(list)
    for batch in batches:
        assert 1 <= len(batch) <= max_batch
        for frame in batch.frames:
            seen[frame.stream].append(frame.index)
    assert {name: seen.get(name, []) for name in counts} == {name: list(range(n)) for name, n in counts.items()}
    assert all(s.finished.is_set() and s.error is None for s in sources)
    assert batcher.next_batch(threading.Event()) is None  # and stays dry


def _wait_until_all_finished(sources: list[Source]) -> None:
    for s in sources:
        s.start()
    for s in sources:
        assert s.finished.wait(TIMEOUT_S)


def test_two_streams_share_every_batch() -> None:
    # Both readers finish first (4 frames fit their queues), so every stream has frames at every batch.
    batcher, sources = make({"a": 4, "b": 4}, max_batch=2, max_wait_ms=1000)
    _wait_until_all_finished(sources)
    batches = drain(batcher)
    assert [[(f.stream, f.index) for f in b.frames] for b in batches] == [
        [("a", 0), ("b", 0)],
        [("b", 1), ("a", 1)],  # the stream that goes first rotates
        [("a", 2), ("b", 2)],
        [("b", 3), ("a", 3)],
    ]


def test_a_busy_stream_cannot_starve_a_quiet_one() -> None:
    batcher, sources = make({"busy": 4, "quiet": 1}, max_batch=2, max_wait_ms=1000)
    _wait_until_all_finished(sources)
    first = batcher.next_batch(threading.Event())
    assert first is not None
    assert sorted(f.stream for f in first.frames) == ["busy", "quiet"]


def test_round_robin_fills_a_big_batch_from_all_streams() -> None:
    batcher, sources = make({"a": 4, "b": 4, "c": 4}, max_batch=5, max_wait_ms=1000)
    _wait_until_all_finished(sources)
    first = batcher.next_batch(threading.Event())
    assert first is not None
    assert [(f.stream, f.index) for f in first.frames] == [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1)]


def test_a_lone_frame_leaves_at_max_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    # "idle" is a stream that has not delivered yet (never started): the batcher cannot know that
    # nothing more is coming, so the single frame waits for its batch, but only until max_wait_ms.
    max_wait = 0.2
    batcher, sources = make({"one": 1, "idle": None}, max_batch=4, max_wait_ms=max_wait * 1000)
    one = sources[0]
    one.start()
    assert one.finished.wait(TIMEOUT_S)
    captured = one.queue.peek_time()
    assert captured is not None
    clock = FakeClock(captured)
    clock.install(monkeypatch, batcher)
    batch = batcher.next_batch(threading.Event())
    assert batch is not None and [(f.stream, f.index) for f in batch.frames] == [("one", 0)]
    # one wait, to the frame's deadline, then out: not released early, not held past it
    assert clock.waits == [pytest.approx(max_wait)]
    assert batch.formed_time == pytest.approx(captured + max_wait)


def test_finished_sources_release_a_partial_batch_at_once() -> None:
    batcher, sources = make({"a": 3}, max_batch=8, max_wait_ms=60_000)
    _wait_until_all_finished(sources)
    started = time.monotonic()
    batch = batcher.next_batch(threading.Event())
    assert batch is not None and len(batch) == 3
    assert time.monotonic() - started < 5.0  # not the 60 s max_wait: nothing more can come
    assert batcher.next_batch(threading.Event()) is None


def test_stop_returns_none() -> None:
    batcher, _ = make({"idle": None}, max_batch=2, max_wait_ms=10)
    stop = threading.Event()
    stopper = threading.Timer(0.2, stop.set)
    stopper.start()
    try:
        assert batcher.next_batch(stop) is None
    finally:
        stopper.cancel()


def test_timeout_returns_none_while_no_stream_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    # A camera that never delivers (never started here) must not hold the caller: its --duration
    # and watchdog run between calls. Without a timeout the call would wait for ever.
    batcher, sources = make({"idle": None}, max_batch=2, max_wait_ms=10)
    clock = FakeClock(1000.0)
    clock.install(monkeypatch, batcher)
    assert batcher.next_batch(threading.Event(), timeout=0.25) is None
    # it polls in 0.1 s steps (a frame wakes it sooner) and gives up once the timeout has passed
    assert clock.waits == pytest.approx([0.1, 0.1, 0.05]) and clock.now == pytest.approx(1000.25)
    assert not sources[0].finished.is_set()


def test_timeout_never_cuts_a_started_batch_short(monkeypatch: pytest.MonkeyPatch) -> None:
    # Once a frame is taken, the batch closes by max_wait_ms, not by the caller's (shorter) timeout.
    max_wait = 0.2
    batcher, sources = make({"one": 1, "idle": None}, max_batch=4, max_wait_ms=max_wait * 1000)
    sources[0].start()
    assert sources[0].finished.wait(TIMEOUT_S)
    captured = sources[0].queue.peek_time()
    assert captured is not None
    clock = FakeClock(captured)
    clock.install(monkeypatch, batcher)
    batch = batcher.next_batch(threading.Event(), timeout=0.01)
    assert batch is not None and [(f.stream, f.index) for f in batch.frames] == [("one", 0)]
    assert sum(clock.waits) == pytest.approx(max_wait)  # held to the frame's deadline, not released at 0.01
    assert batch.formed_time == pytest.approx(captured + max_wait)


def test_endless_sources_until_stop() -> None:
    batcher, sources = make({"a": None, "b": None}, max_batch=3, max_wait_ms=5)
    for s in sources:
        s.start()
    stop = threading.Event()
    seen: dict[str, list[int]] = defaultdict(list)
    try:
        for _ in range(50):
            batch = batcher.next_batch(stop)
            assert batch is not None and len(batch) <= 3
            for f in batch.frames:
                seen[f.stream].append(f.index)
    finally:
        for s in sources:
            s.stop()
        stop.set()
        for s in sources:
            s.join(5.0)
    for indices in seen.values():
        assert indices == list(range(len(indices)))  # file-like sources never drop, order kept
    assert sum(map(len, seen.values())) >= 50


def test_queues_added_and_removed_while_batching() -> None:
    """The batcher owns the set of queues: one added mid-run is batched from then on, every frame
    once and in order; one removed is no longer taken from; the others go on untouched."""
    batcher, sources = make({"a": 30, "b": None}, max_batch=4, max_wait_ms=5)
    for s in sources:
        s.start()
    stop = threading.Event()
    first: list[Batch | None] = []
    while not any(f.stream == "b" for batch in first if batch is not None for f in batch.frames):
        assert len(first) < 50, "b gave no frame before its removal"
        first.append(batcher.next_batch(stop))
    late = Source(SourceConfig(name="c", uri="synthetic://?width=16&height=16&frames=20"), Metrics())
    batcher.add("c", late.queue)
    late.start()
    batcher.remove("b")
    sources[1].stop()
    assert batcher.names == ("a", "c")
    with pytest.raises(ValueError, match="batched already"):
        batcher.add("a", sources[0].queue)
    seen: dict[str, list[int]] = defaultdict(list)
    for batch in [*first, *drain(batcher, stop)]:
        assert batch is not None
        for frame in batch.frames:
            seen[frame.stream].append(frame.index)
    assert seen["a"] == list(range(30)) and seen["c"] == list(range(20))
    b = seen["b"]
    removed_at = sum(f.stream == "b" for batch in first if batch is not None for f in batch.frames)
    assert removed_at > 0  # b gave frames before its removal: the next check is not about an empty list
    assert b == list(range(removed_at))  # those, in order, and none from its queue after the removal
