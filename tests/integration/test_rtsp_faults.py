"""Faults on live sources, against real servers: a dead camera, GStreamer's RTSP server killed,
frozen (SIGSTOP) and throttled, for short and long outages.

What is measured is what an operator sees: ``streamseg_stream_up`` polled from the pipeline's own
registry every 20 ms. The bounds are the issue's requirements (back within 10 s of the server's
return, down within ``watchdog_s`` + 1 s), not speed targets.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streamseg.media import count_frames
from tests.support.rtsp import RtspServer, skip_reason
from tests.support.throttle import ThrottledProxy

from .conftest import RunningPipeline, wait_for

pytestmark = [pytest.mark.rtsp, pytest.mark.slow]

BACK_WITHIN_S = 10.0  # issue 9, item 9: back within 10 s of the server's return
WATCHDOG_S = 2.0
DOWN_MARGIN_S = 1.0  # issue 9, item 10: down within watchdog_s + 1 s


@pytest.fixture
def rtsp_server_available() -> None:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)


class UpProbe:
    """Polls ``streamseg_stream_up`` for one stream and records when it changes (monotonic time)."""

    def __init__(self, rp: RunningPipeline, stream: str) -> None:
        self.rp, self.stream = rp, stream
        self.changes: list[tuple[float, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last: bool | None = None
        while not self._stop.wait(0.02):
            up = self.rp.sample("streamseg_stream_up", stream=self.stream) == 1
            if up != last:
                self.changes.append((time.monotonic(), up))
                last = up

    @property
    def up(self) -> bool:
        return bool(self.changes) and self.changes[-1][1]

    def first(self, up: bool, after: float, timeout: float) -> float:
        """Seconds from ``after`` to the first change to ``up`` at or after it; fails after ``timeout``."""

        def seen() -> bool:
            return any(t >= after and u == up for t, u in self.changes)

        wait_for(seen, timeout, f"{self.stream} {'up' if up else 'down'}", step=0.02)
        return next(t for t, u in self.changes if t >= after and u == up) - after

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def probes() -> Iterator[Callable[[RunningPipeline, str], UpProbe]]:
    made: list[UpProbe] = []

    def make(rp: RunningPipeline, stream: str) -> UpProbe:
        made.append(UpProbe(rp, stream))
        return made[-1]

    yield make
    for p in made:
        p.close()


def _processed(rp: RunningPipeline, stream: str) -> float:
    return rp.sample("streamseg_frames_processed_total", stream=stream) or 0.0


def _camera_yaml(url: str, tmp_path: Path, reconnect: str = "{initial_s: 0.5}", neighbour: bool = True) -> str:
    """A camera beside a steady synthetic stream (or alone), into MP4 and JSONL.

    open_s and read_s keep their defaults (10 s, 5 s): on a loaded machine the test server can take
    seconds to build a fresh media for a new client, and an open that times out would wait out
    another back-off, which is the machine's delay, not the reconnect logic's.
    """
    steady = '  - {name: steady, uri: "synthetic://?width=64&height=48&fps=25", realtime: true}\n'
    return f"""
sources:
  - name: cam
    uri: "{url}"
    timeouts: {{watchdog_s: {WATCHDOG_S}}}
    reconnect: {reconnect}
{steady if neighbour else ""}model: {{path: selfie_landscape}}
outputs:
  - {{type: video, path: "{tmp_path}/{{stream}}.mp4"}}
  - {{type: jsonl, path: "{tmp_path}/stats.jsonl"}}
http: {{enabled: false}}
"""


def _check_outputs(summary_frames: dict[str, int], tmp_path: Path) -> None:
    for stream, n in summary_frames.items():
        if n:
            assert count_frames(tmp_path / f"{stream}.mp4") == n, stream
    assert len((tmp_path / "stats.jsonl").read_text().splitlines()) == sum(summary_frames.values())


# --- item 1: deadlines run on their own clock ------------------------------------------------


def test_duration_ends_the_run_while_a_dead_camera_sends_nothing(tmp_path: Path, run_pipeline) -> None:  # type: ignore[no-untyped-def]
    # A camera that accepts the connection and never answers, beside a file that ends at once:
    # from then on no frame arrives anywhere, and only the loop's own clock can end the run.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        yaml_text = f"""
sources:
  - {{name: cam, uri: "rtsp://127.0.0.1:{port}/cam", timeouts: {{open_s: 30, read_s: 30}}}}
  - {{name: clip, uri: "synthetic://?width=64&height=48&frames=10"}}
model: {{path: selfie_landscape}}
outputs:
  - {{type: video, path: "{tmp_path}/{{stream}}.mp4"}}
  - {{type: jsonl, path: "{tmp_path}/stats.jsonl"}}
