"""``backend: triton`` against a real Triton Inference Server (pytriton's tritonserver 2.51 serving
the bundled model through ONNX Runtime; tests/support/triton_server.py).

What is proven here: class maps through Triton equal local ONNX Runtime's, exactly (backend level
for batches 1..4 over gRPC and HTTP, and the pipeline's JSON Lines); a server killed mid-run costs
the batches in flight (one-line errors, frames counted as dropped with reason inference_error)
and the run picks up again once the server is back on the same ports, without the process dying;
a wrong model name or shape is a one-line error at start with exit 2; an absent server is a
one-line error naming its address with exit 1.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from streamseg.backends.onnxruntime import OnnxRuntimeBackend
from streamseg.backends.triton import TritonBackend, TritonConfig
from streamseg.contract import load_model
from streamseg.errors import BackendError, ModelError, TransientBackendError
from streamseg.media import VideoInput
from streamseg.preprocess import preprocess
from tests.support import triton as ts

from .conftest import ROOT, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.triton]

BIKES_FRAMES = 48


@pytest.fixture(scope="module")
def server() -> Iterator[ts.TritonServer]:
    reason = ts.skip_reason()
    if reason:
        pytest.skip(reason)
    srv = ts.TritonServer()
    try:
        srv.start()
    except ts.TritonServerError as e:
        srv.close()
        pytest.skip(f"pytriton cannot start tritonserver here: {e}")
    yield srv
    srv.close()


def _frames(clip: Path, n: int) -> list[np.ndarray]:
    frames = []
    video = VideoInput(str(clip))
    try:
        for image, _pts in video.frames():
            frames.append(image)
            if len(frames) == n:
                break
    finally:
        video.close()
    return frames


def _config(
    tmp: Path,
    backend: str,
    url: str,
    extra_sources: str = "",
    bikes: str = "",
    http_port: int = 0,
    **triton: object,
) -> Path:
    options = ", ".join(f"{k}: {json.dumps(v)}" for k, v in {"url": url, **triton}.items())
    path = tmp / f"{backend}.yaml"
    path.write_text(
        f"""name: t
sources:
  - name: bikes
    uri: {ROOT / "samples" / "bikes.mp4"}
{bikes}{extra_sources}model:
  path: selfie_landscape
  backend: {backend}
  triton: {{{options}}}
batch: {{max_batch: 4, max_wait_ms: 10}}
outputs:
  - type: jsonl
    path: {tmp / (backend + ".jsonl")}
