"""Helpers for whole-pipeline tests: run a Pipeline in a thread, scrape it over HTTP."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streamseg.config import PipelineConfig, parse_config
from streamseg.pipeline import Pipeline, RunSummary
from tests.support.rtsp import free_port

ROOT = Path(__file__).resolve().parents[2]
CLIP = ROOT / "samples" / "bikes.mp4"


@pytest.fixture(scope="session")
def clip() -> Path:
    if not CLIP.exists():
        pytest.fail(f"{CLIP} is missing: run `make samples`")
    return CLIP


class RunningPipeline:
    """A pipeline on a background thread; ``wait()`` returns its summary or re-raises."""

    def __init__(self, cfg: PipelineConfig, **kwargs: float | int | None) -> None:
        self.pipeline = Pipeline(cfg, **kwargs)  # type: ignore[arg-type]
        self.summary: RunSummary | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self.pipeline.ready.wait(60):
            raise AssertionError(f"pipeline did not start: {self.error}")

    def _run(self) -> None:
        try:
            self.summary = self.pipeline.run()
        except BaseException as e:  # handed to the test thread
            self.error = e
            self.pipeline.ready.set()

    @property
    def url(self) -> str:
        assert self.pipeline.http is not None
        return self.pipeline.http.url

    def sample(self, name: str, **labels: str) -> float | None:
        return self.pipeline.metrics.registry.get_sample_value(name, labels)

    def wait(self, timeout: float = 120) -> RunSummary:
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.pipeline.stop()
            self._thread.join(30)
            raise AssertionError(f"pipeline still running after {timeout} s")
        if self.error is not None:
            raise self.error
        assert self.summary is not None
        return self.summary

    def stop(self) -> RunSummary:
        self.pipeline.stop()
        return self.wait(60)


@pytest.fixture
def run_pipeline() -> Iterator[Callable[..., RunningPipeline]]:
    started: list[RunningPipeline] = []

    def start(yaml_text: str, **kwargs: float | int | None) -> RunningPipeline:
        rp = RunningPipeline(parse_config(yaml_text, "test.yaml"), **kwargs)
        started.append(rp)
        return rp

    yield start
    for rp in started:  # never leave a pipeline (and its ports) behind
        rp.pipeline.stop()
        rp._thread.join(30)


def http_get(url: str, timeout: float = 10) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def start_prometheus(tmp_path: Path, target: str) -> tuple[subprocess.Popen[bytes], str]:
    """Debian's Prometheus on a free loopback port, scraping ``target`` (host:port) every second;
    returns the process (the caller terminates it) and its base URL. Skips where it is missing."""
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("prometheus is not installed (tools/install-system-deps.sh installs it)")
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: streamseg\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, f"http://127.0.0.1:{port}"
