"""HTTP endpoints of a running pipeline: the live view (index page + one MJPEG stream per
stream), /metrics for Prometheus and /healthz. Binds 127.0.0.1 unless configured otherwise.

The page shows stream names only, never URLs, so no password can reach a browser.
"""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST

from .errors import OutputError
from .status import StreamStatus

log = logging.getLogger(__name__)
_BOUNDARY = "streamsegframe"


class LiveHub:
    """Latest JPEG per stream, with a condition MJPEG clients wait on."""

    def __init__(self, streams: list[str]) -> None:
        self.streams = list(streams)
        self._latest: dict[str, tuple[int, bytes]] = {}
        self._cond = threading.Condition()
        self.clients = 0
        self.closed = False

    def publish(self, stream: str, jpeg: bytes) -> None:
        with self._cond:
            seq = self._latest.get(stream, (0, b""))[0] + 1
            self._latest[stream] = (seq, jpeg)
            self._cond.notify_all()

    def latest(self, stream: str) -> tuple[int, bytes] | None:
        with self._cond:
            return self._latest.get(stream)

    def wait_next(self, stream: str, after: int, timeout: float) -> tuple[int, bytes] | None:
        with self._cond:
            self._cond.wait_for(lambda: self.closed or self._latest.get(stream, (0, b""))[0] > after, timeout)
            item = self._latest.get(stream)
            return item if item and item[0] > after else None

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


def index_page(title: str, streams: list[str]) -> bytes:
    cards = "\n".join(
        f'<figure><img id="s-{html.escape(s)}" src="/stream/{html.escape(s)}.mjpg" alt="{html.escape(s)}">'
        f"<figcaption>{html.escape(s)}</figcaption></figure>"
        for s in streams
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} · streamseg</title>
<style>body{{font-family:sans-serif;background:#111;color:#eee;margin:1em}}
figure{{display:inline-block;margin:.5em}}img{{max-width:46vw;background:#222;min-width:160px;min-height:90px}}
a{{color:#8cf}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{len(streams)} stream(s) · <a href="/metrics">metrics</a> · <a href="/healthz">health</a></p>
{cards}
<script>
// Tests and people can see which streams have shown a frame.
for (const img of document.querySelectorAll("img")) {{
  img.addEventListener("load", () => {{
    img.dataset.loaded = img.naturalWidth + "x" + img.naturalHeight;
    document.title = "frames: " + document.querySelectorAll("img[data-loaded]").length;
  }});
}}
</script></body></html>"""
    return page.encode()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        """A client that hangs up mid-request or mid-response (a closed tab, a scraper's timeout)
        is routine: one debug line instead of socketserver's traceback on stderr. Anything else is a
        bug and keeps its traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            log.debug("http client %s went away: %s", client_address[0], error)
        else:
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class HttpServer:
    """Serves the hub, metrics and health in daemon threads; ``stop`` shuts it down."""

    def __init__(
        self,
        host: str,
        port: int,
        title: str,
        hub: LiveHub,
        metrics: Callable[[], bytes],
        health: Callable[[], tuple[bool, dict[str, object]]],
        status: Callable[[], list[StreamStatus]],
    ) -> None:
        self.hub = hub
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                log.debug("http %s", format % args)

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = unquote(urlsplit(self.path).path)
                if path in ("/", "/index.html"):
                    self._send(200, "text/html; charset=utf-8", index_page(title, hub.streams))
                elif path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, metrics())
                elif path == "/healthz":
                    ok, detail = health()
                    self._send(200 if ok else 503, "application/json", json.dumps(detail).encode())
                elif path == "/api/streams":  # what the page polls for its cards; names, never URLs
                    body = {"name": title, "streams": [dataclasses.asdict(s) for s in status()]}
                    self._send(200, "application/json", json.dumps(body).encode())
                elif path.startswith("/stream/") and path.endswith(".mjpg"):
                    self._mjpeg(path[len("/stream/") : -len(".mjpg")])
                elif path.startswith("/stream/") and path.endswith(".jpg"):
                    item = hub.latest(path[len("/stream/") : -len(".jpg")])
                    if item is None:
                        self._send(404, "text/plain", b"no frame yet\n")
                    else:
                        self._send(200, "image/jpeg", item[1])
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _mjpeg(self, stream: str) -> None:
                if stream not in hub.streams:
                    self._send(404, "text/plain", b"no such stream\n")
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                with hub._cond:
                    hub.clients += 1
                try:
                    seq = 0
                    latest = hub.latest(stream)
                    while not hub.closed and not server._stopping.is_set():
                        item = latest if latest and latest[0] > seq else hub.wait_next(stream, seq, 1.0)
                        latest = None
                        if item is None:
                            continue
                        seq, jpeg = item
                        self.wfile.write(
                            f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                            + jpeg
                            + b"\r\n"
                        )
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with hub._cond:
                        hub.clients -= 1

        self._stopping = threading.Event()
        try:
            self._httpd = _Server((host, port), Handler)
        except OSError as e:
            raise OutputError(f"http server {host}:{port}: cannot listen: {e.strerror}") from None
        self._httpd.daemon_threads = True
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="http", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self.hub.close()
        self._httpd.shutdown()
        self._httpd.server_close()
