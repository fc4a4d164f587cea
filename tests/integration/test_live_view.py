"""The live view in a real headless Chromium, and /metrics scraped by a real Prometheus."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import urllib.parse
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from .conftest import http_get, start_prometheus, wait_for

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]

LIVE_PIPELINE = """
name: live-test
sources:
  - {name: left, uri: "synthetic://?width=320&height=180&fps=25", realtime: true}
  - {name: right, uri: "synthetic://?width=480&height=270&fps=25", realtime: true}
model: {path: selfie_landscape}
outputs:
  - {type: live, max_fps: 15}
http: {port: 0}
"""


class _Cards(HTMLParser):
    """The stream cards of a dumped live page: attributes of each card, its picture and its class rows."""

    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str | None] = {}
        self.cards: dict[str, dict[str, Any]] = {}
        self._card: dict[str, Any] | None = None
        self._cell: str | None = None
        self.conn = ""
        self._in_conn = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "body":
            self.body = a
        elif tag == "span" and a.get("id") == "conn":
            self._in_conn = True
        elif tag == "section" and a.get("class") == "card":
            self._card = self.cards[str(a["data-stream"])] = {"attrs": a, "rows": {}, "img": {}, "text": ""}
        elif self._card is not None and tag == "img":
            self._card["img"] = a
        elif self._card is not None and tag == "tr":
            self._cell = str(a["data-class"])
            self._card["rows"][self._cell] = {"ratio": float(str(a["data-ratio"])), "text": ""}
        elif self._card is not None and tag in ("s", "i") and self._cell is not None:
            self._card["rows"][self._cell][tag] = a.get("style")

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._card = None
        elif tag == "tr":
            self._cell = None
        elif tag == "span":
            self._in_conn = False

    def handle_data(self, data: str) -> None:
        if self._in_conn:
            self.conn += data
        if self._card is not None:
            self._card["text"] += data
            if self._cell is not None:
                self._card["rows"][self._cell]["text"] += data


def _chromium(tmp_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (tools/install-system-deps.sh installs it)")
    # Virtual time runs the page's one-second polls without waiting them out; the MJPEG pictures
    # never finish loading, the budget ends the run anyway.
    return subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=4000",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.mark.browser
def test_chromium_sees_a_card_per_stream_with_class_areas(run_pipeline, clip: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rp = run_pipeline(
        "name: live-cards\nsources:\n"
        f'  - {{name: bikes, uri: "{clip}", loop: true, realtime: true}}\n'
        '  - {name: synth, uri: "synthetic://?width=320&height=180&fps=25", realtime: true}\n'
        "model: {path: selfie_landscape}\noutputs:\n  - {type: live, max_fps: 10}\nhttp: {port: 0}\n"
    )
    wait_for(lambda: all(http_get(rp.url + f"stream/{s}.jpg")[0] == 200 for s in ("bikes", "synth")), 30, "frames")
    colors = {k.name: k.color for k in rp.pipeline.model.contract.classes}  # RGB
    # People walk in and out of bikes.mp4 (a third of its frames show nobody): look again until
    # a snapshot shows someone, checking every snapshot whole.
    for _ in range(8):
        result = _chromium(tmp_path, rp.url, "--dump-dom")
        page = _Cards()
        page.feed(result.stdout)
        assert page.body.get("data-conn") == "ok", result.stdout[:3000] + result.stderr[-2000:]
        assert int(str(page.body["data-polls"])) >= 2 and page.conn.startswith("live")
        assert list(page.cards) == ["bikes", "synth"]
        for card in page.cards.values():
            assert card["attrs"]["data-state"] == "up" and float(card["attrs"]["data-fps"]) > 1
            assert re.fullmatch(r"\d+x\d+", card["img"].get("data-loaded") or ""), card["img"]  # a picture arrived
            assert re.search(r"\d+\.\d fps · \d+ ms latency", card["text"]), card["text"]
            rows = card["rows"]
            assert set(rows) == {"background", "person"}
            assert sum(r["ratio"] for r in rows.values()) == pytest.approx(1, abs=2e-4)
            for name, row in rows.items():
                shown = re.fullmatch(rf"{name}(\d+\.\d)%", row["text"].strip())  # data-ratio has 4 places
                assert shown and float(shown[1]) == pytest.approx(100 * row["ratio"], abs=0.051), row
                red, green, blue = colors[name]  # the model's palette: the swatch as served, the bar as set
                assert row["s"] == f"background:#{red:02x}{green:02x}{blue:02x}"
                assert f"background: rgb({red}, {green}, {blue})" in row["i"]
                width = re.search(r"width: ([\d.]+)%", row["i"])
                assert width and float(width[1]) == pytest.approx(100 * row["ratio"], abs=0.06), row["i"]
        assert page.cards["bikes"]["img"]["data-loaded"] == "640x272"
        if page.cards["bikes"]["rows"]["person"]["ratio"] > 0:
            break
    else:
        pytest.fail("no snapshot of the page showed a person area on bikes")
    # names only, never a URL or a path
    assert str(clip) not in result.stdout and "synthetic://" not in result.stdout


@pytest.mark.browser
def test_page_says_when_the_server_is_unreachable(run_pipeline, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rp = run_pipeline(LIVE_PIPELINE)
    status, html, _ = http_get(rp.url)
    assert status == 200
    rp.stop()
    # The page as served, from an http origin whose pipeline is gone (a proxy answers 502 for it):
    # its polls fail there, and the cards must say so. (A file:// page could never poll at all.)

    class Gone(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path in ("/", "/index.html")
            body = html if ok else b"bad gateway\n"
            self.send_response(200 if ok else 502)
            self.send_header("Content-Type", "text/html; charset=utf-8" if ok else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    origin = ThreadingHTTPServer(("127.0.0.1", 0), Gone)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    try:
        result = _chromium(tmp_path, f"http://127.0.0.1:{origin.server_address[1]}/", "--dump-dom")
    finally:
        origin.shutdown()
        origin.server_close()
    page = _Cards()
    page.feed(result.stdout)
    assert page.body.get("data-conn") == "unreachable", result.stdout[:3000]
    assert page.conn == "server unreachable · retrying" and int(str(page.body["data-polls"])) >= 2
    assert {n: c["attrs"]["data-state"] for n, c in page.cards.items()} == {"left": "unknown", "right": "unknown"}


def test_mjpeg_stream_and_endpoints(run_pipeline) -> None:  # type: ignore[no-untyped-def]
    rp = run_pipeline(LIVE_PIPELINE)
    wait_for(lambda: http_get(rp.url + "stream/left.jpg")[0] == 200, 20, "a first live frame")
    status, body, _ctype = http_get(rp.url + "healthz")
    assert status == 200 and json.loads(body) == {"status": "ok", "streams": {"left": "up", "right": "up"}}
    wait_for(
        lambda: all(s["frames"] >= 2 for s in json.loads(http_get(rp.url + "api/streams")[1])["streams"]), 20, "frames"
    )
    status, body, ctype = http_get(rp.url + "api/streams")
    api = json.loads(body)
    assert status == 200 and ctype == "application/json" and api["name"] == "live-test"
    assert [s["name"] for s in api["streams"]] == ["left", "right"]
    for s in api["streams"]:
        assert s["state"] == "up" and s["fps"] > 0 and s["latency_s"] > 0 and s["error"] is None
        assert set(s["class_area_ratio"]) == {"background", "person"}
    assert http_get(rp.url + "stream/nosuch.mjpg")[0] == 404
    assert http_get(rp.url + "nothing")[0] == 404
    import urllib.request

    with urllib.request.urlopen(rp.url + "stream/left.mjpg", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace; boundary=")
        data = b""
        while data.count(b"\xff\xd9") < 3 and len(data) < 5_000_000:
            data += r.read1(65536)
        assert rp.sample("streamseg_live_viewers") == 1  # this client, while it watches
    assert data.count(b"Content-Type: image/jpeg") >= 3  # several distinct frames arrived
    wait_for(lambda: rp.sample("streamseg_live_viewers") == 0, 10, "the viewer to be counted out")
    host = urllib.parse.urlsplit(rp.url).hostname
    assert host == "127.0.0.1"  # loopback unless configured


def test_prometheus_scrapes_the_pipeline(run_pipeline, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rp = run_pipeline(LIVE_PIPELINE)
    proc, prom = start_prometheus(tmp_path, urllib.parse.urlsplit(rp.url).netloc)
    try:
        api = f"{prom}/api/v1/query?query="

        def query(expr: str) -> list[dict[str, object]]:
            try:
                status, body, _ = http_get(api + urllib.parse.quote(expr), timeout=2)
            except OSError:
                return []
            return json.loads(body)["data"]["result"] if status == 200 else []  # type: ignore[no-any-return]

        wait_for(
            lambda: bool(query('streamseg_frames_processed_total{stream="left"} > 0')),
            60,
            "Prometheus to scrape processed frames",
            step=0.5,
        )
        up = query('up{job="streamseg"}')
        assert up and up[0]["value"][1] == "1"  # type: ignore[index]
        info = query("streamseg_build_info")
        assert info[0]["metric"]["backend"] == "onnxruntime"  # type: ignore[index]
        wait_for(lambda: bool(query('streamseg_stream_up{stream="right"} == 1')), 10, "stream_up in Prometheus")
        # the operator's series reach Prometheus too, and no *_created duplicates do
        assert query("process_open_fds > 0") and query("process_resident_memory_bytes > 0")
        assert query('time() - streamseg_stream_last_frame_timestamp_seconds{stream="left"} < 60')
        assert len(query("streamseg_stream_queue_depth")) == 4  # 2 streams x (source, outputs)
        assert query('streamseg_stream_read_errors_total{stream="left"} == 0')
        assert query('streamseg_output_errors_total{output="0:live",stream="right"} == 0')
        assert query("streamseg_live_viewers") and not query('{__name__=~"streamseg_.*_created"}')
        assert info[0]["metric"]["provider"] == "CPUExecutionProvider"  # type: ignore[index]
    finally:
        proc.terminate()
        proc.wait(10)
