"""streamseg/server.py against real sockets: clients that hang up mid-response cost a debug line,
never a traceback, and the server keeps serving."""

from __future__ import annotations

import socket
import struct
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from streamseg.server import HttpServer, LiveHub

BIG = 4 << 20  # far larger than any socket buffer: the server is still writing when the client goes


@pytest.fixture
def server() -> Iterator[HttpServer]:
    hub = LiveHub(["cam"])
    hub.publish("cam", b"\xff\xd8" + bytes(BIG) + b"\xff\xd9")
    srv = HttpServer("127.0.0.1", 0, "test", hub, lambda: b"# metrics\n" * (BIG // 10), lambda: (True, {}), lambda: [])
    srv.start()
    stop = threading.Event()

    def frames() -> None:  # keeps MJPEG clients busy with fresh frames
        while not stop.wait(0.02):
            hub.publish("cam", b"\xff\xd8" + bytes(BIG) + b"\xff\xd9")

    feeder = threading.Thread(target=frames, daemon=True)
    feeder.start()
    yield srv
    stop.set()
    feeder.join(5)
    srv.stop()


def _hang_up(port: int, path: str, reset: bool) -> None:
    """Ask for ``path``, read a little of the answer, then close (with a RST when ``reset``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        s.recv(1024)
        if reset:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _handlers_done(timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while any("process_request_thread" in t.name for t in threading.enumerate()):
        assert time.monotonic() < deadline, "request handlers still running"
        time.sleep(0.05)


@pytest.mark.parametrize("path", ["/metrics", "/", "/stream/cam.mjpg", "/stream/cam.jpg", "/api/streams"])
def test_clients_that_hang_up_print_no_traceback(server: HttpServer, path: str, capfd: pytest.CaptureFixture) -> None:
    for i in range(6):
        _hang_up(server.port, path, reset=i % 2 == 0)
    # a request that sends half its headers and vanishes
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET /metr")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with urllib.request.urlopen(server.url + "metrics", timeout=10) as r:  # still serving, whole answers
        assert len(r.read()) == len(b"# metrics\n") * (BIG // 10)
    with urllib.request.urlopen(server.url + "stream/cam.jpg", timeout=10) as r:
        assert len(r.read()) == BIG + 4
    _handlers_done()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Error" not in err, err[-3000:]


def test_index_page_escapes_names_and_shows_the_palette() -> None:
    from streamseg.overlay import make_palette
    from streamseg.server import index_page

    hostile = '"><img src=x onerror=alert(1)>'
    palette = make_palette(["background", hostile], [(0, 0, 0), (255, 56, 8)])
    page = index_page("<script>alert(1)</script>", ["cam-1.a"], palette).decode()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and 'data-class="&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"' in page
    assert '<s style="background:#ff3808">' in page  # the class colour as the overlay paints it (RGB)
    assert 'data-stream="cam-1.a"' in page and 'src="/stream/cam-1.a.mjpg"' in page
    assert page.count('<section class="card"') == 1 and page.count("<tr ") == 2
    assert "://" not in page  # no URL of any kind
