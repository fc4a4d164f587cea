"""HTTP endpoints of a running pipeline, served by FastAPI on uvicorn in a thread of its own:

- ``/`` (``/index.html``): the live page, ``/stream/NAME.mjpg`` (MJPEG) and ``/stream/NAME.jpg``;
- ``/metrics`` for Prometheus and ``/healthz`` (200 or 503, JSON) for probes;
- the API: ``/api/streams`` (state and counters), ``/api/config`` (the effective configuration,
  every password and secret masked), the changes ``POST /api/streams`` (add),
  ``PATCH /api/streams/NAME`` (change) and ``DELETE /api/streams/NAME`` (remove), and
  ``/openapi.json`` describing them. ``/docs`` is off: its page loads JavaScript from a CDN, which
  an offline site cannot reach.

Binds 127.0.0.1 unless configured otherwise. Changes need a token (``STREAMSEG_API_TOKEN``) when
bound beyond loopback: ``ChangeAuth`` decides. Errors under ``/api/`` are JSON: ``{"error":
"key.path: message", "key": "key.path"}``, with ``"key": null`` when no key is at fault (400, 401,
403, 404, 405, 413). The page shows stream names only, never URLs, so no password can reach a
browser.

FastAPI and uvicorn are imported when a server is built, never by ``import streamseg``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import html
import ipaddress
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from .config import SourceConfig, redact_msg  # SourceConfig: FastAPI reads the POST body's model here
from .errors import OutputError
from .status import StreamStatus
from .uri import redact

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi import FastAPI
    from pydantic import BaseModel
    from starlette.responses import Response

    from .overlay import Palette

log = logging.getLogger(__name__)
_BOUNDARY = "streamsegframe"
TOKEN_ENV = "STREAMSEG_API_TOKEN"
MASK = "***"
STOP_GRACE_S = 1.0  # how long stop() lets responses finish before cutting their connections


class LiveHub:
    """Latest JPEG per stream. The live output publishes from pipeline threads; the server's
    viewers wait for new pictures on its event loop (``watch``), each counted while it watches."""

    def __init__(self, streams: list[str]) -> None:
        self.streams = list(streams)
        self._latest: dict[str, tuple[int, bytes]] = {}
        self._lock = threading.Lock()
        self._wakers: dict[str, set[Callable[[], None]]] = {}
        self._viewers = 0
        self.closed = False

    def add_stream(self, stream: str) -> None:
        """A stream added while running: listed on the page and served as MJPEG from now on."""
        with self._lock:
            if stream not in self.streams:
                self.streams = [*self.streams, stream]

    def remove_stream(self, stream: str) -> None:
        """A removed stream: no longer listed; its latest picture is dropped."""
        with self._lock:
            self.streams = [s for s in self.streams if s != stream]
            self._latest.pop(stream, None)

    def publish(self, stream: str, jpeg: bytes) -> None:
        with self._lock:
            seq = self._latest.get(stream, (0, b""))[0] + 1
            self._latest[stream] = (seq, jpeg)
            wakers = list(self._wakers.get(stream, ()))
        for wake in wakers:
            wake()

    def latest(self, stream: str) -> tuple[int, bytes] | None:
        """The newest (sequence number, JPEG) of ``stream``; None before its first picture."""
        with self._lock:
            return self._latest.get(stream)

    def viewers(self) -> int:
        """MJPEG clients watching now (any stream)."""
        with self._lock:
            return self._viewers

    @contextlib.contextmanager
    def watch(self, stream: str) -> Iterator[Viewer]:
        """Count one viewer of ``stream`` for the block; its ``Viewer`` awaits new pictures on the
        running event loop. The count and the wake-up are undone on leaving, however it is left."""
        viewer = Viewer(self, stream, asyncio.get_running_loop())
        with self._lock:
            self._viewers += 1
            self._wakers.setdefault(stream, set()).add(viewer.wake)
        try:
            yield viewer
        finally:
            with self._lock:
                self._viewers -= 1
                self._wakers[stream].discard(viewer.wake)

    def _look(self, stream: str, event: asyncio.Event) -> tuple[bool, tuple[int, bytes] | None]:
        """(closed, latest item) for a viewer, clearing its event under the lock: a publish after
        this look wakes it again, so no picture is missed between the look and the wait."""
        with self._lock:
            event.clear()
            return self.closed, self._latest.get(stream)

    def close(self) -> None:
        """End every viewer's stream (the server is stopping)."""
        with self._lock:
            self.closed = True
            wakers = [w for ws in self._wakers.values() for w in ws]
        for wake in wakers:
            wake()


