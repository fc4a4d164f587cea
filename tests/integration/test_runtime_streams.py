"""Streams added, changed and removed while a real pipeline runs: over the HTTP API (FastAPI on
uvicorn, the bundled selfie_landscape model, synthetic realtime sources so frames keep flowing)
and by SIGHUP to ``python -m streamseg run``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .conftest import ROOT, wait_for

pytestmark = pytest.mark.slow

SYN = "synthetic://?width=64&height=48&fps=15"


def _source(name: str) -> dict[str, Any]:
    # a big queue: the two streams must not drop a frame while a third is added on 2 CPU cores
    return {"name": name, "uri": SYN, "realtime": True, "queue_size": 64}


def _yaml(tmp: Path, names: list[str], host: str = "127.0.0.1") -> str:
    sources = "".join(f"  - {json.dumps(_source(n))}\n" for n in names)
    return (
        f"sources:\n{sources}model: {{path: selfie_landscape}}\n"
        f"outputs:\n  - {{type: video, path: '{tmp}/{{stream}}.mp4'}}\n  - {{type: jsonl, path: '{tmp}/stats.jsonl'}}\n"
        f"http: {{host: '{host}', port: 0}}\n"
    )


def _call(
    url: str, method: str = "GET", body: object = None, headers: dict[str, str] | None = None, raw: bytes | None = None
) -> tuple[int, Any]:
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data, {"Content-Type": "application/json", **(headers or {})}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def _frames(base: str) -> dict[str, int]:
    return {s["name"]: s["frames"] for s in _call(base + "api/streams")[1]["streams"]}


def _records(path: Path) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        out.setdefault(r["stream"], []).append(r["frame"])
    return out


def _decoded_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as f:
        return sum(1 for _ in f.decode(video=0))


def test_add_and_remove_a_stream_while_two_run(run_pipeline, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rp = run_pipeline(_yaml(tmp_path, ["a", "b"]))
    base = rp.url
    wait_for(lambda: min(_frames(base).values()) >= 5, 60, "a and b to run")

    status, body = _call(base + "api/streams", "POST", _source("c"))
    assert (status, body) == (201, {"name": "c", "status": "added"})
    wait_for(lambda: _frames(base).get("c", 0) >= 20, 60, "c to run")
    status, body = _call(base + "api/streams/c", "DELETE")
    assert status == 200 and body["status"] == "removed" and body["frames"] >= 20
    removed_frames = body["frames"]
    assert "c" not in _frames(base)
    assert 'stream="c"' not in rp.pipeline.metrics.exposition().decode()  # its series are gone
    # The removed stream's MP4 is finalized at once, while the others still write theirs.
    assert _decoded_frames(tmp_path / "c.mp4") == removed_frames
    after = _frames(base)
    wait_for(lambda: all(_frames(base)[n] >= after[n] + 10 for n in "ab"), 60, "a and b to go on")

    # Refusals: JSON with the bad key's path; nothing changes.
    bad_zone = {**_source("d"), "zones": [{"name": "z", "polygon": "x"}]}
    status, body = _call(base + "api/streams", "POST", bad_zone)
    assert status == 422 and body["key"].startswith("zones.0.polygon") and "zones.0.polygon" in body["error"]
    status, body = _call(base + "api/streams", "POST", {**_source("d"), "bogus": 1})
    assert (status, body) == (422, {"error": "bogus: unknown key", "key": "bogus"})
    assert _call(base + "api/streams", "POST", _source("a"))[0] == 409  # the name is taken
    assert _call(base + "api/streams", "POST", raw=b"{not json")[0] == 400
    assert _call(base + "api/streams/nope", "DELETE")[0] == 404
    status, body = _call(base + "api/streams/a", "PATCH", {"fps": -1})
    assert status == 422 and body["key"] == "fps"
    assert set(_frames(base)) == {"a", "b"}

    summary = rp.stop()
    records = _records(tmp_path / "stats.jsonl")
    for n in "ab":  # no gap in the two streams' frame numbers, none dropped
        assert records[n] == list(range(len(records[n]))) and summary.frames[n] == len(records[n])
        assert rp.sample("streamseg_frames_dropped_total", stream=n, reason="queue_full") == 0
    assert records["c"] == list(range(removed_frames)) and summary.frames["c"] == removed_frames
    for n in "ab":
        assert _decoded_frames(tmp_path / f"{n}.mp4") == len(records[n])


def test_change_a_stream_and_the_openapi_description(run_pipeline, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rp = run_pipeline(_yaml(tmp_path, ["a", "b"]))
    base = rp.url
    wait_for(lambda: min(_frames(base).values()) >= 3, 60, "a and b to run")
    status, body = _call(base + "api/streams/b", "PATCH", {"uri": SYN.replace("width=64", "width=80")})
    assert (status, body) == (200, {"name": "b", "status": "changed"})
    assert rp.pipeline.stream_config("b").uri.startswith("synthetic://?width=80")
    wait_for(lambda: _frames(base).get("b", 0) >= 3, 60, "b to run again")
    cfg = _call(base + "api/config")[1]
    assert [s["name"] for s in cfg["sources"]] == ["a", "b"] and "width=80" in cfg["sources"][1]["uri"]
    paths = _call(base + "openapi.json")[1]["paths"]
    assert {"get", "post"} <= set(paths["/api/streams"]) and {"patch", "delete"} <= set(paths["/api/streams/{name}"])
    assert "422" in paths["/api/streams"]["post"]["responses"]
    rp.stop()


def test_changes_beyond_loopback_need_the_token(run_pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    # Bound to every address (port 0), reached over loopback by this test.
    monkeypatch.delenv("STREAMSEG_API_TOKEN", raising=False)
    rp = run_pipeline(_yaml(tmp_path / "one", ["a"], host="0.0.0.0"))
    assert rp.pipeline.http is not None
    url = f"http://127.0.0.1:{rp.pipeline.http.port}/api/streams"
    status, body = _call(url, "POST", _source("c"))
    assert status == 403 and "STREAMSEG_API_TOKEN" in body["error"] and body["key"] is None
    assert _call(url + "/a", "DELETE")[0] == 403
    rp.stop()

    monkeypatch.setenv("STREAMSEG_API_TOKEN", "s3cret")
    rp = run_pipeline(_yaml(tmp_path / "two", ["a"], host="0.0.0.0"))
    assert rp.pipeline.http is not None
    url = f"http://127.0.0.1:{rp.pipeline.http.port}/api/streams"
    assert _call(url, "POST", _source("c"))[0] == 401
    assert _call(url, "POST", _source("c"), {"Authorization": "Bearer wrong"})[0] == 401
    assert _call(url, "POST", _source("c"), {"Authorization": "Bearer s3cret"})[0] == 201
    assert _call(url + "/c", "DELETE", headers={"Authorization": "Bearer s3cret"})[0] == 200
    rp.stop()


def test_sighup_applies_the_changed_file_and_keeps_running_on_a_broken_one(tmp_path: Path) -> None:
    out = tmp_path / "out"
    file = tmp_path / "pipeline.yaml"
    file.write_text(_yaml(out, ["a", "b"]))
    err = (tmp_path / "stderr").open("w")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamseg", "run", str(file)], stdout=subprocess.PIPE, stderr=err, env=env, cwd=tmp_path
    )
    stats = out / "stats.jsonl"

    def count(name: str) -> int:
        return len(_records(stats).get(name, [])) if stats.exists() else 0

    try:
        wait_for(lambda: count("a") >= 5 and count("b") >= 5, 90, "a and b to run")
        file.write_text(_yaml(out, ["b", "c"]).replace("model:", "name: renamed\nmodel:"))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: count("c") >= 5, 60, "c to be added")
        a_frames = count("a")
        time.sleep(1.0)
        assert count("a") == a_frames  # removed
        assert _decoded_frames(out / "a.mp4") == a_frames  # finalized whole

        file.write_text("sources: [\n")  # broken
        b_before = count("b")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: count("b") >= b_before + 10 and count("c") >= 20, 60, "b and c to go on")
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=60)
        err.close()
    log = (tmp_path / "stderr").read_text()
    assert proc.returncode == 0, log
    assert "stream a removed" in log and "stream c added" in log
    restart = [line for line in log.splitlines() if "needs a restart" in line]
    assert len(restart) == 1 and "reload: name changed" in restart[0], log
    broken = [line for line in log.splitlines() if "reload ignored" in line]
    assert len(broken) == 1 and "pipeline.yaml:" in broken[0], log
    records = _records(stats)
    for n in "bc":
        assert records[n] == list(range(len(records[n])))
    assert b"b=" in stdout and b"c=" in stdout


def test_a_stream_added_at_runtime_gets_its_rtsp_mount(run_pipeline, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """RTSP output mounts appear with a stream's first frame, so a stream added later is served
    too; removed and added again, it publishes to the same mount."""
    import av

    from tests.support.rtsp import free_port, skip_reason

    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    port = free_port()
    text = _yaml(tmp_path, ["a"]).replace("outputs:\n", f"outputs:\n  - {{type: rtsp, port: {port}}}\n")
    rp = run_pipeline(text)
    base = rp.url

    def one_frame(name: str) -> tuple[int, int]:
        with av.open(f"rtsp://127.0.0.1:{port}/{name}", options={"rtsp_transport": "tcp"}, timeout=10) as c:
            frame = next(c.decode(video=0))
            return frame.width, frame.height

    for _ in range(2):
        assert _call(base + "api/streams", "POST", _source("c"))[0] == 201
        wait_for(lambda: _frames(base).get("c", 0) >= 3, 60, "c to run")
        assert one_frame("c") == (64, 48)
        assert rp.sample("streamseg_rtsp_viewers", stream="c") is not None  # the series is back too
        assert _call(base + "api/streams/c", "DELETE")[0] == 200
    assert one_frame("a") == (64, 48)
    assert rp.stop().frames["a"] > 0
