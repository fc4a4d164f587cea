"""Start and stop the loopback RTSP test server (tests/support/rtsp_server.py) from pytest.

The server needs GStreamer's Python bindings, which live in Debian's /usr/bin/python3, not
in the project venv, so it always runs as a separate process:

    with RtspServer({"cam1": clip}) as server:
        container = av.open(server.url("cam1"), options={"rtsp_transport": "tcp"})

Tests call ``skip_reason()`` first and ``pytest.skip`` with it when it is not None.
"""

from __future__ import annotations

import functools
import os
import selectors
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO
from urllib.parse import quote

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
READY_TIMEOUT_S = 20.0  # opening every clip and binding; generous for a loaded CI machine
STOP_TIMEOUT_S = 5.0
CHECK_TIMEOUT_S = 30.0


class RtspServerError(RuntimeError):
    """The RTSP test server could not be started."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _server_env() -> dict[str, str]:
    # The venv's PYTHONPATH/PYTHONHOME must not leak into the system interpreter.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@functools.cache
def skip_reason() -> str | None:
    """Why the RTSP server cannot run here (no system Python, gi, GstRtspServer or an
    element such as x264enc), or None when it can. Cached: the check costs a subprocess."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} not found (the RTSP test server runs under Debian's Python)"
    try:
        result = subprocess.run(
            [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--check"],
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT_S,
            env=_server_env(),
        )
    except subprocess.TimeoutExpired:
        return f"RTSP server check timed out after {CHECK_TIMEOUT_S:.0f} s"
    if result.returncode != 0:
        detail = (result.stdout + result.stderr).strip().splitlines()
        return "RTSP test server unavailable: " + (detail[-1] if detail else "unknown error")
    return None


class RtspServer:
    """The RTSP test server as a context manager; the process is always stopped on exit.

    ``port=None`` lets the server pick a free port on first start; ``restart()`` reuses the
    same port either way, so clients can reconnect to the same URL.
    """

    def __init__(
        self,
        mounts: dict[str, Path],
        port: int | None = None,
        loop: bool = True,
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        if not mounts:
            raise ValueError("RtspServer needs at least one mount")
        if (user is None) != (password is None):
            raise ValueError("user and password go together")
        self.mounts = {name: Path(path) for name, path in mounts.items()}
        self.port = port
        self.loop = loop
        self.user = user
        self.password = password
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> RtspServer:
        """Launch the server and wait until it prints READY; raise RtspServerError if not."""
        if self._proc is not None:
            raise RtspServerError("RTSP test server is already running")
        command = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port or 0)]
        for name, path in self.mounts.items():
            command += ["--mount", f"{name}={path}"]
        if self.loop:
            command.append("--loop")
        if self.user is not None:
            command += ["--user", self.user, "--password", str(self.password)]
        # stderr goes to a file, not a pipe: nobody reads it while tests run, and a full pipe
        # would stall the server. It stays open until stop(), hence no context manager.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self._proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=_server_env(),
        )
        try:
            self.port = self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; safe to call twice or after a failed start."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def kill(self) -> None:
        """SIGKILL the server at once, like a camera losing power; then clean up as stop()."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self.stop()

    def restart(self) -> RtspServer:
        """Stop and start again on the same port."""
        self.stop()
        return self.start()

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- queries ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def url(self, name: str, *, credentials: bool = True) -> str:
        """rtsp://[user:password@]127.0.0.1:PORT/NAME; credentials only if the server has them."""
        if name not in self.mounts:
            raise KeyError(f"no mount {name!r}; mounts are {sorted(self.mounts)}")
        if self.port is None:
            raise RtspServerError("RTSP test server has not been started")
        userinfo = ""
        if credentials and self.user is not None:
            userinfo = f"{quote(self.user, safe='')}:{quote(str(self.password), safe='')}@"
        return f"rtsp://{userinfo}127.0.0.1:{self.port}/{name}"

    def stderr_text(self) -> str:
        """What the server has written to stderr so far (for failure messages)."""
        if self._stderr is None:
            return ""
        # pread leaves the file offset alone; the server shares it and keeps writing there.
        fd = self._stderr.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    # -- internals -------------------------------------------------------------------------

    def _wait_ready(self) -> int:
        proc = self._proc
        if proc is None or proc.stdout is None:
            raise RtspServerError("RTSP test server is not running")
        deadline = time.monotonic() + READY_TIMEOUT_S
        buffered = b""
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buffered:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RtspServerError(self._failure(f"no READY within {READY_TIMEOUT_S:.0f} s"))
                if selector.select(timeout=min(remaining, 0.1)):
                    chunk = os.read(proc.stdout.fileno(), 4096)
                    if not chunk:  # stdout closed: the server exited
                        proc.wait()
                        raise RtspServerError(self._failure(f"exited with status {proc.returncode}"))
                    buffered += chunk
        line = buffered.split(b"\n", 1)[0].decode(errors="replace").strip()
        word, _, port = line.partition(" ")
        if word != "READY" or not port.isdigit():
            raise RtspServerError(self._failure(f"unexpected first line {line!r}"))
        return int(port)

    def _failure(self, what: str) -> str:
        stderr = self.stderr_text().strip()
        return f"RTSP test server {what}" + (f"; stderr:\n{stderr}" if stderr else "")