class Viewer:
    """One MJPEG client's view of a stream (made by ``LiveHub.watch``)."""

    def __init__(self, hub: LiveHub, stream: str, loop: asyncio.AbstractEventLoop) -> None:
        self._hub = hub
        self._stream = stream
        self._loop = loop
        self._event = asyncio.Event()
        self._seq = 0

    def wake(self) -> None:
        """Called from any thread when a picture is published or the hub closes."""
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
            self._loop.call_soon_threadsafe(self._event.set)

    async def pictures(self) -> AsyncIterator[bytes]:
        """Each picture newer than the last one given, as it arrives (a slow client skips the ones
        it had no time for); ends when the hub closes."""
        while True:
            closed, item = self._hub._look(self._stream, self._event)
            if closed:
                return
            if item is not None and item[0] > self._seq:
                self._seq = item[0]
                yield item[1]
            else:
                await self._event.wait()


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


# --- the effective configuration, as the API shows it ----------------------------------------
# A key is secret when one of its words (split at _ - .) is one of these: access_token, X-Api-Key,
# X-Amz-Signature, client_secret, password; not keepalive_s or path.
_SECRET_WORDS = {"password", "passwd", "pass", "pwd", "secret", "token", "key", "apikey", "auth"}
_SECRET_WORDS |= {"authorization", "credential", "credentials", "signature", "sig", "session", "cookie"}
_QUERY_VALUE = re.compile(r"([?&])([^=&#]*)=([^&#]*)")


def _secret_key(key: str) -> bool:
    return any(word in _SECRET_WORDS for word in re.split(r"[_.\-]", key.lower()))


def _mask_uri(text: str) -> str:
    """A URI with its password and any secret-looking query value (``?token=...``) masked; the
    rest exactly as written."""
    shown = redact(text)
    head, sep, rest = shown.partition("?")
    if not sep:
        return shown
    masked = _QUERY_VALUE.sub(lambda m: f"{m[1]}{m[2]}={MASK}" if m[3] and _secret_key(m[2]) else m[0], sep + rest)
    return head + masked


def _masked(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        # Every header value may carry a credential (Authorization, X-Api-Key, a cookie).
        return {k: MASK if key == "headers" else _masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, key) for v in value]
    if isinstance(value, str):
        if value and _secret_key(key):
            return MASK
        return _mask_uri(value) if "://" in value else value
    return value


def public_config(cfg: BaseModel) -> dict[str, Any]:
    """The validated configuration as JSON data for people and tools: passwords in URIs, secret
    fields, secret query values and header values masked, so no password leaves the process."""
    data = _masked(cfg.model_dump(mode="json"))
    assert isinstance(data, dict)
    return data


# --- who may change things --------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    """True when ``host`` (a bind address) only reaches this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve beyond this machine


class ChangeAuth:
    """The rule for requests that change the pipeline, as a FastAPI dependency.

    Bound to loopback: open unless a token is set. Bound beyond loopback: refused (403) unless a
    token is set in ``STREAMSEG_API_TOKEN``. With a token: ``Authorization: Bearer TOKEN`` is
    required (401 otherwise), compared in constant time. Reads never need it.
    """

    def __init__(self, host: str, token: str | None) -> None:
        self.exposed = not is_loopback(host)
        self.token = token or None

    def check(self, authorization: str | None) -> None:
        """Raise an HTTPException when a change with this Authorization header is not allowed."""
        from fastapi import HTTPException

        if self.token is None:
            if self.exposed:
                raise HTTPException(403, f"changes are refused: the server is not on loopback and {TOKEN_ENV} is unset")
            return
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            raise HTTPException(
                401, "a valid 'Authorization: Bearer <token>' is required", {"WWW-Authenticate": "Bearer"}
            )

    def dependency(self) -> Callable[..., None]:
        """What a change endpoint lists in ``dependencies=[Depends(...)]``."""
        from fastapi import Header

        def require_token(authorization: str | None = Header(None)) -> None:
            self.check(authorization)

        return require_token


class StreamControl(Protocol):
    """What the change endpoints call (the pipeline); each raises StreamChangeError."""

    def add_stream(self, data: object) -> Any: ...

    def remove_stream(self, name: str) -> int: ...

    def change_stream(self, name: str, data: object) -> Any: ...


