"""Progress bars for long user-facing work: finite file runs, training, TensorRT engine builds.

One door to tqdm. A bar shows on stderr only when stderr is a terminal and the work has an end;
elsewhere (a service, a CI log, a pipe) the bar is disabled and its calls do nothing, and the log
lines (status line, training and build milestones) say what is happening instead.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from typing import IO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm


def on_terminal(stream: IO[str] | None = None) -> bool:
    """True when ``stream`` (default: stderr) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


def bar(
    total: int | None,
    desc: str,
    unit: str = "it",
    *,
    enabled: bool = True,
    file: IO[str] | None = None,
    position: int | None = None,
    leave: bool = True,
) -> tqdm:  # type: ignore[type-arg]
    """A tqdm bar on ``file`` (stderr) when it is a terminal and ``enabled``, else a disabled one.

    ``total`` None means the end is not known (yet): the bar counts without a percentage, and
    ``bar.total`` can be set later.
    """
    file = sys.stderr if file is None else file
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=file,
        disable=not (enabled and on_terminal(file)),
        dynamic_ncols=True,
        position=position,
        leave=leave,
    )


@contextlib.contextmanager
def logs_above_bars() -> Iterator[None]:
    """Route the root logger's console handlers through ``tqdm.write`` so a log line printed
    while a bar runs lands above it instead of tearing it (formatters, JSON too, are kept)."""
    with logging_redirect_tqdm():
        yield


@contextlib.contextmanager
def follow(
    count: Callable[[], tuple[int, int | None]], desc: str, unit: str = "frame", interval: float = 0.25
) -> Iterator[None]:
    """While the body runs, poll ``count()`` -> (done, total) and show a bar once the total is
    known (a run learns it when its files open). Nothing at all when stderr is not a terminal.

    Polling, not a callback in the frame path: the pipeline stays unaware of terminals.
    """
    if not on_terminal():
        yield
        return
    stop = threading.Event()

    def poll() -> None:
        shown = None
        while True:
            finished = stop.wait(interval)
            done, total = count()
            if shown is None and total is not None:
                shown = bar(total, desc, unit)
            if shown is not None:
                shown.update(done - shown.n)
            if finished:
                break
        if shown is not None:
            shown.close()

    thread = threading.Thread(target=poll, name="progress", daemon=True)
    with logs_above_bars():
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(5.0)


class Steps:
    """Counted work (training steps, calibration frames): a bar on a terminal, and elsewhere a log
    line at every 5 % so a CI log or a service journal still shows the work advancing.

    Until ``close()`` (or the end of a ``with`` block), log lines print above the bar instead of
    tearing it; after an unclosed one they still print, through tqdm.
    """

    def __init__(self, total: int, desc: str, unit: str, logger: logging.Logger, enabled: bool = True) -> None:
        self.total, self.desc, self.n = max(1, total), desc, 0
        self.bar = bar(total, desc, unit, enabled=enabled)
        self._log = logger if enabled and self.bar.disable else None
        self._every = max(1, self.total // 20)
        self._redirect: contextlib.AbstractContextManager[None] | None = None
        if not self.bar.disable:
            self._redirect = logs_above_bars()
            self._redirect.__enter__()

    def __enter__(self) -> Steps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.bar.close()
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
            self._redirect = None

    def update(self, n: int = 1, text: str = "") -> None:
        before, self.n = self.n, self.n + n
        if not self.bar.disable:
            if text:
                self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(n)
        elif self._log is not None and (self.n >= self.total or self.n // self._every > before // self._every):
            self._log.info("%s: %d/%d%s", self.desc, min(self.n, self.total), self.total, f" {text}" if text else "")
