"""The output interface: every sink receives each stream's results in order, from that
stream's worker thread, and must finalize what it wrote in ``close`` even after errors.

An output kind is one module that declares its config model (an ``OutputConfig``) beside its sink
and a ``KIND`` (an ``OutputKind``: how to open it and what the checks before opening need to know);
``outputs.registry`` lists the kinds, and the config's ``outputs:`` union is built from that list.
"""

from __future__ import annotations

import abc
import errno
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generic, Literal, TypeVar, get_args

from ..frames import Picture, SegResult
from ..schema import Strict

if TYPE_CHECKING:
    from ..metrics import Metrics
    from ..server import LiveHub


class OutputConfig(Strict):
    """One item of ``outputs:``; each kind narrows ``type`` to its own name (the union's tag)."""

    type: str

    @classmethod
    def type_name(cls) -> str:
        return str(get_args(cls.model_fields["type"].annotation)[0])

    def selected_streams(self) -> list[str] | None:
        """The streams this output is limited to (its ``streams`` key); None = all."""
        return None


@dataclass(frozen=True)
class SinkContext:
    """What sinks are opened with, beside their own config."""

    class_names: list[str]
    fps_of: Callable[[str], float | None]
    metrics: Metrics
    hub: LiveHub | None


C = TypeVar("C", bound=OutputConfig)


@dataclass(frozen=True)
class OutputKind(Generic[C]):
    """An output kind's entry in the registry."""

    config: type[C]
    open: Callable[[C, SinkContext], Sink]
    # Order of opening: 0 claims a port or a window, 1 writes files, 2 truncates a file as it opens.
    # A port in use or a bad video path then fails the run before any file output has truncated
    # what the previous run left.
    rank: int = 0
    # What ``path`` names, for the checks before opening: a file, a folder of files, or nothing.
    writes: Literal["file", "folder"] | None = None
    # The path must hold {stream} when several streams write to it (else they overwrite each other).
    per_stream: bool = False
    needs_http: bool = False

    @property
    def name(self) -> str:
        return self.config.type_name()


class Sink(abc.ABC):
    """One output. ``wants_raw`` sinks see the frame before the overlay is drawn into it."""

    wants_raw = False
    wants_overlay = False

    @abc.abstractmethod
    def write(self, result: SegResult, picture: Picture | None) -> None:
        """Consume one result; ``picture`` is the rendered overlay when ``wants_overlay``, the source
        frame when ``wants_raw``, else None. It is valid during the call only (buffers are reused)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and finalize; called once, also after a failure."""

    def close_stream(self, stream: str) -> None:  # noqa: B027 - optional hook
        """Finalize what this output holds for ``stream``, removed while the others run on (its
        worker has written its last result); the stream may be added again later."""

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
