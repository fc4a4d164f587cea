"""streamseg/preflight.py: what `validate` checks beyond the schema, as `run` would at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import streamseg.preflight as preflight
from streamseg.config import key_line, parse_config
from streamseg.contract import load_model
from streamseg.errors import ConfigError

TEXT = """\
sources:
  - name: a
    uri: 'synthetic://?frames=2'
  - name: b
    uri: clip.mp4
model:
  path: selfie_landscape
  tensorrt: {precision: int8, calibration: {data: calib}}
"""


def test_key_line_finds_nested_keys(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(TEXT)
    assert key_line(path, ("sources", 1, "uri")) == 5
    assert key_line(path, ("model", "tensorrt", "calibration")) == 8
    assert key_line(tmp_path / "gone.yaml", ("sources",)) == 1


def test_where_run_would_build_an_engine_the_graph_is_checked_with_onnxruntime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Chosen:
        name = "tensorrt"

    monkeypatch.setattr(preflight, "select_backend", lambda *a, **k: Chosen())
    cfg = parse_config(TEXT, "p.yaml")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^model\.tensorrt\.calibration\.data: no such file or folder: calib$"):
        preflight.check_model(cfg, load_model("selfie_landscape"))
    (tmp_path / "calib").mkdir()
    assert preflight.check_model(cfg, load_model("selfie_landscape")).startswith("onnxruntime")


def test_sources_are_checked_in_order_with_their_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text(TEXT)
    cfg = parse_config(TEXT, "p.yaml")
    calls: list[Any] = []
    monkeypatch.setattr(preflight, "check_model", lambda *a: calls.append(a) or "stub")
    with pytest.raises(ConfigError, match=r"^p\.yaml:5: sources\.1\.uri: no such file: clip\.mp4$"):
        preflight.check_pipeline(cfg, "p.yaml")
    assert len(calls) == 1  # the model first, as run does
