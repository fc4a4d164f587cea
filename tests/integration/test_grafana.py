"""The provisioned Grafana dashboard (deploy/grafana/) against a real Prometheus scraping a real pipeline.

Grafana itself cannot be installed here, so the test does what Grafana would: it substitutes the
dashboard's template variables and Grafana's built-in intervals in every panel's PromQL and
evaluates it through Prometheus' HTTP API. Every target must return at least one series with a
finite value (no empty panel), and every metric a query names must be in the pipeline's exposition
(no query on a metric that does not exist). The JSON and the provisioning files are checked for the
structure Grafana's file provisioning loads.
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.rtsp import skip_reason

from .conftest import ROOT, http_get, start_prometheus, wait_for

pytestmark = pytest.mark.slow

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "streamseg.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yaml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "streamseg.yaml"
COMPOSE = ROOT / "deploy" / "compose.yaml"

SCRAPE_SAMPLES = 15  # ~15-20 s of 1 s scrapes before the queries run
# Grafana's built-ins, as Grafana would expand them for a 1 s scrape interval and a short range.
# $__rate_interval is at least four scrape intervals; 10 s leaves room for late scrapes on a busy machine.
BUILTINS = {"__rate_interval": "10s", "__interval": "2s", "__interval_ms": "2000", "__range": "30s", "__range_s": "30"}

PIPELINE = """
name: grafana-test
sources:
  - {{name: bikes, uri: "{clip}", realtime: true, loop: true}}
  - {{name: synth, uri: "synthetic://?width=320&height=180&fps=25", realtime: true}}
model: {{path: selfie_landscape}}
outputs:
  - {{type: video, path: "{out}/{{stream}}.mp4"}}
  - {{type: jsonl, path: "{out}/stats.jsonl"}}
  - {{type: live, max_fps: 5}}
  - {{type: rtsp, port: 0}}
http: {{port: 0}}
"""
STREAMS = {"bikes", "synth"}

_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::[\w]+)?\}|\[\[(\w+)\]\]")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
_LITERALS = {"inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects: identifiers outside strings, label matchers, ranges and
    grouping clauses that are neither function calls, keywords nor number literals."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", s):
        name = m.group()
        if s[m.end() :].lstrip().startswith("(") or name in _KEYWORDS or name.lower() in _LITERALS:
            continue
        names.add(name)
    return names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('rate(a_total{x="b{c}", y=~"$y"}[$__rate_interval])', {"a_total"}),
        ("histogram_quantile(0.95, sum by (le, stream) (rate(h_bucket[5m])))", {"h_bucket"}),
        ("sum by (s) (rate(a_sum[1m])) / sum by (s) (rate(a_count[1m])) > 1e3", {"a_sum", "a_count"}),
        ('max by (stream) (time() - last_seconds{stream=~".*"}) or on (stream) vector(0)', {"last_seconds"}),
        ("x unless ignoring (le) y", {"x", "y"}),
    ],
)
def test_metric_names_parses_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def substitute(expr: str, values: dict[str, str]) -> str:
    """Expand $var, ${var}, ${var:format} and [[var]] the way Grafana would; an unknown variable fails."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values:
            raise AssertionError(f"unknown variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(one, expr)


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def targets(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{p['title']} [{t['refId']}]", t) for p in panels(dashboard) for t in p.get("targets", [])]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def datasource() -> dict[str, Any]:
    doc = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    assert doc["apiVersion"] == 1 and len(doc["datasources"]) == 1
    return doc["datasources"][0]  # type: ignore[no-any-return]


def test_provisioning_files(datasource: dict[str, Any]) -> None:
    assert datasource["type"] == "prometheus"
    assert datasource["access"] == "proxy"
    assert datasource["url"] == "http://prometheus:9090"  # the prometheus service of deploy/compose.yaml
    assert datasource["name"] and re.fullmatch(r"[\w-]{1,40}", datasource["uid"])
    # Grafana's $__rate_interval is built on timeInterval: it must be Prometheus' scrape interval
    for scrape_config in (ROOT / "deploy" / "prometheus.yml", ROOT / "deploy" / "compose" / "prometheus.yml"):
        if scrape_config.exists():
            interval = yaml.safe_load(scrape_config.read_text(encoding="utf-8"))["global"]["scrape_interval"]
            assert datasource["jsonData"]["timeInterval"] == interval, scrape_config

    doc = yaml.safe_load(PROVIDERS.read_text(encoding="utf-8"))
    assert doc["apiVersion"] == 1 and len(doc["providers"]) == 1
    provider = doc["providers"][0]
    assert provider["type"] == "file" and provider["name"]
    path = provider["options"]["path"]
    assert path.startswith("/")
    if COMPOSE.exists():  # the compose file puts each file where Grafana and this provider read it
        grafana = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]["grafana"]
        mounts = [v.split(":")[:2] if isinstance(v, str) else (v["source"], v["target"]) for v in grafana["volumes"]]

        def in_container(rel: str) -> str | None:
            for source, target in mounts:
                src = Path(source).as_posix()
                if rel == src or rel.startswith(src + "/"):
                    return target.rstrip("/") + rel[len(src) :]
            return None

        for rel, folder in (
            ("grafana/provisioning/datasources/prometheus.yaml", "/etc/grafana/provisioning/datasources"),
            ("grafana/provisioning/dashboards/streamseg.yaml", "/etc/grafana/provisioning/dashboards"),
            ("grafana/dashboards/streamseg.json", path.rstrip("/")),
        ):
            assert in_container(rel) == f"{folder}/{Path(rel).name}", (rel, mounts)


def test_dashboard_structure(dashboard: dict[str, Any], datasource: dict[str, Any]) -> None:
    """What Grafana's file provisioning needs: a uid and title, a schemaVersion, panels with unique ids and
    non-overlapping gridPos on the 24-column grid, targets with expr and a refId unique in their panel, all
    on the provisioned datasource's uid; template variables on the same datasource."""
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] and dashboard["title"] and dashboard.get("id") is None
    ds = {"type": "prometheus", "uid": datasource["uid"]}
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids are not unique"
    cells: set[tuple[int, int]] = set()
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert all(isinstance(g[k], int) for k in "hwxy") and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"panel {p['title']!r} overlaps another"
        cells |= mine
        assert p["title"] and p["type"]
        if p["type"] == "row":
            continue
        assert p["datasource"] == ds, p["title"]
        assert p["targets"], f"panel {p['title']!r} has no query"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["expr"].strip() and t.get("datasource", ds) == ds, p["title"]
    variables = dashboard["templating"]["list"]
    assert {v["name"] for v in variables} >= {"job", "instance", "stream"}
    for v in variables:
        assert v["type"] == "query" and v["datasource"] == ds and v["includeAll"] and v["allValue"] == ".*"


