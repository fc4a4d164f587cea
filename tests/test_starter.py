"""streamseg/starter.py and `streamseg init`: a starter pipeline that validates and runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamseg.cli import main
from streamseg.config import load_config
from streamseg.errors import ConfigError
from streamseg.starter import starter_pipeline


def streamseg(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamseg", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    ("source", "uri", "kind", "target"),
    [
        ("file", None, "file", "samples/bikes.mp4"),
        ("camera", None, "camera", "/dev/video0"),
        ("rtsp", None, "rtsp", "rtsp://viewer:s3cret@192.168.1.10:554/stream1"),
        ("synthetic", None, "synthetic", "synthetic://?width=640&height=360&fps=25&frames=250"),
        (None, None, "file", "samples/bikes.mp4"),
        (None, "rtsp://cam.local/live?a=1&b=${CAM_PASSWORD}", "rtsp", "rtsp://cam.local/live?a=1&b=s3cret"),
        (None, "/dev/video2", "camera", "/dev/video2"),
        (None, "my clip: 'x'.mp4", "file", "my clip: 'x'.mp4"),
        ("synthetic", "synthetic://?frames=3", "synthetic", "synthetic://?frames=3"),
    ],
)
def test_every_starter_validates_with_the_bundled_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str | None, uri: str | None, kind: str, target: str
) -> None:
    monkeypatch.setenv("CAM_USER", "viewer")
    monkeypatch.setenv("CAM_PASSWORD", "s3cret")
    path = tmp_path / "p.yaml"
    path.write_text(starter_pipeline(source, uri))
    cfg = load_config(path)
    assert (cfg.sources[0].kind, cfg.sources[0].uri) == (kind, target)
    assert cfg.model.path == "selfie_landscape"
    assert [o.type for o in cfg.outputs] == ["video", "jsonl", "live"]


@pytest.mark.parametrize(
    ("source", "uri", "message"),
    [
        ("file", "rtsp://cam/x", "usage: --uri is a rtsp URI but --source is file"),
        (None, "ftp://cam/x", "source 'ftp://cam/x': unknown scheme 'ftp'"),
        ("webcam", None, "usage: --source must be one of file, camera, rtsp, synthetic, got 'webcam'"),
    ],
)
def test_inconsistent_arguments_are_config_errors(source: str | None, uri: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message.replace("?", r"\?")):
        starter_pipeline(source, uri)


def test_init_refuses_to_overwrite_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text("mine\n")
    assert main(["init", str(path), "--source", "synthetic"]) == 2
    assert capsys.readouterr().err == f"streamseg: error: {path}: already exists (use --force to overwrite it)\n"
    assert path.read_text() == "mine\n"
    assert main(["init", str(path), "--source", "synthetic", "--force"]) == 0
    assert "synthetic://" in path.read_text()


def test_init_warns_about_a_written_out_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "a.yaml"), "--uri", "rtsp://u:${CAM_PASSWORD}@cam/x"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["init", str(tmp_path / "b.yaml"), "--uri", "rtsp://u:hunter2@cam/x"]) == 0
    assert "holds a password" in capsys.readouterr().err


def test_init_default_then_validate_and_run_from_an_empty_directory(tmp_path: Path) -> None:
    r = streamseg("init", "--source", "synthetic", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("wrote pipeline.yaml\n")
    text = (tmp_path / "pipeline.yaml").read_text()
    (tmp_path / "pipeline.yaml").write_text(text.replace("port: 8080 ", "port: 0    "))  # tests share the machine
    r = streamseg("validate", "pipeline.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = streamseg("run", "pipeline.yaml", "--max-frames", "12", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in (tmp_path / "out" / "stats.jsonl").read_text().splitlines()]
    assert len(records) == 12
    assert (tmp_path / "out" / "pattern.mp4").stat().st_size > 0
