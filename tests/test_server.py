"""streamseg/server.py against real sockets: clients that hang up mid-response cost no traceback and
the server keeps serving; routes, content types, the read-only API with its masked config, the
change-token rule, binding, and a hundred MJPEG viewers."""

from __future__ import annotations

import http.client
import json
import logging
import signal
import socket
import struct
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from streamseg.config import SourceConfig, parse_config
from streamseg.errors import OutputError
from streamseg.server import TOKEN_ENV, ChangeAuth, HttpServer, LiveHub, allowed_hosts, is_loopback

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
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        s.recv(1024)
        if reset:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _viewers_gone(hub: LiveHub, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while hub.viewers():
        assert time.monotonic() < deadline, f"{hub.viewers()} viewer(s) still counted"
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
    _viewers_gone(server.hub)
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


# --- the framework server: what the hand-written one did, and the read-only API ----------------


def _get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, bytes, Any]:
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


@pytest.fixture
def small() -> Iterator[HttpServer]:
    """A server with a one-stream hub and small answers; healthz says 503."""
    hub = LiveHub(["cam"])
    cfg = parse_config(SECRET_CONFIG, "test.yaml")
    srv = HttpServer(
        "127.0.0.1", 0, "small", hub, lambda: b"# m\n", lambda: (False, {"status": "starting"}), lambda: [], None,
        config=lambda: cfg, token="",
    )  # fmt: skip
    srv.start()
    yield srv
    srv.stop()


SECRET_CONFIG = """
name: secrets
sources:
  - {name: cam, uri: "rtsp://admin:hunter2-rtsp@10.0.0.5:554/live?token=tok-in-query&ch=1"}
  - {name: file, uri: "synthetic://?width=64&height=48"}
model: {path: selfie_landscape}
events:
  rules: [{name: p, stream: cam, class: person, above: 0.2, clear: 0.1}]
  mqtt: {host: 127.0.0.1, username: bob, password: hunter2-mqtt}
  webhook:
    url: "https://hook:hunter2-hook@example.test/e?api_key=hunter2-key"
    headers: {Authorization: "Bearer hunter2-hdr"}
"""


def test_routes_content_types_and_no_store(small: HttpServer) -> None:
    from prometheus_client import CONTENT_TYPE_LATEST

    small.hub.publish("cam", b"\xff\xd8jpeg\xff\xd9")
    expected = {
        "/": (200, "text/html; charset=utf-8"),
        "/index.html": (200, "text/html; charset=utf-8"),
        "/metrics": (200, CONTENT_TYPE_LATEST),
        "/healthz": (503, "application/json"),
        "/api/streams": (200, "application/json"),
        "/api/config": (200, "application/json"),
        "/openapi.json": (200, "application/json"),
        "/stream/cam.jpg": (200, "image/jpeg"),
        "/stream/other.jpg": (404, "text/plain; charset=utf-8"),
        "/stream/other.mjpg": (404, "text/plain; charset=utf-8"),
        "/nothing": (404, "application/json"),
        "/docs": (404, "application/json"),  # Swagger UI would load its scripts from a CDN
    }
    for path, (code, ctype) in expected.items():
        status, _, headers = _get(small.url + path[1:])
        assert (status, headers["Content-Type"]) == (code, ctype), path
        assert headers["Cache-Control"] == "no-store", path
    assert json.loads(_get(small.url + "healthz")[1]) == {"status": "starting"}
    assert json.loads(_get(small.url + "api/streams")[1]) == {"name": "small", "streams": []}
    assert _get(small.url + "stream/cam.jpg")[1] == b"\xff\xd8jpeg\xff\xd9"


def test_openapi_describes_the_read_only_api(small: HttpServer) -> None:
    spec = json.loads(_get(small.url + "openapi.json")[1])
    assert {"/api/streams", "/api/config", "/healthz", "/metrics"} <= set(spec["paths"])
    assert all(set(ops) == {"get"} for ops in spec["paths"].values())  # nothing changes anything yet
    assert "PipelineConfig" in spec["components"]["schemas"] and "StreamList" in spec["components"]["schemas"]