http: {{enabled: false}}
"""
        t0 = time.monotonic()
        rp = run_pipeline(yaml_text, duration=3)
        summary = rp.wait(20)  # today's code never returns: wait() stops it and fails
        took = time.monotonic() - t0
    # 3 s of duration, at most 2 s for the reader stuck in its open at shutdown (one deadline for
    # all readers), and 3 s for start-up on a loaded machine; the old loop never ended at all.
    assert took < 3 + 2 + 3, f"--duration 3 ended the run after {took:.1f} s"
    assert summary.frames == {"cam": 0, "clip": 10}
    _check_outputs(summary.frames, tmp_path)


# --- items 9 and 10 against GStreamer's RTSP server ------------------------------------------


def _start(run_pipeline, url: str, tmp_path: Path, probes, neighbour: bool = True) -> tuple[RunningPipeline, UpProbe]:  # type: ignore[no-untyped-def]
    # reconnect: the defaults, since what is checked is what a user gets without tuning
    rp = run_pipeline(_camera_yaml(url, tmp_path, reconnect="{}", neighbour=neighbour))
    probe = probes(rp, "cam")
    wait_for(lambda: probe.up and _processed(rp, "cam") > 10, 30, "cam up with frames flowing")
    return rp, probe


def _back_within(rp: RunningPipeline, probe: UpProbe, returned: float, what: str) -> float:
    """Seconds from the server's return to the stream up with frames flowing again; checks <= 10 s."""
    before = _processed(rp, "cam")
    took = probe.first(True, after=returned, timeout=BACK_WITHIN_S + 10)
    wait_for(lambda: _processed(rp, "cam") >= before + 10, 15, "cam frames flowing again")
    print(f"\n{what}: cam up {took:.2f} s after the server's return")
    assert took <= BACK_WITHIN_S, f"{what}: back {took:.1f} s after the server returned"
    return took


def _steady_meanwhile(rp: RunningPipeline, since: float) -> None:
    assert _processed(rp, "steady") > since + 25, "the other stream stalled during the outage"


@pytest.mark.parametrize("outage_s", [5, pytest.param(40, marks=pytest.mark.slow)], ids=lambda s: f"{s}s-outage")
def test_killed_camera_is_back_within_10_s_of_its_return(  # type: ignore[no-untyped-def]
    rtsp_server_available, clip: Path, tmp_path: Path, run_pipeline, probes, outage_s: int
) -> None:
    with RtspServer({"cam": clip}, loop=True) as server:
        rp, probe = _start(run_pipeline, server.url("cam"), tmp_path, probes)
        steady = _processed(rp, "steady")
        killed = time.monotonic()
        server.kill()
        down = probe.first(False, after=killed, timeout=WATCHDOG_S + DOWN_MARGIN_S)
        print(f"\nkilled: cam down {down:.2f} s after SIGKILL")
        time.sleep(max(0.0, killed + outage_s - time.monotonic()))
        server.start()  # same port, so the same URL
        _back_within(rp, probe, time.monotonic(), f"killed, {outage_s} s outage")
        _steady_meanwhile(rp, steady)
        summary = rp.stop()
    assert summary.failed == {}
    _check_outputs(summary.frames, tmp_path)


@pytest.mark.parametrize("neighbour", [True, False], ids=["beside-a-stream", "alone"])
def test_frozen_camera_is_down_within_watchdog_and_back_after_it_thaws(  # type: ignore[no-untyped-def]
    rtsp_server_available, clip: Path, tmp_path: Path, run_pipeline, probes, neighbour: bool
) -> None:
    # SIGSTOP keeps the TCP connection open and the listening socket accepting: nothing fails,
    # nothing arrives. Only the watchdog can tell, and a late frame must not reset it. Alone, the
    # camera is the only thing that could wake the pipeline loop: before, the watchdog ran there
    # and the stream was marked down only when the read timed out (10 s with watchdog_s 5).
    with RtspServer({"cam": clip}, loop=True) as server:
        rp, probe = _start(run_pipeline, server.url("cam"), tmp_path, probes, neighbour)
        steady = _processed(rp, "steady")
        pid = server._proc.pid  # type: ignore[union-attr]
        frozen = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            down = probe.first(False, after=frozen, timeout=WATCHDOG_S + 10)
            print(f"\nfrozen ({'beside a stream' if neighbour else 'alone'}): cam down {down:.2f} s after SIGSTOP")
            assert down <= WATCHDOG_S + DOWN_MARGIN_S
            time.sleep(max(0.0, frozen + 5 - time.monotonic()))
            assert not probe.up, "a frozen server's stream came up again"
        finally:
            os.kill(pid, signal.SIGCONT)
        _back_within(rp, probe, time.monotonic(), "frozen 5 s")
        if neighbour:
            _steady_meanwhile(rp, steady)
        summary = rp.stop()
    assert summary.failed == {}
    _check_outputs(summary.frames, tmp_path)


def test_throttled_camera_is_down_within_watchdog_and_back_at_full_rate(  # type: ignore[no-untyped-def]
    rtsp_server_available, clip: Path, tmp_path: Path, run_pipeline, probes
) -> None:
    # A trickle of bytes (a saturated uplink): reads keep succeeding, whole frames stop coming.
    with RtspServer({"cam": clip}, loop=True) as server, ThrottledProxy(server.port) as proxy:  # type: ignore[arg-type]
        rp, probe = _start(run_pipeline, f"rtsp://127.0.0.1:{proxy.port}/cam", tmp_path, probes)
        steady = _processed(rp, "steady")
        slowed = time.monotonic()
        proxy.rate = 300  # bytes per second; the clip needs ~50 kB/s
        down = probe.first(False, after=slowed, timeout=WATCHDOG_S + 10)
        print(f"\nthrottled: cam down {down:.2f} s after the throttle (watchdog_s {WATCHDOG_S})")
        assert down <= WATCHDOG_S + DOWN_MARGIN_S
        time.sleep(max(0.0, slowed + 5 - time.monotonic()))
        assert not probe.up, "a throttled server's stream came up again"  # a late frame is no recovery
        proxy.rate = None
        _back_within(rp, probe, time.monotonic(), "throttled 5 s")
        _steady_meanwhile(rp, steady)
        summary = rp.stop()
    assert summary.failed == {}
    _check_outputs(summary.frames, tmp_path)
