"""Cross-stream batching: up to ``max_batch`` frames, fair across streams, and no frame waits
longer than ``max_wait_ms`` (counted from its capture) for its batch to fill.

The batcher owns the set of frame queues it takes from: ``add`` and ``remove`` change it from any
thread while the loop runs (a stream added or removed over the API), without touching the others."""

from __future__ import annotations

import threading
import time

from .frames import Batch, Frame
from .sources import FrameQueue


class Batcher:
    """Takes frames round-robin from the streams' queues; one consumer thread."""

    def __init__(self, max_batch: int, max_wait_ms: float) -> None:
        # Replaced whole on add/remove, never edited: the consumer reads one snapshot per round.
        self._queues: tuple[FrameQueue, ...] = ()
        self._names: tuple[str, ...] = ()
        self._edit = threading.Lock()
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.cond = threading.Condition()
        self._start = 0

    def add(self, name: str, queue: FrameQueue) -> None:
        """Take frames from ``queue`` (stream ``name``) from the next round on; it wakes the batcher."""
        with self._edit:
            if name in self._names:
                raise ValueError(f"stream {name!r} is batched already")
            queue.notify = self.notify
            self._names, self._queues = (*self._names, name), (*self._queues, queue)
        self.notify()

    def remove(self, name: str) -> None:
        """Stop taking from stream ``name``'s queue (frames left in it are not taken)."""
        with self._edit:
            keep = [(n, q) for n, q in zip(self._names, self._queues, strict=True) if n != name]
            self._names = tuple(n for n, _ in keep)
            self._queues = tuple(q for _, q in keep)
        self.notify()

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def notify(self) -> None:
        """Called by readers (through their queue) after each put and when they finish."""
        with self.cond:
            self.cond.notify_all()

    def _all_done(self) -> bool:
        return all(q.closed and len(q) == 0 for q in self._queues)

    def _take_round(self, frames: list[Frame]) -> bool:
        """One frame from each non-empty queue in rotating order; True if any was taken."""
        took = False
        queues = self._queues
        n = len(queues)
        for k in range(n):
            if len(frames) >= self.max_batch:
                break
            frame = queues[(self._start + k) % n].get_nowait()
            if frame is not None:
                frames.append(frame)
                took = True
        return took

    def next_batch(self, stop: threading.Event, timeout: float | None = None) -> Batch | None:
        """The next batch, or None once every source has finished and drained, on stop, or when
        ``timeout`` seconds pass without a frame.

        The timeout is what keeps the caller's clocks running (``--duration``, the watchdog) while
        every stream is silent: a dead camera beside a finished file must not hang the loop. Once a
        frame is taken the batch closes by ``max_wait_ms`` as usual, whatever the timeout.
        """
        frames: list[Frame] = []
        deadline: float | None = None
        give_up = None if timeout is None else time.monotonic() + timeout
        while not stop.is_set():
            while len(frames) < self.max_batch and self._take_round(frames):
                pass
            if frames and deadline is None:
                deadline = min(f.capture_time for f in frames) + self.max_wait
            if len(frames) >= self.max_batch:
                break
            now = time.monotonic()
            if frames and (deadline is None or now >= deadline or self._all_done()):
                break
            if not frames and (self._all_done() or (give_up is not None and now >= give_up)):
                return None
            # A file reader under back-pressure refills within microseconds of a take; only wait
            # for the deadline when no stream has anything queued.
            with self.cond:
                if not any(len(q) for q in self._queues):
                    if deadline is not None:
                        wait = deadline - now
                    else:
                        wait = 0.1 if give_up is None else min(0.1, give_up - now)
                    self.cond.wait(max(0.0, wait))
        if not frames:
            return None
        self._start = (self._start + 1) % max(1, len(self._queues))
        return Batch(tuple(frames), time.monotonic())
