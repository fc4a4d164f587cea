"""The RTSP output served by the pipeline itself (gst-rtsp-server in process), watched by a real
RTSP client (PyAV/FFmpeg): the frames it decodes are the overlays the pipeline drew."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from streamseg.errors import OutputError
from tests.support.rtsp import free_port, skip_reason

from .conftest import wait_for

pytestmark = [pytest.mark.rtsp, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _need_gstreamer_rtsp() -> None:
    reason = skip_reason()  # the same packages: gi, GstRtspServer, x264enc
    if reason:
        pytest.skip(reason)


def _config(port: int, tmp_path: Path, clip: Path) -> str:
    return f"""
name: rtsp-out
sources:
  - {{name: bikes, uri: "{clip}", realtime: true}}
  - {{name: other, uri: "{clip}", realtime: true}}
model: {{path: selfie_landscape}}
outputs:
  - {{type: rtsp, port: {port}, streams: [bikes]}}
  - {{type: video, path: "{tmp_path}/{{stream}}.mp4"}}
http: {{enabled: false}}
"""


def _watch(url: str, frames: list[np.ndarray], errors: list[BaseException]) -> None:
    """Connect as soon as the mount exists, then decode until the server ends the stream."""
    deadline = time.monotonic() + 20
    while True:
        try:
            container = av.open(url, options={"rtsp_transport": "tcp"}, timeout=5)
            break
        except av.error.FFmpegError as e:  # 404 until the first overlay mounts the stream
            if time.monotonic() > deadline:
                errors.append(e)
                return
            time.sleep(0.1)
    try:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="bgr24"))
    except BaseException as e:  # handed to the test thread
        errors.append(e)
    finally:
        container.close()


def _decode_all(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


def test_rtsp_output_serves_the_overlay(clip: Path, tmp_path: Path, run_pipeline) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    frames: list[np.ndarray] = []
    errors: list[BaseException] = []
    rp = run_pipeline(_config(port, tmp_path, clip))
    viewer = threading.Thread(target=_watch, args=(f"rtsp://127.0.0.1:{port}/bikes", frames, errors))
    viewer.start()
    deadline = time.monotonic() + 20
    while not frames and not errors and time.monotonic() < deadline:
        time.sleep(0.05)
    assert frames, f"no frame reached the viewer: {errors}"
    # While it runs: a second viewer shares the mount; a stream left out of `streams` has none.
    with av.open(f"rtsp://127.0.0.1:{port}/bikes", options={"rtsp_transport": "tcp"}, timeout=5) as second:
        assert len(list(itertools.islice(second.decode(video=0), 5))) == 5
        assert rp.sample("streamseg_rtsp_viewers", stream="bikes") == 2  # both viewers, one encoder
    wait_for(lambda: rp.sample("streamseg_rtsp_viewers", stream="bikes") == 1, 10, "the second viewer to leave")
    assert rp.sample("streamseg_rtsp_viewers", stream="other") is None  # never published
    with pytest.raises(av.error.HTTPNotFoundError):
        av.open(f"rtsp://127.0.0.1:{port}/other", options={"rtsp_transport": "tcp"}, timeout=5)
    summary = rp.wait(120)
    viewer.join(30)
    assert not viewer.is_alive(), "the RTSP client still waits: the server did not end the stream"
    assert not errors, errors
    assert summary.frames["bikes"] == summary.frames["other"] == 250

    # The viewer joined a paced stream late, so it saw a tail of it; each decoded frame must be one
    # of the overlays written to the MP4 (both H.264, so compare within coding noise).
    written = _decode_all(tmp_path / "bikes.mp4")
    assert len(written) == 250
    assert len(frames) >= 100, f"the viewer decoded only {len(frames)} frames"
    assert frames[0].shape == written[0].shape == (272, 640, 3)
    small = np.stack([w[::4, ::4].astype(np.int16) for w in written])
    matches = []
    for f in frames[10::20]:
        err = np.abs(small - f[::4, ::4].astype(np.int16)).mean(axis=(1, 2, 3))
        best = int(err.argmin())
        assert err[best] < 4.0, f"decoded frame differs from every overlay by >= {err[best]:.1f}"
        assert np.sort(err)[len(err) // 2] > 3 * err[best] + 2, "the best match is not distinct"
        matches.append(best)
    assert matches == sorted(matches) and len(set(matches)) == len(matches), matches  # in order, moving


def test_rtsp_output_port_in_use_is_one_line_error(clip: Path, tmp_path: Path, run_pipeline) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(OutputError, match=rf"^rtsp output: cannot listen on 127\.0\.0\.1:{port} "):
            run_pipeline(_config(port, tmp_path, clip)).wait(60)


def test_rtsp_output_odd_frame_size_is_published_even(tmp_path: Path, run_pipeline) -> None:  # type: ignore[no-untyped-def]
    # x264 (I420) refuses odd sizes: without rounding, viewers of a 321x181 stream got RTSP 5XX.
    port = free_port()
    frames: list[np.ndarray] = []
    errors: list[BaseException] = []
    rp = run_pipeline(
        f"""
name: odd
sources:
  - {{name: odd, uri: "synthetic://?width=321&height=181&fps=25", realtime: true}}
model: {{path: selfie_landscape}}
outputs:
  - {{type: rtsp, port: {port}}}
http: {{enabled: false}}
"""
    )
    viewer = threading.Thread(target=_watch, args=(f"rtsp://127.0.0.1:{port}/odd", frames, errors))
    viewer.start()
    deadline = time.monotonic() + 30
    while len(frames) < 30 and not errors and time.monotonic() < deadline:
        time.sleep(0.05)
    rp.stop()  # a live synthetic stream never ends by itself
    viewer.join(30)
    assert not errors, errors
    assert len(frames) >= 30, f"the viewer decoded only {len(frames)} frames"
    assert {f.shape for f in frames} == {(180, 320, 3)}


def test_rtsp_output_width_not_a_multiple_of_8_and_max_fps(tmp_path: Path, run_pipeline) -> None:  # type: ignore[no-untyped-def]
    # an 852-wide mount (GStreamer pads I420 rows to 4 bytes: packed planes stopped x264enc), at
    # most 10 frames a second of a 25 fps source
    port = free_port()
    frames: list[np.ndarray] = []
    errors: list[BaseException] = []
    rp = run_pipeline(
        f"""
name: w852
sources:
  - {{name: cam, uri: "synthetic://?width=1704&height=960&fps=25", realtime: true}}
model: {{path: selfie_landscape}}
outputs:
  - {{type: rtsp, port: {port}, width: 852, max_fps: 10}}
http: {{enabled: false}}
"""
    )
    viewer = threading.Thread(target=_watch, args=(f"rtsp://127.0.0.1:{port}/cam", frames, errors))
    viewer.start()
    deadline = time.monotonic() + 30
    while len(frames) < 20 and not errors and time.monotonic() < deadline:
        time.sleep(0.05)
    started, first = time.monotonic(), len(frames)
    time.sleep(2.0)
    rate = (len(frames) - first) / (time.monotonic() - started)
    rp.stop()
    viewer.join(30)
    assert not errors, errors
    assert len(frames) >= 20, f"the viewer decoded only {len(frames)} frames"
    assert {f.shape for f in frames} == {(480, 852, 3)}
    assert 6 <= rate <= 13, f"{rate:.1f} frames a second reached the viewer (max_fps 10 of 25)"
