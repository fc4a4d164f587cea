"""Statistics as JSON Lines: one record per processed frame, ratios over all class-map pixels."""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path
from typing import Literal, TextIO

from pydantic import Field

from ..errors import OutputError
from ..frames import Picture, SegResult
from .base import OutputConfig, OutputKind, Sink, make_parent


class JsonlOutput(OutputConfig):
    type: Literal["jsonl"]
    path: str = Field("out/stats.jsonl", min_length=1, description="one JSON record per processed frame")


def record(result: SegResult, class_names: list[str]) -> dict[str, object]:
    """The JSON record of one result (ratios unsmoothed and unrounded: they are exact counts)."""
    f = result.frame
    return {
        "stream": f.stream,
        "frame": f.index,
        "pts": round(f.pts, 6),
        "time": round(f.wall_time, 6),
        "class_area_ratio": {n: float(r) for n, r in zip(class_names, result.area_ratio, strict=True)},
        **zone_fields(result, class_names),
        **({"rle": result.rle} if result.rle is not None else {}),
        **instance_fields(result, class_names),
    }


def instance_fields(result: SegResult, class_names: list[str]) -> dict[str, object]:
    """``instances``: per detection (instance models), its class, score, box [x1, y1, x2, y2] and
    mask area, both in frame pixels; by decreasing score. Empty for semantic models."""
    if not result.instances:
        return {}
    from ..instances import records

    return {"instances": records(result.instances, class_names, result.frame.size)}


def zone_fields(result: SegResult, class_names: list[str]) -> dict[str, object]:
    """``zones``: per zone, each class's share of the zone's pixels (exact counts); for ground
    zones also ``zones_square_meters``: the zone's ground area and each class's. Empty without zones."""
    if not result.zones:
        return {}
    out: dict[str, object] = {
        "zones": {z.zone: {n: float(r) for n, r in zip(class_names, z.ratios, strict=True)} for z in result.zones}
    }
    ground = {
        z.zone: {
            "zone": z.zone_square_meters,
            "classes": {n: float(v) for n, v in zip(class_names, z.square_meters, strict=True)},
        }
        for z in result.zones
        if z.square_meters is not None
    }
    if ground:
        out["zones_square_meters"] = ground
    return out


class JsonlSink(Sink):
    def __init__(self, cfg: JsonlOutput, class_names: list[str]) -> None:
        self.path = Path(cfg.path)
        self.class_names = class_names
        self._lock = threading.Lock()
        try:
            make_parent(self.path)
            self._file: TextIO | None = open(self.path, "w", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed in close()
        except OSError as e:
            raise OutputError(f"jsonl output {self.path}: cannot open: {e.strerror}") from None

    def write(self, result: SegResult, picture: Picture | None) -> None:
        line = json.dumps(record(result, self.class_names), separators=(",", ":"))
        with self._lock:
            if self._file is None:
                return
            try:
                self._file.write(line + "\n")
            except OSError as e:
                # The line stays in the buffer and would fail again at close(): drop the file, so a
                # full disk is reported once, by the write that met it.
                file, self._file = self._file, None
                with contextlib.suppress(OSError):
                    file.close()  # closes even when its flush fails
                raise OutputError(f"jsonl output {self.path}: {e.strerror}") from None

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


# Last of all: it truncates its file as it opens.
KIND = OutputKind(JsonlOutput, lambda cfg, ctx: JsonlSink(cfg, ctx.class_names), rank=2, writes="file")