# --- the application ----------------------------------------------------------------------------
class _Tidy:
    """ASGI middleware: ``Cache-Control: no-store`` on every answer (live data, never cached), and
    repeated slashes in a path merged as nginx does (``//metrics`` is ``/metrics``, as before)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_no_store(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"cache-control", b"no-store")]
            await send(message)

        if "//" in scope["path"]:
            scope = {**scope, "path": re.sub("/{2,}", "/", scope["path"])}
        await self.app(scope, receive, send_no_store)


MAX_BODY = 64 * 1024  # a source config is a few hundred bytes; more is a mistake or an attack
_CHANGES = frozenset({"POST", "PATCH", "PUT", "DELETE"})


class _ChangeGuard:
    """ASGI middleware before routing, for changes (POST/PATCH/PUT/DELETE under ``/api/``): the
    token is checked from the headers first (401/403 before a byte of the body is read), then the
    body is read, at most ``MAX_BODY`` bytes (413 beyond, by Content-Length or counted when
    chunked), and handed on to the route."""

    def __init__(self, app: Any, auth: ChangeAuth, limit: int = MAX_BODY) -> None:
        self.app, self.auth, self.limit = app, auth, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in _CHANGES or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        from fastapi import HTTPException

        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        authorization = headers.get(b"authorization")
        try:
            self.auth.check(authorization.decode("latin-1") if authorization is not None else None)
        except HTTPException as e:
            await _refusal(send, e.status_code, str(e.detail), e.headers)
            return
        too_big = f"the body is larger than {self.limit // 1024} KiB"
        length = headers.get(b"content-length", b"").strip()
        if length.isdigit() and int(length) > self.limit:  # a bad one is uvicorn's to refuse
            await _refusal(send, 413, too_big)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:  # chunked: counted as it comes
                await _refusal(send, 413, too_big)
                return
        given = False

        async def replay() -> Any:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _refusal(send: Any, status: int, error: str, headers: Mapping[str, str] | None = None) -> None:
    """A refusal in the API's error shape, sent straight from ASGI middleware."""
    body = json.dumps({"error": error, "key": None}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def allowed_hosts(host: str) -> list[str]:
    """The Host header values a server bound to ``host`` answers (400 for any other): ``host``
    itself and this machine's loopback names; any when bound to every address (0.0.0.0, ::)."""
    if host in ("", "0.0.0.0", "::", "[::]"):
        return ["*"]
    bare = host.strip("[]").lower()
    return list(dict.fromkeys([f"[{bare}]" if ":" in bare else bare, "localhost", "127.0.0.1", "[::1]"]))


def build_app(
    title: str,
    hub: LiveHub,
    metrics: Callable[[], bytes],
    health: Callable[[], tuple[bool, dict[str, object]]],
    status: Callable[[], list[StreamStatus]],
    palette: Palette | None = None,
    config: Callable[[], BaseModel] | None = None,
    control: StreamControl | None = None,
    auth: ChangeAuth | None = None,
    host: str = "127.0.0.1",
) -> FastAPI:
    """The FastAPI application: the same routes the hand-written server had, plus the read-only API.

    Plain ``def`` endpoints run in the thread pool (they call into the pipeline, which takes
    locks); the MJPEG streams are ``async`` and hold no thread, so a hundred viewers cost none.
    """
    from fastapi import FastAPI, Request
    from fastapi.exception_handlers import http_exception_handler
    from fastapi.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse
    from prometheus_client import CONTENT_TYPE_LATEST
    from pydantic import BaseModel
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    from . import __version__

    class StreamList(BaseModel):
        name: str
        streams: list[StreamStatus]

    app = FastAPI(
        title=f"streamseg: {title}",
        version=__version__,
        description="A running streamseg pipeline: live view, metrics, health and its read-only API.",
        docs_url=None,  # Swagger UI and ReDoc load their scripts from a CDN: no use offline
        redoc_url=None,
    )
    # added last is outermost: paths are tidied before the guard of changes sees them
    app.add_middleware(_ChangeGuard, auth=auth or ChangeAuth("127.0.0.1", None))
    app.add_middleware(_Tidy)
    # Against DNS rebinding (a page on evil.example whose name turns into 127.0.0.1): only the
    # names this server is reached by on this machine. Bound to every address any name is fine:
    # then changes need the token anyway.
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host))

    @app.get("/", response_class=HTMLResponse, response_model=None, include_in_schema=False)
    @app.get("/index.html", response_class=HTMLResponse, response_model=None, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(index_page(title, hub.streams, palette))

    @app.get("/metrics", summary="Prometheus exposition", response_class=PlainTextResponse, response_model=None)
    def get_metrics() -> Response:
        return Response(metrics(), media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/healthz", summary="200 when running and a stream is up (or a file finished), else 503", response_model=None
    )
    def healthz() -> Response:
        ok, detail = health()
        return _json(detail, 200 if ok else 503)

    @app.get("/api/streams", summary="Every stream with its state and counters", response_model=StreamList)
    def api_streams() -> Response:
        # names, never URLs: what the live page polls for its cards
        return _json({"name": title, "streams": [dataclasses.asdict(s) for s in status()]})

    if config is not None:
        get_config = config
        model = type(config())

        @app.get(
            "/api/config",
            summary="The effective configuration, passwords and secrets masked",
            response_model=model,  # the schema; the answer is the masked dump, not re-validated
        )
        def api_config() -> Response:
            return _json(public_config(get_config()))

    @app.exception_handler(StarletteHTTPException)
    async def api_error(request: Request, exc: StarletteHTTPException) -> Response:
        # Under /api/ every refusal has the documented shape (401, 403, 404, 405, ...);
        # elsewhere FastAPI's own {"detail": ...}.
        if not request.url.path.startswith("/api/"):
            return await http_exception_handler(request, exc)
        answer = _json({"error": str(exc.detail), "key": None}, exc.status_code)
        answer.headers.update(exc.headers or {})
        return answer

    if control is not None:
        _change_routes(app, control, auth or ChangeAuth("127.0.0.1", None))

    @app.get(
        "/stream/{name:path}.jpg",
        summary="The latest picture of a stream",
        response_class=Response,
        response_model=None,
    )
    def still(name: str) -> Response:
        item = hub.latest(name)
        if item is None:
            return PlainTextResponse("no frame yet\n", 404)
        return Response(item[1], media_type="image/jpeg")

    class Mjpeg(StreamingResponse):
        """multipart/x-mixed-replace of a stream's pictures until the client or the server goes."""

        def __init__(self, stream: str) -> None:
            super().__init__(iter(()), media_type=f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
            self.headers["Connection"] = "close"
            self.stream = stream

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            with hub.watch(self.stream) as viewer:  # counted from here until the response ends
                self.body_iterator = _parts(viewer)
                await super().__call__(scope, receive, send)

    @app.get(
        "/stream/{name:path}.mjpg",
        summary="A stream's live pictures (MJPEG)",
        response_class=Response,
        response_model=None,
    )
    async def mjpeg(name: str) -> Response:
        if name not in hub.streams:
            return PlainTextResponse("no such stream\n", 404)
        return Mjpeg(name)

    return app


def _change_routes(app: FastAPI, control: StreamControl, auth: ChangeAuth) -> None:
    """POST/PATCH/DELETE on /api/streams: the body checked by the same SourceConfig as the file;
    every refusal is ``{"error", "key"}`` JSON (422 invalid, 400 not JSON, 404, 409, 503)."""
    from fastapi import Body, Depends, Request
    from fastapi.exceptions import RequestValidationError
    from pydantic import BaseModel

    from .errors import StreamChangeError

    class ChangeError(BaseModel):
        error: str
        key: str | None = None

    class ChangedStream(BaseModel):
        name: str
        status: str

    class RemovedStream(ChangedStream):
        frames: int

    guard = [Depends(auth.dependency())]
    errors: dict[int | str, dict[str, Any]] = {
        s: {"description": d, "model": ChangeError}
        for s, d in (
            (400, "the body is not JSON"),
            (401, "a valid bearer token is required"),
            (403, f"refused: bound beyond loopback and {TOKEN_ENV} unset"),
            (404, "no such stream"),
            (413, "the body is larger than 64 KiB"),
            (409, "the name is taken, or another shard owns it"),
            (422, "invalid source config; key is the path of the bad key"),
            (503, "the pipeline is not running"),
        )
    }

    @app.exception_handler(RequestValidationError)
    async def invalid_body(_request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ())][1:]  # without "body"
        key = ".".join(loc) or "(top level)"
        kind = first.get("type")
        if kind == "json_invalid":
            return _json({"error": f"the body is not JSON: {first.get('msg', '')}", "key": None}, 400)
        # the file's wording (config.describe_validation), so a key reads the same in both
        msg = {"extra_forbidden": "unknown key", "missing": "required key is missing"}.get(kind or "", first.get("msg"))
        return _json({"error": f"{key}: {redact_msg(str(msg))}", "key": key}, 422)

    def refused(e: StreamChangeError) -> Response:
        return _json({"error": str(e), "key": e.key}, e.status)

    @app.post(
        "/api/streams",
        summary="Add a stream (a source config, as in the file's sources:)",
        status_code=201,
        dependencies=guard,
        responses=errors,
        response_model=ChangedStream,
    )
    def add_stream(source: SourceConfig) -> Response:
        try:
            sc = control.add_stream(source.model_dump(exclude_unset=True))
        except StreamChangeError as e:
            return refused(e)
        return _json({"name": sc.name, "status": "added"}, 201)

    @app.patch(
        "/api/streams/{name}",
        summary="Change a stream's settings (the keys given over its current ones): it is removed and added again",
        dependencies=guard,
        responses=errors,
        response_model=ChangedStream,
    )
    def change_stream(
        name: str,
        changes: dict[str, Any] = Body(..., description="keys of a source config"),  # noqa: B008 - FastAPI's way
    ) -> Response:
        try:
            sc = control.change_stream(name, changes)
        except StreamChangeError as e:
            return refused(e)
        return _json({"name": sc.name, "status": "changed"})

    @app.delete(
        "/api/streams/{name}",
        summary="Remove a stream: its outputs are finalized (its video file closed whole), its series removed",
        dependencies=guard,
        responses=errors,
        response_model=RemovedStream,
    )
    def remove_stream(name: str) -> Response:
        try:
            frames = control.remove_stream(name)
        except StreamChangeError as e:
            return refused(e)
        return _json({"name": name, "status": "removed", "frames": frames})


def _json(data: object, status: int = 200) -> Response:
    """JSON as ``json.dumps`` writes it (``{"status": "ok"}``), as the hand-written server did:
    probes and scripts match on it."""
    from fastapi.responses import Response

    return Response(json.dumps(data).encode(), status, media_type="application/json")


async def _parts(viewer: Viewer) -> AsyncIterator[bytes]:
    async for jpeg in viewer.pictures():
        yield (
            f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
            + jpeg
            + b"\r\n"
        )


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one), bound here so that a taken port fails
    before anything else opens; uvicorn serves on it."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
            0
        ]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise OutputError(f"http server {host}:{port}: cannot listen: {e.strerror}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server did: restart at once
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise OutputError(f"http server {host}:{port}: cannot listen: {e.strerror}") from None
    return sock


class HttpServer:
    """Serves the hub, metrics, health and the API from a thread of its own; ``stop`` ends it.

    The socket is bound in the constructor (a taken port is an OutputError before any output
    file opens); requests are answered from ``start()`` on.
    """

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
        config: Callable[[], BaseModel] | None = None,
        token: str | None = None,
        streams: StreamControl | None = None,
    ) -> None:
        import uvicorn

        self.hub = hub
        self.host = host
        # The token comes from the environment unless given (tests give it).
        self.auth = ChangeAuth(host, token if token is not None else os.environ.get(TOKEN_ENV))
        self.app = build_app(title, hub, metrics, health, status, palette, config, streams, self.auth, host)
        self._sock = _listen(host, port)
        self.port = int(self._sock.getsockname()[1])
        if self.auth.exposed and self.auth.token is None:
            log.info("http server on %s: changes over the API need %s (unset: refused)", host, TOKEN_ENV)

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield  # no signal handlers: SIGINT/SIGTERM belong to the CLI

            async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
                # A viewer whose client stopped reading waits in a write that never drains:
                # after a grace period its connection is cut (the client sees the end of the
                # stream), so stop() is prompt and nothing logs a cancelled task.
                async def cut() -> None:
                    await asyncio.sleep(STOP_GRACE_S)
                    for conn in list(self.server_state.connections):
                        transport = getattr(conn, "transport", None)
                        if transport is not None:
                            transport.abort()

                cutter = asyncio.ensure_future(cut())
                try:
                    await super().shutdown(sockets)
                finally:
                    cutter.cancel()

        config_ = uvicorn.Config(
            self.app,
            log_config=None,  # the CLI configures logging; uvicorn adds no handler of its own
            log_level="warning",  # no start-up banner; problems still show
            access_log=False,
            lifespan="off",
            http="h11",
            ws="none",
            loop="asyncio",
            server_header=False,
            timeout_graceful_shutdown=5,
        )
        self._server = Server(config_)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="http", daemon=True
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the MJPEG streams and the server; returns once its thread has finished."""
        self.hub.close()
        self._server.should_exit = True
        if self._thread.ident is not None:
            self._thread.join(STOP_GRACE_S + 10)
            if self._thread.is_alive():
                log.warning("http server did not stop in time")
        self._sock.close()
