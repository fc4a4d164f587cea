"""Pipeline-level behaviour with a fake backend: sink isolation, back-pressure, shutdown order.

The backend is a small numpy ``Backend`` put in ``streamseg.backends.REGISTRY`` under the name the
config asks for, so these tests exercise the pipeline's threads and queues, not an inference engine.
Test sinks are added beside the configured ones by wrapping ``build_sinks``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

import streamseg.pipeline as pipeline_mod
from streamseg.backends import REGISTRY
from streamseg.backends.base import Backend
from streamseg.cli import main
from streamseg.config import parse_config
from streamseg.contract import LoadedModel, TensorInfo, expected_input_shape
from streamseg.errors import OutputError
from streamseg.frames import Picture, SegResult
from streamseg.outputs import Sink
from streamseg.outputs.jsonl import JsonlOutput, JsonlSink
from streamseg.pipeline import Pipeline, RunSummary, StreamWorker
from streamseg.server import HttpServer
from streamseg.sources import Source

EVENTS: list[tuple[Any, ...]] = []  # what happened, in order, across threads (list.append is atomic)


class FakeBackend(Backend):
    """Logits from a fixed 3x3 color mix: deterministic, instant, no engine."""

    name = "fake"

    @classmethod
    def unavailable_reason(cls, device: str) -> str | None:
        return None

    def _load(self) -> tuple[list[TensorInfo], list[TensorInfo]]:
        c = self.contract
        shape = expected_input_shape(c, None)
        out = (None, c.num_classes, c.input.height, c.input.width)
        return [TensorInfo(c.input.name, shape, "float32")], [TensorInfo(c.output.name, out, "float32")]

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        k = self.contract.num_classes
        mix = np.eye(k, 3, dtype=np.float32)
        return np.einsum("nchw,kc->nkhw", batch, mix)

    def _close(self) -> None:
        EVENTS.append(("backend.close",))


class Recorder(Sink):
    """Wraps a sink (or stands alone) and records every write and close in EVENTS."""

    def __init__(self, label: str, inner: Sink | None = None, on_write: Callable[[SegResult], None] | None = None):
        self.label, self.inner, self.on_write = label, inner, on_write
        self.wants_raw = inner.wants_raw if inner else False
        self.wants_overlay = inner.wants_overlay if inner else False

    def describe(self) -> str:
        return self.label

    def write(self, result: SegResult, overlay: Picture | None) -> None:
        EVENTS.append(("write", self.label, result.frame.stream, result.frame.index))
        if self.on_write is not None:
            self.on_write(result)
        if self.inner is not None:
            self.inner.write(result, overlay)

    def close(self) -> None:
        EVENTS.append(("close", self.label))
        if self.inner is not None:
            self.inner.close()


class FailingSink(Recorder):
    """An output that cannot write (a full disk): every write raises OutputError."""

    def write(self, result: SegResult, overlay: Picture | None) -> None:
        EVENTS.append(("write", self.label, result.frame.stream, result.frame.index))
        raise OutputError(f"{self.label}: No space left on device")


class CloseFailingSink(Recorder):
    """Writes fine; finalizing raises, as an encoder flushing onto a full disk does."""

    def close(self) -> None:
        EVENTS.append(("close", self.label))
        raise OSError(28, "No space left on device")


@pytest.fixture
def fake_backend(monkeypatch: pytest.MonkeyPatch, make_model: Callable[..., LoadedModel]) -> LoadedModel:
    """Config `backend: onnxruntime` gets FakeBackend; the model is a tiny 3-class sidecar."""
    EVENTS.clear()
    monkeypatch.setitem(REGISTRY, "onnxruntime", FakeBackend)
    return make_model()


def add_sinks(monkeypatch: pytest.MonkeyPatch, *extra: Sink, wrap: bool = True) -> None:
    """Put ``extra`` sinks first, then the configured ones (wrapped in Recorders when ``wrap``)."""
    real = pipeline_mod.build_sinks

    def build(*args: Any, **kwargs: Any) -> list[Sink]:
        sinks = real(*args, **kwargs)
        return [*extra, *(Recorder(s.describe(), s) if wrap else s for s in sinks)]

    monkeypatch.setattr(pipeline_mod, "build_sinks", build)


def config(model: LoadedModel, sources: str, outputs: str, http: bool = False, **batch: int) -> Any:
    return parse_config(f"""
