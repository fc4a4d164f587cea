"""The output interface: every sink receives each stream's results in order, from that
stream's worker thread, and must finalize what it wrote in ``close`` even after errors."""

from __future__ import annotations

import abc
import errno
from pathlib import Path

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

    def describe(self) -> str:
        """How logs and the run summary name this output: its kind and, when it has one, its path."""
        kind = type(self).__name__.removesuffix("Sink").lower()
        path = getattr(self, "path", None) or getattr(getattr(self, "cfg", None), "path", None)
        return f"{kind} output {path}" if path else f"{kind} output"


def make_parent(path: Path) -> None:
    """Create the folder ``path`` goes in. When a regular file stands where a folder must be, the
    OSError names it ("parent x is a file, not a folder") instead of a bare "File exists"."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:
        for parent in (path.parent, *path.parent.parents):
            if parent.exists() and not parent.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, f"parent {parent} is a file, not a folder") from None
        raise e from None
