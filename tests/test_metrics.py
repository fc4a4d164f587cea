"""The operator's series after a real run: process, per-stream errors, queues, last frame, output
errors, build_info; no ``*_created`` duplicates; ``promtool check metrics`` accepts the exposition."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamseg.config import parse_config
from streamseg.metrics import Metrics
from streamseg.pipeline import Pipeline


def _samples(exposition: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(exposition.decode())
        for s in family.samples
    }


def test_the_exposition_has_process_series_and_no_created() -> None:
    text = Metrics().exposition().decode()
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"):
        assert f"\n{name} " in text, name
    assert "_created" not in text


def test_a_run_exports_what_an_operator_needs(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where the snapshot folder should be")
    cfg = parse_config(
        f"""
sources:
  - {{name: good, uri: "synthetic://?width=64&height=48&frames=6"}}
  - {{name: gone, uri: "{tmp_path}/missing.mp4"}}
model: {{path: selfie_landscape}}
outputs:
  - {{type: jsonl, path: "{tmp_path}/stats.jsonl"}}
  - {{type: snapshot, path: "{tmp_path}/blocker/{{stream}}", raw: true}}
http: {{enabled: false}}
""",
        "test.yaml",
    )
    started = time.time()
    p = Pipeline(cfg)
    summary = p.run()
    assert summary.frames == {"good": 6, "gone": 0} and "gone" in summary.failed
    samples = _samples(p.metrics.exposition())

    def value(name: str, **labels: str) -> float | None:
        return samples.get((name, tuple(sorted(labels.items()))))

    assert value("streamseg_stream_read_errors_total", stream="gone") == 1
    assert value("streamseg_stream_read_errors_total", stream="good") == 0
    # the snapshot output failed on its first frame and disabled itself; the JSONL output kept writing
    assert value("streamseg_output_errors_total", output="1:snapshot", stream="good") == 1
    assert value("streamseg_output_errors_total", output="0:jsonl", stream="good") == 0
    assert len((tmp_path / "stats.jsonl").read_text().splitlines()) == 6
    last = value("streamseg_stream_last_frame_timestamp_seconds", stream="good")
    assert last is not None and started <= last <= time.time()
    assert value("streamseg_stream_last_frame_timestamp_seconds", stream="gone") is None  # no frame ever
    for stream in ("good", "gone"):
        for queue in ("source", "outputs"):
            assert value("streamseg_stream_queue_depth", stream=stream, queue=queue) == 0  # drained
    (info,) = [dict(k[1]) for k in samples if k[0] == "streamseg_build_info"]
    assert info["backend"] == "onnxruntime" and info["model"] == "selfie_landscape"
    assert (info["device"], info["provider"], info["precision"]) == ("cpu", "CPUExecutionProvider", "fp32")
    assert value("streamseg_live_viewers") == 0  # no live output: the gauge stays at zero
    assert not any(name.endswith("_created") for name, _ in samples)
    assert value("process_open_fds") is not None and value("process_resident_memory_bytes") is not None

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (tools/install-system-deps.sh installs prometheus)")
    lint = subprocess.run([promtool, "check", "metrics"], input=p.metrics.exposition(), capture_output=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