http: {{enabled: {"true" if http_port else "false"}, host: 127.0.0.1, port: {http_port}}}
"""
    )
    return path


def _run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamseg", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def _ratios(path: Path) -> dict[tuple[str, int], dict[str, float]]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return {(r["stream"], r["frame"]): r["class_area_ratio"] for r in records}


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error" in line.lower()]


# --- (a) the same class maps as local ONNX Runtime ------------------------------------------------
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_class_maps_equal_onnxruntime(server: ts.TritonServer, clip: Path, protocol: str) -> None:
    model = load_model("selfie_landscape")
    images = _frames(clip, BIKES_FRAMES)
    cfg = TritonConfig(url=server.url(protocol), protocol=protocol)
    people = 0
    with TritonBackend(model, max_batch=4, options=cfg) as remote, OnnxRuntimeBackend(model, max_batch=4) as local:
        assert remote.runtime.device == "remote"
        start, sizes = 0, [1, 2, 3, 4] * BIKES_FRAMES
        while start < len(images):  # every frame once, in batches of 1, 2, 3 and 4
            n = min(sizes.pop(0), len(images) - start)
            batch = preprocess(images[start : start + n], model.contract.input)
            got, want = remote.infer(batch), local.infer(batch)
            assert got.dtype == want.dtype and got.shape == want.shape == (n, 144, 256)
            np.testing.assert_array_equal(got, want)
            people += int((want == 1).sum())
            start += n
    assert people > 0  # the clip holds people: the maps are not trivially all background


def test_pipeline_jsonl_equal_onnxruntime(server: ts.TritonServer, clip: Path, tmp_path: Path) -> None:
    for backend in ("onnxruntime", "triton"):
        cfg = _config(tmp_path, backend, server.url())
        done = _run(["run", str(cfg), "--max-frames", str(BIKES_FRAMES), "--status-interval", "0"])
        assert done.returncode == 0, done.stderr
    local, remote = _ratios(tmp_path / "onnxruntime.jsonl"), _ratios(tmp_path / "triton.jsonl")
    assert len(local) == BIKES_FRAMES
    assert remote == local
    assert any(r["person"] > 0 for r in local.values())


# --- (c)/(d) start-up: one line, the right exit code -----------------------------------------------
def test_unknown_model_name_is_exit_2(server: ts.TritonServer, tmp_path: Path) -> None:
    cfg = _config(tmp_path, "triton", server.url(), model_name="no_such_model")
    done = _run(["run", str(cfg), "--max-frames", "4"])
    assert done.returncode == 2, done.stderr
    errors = _errors(done.stderr)
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "model.triton.model_name" in errors[0] and "no_such_model" in errors[0]
    assert not (tmp_path / "triton.jsonl").exists()  # nothing opened before the backend was checked


def test_shape_mismatch_is_exit_2(server: ts.TritonServer, tmp_path: Path) -> None:
    cfg = _config(tmp_path, "triton", server.url(), model_name=ts.WRONG_MODEL)
    done = _run(["run", str(cfg), "--max-frames", "4"])
    assert done.returncode == 2, done.stderr
    errors = _errors(done.stderr)
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    # the sidecar's field and both shapes: the server declares 160 rows, the sidecar 144
    assert "input:" in errors[0] and "144x256" in errors[0] and "160" in errors[0], errors[0]


def test_batch_larger_than_server_max_is_exit_2(server: ts.TritonServer) -> None:
    model = load_model("selfie_landscape")
    with pytest.raises(ModelError, match=r"batch.max_batch: 16 exceeds max_batch_size 8"):
        TritonBackend(model, max_batch=16, options=TritonConfig(url=server.url())).__enter__()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_absent_server_is_exit_1_naming_the_address(tmp_path: Path, protocol: str) -> None:
    if ts.skip_reason() and "tritonclient" in (ts.skip_reason() or ""):
        pytest.skip(ts.skip_reason() or "")
    url = f"127.0.0.1:{ts.free_port()}"  # nothing listens there
    cfg = _config(tmp_path, "triton", url, protocol=protocol, connect_timeout_s=2)
    started = time.monotonic()
    done = _run(["run", str(cfg), "--max-frames", "4"])
    assert done.returncode == 1, done.stderr
    assert time.monotonic() - started < 30  # fails fast, no waiting for a server that is not there
    errors = _errors(done.stderr)
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"triton server at {url} ({protocol}) is not reachable" in errors[0]


# --- (b) the server dies mid-run and comes back ----------------------------------------------------
def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r"^(\w+)\{(.*)\} (\S+)$", line)
        if m and m.group(1) == name:
            got = ",".join(sorted(m.group(2).split(",")))
            if got == want:
                return float(m.group(3))
    return 0.0


def test_server_killed_mid_run_then_back(clip: Path, tmp_path: Path) -> None:
    reason = ts.skip_reason()
    if reason:
        pytest.skip(reason)
    srv = ts.TritonServer()  # its own server: this test kills it
    try:
        try:
            srv.start()
        except ts.TritonServerError as e:
            pytest.skip(f"pytriton cannot start tritonserver here: {e}")
        http_port = ts.free_port()
        synthetic = "  - name: synth\n    uri: synthetic://?width=320&height=180&fps=25\n    realtime: true\n"
        looping = "    loop: true\n    realtime: true\n"
        cfg = _config(
            tmp_path, "triton", srv.url(), synthetic, looping, http_port, backoff_initial_s=0.5, backoff_max_s=2
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamseg", "run", str(cfg), "--duration", "150", "--status-interval", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:

            def scrape() -> str:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as r:
                    return str(r.read().decode())

            def processed(stream: str) -> float:
                return _metric(scrape(), "streamseg_frames_processed_total", stream=stream)

            def dropped(stream: str) -> float:
                return _metric(scrape(), "streamseg_frames_dropped_total", stream=stream, reason="inference_error")

            def up() -> bool:
                try:
                    return processed("bikes") > 10 and processed("synth") > 10
                except OSError:
                    return proc.poll() is not None

            wait_for(up, 60, "frames through Triton on both streams")
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert dropped("bikes") == 0 and dropped("synth") == 0

            srv.kill()  # SIGKILL: tritonserver and its stubs vanish mid-stream
            wait_for(lambda: dropped("bikes") > 0 and dropped("synth") > 0, 30, "frames dropped for inference_error")
            time.sleep(2)  # a few seconds of outage: batches keep failing, nothing else does
            assert proc.poll() is None
            before = {s: processed(s) for s in ("bikes", "synth")}
            drops = {s: dropped(s) for s in ("bikes", "synth")}

            srv.start()  # the same ports again
            wait_for(
                lambda: all(processed(s) > before[s] + 25 for s in before), 60, "frames through Triton after restart"
            )
            assert all(dropped(s) >= drops[s] for s in drops)
            assert proc.poll() is None
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, err
        assert "Traceback" not in err, err
        failures = [line for line in err.splitlines() if "batch of" in line and "failed:" in line]
        assert failures, err
        assert all(f"triton server at {srv.url()} (grpc): batch of" in line for line in failures), failures
        # back-off: one attempt per 0.5..2 s during the outage, not one per batch (25 fps x 2 streams)
        assert len(failures) < 40, f"{len(failures)} failed attempts logged"
        assert re.search(r"triton server at .* is back after [0-9.]+ s", err), err
        # the JSON Lines output kept going: records from after the restart
        frames = [json.loads(line)["frame"] for line in (tmp_path / "triton.jsonl").read_text().splitlines()]
        assert len(frames) > before["bikes"] + before["synth"]
        assert "processed" in out
    finally:
        srv.close()


def test_transient_error_is_a_backend_error() -> None:
    # The pipeline catches only this subclass mid-run; any other BackendError still ends the run.
    assert issubclass(TransientBackendError, BackendError)
    assert TransientBackendError("x", repeat=True).repeat
