"""Progress bars: on for a finite run on a terminal (a real pseudo-terminal), off in a pipe."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from streamseg import progress

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "samples" / "bikes.mp4"  # 250 frames, the container states the count


def test_a_bar_is_silent_off_a_terminal() -> None:
    out = io.StringIO()
    b = progress.bar(10, "work", file=out)
    assert b.disable
    b.update(10)
    b.close()
    assert out.getvalue() == ""


def _terminal() -> tuple[int, int]:
    """A pseudo-terminal 100 columns wide (a new one has 0: tqdm would draw an empty bar)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    return master, slave


def test_a_bar_draws_on_a_terminal_unless_disabled() -> None:
    master, slave = _terminal()
    with os.fdopen(slave, "w") as tty:
        assert progress.on_terminal(tty)
        assert progress.bar(3, "x", file=tty, enabled=False).disable
        b = progress.bar(3, "work", unit="step", file=tty)
        assert not b.disable
        b.update(3)
        b.close()
    text = _drain(master)
    assert "work: 100%" in text and "3/3" in text


def test_a_closed_stream_is_no_terminal() -> None:
    s = io.StringIO()
    s.close()
    assert not progress.on_terminal(s)


def _drain(master: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 120) -> str:
    """Everything written to the terminal until it closes (or ``proc`` exits and it is empty)."""
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc is None or proc.poll() is not None:
            break
    os.close(master)
    return b"".join(chunks).decode(errors="replace")


def _pipeline(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(
        f"sources:\n  - {{name: clip, uri: '{source}'}}\nmodel: {{path: selfie_landscape}}\nhttp: {{enabled: false}}\n"
    )
    return path


def _run_on_terminal(*args: str) -> tuple[int, str]:
    master, slave = _terminal()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamseg", *args], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=ROOT
    )
    os.close(slave)
    text = _drain(master, proc)
    return proc.wait(60), text


@pytest.mark.skipif(not CLIP.exists(), reason="samples/bikes.mp4 is missing: run `make samples`")
def test_a_file_run_on_a_terminal_shows_a_bar_to_max_frames(tmp_path: Path) -> None:
    rc, text = _run_on_terminal("run", str(_pipeline(tmp_path, str(CLIP))), "--max-frames", "40")
    assert rc == 0, text
    assert "40/40" in text and "100%" in text, text  # the total respects --max-frames, not the 250 in the file
    assert "processed 40 frames" in text


def test_an_endless_source_gets_no_bar(tmp_path: Path) -> None:
    # synthetic:// without frames= never ends: no total, no bar (the status line says what happens)
    rc, text = _run_on_terminal("run", str(_pipeline(tmp_path, "synthetic://?width=64&height=48")), "--duration", "1")
    assert rc == 0, text
    assert "processed" in text and "%|" not in text, text


@pytest.mark.skipif(not CLIP.exists(), reason="samples/bikes.mp4 is missing: run `make samples`")
def test_a_file_run_in_a_pipe_draws_no_bar(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "streamseg", "run", str(_pipeline(tmp_path, str(CLIP))), "--max-frames", "40"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "processed 40 frames" in r.stdout
    assert "%|" not in r.stderr and "40/40" not in r.stderr, r.stderr
