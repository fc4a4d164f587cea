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
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST

from .errors import OutputError
from .status import StreamStatus

if TYPE_CHECKING:
    from .overlay import Palette

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


def _class_rows(palette: Palette | None) -> str:
    """One table row per class: swatch and bar in the class's overlay colour (the legend's)."""
    if palette is None:
        return ""
    rows = []
    for name, (b, g, r) in zip(palette.names, palette.colors_bgr, strict=True):
        color = f"#{r:02x}{g:02x}{b:02x}"
        rows.append(
            f'<tr data-class="{html.escape(name)}" data-ratio="0"><td><s style="background:{color}"></s>'
            f'{html.escape(name)}</td><td class="bar"><i style="background:{color}"></i></td>'
            '<td class="pct">–</td></tr>'
        )
    return "".join(rows)


def index_page(title: str, streams: list[str], palette: Palette | None = None) -> bytes:
    """The live page: a card per stream (picture, state, fps, latency, class areas) that polls
    ``/api/streams`` every second. Names only, never URLs; text reaches the DOM as text."""
    rows = _class_rows(palette)
    cards = "\n".join(
        f'<section class="card" data-stream="{html.escape(s)}" data-state="unknown">'
        f'<img class="live" id="s-{html.escape(s)}" src="/stream/{html.escape(quote(s))}.mjpg" alt="{html.escape(s)}">'
        f'<h2><span class="name">{html.escape(s)}</span> <span class="state">…</span></h2>'
        '<p class="nums"><span class="fps">–</span> fps · <span class="lat">–</span> latency · '
        '<span class="frames">0</span> frames · <span class="dropped">0</span> dropped</p>'
        f'<p class="error" hidden></p><table class="areas"><tbody>{rows}</tbody></table></section>'
        for s in streams
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{html.escape(title)} · streamseg</title>
<style>
body{{font:15px/1.4 system-ui,sans-serif;background:#111;color:#eee;margin:1em}}
h1{{font-size:1.4em;margin:0 0 .2em}}a{{color:#8cf}}
#conn{{color:#9a9}}body[data-conn=unreachable] #conn{{color:#fff;background:#a22;padding:.2em .5em}}
main{{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:1em}}
.card{{background:#1c1c1c;border-radius:6px;padding:.6em;border-left:5px solid #666}}
.card[data-state=up]{{border-color:#3c3}}.card[data-state=down]{{border-color:#e93}}
.card[data-state=failed]{{border-color:#e33}}body[data-conn=unreachable] .card{{opacity:.55}}
img{{width:100%;background:#222;aspect-ratio:16/9;object-fit:contain;display:block}}
h2{{font-size:1.15em;margin:.4em 0 0}}.state{{font-size:.8em;padding:.1em .5em;border-radius:1em;background:#444}}
[data-state=up] .state{{background:#264}}[data-state=down] .state{{background:#851}}
[data-state=failed] .state{{background:#822}}.nums{{margin:.2em 0;color:#ccc}}.error{{color:#f88}}
table{{width:100%;border-spacing:0 3px}}td{{padding:.1em .3em;white-space:nowrap}}
td s{{display:inline-block;width:.9em;height:.9em;margin-right:.4em;vertical-align:-.1em;outline:1px solid #777}}
td.bar{{width:60%;background:#383838;padding:0}}.bar i{{display:block;height:1em;width:0}}
.pct{{text-align:right}}
</style></head>
<body data-conn="connecting"><h1>{html.escape(title)}</h1>
<p><span id="conn">connecting…</span> · {len(streams)} stream(s) · <a href="/metrics">metrics</a>
· <a href="/healthz">health</a></p>
<main>
{cards}
</main>
<script>
"use strict";
// Every value reaches the page through textContent or a number: nothing from the server is parsed as HTML.
const cards = new Map([...document.querySelectorAll(".card")].map(c => [c.dataset.stream, c]));
const conn = document.getElementById("conn");
let polls = 0;
for (const img of document.querySelectorAll("img.live")) {{
  img.dataset.src = img.getAttribute("src");
  img.addEventListener("load", () => {{ img.dataset.loaded = img.naturalWidth + "x" + img.naturalHeight; }});
  img.addEventListener("error", () => {{ delete img.dataset.loaded; img.dataset.broken = "1"; }});
}}
function show(s) {{
  const card = cards.get(s.name);
  if (!card) return;
  const set = (sel, text) => {{ card.querySelector(sel).textContent = text; }};
  card.dataset.state = s.state;
  card.dataset.fps = s.fps.toFixed(2);
  set(".state", s.state);
  set(".fps", s.fps.toFixed(1));
  set(".lat", s.latency_s === null ? "–" : Math.round(s.latency_s * 1000) + " ms");
  set(".frames", String(s.frames));
  set(".dropped", String(s.dropped));
  const err = card.querySelector(".error");
  err.textContent = s.error || "";
  err.hidden = !s.error;
  const body = card.querySelector("tbody");
  const rows = [...body.rows];
  for (const tr of rows) {{
    const r = Number(s.class_area_ratio[tr.dataset.class] || 0);
    tr.dataset.ratio = r.toFixed(4);
    tr.querySelector(".pct").textContent = (100 * r).toFixed(1) + "%";
    tr.querySelector("i").style.width = (100 * r).toFixed(1) + "%";
    tr.hidden = rows.length > 6 && r === 0;  // many classes: list the ones in view
  }}
  rows.sort((a, b) => b.dataset.ratio - a.dataset.ratio).forEach(tr => body.appendChild(tr));
  const img = card.querySelector("img");
  if (img.dataset.broken && s.state === "up") {{  // the picture went away and is back: reconnect
    delete img.dataset.broken;
    img.src = img.dataset.src + "?t=" + Date.now();
  }}
}}
async function poll() {{
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 2500);
  try {{
    const r = await fetch("/api/streams", {{cache: "no-store", signal: ctl.signal}});
    if (!r.ok) throw new Error("status " + r.status);
    (await r.json()).streams.forEach(show);
    document.body.dataset.conn = "ok";
    conn.textContent = "live · " + new Date().toLocaleTimeString();
  }} catch (e) {{
    document.body.dataset.conn = "unreachable";
    conn.textContent = "server unreachable · retrying";
    for (const card of cards.values()) {{
      card.dataset.state = "unknown";
      card.querySelector(".state").textContent = "?";
    }}
  }} finally {{
    clearTimeout(timer);
    document.body.dataset.polls = String(++polls);
    setTimeout(poll, 1000);
  }}
}}
poll();
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
        palette: Palette | None = None,
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
                    self._send(200, "text/html; charset=utf-8", index_page(title, hub.streams, palette))
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
        if self._thread.ident is not None:  # shutdown() waits for serve_forever(), which never ran otherwise
            self._httpd.shutdown()
        self._httpd.server_close()
