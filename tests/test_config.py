"""streamseg/config.py: every problem in a pipeline file is one line, ``file:line: key.path: message``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from streamseg.config import load_config, parse_config
from streamseg.contract import load_model
from streamseg.errors import ConfigError
from streamseg.outputs.video import VideoOutput

PIPELINES = sorted((Path(__file__).resolve().parent.parent / "pipelines").glob("*.yaml"))

GOOD = """\
sources:
  - name: cam
    uri: synthetic://
model:
  path: selfie_landscape
"""


def test_minimal_config_gets_defaults() -> None:
    cfg = parse_config(GOOD, "p.yaml")
    assert cfg.sources[0].name == "cam"
    assert cfg.sources[0].kind == "synthetic"
    assert (cfg.batch.max_batch, cfg.overlay.mode, cfg.outputs) == (4, "blend", [])
    assert cfg.model.prefer == ["tensorrt", "torch", "onnxruntime"]


# (name, text, line, key path, message fragment)
BAD = [
    ("unknown top-level key", GOOD + "bogus: 1\n", 6, "bogus", "unknown key"),
    (
        "unknown nested key",
        "sources:\n  - name: a\n    uri: synthetic://\n    timeouts:\n      open_sec: 3\nmodel:\n  path: m\n",
        5,
        "sources.0.timeouts.open_sec",
        "unknown key",
    ),
    ("missing model", "sources:\n  - name: a\n    uri: synthetic://\n", 1, "model", "required key is missing"),
    ("missing name", "sources:\n  - uri: synthetic://\nmodel:\n  path: m\n", 2, "sources.0.name", "required key"),
    ("no sources", "sources: []\nmodel:\n  path: m\n", 1, "sources", "at least 1 item"),
    ("wrong type", GOOD + "batch:\n  max_batch: lots\n", 7, "batch.max_batch", "valid integer"),
    ("out of range", GOOD + "batch:\n  max_batch: 0\n", 7, "batch.max_batch", "greater than or equal to 1"),
    ("bad enum", GOOD + "overlay:\n  mode: sparkle\n", 7, "overlay.mode", "'blend', 'mask' or 'side-by-side'"),
    ("bad stream name", GOOD.replace("name: cam", "name: 'a b'"), 2, "sources.0.name", "should match pattern"),
    (
        "duplicate stream names",
        "sources:\n  - name: cam\n    uri: synthetic://\n  - name: cam\n    uri: synthetic://\nmodel:\n  path: m\n",
        2,
        "sources",
        "duplicate stream name 'cam' (sources 0 and 1)",
    ),
    ("duplicate key", GOOD + "name: x\nname: y\n", 7, "name", "duplicate key"),
    (
        "unknown output type",
        GOOD + "outputs:\n  - type: hologram\n",
        7,
        "outputs.0",
        "'hologram' found using 'type' does not match",
    ),
    ("output without type", GOOD + "outputs:\n  - path: x.mp4\n", 7, "outputs.0", "discriminator 'type'"),
    (
        "output with unknown key",
        GOOD + "outputs:\n  - type: video\n    pth: x.mp4\n",
        8,
        "outputs.0.pth",
        "unknown key",
    ),
    ("output value", GOOD + "outputs:\n  - type: jsonl\n  - type: video\n    crf: 99\n", 9, "outputs.1.crf", "51"),
    (
        "video output names unknown stream",
        GOOD + "outputs:\n  - type: video\n    streams: [nope]\n",
        7,
        "outputs",
        "output 0 (video) names unknown streams: nope",
    ),
    (
        "rtsp output names unknown stream",
        GOOD + "outputs:\n  - type: rtsp\n    streams: [nope]\n",
        7,
        "outputs",
        "output 0 (rtsp) names unknown streams: nope",
    ),
    ("rtsp output port", GOOD + "outputs:\n  - type: rtsp\n    port: 70000\n", 8, "outputs.0.port", "65535"),
    (
        "live output without http",
        GOOD + "outputs:\n  - type: live\nhttp:\n  enabled: false\n",
        9,
        "http",
        "needs http.enabled: true",
    ),
    (
        "two streams into one video path",
        GOOD.replace("sources:\n", "sources:\n  - {name: b, uri: 'synthetic://'}\n", 1)
        + "outputs:\n  - type: video\n    path: out/rec.mp4\n",
        8,
        "outputs",
        "output 0 (video): path needs {stream} when 2 streams write to it",
    ),
    (
        "two streams into one snapshot folder",
        GOOD.replace("sources:\n", "sources:\n  - {name: b, uri: 'synthetic://'}\n", 1)
        + "outputs:\n  - type: snapshot\n    path: out/snaps\n",
        8,
        "outputs",
        "output 0 (snapshot): path needs {stream}",
    ),
    ("unknown source scheme", GOOD.replace("synthetic://", "foo://x"), 3, "sources.0.uri", "unknown scheme 'foo'"),
    ("unknown backend", GOOD + "  backend: tensorflow\n", 6, "model.backend", "'auto', 'onnxruntime'"),
]


@pytest.mark.parametrize(("text", "line", "key", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_names_file_line_and_key(text: str, line: int, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "pipes/p.yaml")
    message = str(info.value)
    assert message.startswith(f"pipes/p.yaml:{line}: {key}: "), message
    assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "p.yaml:1: the file is empty"),
        ("# only a comment\n", "p.yaml:1: the file is empty"),
        ("- a\n- b\n", "p.yaml:1: expected a mapping of settings at the top level"),
        ("sources:\n  - name: a\n   uri: x\n", "p.yaml:3: invalid YAML: expected <block end>"),
        ("model: {path: m\n", "p.yaml:2: invalid YAML:"),
    ],
)
def test_unreadable_yaml(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "p.yaml")
    assert str(info.value).startswith(error)


def test_missing_env_var_names_variable_and_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMSEG_TEST_UNSET", raising=False)
    text = GOOD.replace("synthetic://", "rtsp://u:${STREAMSEG_TEST_UNSET}@cam/s")
    with pytest.raises(ConfigError) as info:
        parse_config(text, "p.yaml")
    assert str(info.value) == "p.yaml:3: sources.0.uri: environment variable STREAMSEG_TEST_UNSET is not set"


def test_env_interpolation_and_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSEG_TEST_PW", "s3cret")
    monkeypatch.delenv("STREAMSEG_TEST_UNSET", raising=False)
    text = GOOD.replace("synthetic://", "rtsp://u:${STREAMSEG_TEST_PW}@cam/s") + (
        "name: ${STREAMSEG_TEST_UNSET:-fallback}\nhttp:\n  host: ${STREAMSEG_TEST_PW:-unused}\n"
    )
    cfg = parse_config(text, "p.yaml")
    assert cfg.sources[0].uri == "rtsp://u:s3cret@cam/s"
    assert cfg.sources[0].display_uri == "rtsp://u:***@cam/s"
    assert cfg.name == "fallback"
    assert cfg.http.host == "s3cret"


def test_empty_default_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMSEG_TEST_UNSET", raising=False)
    assert parse_config(GOOD + "name: x${STREAMSEG_TEST_UNSET:-}y\n").name == "xy"


@pytest.mark.parametrize(
    "uri",
    [
        "foo://bob:hunter2@cam/x",
        "foo://bob:hunter2@cam:notaport/x",
        "http://bob:hunter2@[::1]:80/x",
    ],
)
def test_password_in_invalid_uri_never_reaches_the_error(uri: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(GOOD.replace("synthetic://", uri), "p.yaml")
    message = str(info.value)
    assert message.startswith("p.yaml:3: sources.0.uri: ")
    assert "hunter2" not in message
    assert "bob" in message  # the user name stays: it helps debugging


def test_password_from_env_never_reaches_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSEG_TEST_PW", "hunter2")
    with pytest.raises(ConfigError) as info:
        parse_config(GOOD.replace("synthetic://", "gopher://bob:${STREAMSEG_TEST_PW}@cam/x"), "p.yaml")
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("uri", "live"),
    [
        ("rtsp://cam/s", True),
        ("/dev/video0", True),
        ("samples/bikes.mp4", False),
        ("synthetic://", False),
    ],
)
def test_live_sources(uri: str, live: bool) -> None:
    assert parse_config(GOOD.replace("synthetic://", uri)).sources[0].live is live


def test_realtime_synthetic_is_live() -> None:
    cfg = parse_config(GOOD.replace("uri: synthetic://", "uri: synthetic://\n    realtime: true"))
    assert cfg.sources[0].live


def test_output_variants_are_typed() -> None:
    cfg = parse_config(GOOD + "outputs:\n  - type: video\n    crf: 30\n  - type: display\n")
    assert isinstance(cfg.outputs[0], VideoOutput)
    assert cfg.outputs[0].crf == 30
    assert cfg.outputs[1].type == "display"


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'nope.yaml'}: no such file")):
        load_config(tmp_path / "nope.yaml")


def test_load_config_reports_the_path(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(GOOD + "bogus: 1\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}:6: bogus: unknown key")):
        load_config(path)


def test_load_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(path)


def test_there_are_pipeline_files() -> None:
    assert PIPELINES, "pipelines/*.yaml: none found"


@pytest.mark.parametrize("path", PIPELINES, ids=[p.name for p in PIPELINES])
def test_shipped_pipelines_validate(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Give every ${VAR} without a default a value, as a deployment would.
    for var in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", path.read_text()):
        monkeypatch.setenv(var, "test-value")
    cfg = load_config(path)
    raw = yaml.safe_load(path.read_text())  # what the file says, compared with what was validated
    assert [s.name for s in cfg.sources] == [s["name"] for s in raw["sources"]]
    assert [o.type for o in cfg.outputs] == [o["type"] for o in raw.get("outputs", [])]
    assert load_model(cfg.model.path).contract.name  # the model it names resolves


# --- issue 9, items 4 and 5: numbers the code can use, YAML that cannot exhaust the loader ---------

_NUMBERS = [
    ("batch: {max_wait_ms: .inf}\n", "batch.max_wait_ms", "finite"),
    ("batch: {max_wait_ms: 1e300}\n", "batch.max_wait_ms", "less than or equal to 60000"),
    ("postprocess: {smoothing: .nan}\n", "postprocess.smoothing", "finite"),
    ("overlay: {alpha: .nan}\n", "overlay.alpha", "finite"),
    ("model: {path: selfie_landscape, threads: 100000}\n", "model.threads", "less than or equal to 1024"),
    ("http: {port: 70000}\n", "http.port", "less than or equal to 65535"),
]


@pytest.mark.parametrize(("extra", "key", "fragment"), _NUMBERS)
def test_numbers_are_finite_and_bounded(extra: str, key: str, fragment: str) -> None:
    text = "sources:\n  - {name: a, uri: 'synthetic://', timeouts: {open_s: 1}}\n" + extra
    if not extra.startswith("model"):
        text += "model: {path: selfie_landscape}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "p.yaml")
    assert f": {key}: " in str(info.value) and fragment in str(info.value)


@pytest.mark.parametrize(
    "source",
    [
        ("sources:\n  - name: a\n    timeouts: {open_s: .inf}\n", "sources.0.timeouts.open_s"),
        ("sources:\n  - name: a\n    reconnect: {max_s: 1e12}\n", "sources.0.reconnect.max_s"),
        ("sources:\n  - name: a\n    fps: .inf\n", "sources.0.fps"),
    ],
)
def test_source_numbers_are_bounded(source: tuple[str, str]) -> None:
    text, key = source
    with pytest.raises(ConfigError) as info:
        parse_config(text + "    uri: 'synthetic://'\nmodel: {path: selfie_landscape}\n", "p.yaml")
    assert f": {key}: " in str(info.value)


_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("a: " + "[" * 20_000 + "]" * 20_000 + "\n", "p.yaml:1: invalid YAML: nested deeper than 32 levels"),
        ("a:\n" + "".join("  " * i + "-\n" for i in range(1, 100)), "invalid YAML: nested deeper than 32 levels"),
        (_BOMB, "invalid YAML: more than 100000 values once aliases are expanded"),
        ("a: &a [*a]\n", "p.yaml:1: invalid YAML: nested deeper than 32 levels (through aliases)"),
        ("a: " + "x" * (1 << 20) + "\n", "p.yaml:1: invalid YAML: larger than 1048576 bytes"),
        ("name: !!int abc\n", "p.yaml:1: invalid YAML: cannot read value 'abc'"),
        ("name: !!python/object:os.system x\n", "p.yaml:1: invalid YAML: could not determine a constructor"),
    ],
)
def test_yaml_bounds_are_one_line(text: str, error: str) -> None:
    import time

    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        parse_config(text, "p.yaml")
    assert str(info.value).startswith(error) or error in str(info.value), str(info.value)
    assert "\n" not in str(info.value)
    assert time.monotonic() - start < 5


def test_huge_config_file_is_not_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * (2 << 20))
    with pytest.raises(ConfigError, match=r"big.yaml:1: invalid YAML: larger than 1048576 bytes"):
        load_config(path)
