"""Progress bars: on for a finite run on a terminal (a real pseudo-terminal), off in a pipe."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
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


def test_steps_off_a_terminal_log_every_five_percent(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("streamseg.test")
    caplog.set_level(logging.INFO, "streamseg.test")
    with progress.Steps(40, "train x", "step", log) as steps:
        for i in range(40):
            steps.update(text=f"loss {i}")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 20 and lines[0] == "train x: 2/40 loss 1" and lines[-1] == "train x: 40/40 loss 39"
    caplog.clear()
    with progress.Steps(40, "quiet", "step", log, enabled=False) as steps:
        steps.update(40)
    assert caplog.records == []


def test_steps_draw_a_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "streamseg.test")
    master, slave = _terminal()
    with os.fdopen(slave, "w") as tty:
        monkeypatch.setattr(sys, "stderr", tty)
        with progress.Steps(8, "INT8 calibration", "frame", logging.getLogger("streamseg.test")) as steps:
            for _ in range(4):
                steps.update(2)
        monkeypatch.undo()
    text = _drain(master)
    assert "INT8 calibration: 100%" in text and "8/8" in text, text
    assert caplog.records == []  # on a terminal the bar replaces the milestone lines


def test_calibration_frames_report_progress(caplog: pytest.LogCaptureFixture) -> None:
    from streamseg.backends.tensorrt.calibration import CalibrationBatches
    from streamseg.contract import InputSpec

    caplog.set_level(logging.INFO, "streamseg.backends.tensorrt")
    spec = InputSpec(name="input", layout="NCHW", height=8, width=12, color="RGB", mean=(0, 0, 0), std=(1, 1, 1))
    images = [np.zeros((8, 12, 3), np.uint8)] * 9
    assert len(list(CalibrationBatches(images, spec, 4))) == 2  # the partial batch is dropped
    lines = [r.getMessage() for r in caplog.records if r.name == "streamseg.backends.tensorrt"]
    assert lines[-1] == "INT8 calibration: 8/8"


def test_tensorrt_build_phases_draw_nested_bars(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamseg.backends.tensorrt.build import progress_monitor
    from tests.support import fake_tensorrt

    master, slave = _terminal()
    with os.fdopen(slave, "w") as tty:
        monkeypatch.setattr(sys, "stderr", tty)
        monitor = progress_monitor(fake_tensorrt)
        monitor.phase_start("Building engine", None, 2)
        monitor.phase_start("Tactic search", "Building engine", 5)
        assert all(monitor.step_complete("Tactic search", i) for i in range(5))
        monitor.phase_finish("Tactic search")
        assert monitor.step_complete("Building engine", 0) and monitor.step_complete("Building engine", 1)
        monitor.phase_finish("Building engine")
        assert monitor.bars == {}
        monkeypatch.undo()
    text = _drain(master)
    assert "Tactic search:" in text and "Building engine: 100%" in text and "2/2" in text, text
