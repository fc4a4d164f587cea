"""streamseg/backends/triton.py without a server: its config, its place in backend selection, a
missing client library and an absent server. Against a real server: tests/integration/test_triton.py."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from streamseg.backends import REGISTRY, select_backend
from streamseg.backends.onnxruntime import OnnxRuntimeBackend
from streamseg.backends.triton import TritonConfig
from streamseg.config import ModelConfig
from streamseg.contract import load_model
from streamseg.errors import BackendError


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({}, None),
        ({"url": "triton.internal:8001", "protocol": "http", "model_name": "m", "model_version": 3}, None),
        ({"url": "[::1]:8001"}, None),
        ({"url": "grpc://triton:8001"}, "url"),  # no scheme: protocol says it
        ({"url": "user:secret@triton:8001"}, "url"),  # no credentials in a URL that is logged
        ({"url": "triton"}, "url"),  # the port is not guessed
        ({"protocol": "https"}, "protocol"),
        ({"model_name": ""}, "model_name"),
        ({"model_version": 0}, "model_version"),
        ({"connect_timeout_s": 0}, "connect_timeout_s"),
        ({"infer_timeout_s": float("inf")}, "infer_timeout_s"),
        ({"backoff_initial_s": 10, "backoff_max_s": 5}, "must not exceed backoff_max_s"),
        ({"backoff_max_s": 61}, "backoff_max_s"),
        ({"retries": 3}, "retries"),  # unknown keys are rejected
    ],
)
def test_triton_config(fields: dict[str, Any], error: str | None) -> None:
    if error is None:
        TritonConfig(**fields)
    else:
        with pytest.raises(ValidationError, match=error):
            TritonConfig(**fields)


def test_auto_never_picks_triton() -> None:
    # a remote server is an explicit choice: not in the default order, and not allowed in `prefer`
    assert "triton" in REGISTRY
    assert "triton" not in ModelConfig(path="selfie_landscape").prefer
    with pytest.raises(ValidationError, match="prefer"):
        ModelConfig(path="selfie_landscape", prefer=["triton", "onnxruntime"])  # type: ignore[list-item]
    backend = select_backend("auto", ["tensorrt", "torch", "onnxruntime"], load_model("selfie_landscape"), "cpu")
    assert isinstance(backend, OnnxRuntimeBackend)


def test_missing_tritonclient_names_the_extra() -> None:
    code = (
        "import sys\nsys.modules['tritonclient'] = None\n"
        "from streamseg.backends.triton import TritonBackend\nprint(TritonBackend.unavailable_reason('auto'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "the triton backend needs the Python module 'tritonclient.grpc': pip install 'streamseg[triton]'"
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_absent_server_fails_fast_naming_the_address(protocol: str) -> None:
    pytest.importorskip(f"tritonclient.{protocol}", reason="tritonclient: pip install '.[triton]'")
    from streamseg.backends.triton import TritonBackend

    url = f"127.0.0.1:{_closed_port()}"
    backend = TritonBackend(
        load_model("selfie_landscape"), max_batch=4, options=TritonConfig(url=url, protocol=protocol)
    )
    started = time.monotonic()
    with pytest.raises(BackendError) as info, backend:
        pass
    assert time.monotonic() - started < 10  # connection refused: no waiting
    message = str(info.value)
    assert message.startswith(f"triton server at {url} ({protocol}) is not reachable: ")
    assert "\n" not in message


def test_validate_checks_the_server_too(tmp_path: Path) -> None:
    pytest.importorskip("tritonclient.grpc", reason="tritonclient: pip install '.[triton]'")
    url = f"127.0.0.1:{_closed_port()}"
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        "name: t\nsources:\n  - name: s\n    uri: synthetic://?width=64&height=48&frames=2\n"
        f"model: {{path: selfie_landscape, backend: triton, triton: {{url: '{url}'}}}}\n"
        "outputs: []\nhttp: {enabled: false}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "streamseg", "validate", str(cfg)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert f"triton server at {url} (grpc) is not reachable" in done.stderr
    assert "Traceback" not in done.stderr
