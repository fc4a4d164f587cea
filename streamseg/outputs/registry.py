"""The output kinds, one module each: ``config`` builds the ``outputs:`` union from this table and
``build_sinks`` opens outputs through it. A new output is a module with a config model, a sink and
a ``KIND``, listed here."""

from __future__ import annotations

from typing import Any

from . import display, jsonl, live, rtsp, snapshot, video
from .base import OutputConfig, OutputKind

OUTPUT_KINDS: dict[str, OutputKind[Any]] = {
    k.name: k for k in (video.KIND, jsonl.KIND, live.KIND, snapshot.KIND, display.KIND, rtsp.KIND)
}


def kind_of(output: OutputConfig) -> OutputKind[Any]:
    return OUTPUT_KINDS[output.type]
