"""The live view in a real headless Chromium, and /metrics scraped by a real Prometheus."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from tests.support.rtsp import free_port

from .conftest import http_get, wait_for

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


@pytest.mark.browser
def test_chromium_shows_a_frame_of_every_stream(run_pipeline, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (tools/install-system-deps.sh installs it)")
    rp = run_pipeline(LIVE_PIPELINE)
    for stream in ("left", "right"):
        wait_for(lambda s=stream: http_get(rp.url + f"stream/{s}.jpg")[0] == 200, 30, f"a first {stream} frame")
    # --timeout stops loading (MJPEG never finishes) and then dumps the DOM; generous for busy CI.
    result = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--timeout=10000", "--dump-dom", rp.url],
        capture_output=True,
        text=True,
        timeout=90,
    )
    dom = result.stdout
    assert "<title>frames: 2</title>" in dom, dom[:2000] + result.stderr[-2000:]
    loaded = dict(re.findall(r'id="s-(\w+)"[^>]*data-loaded="(\d+x\d+)"', dom))
    assert loaded == {"left": "320x180", "right": "480x270"}


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
    assert data.count(b"Content-Type: image/jpeg") >= 3  # several distinct frames arrived
    host = urllib.parse.urlsplit(rp.url).hostname
    assert host == "127.0.0.1"  # loopback unless configured


def test_prometheus_scrapes_the_pipeline(run_pipeline, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("prometheus is not installed (tools/install-system-deps.sh installs it)")
    rp = run_pipeline(LIVE_PIPELINE)
    target = urllib.parse.urlsplit(rp.url).netloc
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: streamseg\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        api = f"http://127.0.0.1:{port}/api/v1/query?query="

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
    finally:
        proc.terminate()
        proc.wait(10)