def test_config_masks_every_password_and_secret(small: HttpServer) -> None:
    status, body, _ = _get(small.url + "api/config")
    text = body.decode()
    assert status == 200 and "hunter2" not in text and "tok-in-query" not in text, text
    cfg = json.loads(body)
    assert cfg["sources"][0]["uri"] == "rtsp://admin:***@10.0.0.5:554/live?token=***&ch=1"
    assert cfg["sources"][1]["uri"] == "synthetic://?width=64&height=48"  # nothing secret: as written
    ev = cfg["events"]
    assert ev["mqtt"]["username"] == "bob" and ev["mqtt"]["password"] == "***"
    assert ev["webhook"]["url"] == "https://hook:***@example.test/e?api_key=***"
    assert ev["webhook"]["headers"] == {"Authorization": "***"}
    assert cfg["name"] == "secrets" and cfg["http"] == {"enabled": True, "host": "127.0.0.1", "port": 8080}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"uri": "rtsp://u:p@h/x"}, {"uri": "rtsp://u:***@h/x"}),
        ({"url": "http://h/x?access_token=t&a=1#f"}, {"url": "http://h/x?access_token=***&a=1#f"}),
        ({"url": "https://h/?X-Amz-Signature=abc&keepalive=1"}, {"url": "https://h/?X-Amz-Signature=***&keepalive=1"}),
        ({"client_secret": "s", "keepalive_s": 5}, {"client_secret": "***", "keepalive_s": 5}),
        ({"password": "p", "token": "", "api_key": "k"}, {"password": "***", "token": "", "api_key": "***"}),
        ({"headers": {"X-Whatever": "v"}}, {"headers": {"X-Whatever": "***"}}),
        ({"items": [{"secret": "s"}, "file:///a/b"]}, {"items": [{"secret": "***"}, "file:///a/b"]}),
        ({"path": "out/{stream}.mp4", "port": 1}, {"path": "out/{stream}.mp4", "port": 1}),
    ],
)
def test_masking_table(data: dict[str, Any], expected: dict[str, Any]) -> None:
    from streamseg.server import _masked

    assert _masked(data) == expected


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("localhost", True), ("::1", True), ("[::1]", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.4", False), ("cam-host.lan", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("host", "token", "authorization", "error"),
    [
        ("127.0.0.1", None, None, None),  # loopback, no token: open
        ("127.0.0.1", "s3cret-token", None, 401),  # a token, once set, is always required
        ("127.0.0.1", "s3cret-token", "Bearer s3cret-token", None),
        ("0.0.0.0", None, None, 403),  # beyond loopback without a token: changes refused
        ("0.0.0.0", None, "Bearer anything", 403),
        ("0.0.0.0", "", "Bearer ", 403),  # an empty variable is no token
        ("0.0.0.0", "s3cret-token", None, 401),
        ("0.0.0.0", "s3cret-token", "Bearer wrong", 401),
        ("0.0.0.0", "s3cret-token", "Basic s3cret-token", 401),
        ("0.0.0.0", "s3cret-token", "s3cret-token", 401),
        ("0.0.0.0", "s3cret-token", "bearer s3cret-token", None),
        ("192.168.1.4", "s3cret-token", "Bearer s3cret-token", None),
    ],
)
def test_change_auth_table(host: str, token: str | None, authorization: str | None, error: int | None) -> None:
    from fastapi import HTTPException

    auth = ChangeAuth(host, token)
    if error is None:
        auth.check(authorization)
    else:
        with pytest.raises(HTTPException) as e:
            auth.check(authorization)
        assert e.value.status_code == error and "s3cret" not in str(e.value.detail)


def test_change_auth_over_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """A change endpoint with the dependency, through the real server: the token from the
    environment, the header parsed as a client sends it."""
    from fastapi import Depends

    monkeypatch.setenv(TOKEN_ENV, "t0ken-from-env")
    srv = HttpServer("127.0.0.1", 0, "t", LiveHub([]), lambda: b"", lambda: (True, {}), lambda: [])
    changed: list[int] = []

    @srv.app.post("/api/test-change", dependencies=[Depends(srv.auth.dependency())])
    def change() -> dict[str, bool]:
        changed.append(1)
        return {"ok": True}

    srv.start()
    try:
        url = srv.url + "api/test-change"
        status, body, headers = _get(url, method="POST")
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer" and json.loads(body)["key"] is None
        assert _get(url, {"Authorization": "Bearer nope"}, "POST")[0] == 401 and not changed
        assert _get(url, {"Authorization": "Bearer t0ken-from-env"}, "POST")[:2] == (200, b'{"ok":true}')
        assert changed == [1]
    finally:
        srv.stop()


def test_port_zero_and_a_taken_port() -> None:
    srv = HttpServer("127.0.0.1", 0, "t", LiveHub([]), lambda: b"", lambda: (True, {}), lambda: [])
    try:
        assert srv.port > 0 and srv.url == f"http://127.0.0.1:{srv.port}/"
        # bound (and listening) from the constructor on: a second server on it fails at once
        with pytest.raises(OutputError) as e:
            HttpServer("127.0.0.1", srv.port, "t", LiveHub([]), lambda: b"", lambda: (True, {}), lambda: [])
        assert str(e.value) == f"http server 127.0.0.1:{srv.port}: cannot listen: Address already in use"
    finally:
        srv.stop()  # never started: closes the socket
    HttpServer("127.0.0.1", srv.port, "t", LiveHub([]), lambda: b"", lambda: (True, {}), lambda: []).stop()


