"""Importing streamseg stays light: heavy libraries load only when a backend or source needs them."""

from __future__ import annotations

import json
import subprocess
import sys

# (fastapi, starlette and uvicorn are light, but only a running server needs them)
HEAVY = ("torch", "tensorrt", "pycuda", "gi", "onnxruntime", "fastapi", "starlette", "uvicorn")


def test_import_does_not_load_heavy_libraries() -> None:
    code = (
        "import json, sys\n"
        "import streamseg, streamseg.cli, streamseg.pipeline, streamseg.config, streamseg.server\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))\n"
    )
    # A fresh interpreter: this test process has imported onnxruntime through other tests.
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_the_check_sees_a_heavy_import() -> None:
    # The check above must be able to fail: importing a backend module for real does load its library.
    code = (
        "import sys\n"
        "from streamseg.backends import backend_class\n"
        "backend_class('onnxruntime').unavailable_reason('cpu')\n"
        "print('onnxruntime' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
