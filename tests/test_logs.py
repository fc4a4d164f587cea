"""Log formats: the JSON formatter's fields, and a real run logging JSON lines (status included)."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from streamseg.logs import JsonFormatter

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "samples" / "bikes.mp4"
FAST_STATUS = ["--max-frames", "30", "--status-interval", "0.3"]


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("streamseg.test")
    return logger.makeRecord(logger.name, logging.WARNING, __file__, 1, msg, args, None, extra=extra or None)


def test_json_fields() -> None:
    entry = json.loads(JsonFormatter().format(_record("%d frames from %s", 3, "cam1", stream="cam1")))
    assert entry.keys() == {"time", "level", "logger", "message", "stream"}
    assert entry["level"] == "WARNING" and entry["logger"] == "streamseg.test"
    assert entry["message"] == "3 frames from cam1" and entry["stream"] == "cam1"
    assert entry["time"].endswith("+00:00") and "T" in entry["time"]


def test_the_stream_comes_from_a_pipeline_thread_name() -> None:
    entries = []

    def log_on_thread() -> None:
        entries.append(json.loads(JsonFormatter().format(_record("lost"))))

    for name in ("source-cam2", "outputs-cam3", "http"):
        t = threading.Thread(target=log_on_thread, name=name)
        t.start()
        t.join()
    assert [e.get("stream") for e in entries] == ["cam2", "cam3", None]


def test_an_exception_travels_inside_the_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "RuntimeError: boom" in json.loads(line)["exception"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(not CLIP.exists(), reason="samples/bikes.mp4 is missing: run `make samples`")
def test_a_run_logs_json_lines_with_status_and_no_password(tmp_path: Path) -> None:
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(f"""
sources:
  - {{name: clip, uri: "{CLIP}", realtime: true}}
  - name: cam
    uri: "rtsp://viewer:pw-s3cr3t@127.0.0.1:{_closed_port()}/live"
    timeouts: {{open_s: 2}}
    reconnect: {{max_attempts: 0}}
model: {{path: selfie_landscape}}
http: {{enabled: false}}
""")
    r = subprocess.run(
        [sys.executable, "-m", "streamseg", "--log-format", "json", "run", str(pipeline), *FAST_STATUS],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert r.returncode == 1, r.stderr  # the camera failed for good
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines if not line.startswith("streamseg: error:")]
    assert entries and all({"time", "level", "logger", "message"} <= e.keys() for e in entries)
    status = [e for e in entries if e["logger"] == "streamseg.status"]
    assert status, r.stderr
    last = status[-1]
    assert last["message"].startswith("status: clip ") and " | cam failed " in last["message"]
    by_name = {s["name"]: s for s in last["streams"]}
    assert by_name["cam"]["state"] == "failed" and by_name["cam"]["error"]
    assert "rtsp://" not in json.dumps(last["streams"])  # status carries no URL
    failed = [e for e in entries if e["level"] == "ERROR" and e.get("stream") == "cam"]
    assert failed, r.stderr
    assert "pw-s3cr3t" not in r.stderr and "pw-s3cr3t" not in r.stdout
