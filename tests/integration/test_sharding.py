"""Sharding for real: three `streamseg run` processes with shards 0/3, 1/3 and 2/3 (one from the
STREAMSEG_SHARD variable, as a StatefulSet sets it) over one 12-stream pipeline; their scraped
/metrics split the streams, each stream in exactly one process. A shard without streams stays up
and healthy. Every process ends with exit 0 on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamseg.shard import ENV_VAR, Shard

from .conftest import ROOT, http_get, wait_for

pytestmark = pytest.mark.slow

NAMES = [f"cam-{i:02d}" for i in range(1, 13)]
# Low frame rates and one inference thread: three processes share the machine's cores.
SOURCE = '  - {{name: {name}, uri: "synthetic://?width=64&height=48&fps=4", realtime: true}}\n'
PIPELINE = "name: sharded\nsources:\n{sources}model: {{path: selfie_landscape, threads: 1}}\nhttp: {{port: 0}}\n"
METRICS_URL = re.compile(r"metrics: (http://127\.0\.0\.1:\d+/)metrics")
SAMPLE = re.compile(r"^(streamseg_\w+)\{(.*)\} (\S+)$")


class Replica:
    """One `streamseg run` process; its URL is read from its start-up log line (port 0 is logged)."""

    def __init__(self, pipeline: Path, log: Path, args: list[str], env: dict[str, str]) -> None:
        self.log = log
        clean = {k: v for k, v in os.environ.items() if k != ENV_VAR}
        with open(log, "w") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamseg", "run", str(pipeline), "--status-interval", "0", *args],
                cwd=ROOT,
                env={**clean, **env},
                stdout=subprocess.DEVNULL,
                stderr=f,
            )
        self.url = ""

    def wait_url(self, timeout: float = 60) -> str:
        def found() -> bool:
            m = METRICS_URL.search(self.log.read_text())
            assert self.proc.poll() is None, f"exited early: {self.log.read_text()}"
            self.url = m.group(1) if m else ""
            return bool(m)

        wait_for(found, timeout, f"the metrics URL in {self.log}")
        return self.url

    def samples(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        status, body, _ = http_get(self.url + "metrics")
        assert status == 200
        out = {}
        for line in body.decode().splitlines():
            m = SAMPLE.match(line)
            if m and m.group(1) == name:
                labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(2))))
                out[labels] = float(m.group(3))
        return out

    def streams(self) -> dict[str, float]:
        """Frames processed per stream this process exports."""
        return {dict(k)["stream"]: v for k, v in self.samples("streamseg_frames_processed_total").items()}

    def terminate(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    for r in started:  # never leave a process (and its port) behind
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait(30)


def test_three_replicas_split_twelve_streams(tmp_path: Path, replicas: list[Replica]) -> None:
    pipeline = tmp_path / "sharded.yaml"
    pipeline.write_text(PIPELINE.format(sources="".join(SOURCE.format(name=n) for n in NAMES)))
    ways: list[tuple[list[str], dict[str, str]]] = [
        (["--shard", "0/3"], {}),
        ([], {ENV_VAR: "1/3"}),  # the StatefulSet's way
        (["--shard", "2/3"], {ENV_VAR: "1/3"}),  # the flag wins over the variable
    ]
    for i, (args, env) in enumerate(ways):
        replicas.append(Replica(pipeline, tmp_path / f"replica{i}.log", args, env))
    for r in replicas:
        r.wait_url()

    # every stream of each replica delivers frames, so the split is of running streams
    wait_for(lambda: all(r.streams() and all(v > 0 for v in r.streams().values()) for r in replicas), 90, "frames")
    split = [sorted(r.streams()) for r in replicas]
    assert sorted(n for names in split for n in names) == NAMES  # all 12, none twice
    for i, (r, names) in enumerate(zip(replicas, split, strict=True)):
        assert names == Shard(i, 3).select(NAMES)  # only its own streams in its /metrics
        (info,) = r.samples("streamseg_build_info")
        assert dict(info)["shard"] == f"{i}/3"
        up = {dict(k)["stream"] for k in r.samples("streamseg_stream_up")}
        assert up == set(names)
        assert f"shard {i}/3: {len(names)} of 12 stream(s): {', '.join(names)}" in r.log.read_text()
    assert split == [
        ["cam-02", "cam-05", "cam-06", "cam-09", "cam-11"],
        ["cam-01", "cam-03", "cam-07", "cam-10"],
        ["cam-04", "cam-08", "cam-12"],
    ]

    for r in replicas:  # all at once: they stop in parallel
        r.proc.send_signal(signal.SIGTERM)
    assert [r.proc.wait(60) for r in replicas] == [0, 0, 0]


def test_a_shard_without_streams_stays_up_and_healthy(tmp_path: Path, replicas: list[Replica]) -> None:
    pipeline = tmp_path / "one.yaml"
    pipeline.write_text(PIPELINE.format(sources=SOURCE.format(name="entrance")))  # "entrance" is in shard 2/3
    replica = Replica(pipeline, tmp_path / "idle.log", [], {ENV_VAR: "0/3"})
    replicas.append(replica)
    replica.wait_url()
    time.sleep(1.0)  # an empty shard must not end the run
    assert replica.proc.poll() is None
    status, body, _ = http_get(replica.url + "healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok", "streams": {}})
    assert replica.streams() == {}
    (info,) = replica.samples("streamseg_build_info")
    assert dict(info)["shard"] == "0/3"
    assert "shard 0/3: 0 of 1 stream(s): none (idle: serving /metrics and /healthz)" in replica.log.read_text()
    assert replica.terminate() == 0
