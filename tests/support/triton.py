"""Start, kill and restart the real Triton test server (tests/support/triton_server.py) from pytest.

The server runs under ``.venv-triton/bin/python`` (``make triton-venv``; another interpreter with
nvidia-pytriton and numpy<2 through ``STREAMSEG_TRITON_PYTHON``), never the project venv: with
numpy 2 importable, tritonserver 2.51's Python backend answers with empty output tensors.

    server = TritonServer()          # free loopback ports, chosen once: a restart reuses them
    server.start()                   # returns when the server printed READY (model loaded)
    server.kill()                    # SIGKILL to the whole process group (script, tritonserver, stubs)
    server.start()                   # the same ports again
    server.stop()                    # SIGTERM, then SIGKILL for what is left (the stubs ignore SIGTERM)

Tests call ``skip_reason()`` first and ``pytest.skip`` with it when it is not None.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER_SCRIPT = Path(__file__).with_name("triton_server.py")
PYTHON_ENV = "STREAMSEG_TRITON_PYTHON"
DEFAULT_PYTHON = ROOT / ".venv-triton" / "bin" / "python"
READY_TIMEOUT_S = 60.0  # ~9 s here when idle; model load and stub start slow down on a busy CI box
STOP_TIMEOUT_S = 8.0
WRONG_MODEL = "selfie_landscape_wrong_height"  # also served, declaring a wrong input height


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_python() -> Path:
    return Path(os.environ.get(PYTHON_ENV) or DEFAULT_PYTHON)


@functools.cache
def skip_reason() -> str | None:
    """Why the Triton test server cannot run here, or None."""
    python = server_python()
    if not python.exists():
        return f"{python} is missing: run `make triton-venv` (or set {PYTHON_ENV}) for the Triton tests"
    probe = subprocess.run(
        [str(python), "-c", "import numpy, onnxruntime, pytriton.triton; print(numpy.__version__)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"{python} cannot import pytriton/onnxruntime: {last}"
    if int(probe.stdout.strip().split(".")[0]) >= 2:
        return f"{python} has numpy {probe.stdout.strip()}: tritonserver 2.51's Python backend needs numpy<2"
    try:
        import tritonclient.grpc
        import tritonclient.http  # noqa: F401
    except ImportError as e:
        return f"tritonclient is not installed in the project venv: pip install -e '.[triton]' ({e})"
    return None


def _regions() -> set[Path]:
    shm = Path("/dev/shm")
    return set(shm.glob("psm_*")) | set(shm.glob("pytrtion*"))


class TritonServerError(RuntimeError):
    """The Triton test server could not be started (pytriton could not launch tritonserver)."""


class TritonServer:
    def __init__(self) -> None:
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.proc: subprocess.Popen[str] | None = None
        self._shm_before: set[Path] = set()
        self.output: list[str] = []
        self._log = tempfile.NamedTemporaryFile("w+", prefix="triton-server-", suffix=".log", delete=False)  # noqa: SIM115

    def url(self, protocol: str = "grpc") -> str:
        return f"127.0.0.1:{self.grpc_port if protocol == 'grpc' else self.http_port}"

    def start(self) -> None:
        self._shm_before = _regions()
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        cmd = [
            str(server_python()),
            str(SERVER_SCRIPT),
            "--http-port",
            str(self.http_port),
            "--grpc-port",
            str(self.grpc_port),
            "--metrics-port",
            str(self.metrics_port),
            "--wrong-model",
            WRONG_MODEL,
        ]
        # Its own session: SIGKILL reaches tritonserver and the Python backend stubs too.
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._log, text=True, start_new_session=True, env=env, cwd=ROOT
        )
        ready = threading.Event()
        proc = self.proc

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:  # drained to the end: a full pipe would block the server
                self.output.append(line)
                if line.startswith("READY"):
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready.wait(0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                self._log.seek(0)
                tail = " | ".join(self._log.read().strip().splitlines()[-5:])
                raise TritonServerError(f"the Triton test server did not become ready: {tail}")

    def kill(self) -> None:
        """SIGKILL to the whole group: the server vanishes mid-request, as a crashed host would."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):  # nothing of the group is left
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT_S)
        self.proc = None
        # Killed Python-backend stubs leave their shared-memory regions behind (/dev/shm/psm_*, and
        # pytriton's own pytrtion*); dozens of them from earlier runs kept later servers from
        # becoming ready.
        for region in _regions() - self._shm_before:
            region.unlink(missing_ok=True)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(STOP_TIMEOUT_S)
        self.kill()  # the stubs outlive a graceful stop: the group goes in any case

    def close(self) -> None:
        self.stop()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)