sources: {sources}
model: {{path: "{model.sidecar}", backend: onnxruntime, device: cpu}}
batch: {{max_batch: {batch.get("max_batch", 2)}, max_wait_ms: 5}}
outputs: {outputs}
http: {{enabled: {"true" if http else "false"}, port: 0}}
""")


def mp4_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def jsonl_frames(path: Path) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        seen.setdefault(r["stream"], []).append(r["frame"])
    return seen


SYN = "synthetic://?width=64&height=48&frames={n}"


def run(pipeline: Pipeline) -> RunSummary:
    """``pipeline.run()`` on a thread, so a stage that wedges fails the test instead of hanging it."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["summary"] = pipeline.run()
        except BaseException as e:  # handed to the test thread
            box["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(60)
    if thread.is_alive():
        pipeline.stop()
        pytest.fail("the pipeline hung (a stage stopped taking frames)")
    if "error" in box:
        raise box["error"]
    return box["summary"]  # type: ignore[no-any-return]


def test_a_failing_output_disables_itself_and_the_others_write_every_frame(
    fake_backend: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = FailingSink("broken")
    add_sinks(monkeypatch, broken)
    n = 12
    cfg = config(
        fake_backend,
        f'[{{name: a, uri: "{SYN.format(n=n)}"}}, {{name: b, uri: "{SYN.format(n=n)}"}}]',
        f'[{{type: jsonl, path: "{tmp_path}/stats.jsonl"}}, {{type: video, path: "{tmp_path}/{{stream}}.mp4"}}]',
    )
    summary = run(Pipeline(cfg))

    assert summary.frames == {"a": n, "b": n} and summary.failed == {}
    # the broken output was tried once per stream, then left alone ...
    assert [e[2:] for e in EVENTS if e[:2] == ("write", "broken")] in ([("a", 0), ("b", 0)], [("b", 0), ("a", 0)])
    assert sorted(summary.output_errors) == [
        "stream a: broken: No space left on device",
        "stream b: broken: No space left on device",
    ]
    # ... while the others wrote every frame of both streams, in order
    assert jsonl_frames(tmp_path / "stats.jsonl") == {"a": list(range(n)), "b": list(range(n))}
    assert mp4_frames(tmp_path / "a.mp4") == n and mp4_frames(tmp_path / "b.mp4") == n
    # and every sink, the broken one too, was closed once
    assert sorted(e[1] for e in EVENTS if e[0] == "close") == sorted(
        ["broken", f"jsonl output {tmp_path}/stats.jsonl", f"video output {tmp_path}/{{stream}}.mp4"]
    )


def test_a_slow_output_holds_a_file_source_back_without_dropping_or_growing_queues(
    fake_backend: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bikes: Path
) -> None:
    sources: list[Source] = []
    workers: list[StreamWorker] = []

    class SeenSource(Source):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            sources.append(self)

    class SeenWorker(StreamWorker):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            workers.append(self)

    monkeypatch.setattr(pipeline_mod, "Source", SeenSource)
    monkeypatch.setattr(pipeline_mod, "StreamWorker", SeenWorker)
    queue_size, max_batch, n = 2, 2, 60
    held: dict[str, int] = {}
    most_queued = {"source": 0, "worker": 0}

    def slow(result: SegResult) -> None:
        (src,), (worker,) = sources, workers
        most_queued["source"] = max(most_queued["source"], len(src.queue))
        most_queued["worker"] = max(most_queued["worker"], worker.queue.qsize())
        if result.frame.index == 0:
            # Hold the first frame until every queue before this sink is full, so the reader can
            # only be blocked; then see how far it got. No clock decides the outcome.
            deadline = time.monotonic() + 30
            while not (len(src.queue) >= queue_size and worker.queue.full()) and time.monotonic() < deadline:
                time.sleep(0.01)
            held["filled"] = len(src.queue) >= queue_size and worker.queue.full()
            time.sleep(0.3)  # a reader that was not held back would run on during this
            held["read"] = src.frames_read

    add_sinks(monkeypatch, Recorder("slow", on_write=slow))
    cfg = config(
        fake_backend,
        f'[{{name: clip, uri: "{bikes}", queue_size: {queue_size}}}]',
        f'[{{type: jsonl, path: "{tmp_path}/stats.jsonl"}}]',
        max_batch=max_batch,
    )
    summary = run(Pipeline(cfg, max_frames=n))

    # every frame of the file went through, none dropped, in order
    assert summary.frames == {"clip": n}
    assert jsonl_frames(tmp_path / "stats.jsonl") == {"clip": list(range(n))}
    assert sources[0].dropped == 0
    # while the output stalled, the reader held at most: the frame in the sink, the worker's
    # queue, one batch, the source queue and the frame it was putting
    assert held["filled"], "the queues never filled behind a stalled output"
    assert held["read"] <= 1 + workers[0].queue.maxsize + max_batch + queue_size + 1 < n
    assert most_queued["source"] <= queue_size and most_queued["worker"] <= workers[0].queue.maxsize


def test_shutdown_stops_sources_drains_workers_closes_each_sink_once_and_the_server_last(
    fake_backend: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def record(cls: type, method: str, event: Callable[[Any], tuple[Any, ...]]) -> None:
        real = getattr(cls, method)

        def wrapper(self: Any, *args: Any) -> Any:
            result = real(self, *args)
            EVENTS.append(event(self))
            return result

        monkeypatch.setattr(cls, method, wrapper)

    record(Source, "stop", lambda s: ("source.stop", s.name))
    # after finish() returns, the worker's queue must be empty: drained, not abandoned
    record(StreamWorker, "finish", lambda w: ("worker.finished", w.name, w.queue.qsize(), w.processed))
    record(HttpServer, "stop", lambda _: ("http.stop",))
    add_sinks(monkeypatch, Recorder("extra"))
    n = 10
    cfg = config(
        fake_backend,
        f'[{{name: a, uri: "{SYN.format(n=n)}"}}, {{name: b, uri: "{SYN.format(n=2 * n)}"}}]',
        f'[{{type: jsonl, path: "{tmp_path}/stats.jsonl"}}, {{type: video, path: "{tmp_path}/{{stream}}.mp4"}}]',
        http=True,
    )
    summary = run(Pipeline(cfg))
    assert summary.frames == {"a": n, "b": 2 * n} and summary.output_errors == []

    kinds = [e[0] for e in EVENTS]
    first_close = kinds.index("close")
    # sources are told to stop, then workers drain, before any sink is closed
    assert sorted(e[1] for e in EVENTS[:first_close] if e[0] == "source.stop") == ["a", "b"]
    finished = {e[1]: e[2:] for e in EVENTS[:first_close] if e[0] == "worker.finished"}
    assert finished == {"a": (0, n), "b": (0, 2 * n)}
    assert max(i for i, k in enumerate(kinds) if k == "source.stop") < min(
        i for i, k in enumerate(kinds) if k == "worker.finished"
    )
    # each sink: closed exactly once, after its last write; the extra sink saw every frame
    labels = {e[1] for e in EVENTS if e[0] == "write"} | {e[1] for e in EVENTS if e[0] == "close"}
    assert len(labels) == 3
    for label in labels:
        closes = [i for i, e in enumerate(EVENTS) if e[:2] == ("close", label)]
        writes = [i for i, e in enumerate(EVENTS) if e[:2] == ("write", label)]
        assert len(closes) == 1 and writes and max(writes) < closes[0], label
    assert len([e for e in EVENTS if e[:2] == ("write", "extra")]) == 3 * n
    # the HTTP server goes last, before the backend frees the model
    assert kinds[-2:] == ["http.stop", "backend.close"]
    assert max(i for i, k in enumerate(kinds) if k == "close") < kinds.index("http.stop")


def test_one_failing_close_does_not_keep_the_other_outputs_from_finalizing(
    fake_backend: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_sinks(monkeypatch, CloseFailingSink("full-disk"))
    n = 6
    cfg = config(
        fake_backend,
        f'[{{name: a, uri: "{SYN.format(n=n)}"}}]',
        f'[{{type: jsonl, path: "{tmp_path}/stats.jsonl"}}, {{type: video, path: "{tmp_path}/{{stream}}.mp4"}}]',
    )
    pipeline = Pipeline(cfg)
    summary: RunSummary = run(pipeline)

    assert summary.output_errors == ["full-disk: close failed: No space left on device"]
    counted = [
        line
        for line in pipeline.metrics.exposition().decode().splitlines()
        if line.startswith("streamseg_output_errors_total{") and 'stream=""' in line
    ]
    assert counted == ['streamseg_output_errors_total{output="0:closefailing",stream=""} 1.0'], counted
    assert [e[1] for e in EVENTS if e[0] == "close"] == [
        "full-disk",
        f"jsonl output {tmp_path}/stats.jsonl",
        f"video output {tmp_path}/{{stream}}.mp4",
    ]
    assert mp4_frames(tmp_path / "a.mp4") == n  # finalized: the moov atom is there
    assert jsonl_frames(tmp_path / "stats.jsonl") == {"a": list(range(n))}


def test_a_failing_close_fails_the_run(
    fake_backend: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    add_sinks(monkeypatch, CloseFailingSink("full-disk"))
    path = tmp_path / "p.yaml"
    path.write_text(f"""
sources: [{{name: a, uri: "{SYN.format(n=3)}"}}]
model: {{path: "{fake_backend.sidecar}", backend: onnxruntime, device: cpu}}
outputs: [{{type: jsonl, path: "{tmp_path}/stats.jsonl"}}]
http: {{enabled: false}}
""")
    assert main(["run", str(path)]) == 1
    err = capsys.readouterr().err
    assert "streamseg: error: full-disk: close failed: No space left on device" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("kind", ["video", "jsonl"])
@pytest.mark.parametrize("below", ["", "deeper/"], ids=["parent", "grandparent"])
def test_outputs_under_a_regular_file_fail_the_run_and_say_why(
    kind: str, below: str, fake_backend: LoadedModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "taken").write_text("a file where a folder should be")
    target = tmp_path / "taken" / below / ("{stream}.mp4" if kind == "video" else "stats.jsonl")
    path = tmp_path / "p.yaml"
    path.write_text(f"""
sources: [{{name: a, uri: "{SYN.format(n=3)}"}}]
model: {{path: "{fake_backend.sidecar}", backend: onnxruntime, device: cpu}}
outputs: [{{type: {kind}, path: "{target}"}}]
http: {{enabled: false}}
""")
    # run's start-up checks catch it before anything opens: a configuration error, exit 2
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"parent {tmp_path / 'taken'} is a file, not a folder" in err
    assert "File exists" not in err and "Not a directory" not in err and "Traceback" not in err
    if kind == "jsonl":  # and the output itself says the same where it opens (a file that appeared since)
        with pytest.raises(OutputError, match=f"parent {tmp_path / 'taken'} is a file, not a folder"):
            JsonlSink(JsonlOutput(type="jsonl", path=str(target)), ["background", "person"])


@pytest.mark.parametrize(
    ("body", "status", "key", "text"),
    [
        ({"name": "cam", "uri": "synthetic://"}, 409, "name", "a stream named 'cam' exists already"),
        ({"name": "x", "uri": "nope://"}, 422, "uri", "uri: "),
        ({"name": "x", "uri": "synthetic://", "fps": 0}, 422, "fps", "fps: Input should be greater than 0"),
        ({"name": "x", "uri": "synthetic://", "zones": [{"name": "z"}]}, 422, "zones.0.polygon", "required key"),
        ({"uri": "synthetic://"}, 422, "name", "name: required key is missing"),
    ],
)
def test_a_stream_to_add_is_checked_like_the_file(body: dict[str, Any], status: int, key: str, text: str) -> None:
    """The same SourceConfig and cross-checks as the file, the bad key's path in the error, and
    nothing changed; a stream added before run() or after it ends is refused (503)."""
    from streamseg.errors import StreamChangeError

    p = Pipeline(parse_config("sources: [{name: cam, uri: 'synthetic://'}]\nmodel: {path: selfie_landscape}\n"))
    with pytest.raises(StreamChangeError) as e:
        p.validate_source(body)
    assert (e.value.status, e.value.key) == (status, key) and text in str(e.value)
    assert [s.name for s in p.cfg.sources] == ["cam"]
    with pytest.raises(StreamChangeError) as e:
        p.add_stream({"name": "other", "uri": "synthetic://"})
    assert e.value.status == 503
    with pytest.raises(StreamChangeError) as e:
        p.remove_stream("cam")  # not running: no stream is open
    assert e.value.status == 404


def test_a_stream_an_event_rule_names_stays_until_a_restart() -> None:
    from streamseg.errors import StreamChangeError

    text = (
        "sources: [{name: cam, uri: 'synthetic://'}]\nmodel: {path: selfie_landscape}\n"
        "events: {jsonl: out/events.jsonl, rules: [{name: r, stream: cam, class: person, above: 0.2}]}\n"
    )
    p = Pipeline(parse_config(text))
    p._sources = [Source(p.cfg.sources[0], p.metrics)]  # as if running (never started)
    with pytest.raises(StreamChangeError) as e:
        p.remove_stream("cam")
    assert e.value.status == 409 and "event rule(s) r" in str(e.value)


def test_an_added_stream_must_fit_the_outputs_and_the_shard() -> None:
    from streamseg.errors import StreamChangeError
    from streamseg.shard import Shard, shard_of

    text = (
        "sources: [{name: cam, uri: 'synthetic://'}]\nmodel: {path: selfie_landscape}\n"
        "outputs: [{type: video, path: out/one.mp4}]\n"
    )
    p = Pipeline(parse_config(text))
    with pytest.raises(StreamChangeError) as e:  # two streams would write one file
        p.validate_source({"name": "two", "uri": "synthetic://"})
    assert e.value.status == 422 and e.value.key == "outputs" and "path needs {stream}" in str(e.value)

    mine = Shard(0, 2)
    name = next(n for n in (f"s{i}" for i in range(100)) if shard_of(n, 2) == 1)  # another shard's
    p = Pipeline(parse_config(text.replace("out/one.mp4", "'out/{stream}.mp4'")), shard=mine)
    with pytest.raises(StreamChangeError) as e:
        p.validate_source({"name": name, "uri": "synthetic://"})
    assert e.value.status == 409 and "shard" in str(e.value) and "(0/2)" in str(e.value)


def test_a_stop_while_a_removal_waits_for_the_batch_lets_the_batch_finish_first(
    fake_backend: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while a DELETE waits at the loop's barrier: the removal goes on only once the loop
    has handed the batch that holds the stream's frames to its worker; no KeyError, no lost frame."""
    hold, entered, release = threading.Event(), threading.Event(), threading.Event()

    class SlowBatcher(pipeline_mod.Batcher):
        def next_batch(self, *args: Any, **kwargs: Any) -> Any:
            batch = super().next_batch(*args, **kwargs)
            if batch is not None and hold.is_set() and any(f.stream == "b" for f in batch.frames):
                hold.clear()
                entered.set()
                release.wait(10)  # a slow model: the batch with b's frames is in flight
            return batch

    monkeypatch.setattr(pipeline_mod, "Batcher", SlowBatcher)
    monkeypatch.setattr(pipeline_mod, "DRAIN_S", 0.1)
    src = "synthetic://?width=64&height=48&fps=100"
    cfg = config(
        fake_backend,
        f'[{{name: a, uri: "{src}"}}, {{name: b, uri: "{src}"}}]',
        f'[{{type: video, path: "{tmp_path}/{{stream}}.mp4"}}]',
    )
    p = Pipeline(cfg)
    removed: dict[str, Any] = {}

    def remove() -> None:
        try:
            removed["frames"] = p.remove_stream("b")
        except BaseException as e:
            removed["error"] = e

    def drive() -> None:
        assert p.ready.wait(20)
        time.sleep(0.2)  # b has frames through
        hold.set()
        assert entered.wait(10)
        remover = threading.Thread(target=remove, daemon=True)
        remover.start()
        deadline = time.monotonic() + 10
        while p._barriers.empty() and time.monotonic() < deadline:  # the removal waits at the barrier
            time.sleep(0.01)
        p.stop()
        time.sleep(0.3)  # long enough for a removal that wrongly goes on at stop
        release.set()
        remover.join(20)

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    summary = run(p)
    driver.join(20)
    assert "error" not in removed, removed.get("error")
    assert removed["frames"] > 0 and summary.frames["b"] == removed["frames"]
    assert mp4_frames(tmp_path / "b.mp4") == removed["frames"]


def test_a_reload_whose_plan_fails_changes_nothing(
    fake_backend: LoadedModel, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The file's streams checked against the running outputs before any is touched: b and c
    cannot share the running one-file video output, so a keeps running and nothing is added."""
    src = "synthetic://?width=64&height=48&fps=50"
    one = f'[{{type: video, path: "{tmp_path}/one.mp4"}}]'
    p = Pipeline(config(fake_backend, f'[{{name: a, uri: "{src}"}}]', one))
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"""
sources: [{{name: b, uri: "{src}"}}, {{name: c, uri: "{src}"}}]
model: {{path: "{fake_backend.sidecar}", backend: onnxruntime, device: cpu}}
batch: {{max_batch: 2, max_wait_ms: 5}}
outputs: [{{type: video, path: "{tmp_path}/{{stream}}.mp4"}}]
http: {{enabled: false, port: 0}}
""")
    p.reload(str(path))  # before run(): refused with one line
    assert "not running yet" in caplog.text and [s.name for s in p.cfg.sources] == ["a"]
    seen: dict[str, Any] = {}

    def drive() -> None:
        assert p.ready.wait(20)
        p.reload(str(path))
        seen["running"] = [s.name for s in p._sources]
        seen["config"] = [s.name for s in p.cfg.sources]
        seen["workers"] = sorted(p._workers)
        time.sleep(0.2)
        p.stop()

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    summary = run(p)
    driver.join(20)
    assert seen == {"running": ["a"], "config": ["a"], "workers": ["a"]}
    assert "reload refused, nothing changed: outputs" in caplog.text
    assert summary.frames["a"] > 0 and mp4_frames(tmp_path / "one.mp4") == summary.frames["a"]


def test_an_add_that_fails_midway_undoes_what_it_registered(
    fake_backend: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = "synthetic://?width=64&height=48&fps=50"
    p = Pipeline(config(fake_backend, f'[{{name: a, uri: "{src}"}}]', "[]"))
    real_start = Source.start

    def start(self: Source) -> None:
        if self.name == "c":
            raise RuntimeError("thread limit reached")
        real_start(self)

    monkeypatch.setattr(Source, "start", start)
    seen: dict[str, Any] = {}

    def drive() -> None:
        assert p.ready.wait(20)
        try:
            p.add_stream({"name": "c", "uri": src})
        except RuntimeError as e:
            seen["error"] = str(e)
        assert p._batcher is not None
        seen["state"] = ([s.name for s in p._sources], sorted(p._workers), sorted(p._trackers), p._batcher.names)
        seen["config"] = [s.name for s in p.cfg.sources]
        seen["series"] = 'stream="c"' in p.metrics.exposition().decode()
        p.stop()

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    summary = run(p)
    driver.join(20)
    assert seen == {
        "error": "thread limit reached",
        "state": (["a"], ["a"], ["a"], ("a",)),
        "config": ["a"],
        "series": False,
    }
    assert list(summary.frames) == ["a"]


def test_the_gpu_stage_in_the_pipeline_gives_the_cpu_stage_results(
    make_model: Callable[..., LoadedModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline with torch's GPU stage (run on torch's CPU device, as it runs on CUDA) and with
    the CPU stage: the same class maps and area ratios for every frame, and the GPU stage's blend
    within 1 of the CPU blend. Frames at the model's size, so preprocessing is exact on both."""
    pytest.importorskip("torch", reason="torch is not installed (pip install 'streamseg[torch]')")
    from streamseg.backends.torch import TorchBackend
    from streamseg.gpu import TorchStage
    from streamseg.overlay import Scratch, blend, make_palette
    from streamseg.stages import OverlaySpec, Stage
    from streamseg.temporal import TemporalFilter

    class DeviceStageTorch(TorchBackend):
        def stage(self, overlay: OverlaySpec | None = None, temporal: TemporalFilter | None = None) -> Stage[Any]:
            return TorchStage(self._device, self.contract, overlay, temporal)

    # mean 128: the gradient's dark and bright halves (and the disc) fall in different classes
    model = make_model({"kind": "class_map", "height": 48, "width": 64}, {"input.mean": [128.0] * 3})
    n = 6

    def run_with(cls: type[TorchBackend]) -> dict[tuple[str, int], SegResult]:
        got: dict[tuple[str, int], SegResult] = {}
        rec = Recorder("results", on_write=lambda r: got.__setitem__((r.frame.stream, r.frame.index), r))
        rec.wants_overlay = True  # the stage blends only when an output shows the overlay
        cfg = parse_config(f"""
sources: [{{name: a, uri: "{SYN.format(n=n)}"}}, {{name: b, uri: "{SYN.format(n=n)}"}}]
model: {{path: "{model.sidecar}", backend: torch, device: cpu}}
batch: {{max_batch: 2, max_wait_ms: 5}}
overlay: {{legend: false}}
outputs: [{{type: jsonl, path: "{tmp_path}/{cls.__name__}.jsonl"}}]
http: {{enabled: false, port: 0}}
""")
        with monkeypatch.context() as mp:
            mp.setitem(REGISTRY, "torch", cls)
            add_sinks(mp, rec)
            assert run(Pipeline(cfg)).frames == {"a": n, "b": n}
        return got

    cpu, dev = run_with(TorchBackend), run_with(DeviceStageTorch)
    assert sorted(cpu) == sorted(dev) == [(s, i) for s in "ab" for i in range(n)]
    c = model.contract
    palette = make_palette(c.class_names, [k.color for k in c.classes])
    for key, want in cpu.items():
        got = dev[key]
        assert np.array_equal(got.class_map, want.class_map) and np.array_equal(got.area_ratio, want.area_ratio)
        assert want.overlay is None and got.overlay is not None  # the CPU worker draws; the GPU stage has blended
        image = got.frame.image  # untouched on the GPU path: the blend went to a device copy
        assert image.ndim == 3, "synthetic frames are BGR"
        expected = blend(image.copy(), got.class_map, palette, 0.5, Scratch())
        assert np.abs(got.overlay.astype(int) - expected.astype(int)).max() <= 1
    assert len({r.class_map.tobytes() for r in cpu.values()}) > 1  # a moving disc: the maps differ
