"""build_sinks: the order outputs open in, and what a failed start leaves behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamseg.config import parse_config
from streamseg.errors import ConfigError, OutputError
from streamseg.metrics import Metrics
from streamseg.outputs import build_sinks
from streamseg.outputs.snapshot import SnapshotSink


def test_a_failed_start_reports_its_own_error_when_a_close_fails_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The snapshot output opens before JSON Lines; JSON Lines then fails (its path is a folder).
    # The snapshot's failing close must neither hide that error nor stop the other closes.
    (tmp_path / "stats").mkdir()
    text = (
        "sources: [{name: a, uri: 'synthetic://'}]\nmodel: {path: selfie_landscape}\noutputs:\n"
        f"  - {{type: snapshot, path: '{tmp_path}/snaps/{{stream}}'}}\n"
        f"  - {{type: snapshot, path: '{tmp_path}/more/{{stream}}'}}\n"
        f"  - {{type: jsonl, path: '{tmp_path}/stats'}}\n"
    )
    cfg = parse_config(text, "p.yaml")
    closed: list[str] = []

    def failing_close(self: SnapshotSink) -> None:
        closed.append(self.cfg.path)
        raise OSError("disk gone")

    monkeypatch.setattr(SnapshotSink, "close", failing_close)
    with pytest.raises(OutputError, match="jsonl output"):
        build_sinks(list(cfg.outputs), ["background", "person"], lambda _n: 25.0, Metrics(), None)
    assert sorted(closed) == sorted([f"{tmp_path}/snaps/{{stream}}", f"{tmp_path}/more/{{stream}}"])


def test_the_outputs_union_is_built_from_the_registry() -> None:
    """Every registered kind parses by its `type` alone into its own model, and nothing else does."""
    from streamseg.outputs.registry import OUTPUT_KINDS

    assert list(OUTPUT_KINDS) == ["video", "jsonl", "live", "snapshot", "display", "rtsp"]
    for name, kind in OUTPUT_KINDS.items():
        cfg = parse_config(
            f"sources: [{{name: a, uri: 'synthetic://'}}]\nmodel: {{path: m}}\noutputs: [{{type: {name}}}]\n"
        )
        assert type(cfg.outputs[0]) is kind.config
    with pytest.raises(ConfigError, match=r"outputs\.0: .*'video', 'jsonl', 'live', 'snapshot', 'display', 'rtsp'"):
        parse_config("sources: [{name: a, uri: 'synthetic://'}]\nmodel: {path: m}\noutputs: [{type: mjpeg}]\n")