def test_server_leaves_signals_and_logging_alone() -> None:
    # (uvicorn sets the level of its own loggers, "uvicorn.*"; nothing else)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    root = list(logging.getLogger().handlers)
    srv = HttpServer("127.0.0.1", 0, "t", LiveHub([]), lambda: b"", lambda: (True, {}), lambda: [])
    srv.start()
    try:
        assert _get(srv.url + "healthz")[0] == 200
        assert {s: signal.getsignal(s) for s in handlers} == handlers
        assert logging.getLogger().handlers == root
    finally:
        srv.stop()


def _mjpeg_client(port: int, read: bool) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if not read:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"GET /stream/cam.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return s


def _recv_until(s: socket.socket, count: int, marker: bytes = b"\xff\xd9") -> bytes:
    data = b""
    while data.count(marker) < count:
        chunk = s.recv(65536)
        assert chunk, f"stream ended after {data.count(marker)} pictures"
        data += chunk
    return data


def test_hundred_mjpeg_clients_then_stop(capfd: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
    """100 viewers on loopback (bounded: each gets two pictures, not a rate), the server answers
    beside them, each is counted, and stop() ends every stream promptly, a stuck one included."""
    hub = LiveHub(["cam"])
    srv = HttpServer("127.0.0.1", 0, "t", hub, lambda: b"# m\n", lambda: (True, {}), lambda: [])
    srv.start()
    stop = threading.Event()

    def frames() -> None:
        while not stop.wait(0.04):
            hub.publish("cam", b"\xff\xd8" + bytes(20_000) + b"\xff\xd9")

    feeder = threading.Thread(target=frames, daemon=True)
    feeder.start()
    clients = [_mjpeg_client(srv.port, read=True) for _ in range(100)]
    stuck = _mjpeg_client(srv.port, read=False)  # asks, then never reads: its writes back up
    try:
        for c in clients:
            head = _recv_until(c, 2)
            assert head.startswith(b"HTTP/1.1 200 ") and b"multipart/x-mixed-replace; boundary=" in head
        assert hub.viewers() == 101
        status, body, _ = _get(srv.url + "metrics")  # still answering beside them
        assert (status, body) == (200, b"# m\n")
        for c in clients[50:]:  # half go away: counted out
            c.close()
        deadline = time.monotonic() + 10
        while hub.viewers() != 51:
            assert time.monotonic() < deadline, hub.viewers()
            time.sleep(0.05)
        time.sleep(1)  # the stuck client's socket buffers fill up
        t0 = time.monotonic()
        srv.stop()
        took = time.monotonic() - t0
        assert took < 4, took
        assert hub.viewers() == 0
        for c in clients[:50]:  # each stream ends (the server closed it)
            c.settimeout(5)
            while c.recv(65536):
                pass
    finally:
        stop.set()
        feeder.join(5)
        for c in [*clients, stuck]:
            c.close()
        srv.stop()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ERROR" not in err, err[-3000:]
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]  # uvicorn's too


