"""Lossless PNG snapshots every N frames: raw frames for audits and tests, or the overlay."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import cv2
from pydantic import Field

from ..errors import OutputError
from ..frames import Picture, SegResult
from .base import OutputConfig, OutputKind, Sink, make_parent


class SnapshotOutput(OutputConfig):
    type: Literal["snapshot"]
    path: str = Field("out/snapshots/{stream}", min_length=1, description="folder per stream for PNG files")
    every: int = Field(25, ge=1, le=1_000_000, description="keep one frame in this many")
    raw: bool = Field(True, description="save the source frame (true) or the overlay (false)")


class SnapshotSink(Sink):
    def __init__(self, cfg: SnapshotOutput) -> None:
        self.cfg = cfg
        self.wants_raw = cfg.raw
        self.wants_overlay = not cfg.raw

    def write(self, result: SegResult, picture: Picture | None) -> None:
        f = result.frame
        if f.index % self.cfg.every:
            return
        folder = Path(self.cfg.path.replace("{stream}", f.stream))
        image = (picture or Picture.of(f)).bgr()
        path = folder / f"{f.index:06d}.png"
        try:
            make_parent(path)
            ok = cv2.imwrite(str(path), image)
        except (OSError, cv2.error) as e:
            raise OutputError(f"snapshot output {path}: {e}") from None
        if not ok:
            raise OutputError(f"snapshot output {path}: cannot write")


KIND = OutputKind(SnapshotOutput, lambda cfg, ctx: SnapshotSink(cfg), rank=1, writes="folder", per_stream=True)
