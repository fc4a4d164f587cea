"""The output interface: every sink receives each stream's results in order, from that
stream's worker thread, and must finalize what it wrote in ``close`` even after errors."""

from __future__ import annotations

import abc

import numpy as np

from ..frames import SegResult


class Sink(abc.ABC):
    """One output. ``wants_raw`` sinks see the frame before the overlay is drawn into it."""

    wants_raw = False
    wants_overlay = False

    @abc.abstractmethod
    def write(self, result: SegResult, overlay: np.ndarray | None) -> None:
        """Consume one result; ``overlay`` is the rendered picture when ``wants_overlay``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and finalize; called once, also after a failure."""