def test_stop_is_prompt_with_a_viewer_that_never_reads(
    capfd: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that asks for the MJPEG stream and stops reading leaves the server blocked in a
    write; stop() cuts it after a grace period instead of waiting for it."""
    hub = LiveHub(["cam"])
    srv = HttpServer("127.0.0.1", 0, "t", hub, lambda: b"", lambda: (True, {}), lambda: [])
    srv.start()
    stuck = _mjpeg_client(srv.port, read=False)
    try:
        for _ in range(10):  # 40 MB: far more than the socket buffers on both sides hold
            hub.publish("cam", b"\xff\xd8" + bytes(BIG) + b"\xff\xd9")
            time.sleep(0.05)
        assert hub.viewers() == 1
        t0 = time.monotonic()
        srv.stop()
        took = time.monotonic() - t0
        assert 0.9 < took < 4, took  # it did wait (the grace period), then cut the connection
        assert hub.viewers() == 0
    finally:
        stuck.close()
        srv.stop()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ERROR" not in err, err[-3000:]
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]  # uvicorn's too


def test_json_as_before_and_repeated_slashes(small: HttpServer) -> None:
    # probes match on json.dumps's spacing (the Docker test does), and `url + "/metrics"` worked before
    assert _get(small.url + "healthz")[1] == b'{"status": "starting"}'
    assert _get(small.url + "/metrics")[:2] == (200, b"# m\n")
    assert _get(small.url + "//api//streams")[1] == b'{"name": "small", "streams": []}'


class _Control:
    """Stands in for the pipeline behind the change endpoints; records what reached it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def add_stream(self, data: object) -> Any:
        self.calls.append(("add", data))
        return SourceConfig.model_validate(data)

    def remove_stream(self, name: str) -> int:
        self.calls.append(("remove", name))
        return 0

    def change_stream(self, name: str, data: object) -> Any:
        self.calls.append(("change", data))
        return SourceConfig.model_validate({"name": name, "uri": "synthetic://"})


def _request(
    port: int, method: str, path: str, body: bytes | Iterator[bytes] = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One request through http.client (chunked when ``body`` is an iterator of chunks)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        given = dict(headers or {})
        if isinstance(body, bytes):
            conn.request(method, path, body, given)
        else:
            conn.request(method, path, body, given, encode_chunked=True)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


@pytest.fixture
def control_server(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[HttpServer, _Control]]:
    """A server with change endpoints, bound to the host the test names (indirect), no token."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    control = _Control()
    host = getattr(request, "param", "127.0.0.1")
    srv = HttpServer(host, 0, "t", LiveHub([]), lambda: b"", lambda: (True, {}), lambda: [], streams=control)
    srv.start()
    yield srv, control
    srv.stop()


@pytest.mark.parametrize("control_server", ["0.0.0.0"], indirect=True)
def test_a_change_beyond_loopback_without_a_token_is_refused_before_its_body_is_read(
    control_server: tuple[HttpServer, _Control],
) -> None:
    srv, control = control_server
    status, body = _request(srv.port, "POST", "/api/streams", b"{not json", {"Content-Type": "application/json"})
    assert status == 403 and json.loads(body)["key"] is None and TOKEN_ENV in json.loads(body)["error"]
    assert not control.calls


def test_a_change_body_over_64_kib_is_refused(control_server: tuple[HttpServer, _Control]) -> None:
    srv, control = control_server
    big = json.dumps({"name": "x", "uri": "synthetic://", "pad": "x" * (100 * 1024)}).encode()
    json_type = {"Content-Type": "application/json"}
    assert _request(srv.port, "POST", "/api/streams", big, json_type)[0] == 413
    assert _request(srv.port, "POST", "/api/streams", iter([big[:50_000], big[50_000:]]), json_type)[0] == 413
    assert not control.calls
    small = json.dumps({"name": "x", "uri": "synthetic://"}).encode()
    assert _request(srv.port, "POST", "/api/streams", iter([small[:10], small[10:]]), json_type)[0] == 201
    assert control.calls == [("add", {"name": "x", "uri": "synthetic://"})]


def test_a_loopback_server_answers_only_its_own_host_names(small: HttpServer) -> None:
    """DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 gets 400."""
    for host, status in (("evil.example", 400), (f"evil.example:{small.port}", 400), ("localhost", 200)):
        assert _request(small.port, "GET", "/api/streams", headers={"Host": host})[0] == status, host
    assert _request(small.port, "GET", "/api/streams", headers={"Host": f"127.0.0.1:{small.port}"})[0] == 200
    assert _request(small.port, "GET", "/api/streams", headers={"Host": "[::1]"})[0] == 200


def test_allowed_hosts() -> None:
    assert allowed_hosts("0.0.0.0") == ["*"] and allowed_hosts("::") == ["*"]
    assert allowed_hosts("127.0.0.1") == ["127.0.0.1", "localhost", "[::1]"]
    assert allowed_hosts("192.168.1.5") == ["192.168.1.5", "localhost", "127.0.0.1", "[::1]"]
    assert allowed_hosts("::1") == ["[::1]", "localhost", "127.0.0.1"]


def test_api_refusals_have_the_documented_shape(control_server: tuple[HttpServer, _Control]) -> None:
    """404 (no route), 405 (no such method), 400 (not JSON) under /api/: {"error", "key": null};
    other paths keep FastAPI's {"detail"}."""
    srv, _ = control_server
    json_type = {"Content-Type": "application/json"}
    for method, path, body, status in (
        ("GET", "/api/nope", b"", 404),
        ("PUT", "/api/streams", b"{}", 405),
        ("POST", "/api/streams", b"{not json", 400),
    ):
        got, answer = _request(srv.port, method, path, body, json_type)
        assert got == status and set(json.loads(answer)) == {"error", "key"}, (method, path, answer)
        assert json.loads(answer)["key"] is None and json.loads(answer)["error"]
    assert json.loads(_request(srv.port, "GET", "/nope")[1]) == {"detail": "Not Found"}