def test_every_panel_has_data(run_pipeline, tmp_path: Path, clip: Path, dashboard: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    """A real Prometheus scrapes a real pipeline (file + synthetic streams into video, JSONL, live view and
    RTSP outputs) every second for ~20 s; then every panel query, with all streams and with one, has data."""
    reason = skip_reason()  # the RTSP output (for streamseg_rtsp_viewers) needs GStreamer's RTSP server
    if reason:
        pytest.skip(reason)
    rp = run_pipeline(PIPELINE.format(clip=clip, out=tmp_path / "out"))
    target = urllib.parse.urlsplit(rp.url).netloc
    proc, prom = start_prometheus(tmp_path, target)
    try:

        def query(expr: str) -> list[dict[str, Any]]:
            try:
                status, body, _ = http_get(f"{prom}/api/v1/query?query={urllib.parse.quote(expr)}", timeout=5)
            except OSError:
                return []
            if status != 200:
                raise AssertionError(f"Prometheus rejected {expr!r}: {body.decode(errors='replace')}")
            data = json.loads(body)["data"]
            if data["resultType"] == "scalar":
                return [{"metric": {}, "value": data["result"]}]
            return data["result"]  # type: ignore[no-any-return]

        scraped = f'count_over_time(streamseg_frames_processed_total{{stream="bikes"}}[1m]) >= {SCRAPE_SAMPLES}'
        wait_for(
            lambda: bool(query(scraped)),
            60,
            f"{SCRAPE_SAMPLES} scrapes of the pipeline",
            step=0.5,
        )
        # every stream has been read and processed within the rate window: no panel is empty for a slow start
        assert {s["metric"]["stream"] for s in query("increase(streamseg_frames_processed_total[10s]) > 0")} == STREAMS

        status, body, _ = http_get(rp.url + "/metrics")
        assert status == 200
        exposed = {s.name for f in text_string_to_metric_families(body.decode()) for s in f.samples}

        # the template variables' own queries list the job, the instance and both streams
        expected = {"job": {"streamseg"}, "instance": {target}, "stream": STREAMS}
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        everything = dict.fromkeys(variables, ".*") | BUILTINS
        for name, v in variables.items():
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", q.strip())
            assert m, f"variable {name}: {q!r} is not label_values(expr, label)"
            found = {s["metric"].get(m.group(2)) for s in query(substitute(m.group(1), everything))}
            assert found == expected[name], f"variable {name}: {q!r} gives {found}"
            assert metric_names(m.group(1)) <= exposed, f"variable {name}: {q!r}"

        # a chosen value is a regex inside a PromQL string, escaped twice as Grafana does: 127\\.0\\.0\\.1:PORT
        escaped = re.escape(target).replace("\\", "\\\\")
        one_stream = {"job": "streamseg", "instance": escaped, "stream": "bikes"} | BUILTINS
        problems: list[str] = []
        checked = 0
        for where, t in targets(dashboard):
            missing = metric_names(t["expr"]) - exposed
            if missing:
                problems.append(f"{where}: no such metric in the exposition: {sorted(missing)}")
            for values in (everything, one_stream):
                expr = substitute(t["expr"], values)
                result = query(expr)
                checked += 1
                finite = [s for s in result if math.isfinite(float(s["value"][1]))]
                if not finite:
                    problems.append(f"{where}: no series with a finite value: {expr}  ->  {result}")
                elif "$stream" in t["expr"] and values is one_stream:
                    others = {s["metric"]["stream"] for s in result if s["metric"].get("stream", "bikes") != "bikes"}
                    if others:
                        problems.append(f"{where}: $stream=bikes still shows {others}: {expr}")
        assert not problems, "\n".join(problems)
        assert checked == 2 * len(targets(dashboard)) >= 2 * 25
    finally:
        proc.terminate()
        proc.wait(10)
