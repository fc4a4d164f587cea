"""The bad-input corpus (issue 9): configs, media, models, sidecars, CLI flags and filesystem faults.

Each row is one input an operator could hand streamseg, the exit code it must give (2: config,
usage or model; 1: a runtime failure) and a fragment of the one line it must print. No row may
print a traceback, and each prints exactly one ``streamseg: error:`` line. Where a bad stream runs
beside a good one, the good stream's statistics must be whole (one JSONL record per frame).

Rows run through ``streamseg.cli.main`` in this process (a subprocess per row would cost a second
of imports each); ``test_cli.py`` covers the real executable.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamseg.cli import main
from streamseg.contract import load_model

FRAMES = 3
SYN = f"synthetic://?width=64&height=48&frames={FRAMES}"
GOOD_SOURCE = f"  - {{name: good, uri: '{SYN}'}}\n"
BASE = f"sources:\n{GOOD_SOURCE}model: {{path: selfie_landscape}}\nhttp: {{enabled: false}}\n"


def cfg(extra: str = "", sources: str = GOOD_SOURCE, model: str = "selfie_landscape", http: str = "false") -> str:
    """A pipeline file: the good synthetic stream (or ``sources``), the bundled model, ``extra``."""
    text = f"sources:\n{sources}model: {{path: {model}}}\n"
    if http is not None:
        text += f"http: {{enabled: {http}}}\n" if http in ("true", "false") else http
    return text + extra


def with_good(uri: str) -> str:
    """A bad stream beside the good one."""
    return GOOD_SOURCE + f"  - {{name: bad, uri: '{uri}'}}\n"


JSONL = "outputs:\n  - {type: jsonl, path: out/stats.jsonl}\n"
_SQ = "{name: z, polygon: [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]}"


def _zoned(*zones: str, hom: str | None = None) -> str:
    """The good stream with zones (and a homography)."""
    text = f"  - name: good\n    uri: '{SYN}'\n" + (f"    homography: {hom}\n" if hom else "")
    return text + "    zones:\n" + "".join(f"      - {z}\n" for z in zones)


# --- files the rows refer to -----------------------------------------------------------------


def _tiny_mp4(path: Path, frames: int = 10) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            img = np.full((48, 64, 3), 20 * i % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _audio_only(path: Path) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=8000)
        for _ in range(3):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 8000
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _bundled_copy(root: Path, change: Callable[[dict[str, Any]], None] | None = None, name: str = "m") -> None:
    """The bundled model (resolved by name) copied to root/name, its sidecar changed by ``change``."""
    folder = root / name
    shutil.copytree(load_model("selfie_landscape").sidecar.parent, folder)
    sidecar = next(folder.glob("*.json"))
    doc = json.loads(sidecar.read_text())
    if change is not None:
        change(doc)
    sidecar.write_text(json.dumps(doc))
    sidecar.rename(folder / "model.json")


def _dataset(root: Path, classes: str = "background\nperson\n") -> None:
    """A one-image dataset in the folder layout (images/ + masks/ + class_names.txt) at root/ds."""
    import cv2

    for sub in ("images", "masks"):
        (root / "ds" / sub).mkdir(parents=True)
    cv2.imwrite(str(root / "ds" / "images" / "a.png"), np.zeros((32, 48, 3), np.uint8))
    cv2.imwrite(str(root / "ds" / "masks" / "a.png"), np.zeros((32, 48), np.uint8))
    (root / "ds" / "class_names.txt").write_text(classes)


def _classes(n: int) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["classes"] = [{"name": f"k{i}", "color": [i, i, i]} for i in range(n)]

    return change


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, leaf = key.split(".")
        node = doc
        for p in parents:
            node = node[p]
        if value is _DELETE:
            del node[leaf]
        else:
            node[leaf] = value

    return change


_DELETE = object()

_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


# --- the table -------------------------------------------------------------------------------


@dataclass
class Row:
    id: str
    argv: list[str]
    code: int
    fragment: str
    files: dict[str, str | bytes] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None
    check: Callable[[Path], None] | None = None  # what must hold afterwards (good outputs whole, files kept)


def V(id: str, text: str, fragment: str, code: int = 2, files: dict[str, str | bytes] | None = None, **kw: Any) -> Row:  # noqa: N802
    """`streamseg validate p.yaml` on ``text`` (and ``files`` beside it)."""
    return Row(id, ["validate", "p.yaml"], code, fragment, files={"p.yaml": text, **(files or {})}, **kw)


def R(id: str, text: str, fragment: str, code: int = 1, files: dict[str, str | bytes] | None = None, **kw: Any) -> Row:  # noqa: N802
    """`streamseg run p.yaml --max-frames 3` on ``text`` (and ``files`` beside it)."""
    argv = ["run", "p.yaml", "--max-frames", str(FRAMES)]
    return Row(id, argv, code, fragment, files={"p.yaml": text, **(files or {})}, **kw)


def good_stream_whole(root: Path) -> None:
    records = [json.loads(line) for line in (root / "out" / "stats.jsonl").read_text().splitlines()]
    good = [r for r in records if r["stream"] == "good"]
    assert [r["frame"] for r in good] == list(range(FRAMES)), records


def previous_stats_kept(root: Path) -> None:
    assert (root / "out" / "stats.jsonl").read_text() == '{"previous": "run"}\n'


def _write_previous_stats(root: Path) -> None:
    (root / "out").mkdir(exist_ok=True)
    (root / "out" / "stats.jsonl").write_text('{"previous": "run"}\n')


ROWS: list[Row] = [
    # CLI flags
    Row("no command", [], 2, "usage: the following arguments are required: command"),
    Row("unknown command", ["frobnicate"], 2, "usage: argument command: invalid choice: 'frobnicate'"),
    Row("run without file", ["run"], 2, "usage: the following arguments are required: file"),
    Row("validate without file", ["validate"], 2, "usage: the following arguments are required: file"),
    Row("validate two files", ["validate", "a.yaml", "b.yaml"], 2, "usage: unrecognized arguments: b.yaml"),
    Row("unknown flag", ["run", "p.yaml", "--bogus"], 2, "usage: unrecognized arguments: --bogus"),
    Row("max-frames 0", ["run", "p.yaml", "--max-frames", "0"], 2, "usage: --max-frames must be >= 1"),
    Row("max-frames negative", ["run", "p.yaml", "--max-frames", "-5"], 2, "usage: --max-frames must be >= 1"),
    Row("max-frames text", ["run", "p.yaml", "--max-frames", "x"], 2, "argument --max-frames: invalid int value"),
    Row("duration 0", ["run", "p.yaml", "--duration", "0"], 2, "usage: --duration must be"),
    Row("duration negative", ["run", "p.yaml", "--duration", "-1"], 2, "usage: --duration must be"),
    Row("duration nan", ["run", "p.yaml", "--duration", "nan"], 2, "usage: --duration must be"),
    Row("duration inf", ["run", "p.yaml", "--duration", "inf"], 2, "usage: --duration must be"),
    Row("duration text", ["run", "p.yaml", "--duration", "soon"], 2, "argument --duration: invalid float value"),
    Row(
        "status-interval -1",
        ["run", "p.yaml", "--status-interval", "-1"],
        2,
        "usage: --status-interval must be 0 (off) or 0.1 to 86400 seconds",
        files={"p.yaml": BASE},
    ),
    Row(
        "status-interval inf",
        ["run", "p.yaml", "--status-interval", "inf"],
        2,
        "usage: --status-interval must be 0 (off) or 0.1 to 86400 seconds",
        files={"p.yaml": BASE},
    ),
    Row(
        "status-interval 1e-9",
        ["run", "p.yaml", "--status-interval", "1e-9"],
        2,
        "usage: --status-interval must be 0 (off) or 0.1",
        files={"p.yaml": BASE},
    ),
    Row(
        "status-interval nan",
        ["run", "p.yaml", "--status-interval", "nan"],
        2,
        "usage: --status-interval must be 0 (off) or 0.1 to 86400 seconds",
        files={"p.yaml": BASE},
    ),
    Row(
        "log format xml",
        ["--log-format", "xml", "validate", "p.yaml"],
        2,
        "argument --log-format: invalid choice: 'xml'",
    ),
    Row(
        "train epochs 0", ["train", "enet", "--data", "d", "--out", "o", "--epochs", "0"], 2, "usage: --epochs must be"
    ),
    Row("train batch 0", ["train", "enet", "--data", "d", "--out", "o", "--batch-size", "0"], 2, "usage: --batch-size"),
    Row(
        "train lr nan", ["train", "enet", "--data", "d", "--out", "o", "--lr", "nan"], 2, "usage: --lr must be between"
    ),
    Row("train lr negative", ["train", "enet", "--data", "d", "--out", "o", "--lr", "-1"], 2, "usage: --lr must be"),
    Row(
        "train size 0x0",
        ["train", "enet", "--data", "d", "--out", "o", "--size", "0x0"],
        2,
        "usage: --size sides must be",
    ),
    Row(
        "train size huge", ["train", "enet", "--data", "d", "--out", "o", "--size", "99999x99999"], 2, "16..8192 pixels"
    ),
    Row(
        "train size text", ["train", "enet", "--data", "d", "--out", "o", "--size", "big"], 2, "must look like 256x448"
    ),
    Row(
        "train scale reversed",
        ["train", "enet", "--data", "d", "--out", "o", "--scale", "2,1"],
        2,
        "usage: --scale takes",
    ),
    Row("train seed -1", ["train", "enet", "--data", "d", "--out", "o", "--seed", "-1"], 2, "between 0 and 4294967295"),
    Row(
        "train weight decay inf",
        ["train", "enet", "--data", "d", "--out", "o", "--weight-decay", "inf"],
        2,
        "--weight-decay",
    ),
    Row(
        "train class weight nan",
        ["train", "enet", "--data", "d", "--out", "o", "--class-weights", "1,nan"],
        2,
        "finite",
    ),
    Row(
        "train option without =",
        ["train", "enet", "--data", "d", "--out", "o", "--option", "x"],
        2,
        "expects KEY=VALUE",
    ),
    Row("eval data missing", ["eval", "selfie_landscape", "--data", "nodata"], 2, "dataset nodata: no such folder"),
    Row(
        "eval classes differ",
        ["eval", "selfie_landscape", "--data", "ds"],
        2,
        "dataset ds: classes ['background', 'sky'] differ from the model's ['background', 'person']",
        setup=lambda r: _dataset(r, "background\nsky\n"),
    ),
    Row(
        "eval json is a folder",
        ["eval", "selfie_landscape", "--data", "ds", "--json", "ds"],
        2,
        "usage: --json ds: not a file in an existing folder",
        setup=_dataset,
    ),
    Row(
        "eval json on a full disk",
        ["eval", "selfie_landscape", "--data", "ds", "--json", "/dev/full"],
        1,
        "--json /dev/full: cannot write: No space left on device",
        setup=_dataset,
    ),
    Row(
        "build-engine max-batch 0",
        ["build-engine", "selfie_landscape", "--max-batch", "0"],
        2,
        "usage: --max-batch must",
    ),
    Row("train without data", ["train", "enet"], 2, "usage: the following arguments are required: --data, --out"),
    Row("export without checkpoint", ["export"], 2, "usage: the following arguments are required: checkpoint"),
    Row(
        "build-engine precision",
        ["build-engine", "selfie_landscape", "--precision", "int4"],
        2,
        "argument --precision: invalid choice: 'int4'",
    ),
    Row(
        "build-engine workspace",
        ["build-engine", "selfie_landscape", "--workspace-mb", "1"],
        2,
        "usage: Input should be greater than or equal to 16",
    ),
    Row(
        "build-engine int8 without data",
        ["build-engine", "selfie_landscape", "--precision", "int8"],
        2,
        "precision int8 needs a calibration section",
    ),
    Row("build-engine unknown model", ["build-engine", "nosuchmodel"], 2, "model 'nosuchmodel': no such file"),
    # the pipeline file itself
    Row("config missing", ["validate", "nothere.yaml"], 2, "nothere.yaml: no such file"),
    Row(
        "config is a folder", ["validate", "folder"], 2, "folder: cannot read:", setup=lambda r: (r / "folder").mkdir()
    ),
    Row("config is /dev/zero", ["validate", "/dev/zero"], 2, "/dev/zero:1: invalid YAML: larger than 1048576 bytes"),
    V("config not UTF-8", "name: \xff\n", "p.yaml: cannot read:", files={"p.yaml": b"name: \xff\xfe\n"}),
    V("config empty", "", "p.yaml:1: the file is empty"),
    V("config only a comment", "# nothing\n", "p.yaml:1: the file is empty"),
    V("config is a list", "- a\n- b\n", "p.yaml:1: expected a mapping of settings at the top level"),
    V("config is a scalar", "hello\n", "p.yaml:1: expected a mapping of settings at the top level"),
    V("unclosed flow", "sources: [\n", "p.yaml:2: invalid YAML"),
    V("tab indentation", "sources:\n\t- a\n", "p.yaml:2: invalid YAML"),
    V("duplicate key", BASE + "http: {port: 1}\n", "p.yaml:5: http: duplicate key"),
    V("nested 20000 deep", "a: " + "[" * 20_000 + "]" * 20_000 + "\n", "p.yaml:1: invalid YAML: nested deeper than"),
    V("alias bomb", _BOMB, "invalid YAML: more than 100000 values once aliases are expanded"),
    V("cyclic alias", "a: &a [*a]\n", "invalid YAML: nested deeper than 32 levels (through aliases)"),
    V("2 MB file", "# " + "x" * (2 << 20) + "\n", "p.yaml:1: invalid YAML: larger than 1048576 bytes"),
    V(
        "python tag",
        BASE + "name: !!python/name:os.system x\n",
        "p.yaml:5: invalid YAML: could not determine a constructor",
    ),
    V(
        "python tag on a list",
        BASE + "name: !!python/object/apply:os.system [ls]\n",
        "p.yaml:5: name: Input should be a valid string",
    ),
    V("bad int tag", BASE + "name: !!int abc\n", "p.yaml:5: invalid YAML: cannot read value 'abc'"),
    V("NUL in a value", cfg(JSONL.replace("out/stats.jsonl", '"out/\\0.jsonl"')), "a NUL character in a value"),
    V("env var unset", cfg("name: ${STREAMSEG_NOT_SET_9}\n"), "environment variable STREAMSEG_NOT_SET_9 is not set"),
    # zones (issue 11): polygons in 0..1 with an area, unique per stream; ground zones need a homography
    V(
        "zone of two points",
        cfg(sources=_zoned("{name: z, polygon: [[0, 0], [1, 1]]}")),
        "polygon: List should have at least 3",
    ),
    V("zone outside the picture", cfg(sources=_zoned("{name: z, polygon: [[0, 0], [1, 0], [1, 2]]}")), "polygon.2.1:"),
    V("zone with no area", cfg(sources=_zoned("{name: z, polygon: [[0, 0], [0.5, 0.5], [1, 1]]}")), "encloses no area"),
    V("zone names repeated", cfg(sources=_zoned(_SQ, _SQ)), "zones: zone 1: name 'z' is used twice"),
    V("ground zone, no homography", cfg(sources=_zoned(_SQ.replace("}", ", ground: true}"))), "has no homography"),
    V(
        "homography with 3 points in line",
        cfg(
            sources=_zoned(
                _SQ, hom="{image: [[0, 0], [0.5, 0], [1, 0], [0, 1]], ground: [[0, 0], [1, 0], [1, 1], [0, 1]]}"
            )
        ),
        "homography.image: points [0, 1, 2] lie on one line",
    ),
    V("unknown top key", BASE + "sauces: []\n", "p.yaml:5: sauces: unknown key"),
    V("unknown nested key", BASE + "batch: {max_btch: 2}\n", "p.yaml:5: batch.max_btch: unknown key"),
    V("sources missing", "model: {path: selfie_landscape}\n", "sources: required key is missing"),
    V("sources empty", "sources: []\nmodel: {path: selfie_landscape}\n", "sources: List should have at least 1 item"),
    V(
        "sources a mapping",
        "sources: {a: 1}\nmodel: {path: selfie_landscape}\n",
        "sources: Input should be a valid list",
    ),
    V("source without uri", cfg(sources="  - {name: a}\n"), "p.yaml:2: sources.0.uri: required key is missing"),
    V("source name with spaces", cfg(sources=f"  - {{name: 'a b', uri: '{SYN}'}}\n"), "sources.0.name: String should"),
    V("source name 65 chars", cfg(sources=f"  - {{name: {'a' * 65}, uri: '{SYN}'}}\n"), "sources.0.name: String"),
    V("duplicate stream names", cfg(sources=GOOD_SOURCE * 2), "duplicate stream name 'good' (sources 0 and 1)"),
    V("unknown scheme", cfg(sources="  - {name: a, uri: 'gopher://u:pw9@h/x'}\n"), "unknown scheme 'gopher'"),
    V("empty uri", cfg(sources="  - {name: a, uri: ''}\n"), "sources.0.uri: empty source URI"),
    V("source fps inf", cfg(sources=f"  - {{name: a, uri: '{SYN}', fps: .inf}}\n"), "sources.0.fps: Input should be"),
    V("source fps nan", cfg(sources=f"  - {{name: a, uri: '{SYN}', fps: .nan}}\n"), "sources.0.fps: Input should be"),
    V("queue 0", cfg(sources=f"  - {{name: a, uri: '{SYN}', queue_size: 0}}\n"), "sources.0.queue_size"),
    V("queue 1e6", cfg(sources=f"  - {{name: a, uri: '{SYN}', queue_size: 1000000}}\n"), "sources.0.queue_size"),
    V("decoder vlc", cfg(sources=f"  - {{name: a, uri: '{SYN}', decoder: vlc}}\n"), "sources.0.decoder"),
    V("open_s 0", cfg(sources=f"  - {{name: a, uri: '{SYN}', timeouts: {{open_s: 0}}}}\n"), "timeouts.open_s"),
    V("read_s inf", cfg(sources=f"  - {{name: a, uri: '{SYN}', timeouts: {{read_s: .inf}}}}\n"), "timeouts.read_s"),
    V("watchdog 1e9", cfg(sources=f"  - {{name: a, uri: '{SYN}', timeouts: {{watchdog_s: 1e9}}}}\n"), "watchdog_s"),
    V("factor 0.5", cfg(sources=f"  - {{name: a, uri: '{SYN}', reconnect: {{factor: 0.5}}}}\n"), "reconnect.factor"),
    V("attempts -1", cfg(sources=f"  - {{name: a, uri: '{SYN}', reconnect: {{max_attempts: -1}}}}\n"), "max_attempts"),
    V("model missing", f"sources:\n{GOOD_SOURCE}", "model: required key is missing"),
    V("model unknown", cfg(model="nosuchmodel"), "model 'nosuchmodel': no such file and no bundled model"),
    V(
        "backend tflite",
        BASE.replace("{path: selfie_landscape}", "{path: selfie_landscape, backend: tflite}"),
        "model.backend",
    ),
    V("prefer unknown", BASE.replace("selfie_landscape}", "selfie_landscape, prefer: [tvm]}"), "model.prefer.0"),
    V("device tpu", BASE.replace("selfie_landscape}", "selfie_landscape, device: tpu}"), "model.device"),
    V("threads -1", BASE.replace("selfie_landscape}", "selfie_landscape, threads: -1}"), "model.threads"),
    V("threads 1e5", BASE.replace("selfie_landscape}", "selfie_landscape, threads: 100000}"), "model.threads"),
    V("max_batch 0", cfg("batch: {max_batch: 0}\n"), "p.yaml:5: batch.max_batch: Input should be greater than"),
    V("max_batch 1000", cfg("batch: {max_batch: 1000}\n"), "batch.max_batch: Input should be less than"),
    V("max_wait_ms inf", cfg("batch: {max_wait_ms: .inf}\n"), "batch.max_wait_ms: Input should be a finite number"),
    V("max_wait_ms -1", cfg("batch: {max_wait_ms: -1}\n"), "batch.max_wait_ms: Input should be greater than"),
    V("max_wait_ms 1e300", cfg("batch: {max_wait_ms: 1e300}\n"), "batch.max_wait_ms: Input should be less than"),
    V("max_wait_ms text", cfg("batch: {max_wait_ms: soon}\n"), "batch.max_wait_ms: Input should be a valid number"),
    V("smoothing 1", cfg("postprocess: {smoothing: 1}\n"), "postprocess.smoothing: Input should be less than 1"),
    V("smoothing nan", cfg("postprocess: {smoothing: .nan}\n"), "postprocess.smoothing: Input should be a finite"),
    V("alpha 2", cfg("overlay: {alpha: 2}\n"), "overlay.alpha: Input should be less than or equal to 1"),
    V("overlay mode", cfg("overlay: {mode: sparkle}\n"), "overlay.mode: Input should be"),
    V("output type unknown", cfg("outputs:\n  - {type: printer}\n"), "outputs.0: Input tag 'printer'"),
    V("output without type", cfg("outputs:\n  - {path: x}\n"), "outputs.0: Unable to extract tag"),
    V("outputs a mapping", cfg("outputs: {type: jsonl}\n"), "outputs: Input should be a valid list"),
    V("video crf 99", cfg("outputs:\n  - {type: video, crf: 99}\n"), "outputs.0.crf: Input should be less than"),
    V("video fps inf", cfg("outputs:\n  - {type: video, fps: .inf}\n"), "outputs.0.fps: Input should be a finite"),
    V("video unknown stream", cfg("outputs:\n  - {type: video, streams: [nope]}\n"), "names unknown streams: nope"),
    V("jsonl extra key", cfg("outputs:\n  - {type: jsonl, pth: x}\n"), "outputs.0.pth: unknown key"),
    V("live without http", cfg("outputs:\n  - {type: live}\n"), "a live output needs http.enabled: true"),
    V("live fps 0", cfg("outputs:\n  - {type: live, max_fps: 0}\n", http="true"), "outputs.0.max_fps"),
    V("live quality 5", cfg("outputs:\n  - {type: live, quality: 5}\n", http="true"), "outputs.0.quality"),
    V("live width 1e5", cfg("outputs:\n  - {type: live, width: 100000}\n", http="true"), "outputs.0.width"),
    V("snapshot every 0", cfg("outputs:\n  - {type: snapshot, every: 0}\n"), "outputs.0.every"),
    V("rtsp port 70000", cfg("outputs:\n  - {type: rtsp, port: 70000}\n"), "outputs.0.port"),
    V("rtsp bitrate 1", cfg("outputs:\n  - {type: rtsp, bitrate_kbps: 1}\n"), "outputs.0.bitrate_kbps"),
    V("http port -1", cfg(http="http: {port: -1}\n"), "http.port: Input should be greater than or equal to 0"),
    V("http port text", cfg(http="http: {port: web}\n"), "http.port: Input should be a valid integer"),
    V(
        "int8 without data",
        BASE.replace("selfie_landscape}", "selfie_landscape, tensorrt: {precision: int8}}"),
        "precision int8 needs a calibration section",
    ),
    V(
        "workspace 1",
        BASE.replace("selfie_landscape}", "selfie_landscape, tensorrt: {workspace_mb: 1}}"),
        "workspace_mb",
    ),
    V("dla core 99", BASE.replace("selfie_landscape}", "selfie_landscape, tensorrt: {dla_core: 99}}"), "dla_core"),
    V(
        "calibration frames 0",
        BASE.replace(
            "selfie_landscape}", "selfie_landscape, tensorrt: {precision: int8, calibration: {data: x, frames: 0}}}"
        ),
        "calibration.frames",
    ),
    V("prefer empty", BASE.replace("selfie_landscape}", "selfie_landscape, prefer: []}"), "model.prefer: List should"),
    V(
        "x264 preset",
        cfg("outputs:\n  - {type: video, preset: warp}\n"),
        "outputs.0.preset: Input should be 'ultrafast'",
    ),
    V(
        "jsonl path empty",
        cfg("outputs:\n  - {type: jsonl, path: ''}\n"),
        "outputs.0.path: String should have at least",
    ),
    V(
        "stream named ..",
        cfg(sources=f"  - {{name: '..', uri: '{SYN}'}}\n"),
        "sources.0.name: '..' cannot name a stream",
    ),
    V(
        "transparent class unknown",
        cfg("overlay: {transparent: [sky]}\n"),
        "p.yaml:5: overlay.transparent: sky is not a class",
    ),
    R(
        "run: transparent class unknown",
        cfg("overlay: {transparent: [sky]}\n"),
        "overlay.transparent: sky is not a class",
        code=2,
    ),
    # models and sidecars
    V("sidecar missing", cfg(model="nothere.json"), "model 'nothere.json': no such file and no bundled model"),
    V(
        "onnx without sidecar",
        cfg(model="bare.onnx"),
        "bare.onnx: no sidecar beside the model file",
        files={"bare.onnx": b"x"},
    ),
    V("model path a folder", cfg(model="m"), "m: cannot read sidecar", setup=lambda r: (r / "m").mkdir()),
    V(
        "onnx path is a folder",
        cfg(model="m/model.json"),
        "model.json: onnx: file",
        setup=lambda r: (_bundled_copy(r, _set("onnx", "graph")), (r / "m" / "graph").mkdir()),
    ),
    V("sidecar not JSON", cfg(model="s.json"), "s.json: cannot read sidecar", files={"s.json": "{nope"}),
    V(
        "sidecar nested deep",
        cfg(model="s.json"),
        "s.json: cannot read sidecar: nested too deep",
        files={"s.json": "[" * 100_000 + "]" * 100_000},
    ),
    V(
        "sidecar YAML alias bomb",
        cfg(model="s.yaml"),
        "s.yaml: cannot read sidecar: more than 100000 values",
        files={"s.yaml": _BOMB},
    ),
    V(
        "sidecar unknown key",
        cfg(model="m/model.json"),
        "model.json: colour: unknown key",
        setup=lambda r: _bundled_copy(r, _set("colour", 1)),
    ),
    V(
        "sidecar without classes",
        cfg(model="m/model.json"),
        "model.json: classes: Field required",
        setup=lambda r: _bundled_copy(r, _set("classes", _DELETE)),
    ),
    V(
        "sidecar 0 classes",
        cfg(model="m/model.json"),
        "model.json: classes: List should have at least 1 item",
        setup=lambda r: _bundled_copy(r, _classes(0)),
    ),
    V(
        "sidecar std 0",
        cfg(model="m/model.json"),
        "model.json: input: Value error, std must not contain 0",
        setup=lambda r: _bundled_copy(r, _set("input.std", [0, 1, 1])),
    ),
    V(
        "sidecar layout CHW",
        cfg(model="m/model.json"),
        "model.json: input.layout: Input should be",
        setup=lambda r: _bundled_copy(r, _set("input.layout", "CHW")),
    ),
    V(
        "onnx file missing",
        cfg(model="m/model.json"),
        "model.json: onnx: file",
        setup=lambda r: _bundled_copy(r, _set("onnx", "gone.onnx")),
    ),
    V(
        "onnx changed",
        cfg(model="m/model.json"),
        "model.json: sha256:",
        setup=lambda r: _bundled_copy(r, _set("sha256", "0" * 64)),
    ),
    V(
        "3 classes for a 2-class graph",
        cfg(model="m/model.json"),
        "model.json: classes: the sidecar names 3 (k0, k1, k2), the graph's output 'classmap' picks from 2",
        setup=lambda r: _bundled_copy(r, _classes(3)),
    ),
    V(
        "1 class for a 2-class graph",
        cfg(model="m/model.json"),
        "model.json: classes: the sidecar names 1 (k0), the graph's output 'classmap' picks from 2",
        setup=lambda r: _bundled_copy(r, _classes(1)),
    ),
    V(
        "onnx does not load",
        cfg(model="m/model.json"),
        "onnxruntime cannot load it",
        setup=lambda r: (
            _bundled_copy(r, _set("sha256", None)),
            (r / "m" / "selfie_landscape.onnx").write_bytes(b"not a graph"),
        ),
    ),
    V(
        "graph input name",
        cfg(model="m/model.json"),
        "model.json: input.name: graph has no input 'pixels'",
        setup=lambda r: _bundled_copy(r, _set("input.name", "pixels")),
    ),
    V(
        "graph input size",
        cfg(model="m/model.json"),
        "model.json: input: sidecar says NHWC 100x256",
        setup=lambda r: _bundled_copy(r, _set("input.height", 100)),
    ),
    V(
        "graph output name",
        cfg(model="m/model.json"),
        "model.json: output.name: graph has no output 'mask'",
        setup=lambda r: _bundled_copy(r, _set("output.name", "mask")),
    ),
    V(
        "graph output kind",
        cfg(model="m/model.json"),
        "model.json: output: kind logits with 2 classes needs a float",
        setup=lambda r: _bundled_copy(r, _set("output.kind", "logits")),
    ),
    # media
    V(
        "source file missing",
        cfg(sources=with_good("missing.mp4")),
        "p.yaml:3: sources.1.uri: no such file: missing.mp4",
    ),
    V(
        "source is a folder",
        cfg(sources=with_good("clips")),
        "sources.1.uri: clips is a folder",
        setup=lambda r: (r / "clips").mkdir(),
    ),
    V(
        "source garbage",
        cfg(sources=with_good("junk.mp4")),
        "sources.1.uri: cannot open junk.mp4",
        files={"junk.mp4": b"\x00junk" * 100},
    ),
    V(
        "source empty file",
        cfg(sources=with_good("empty.mp4")),
        "sources.1.uri: cannot open empty.mp4",
        files={"empty.mp4": b""},
    ),
    V(
        "source truncated",
        cfg(sources=with_good("cut.mp4")),
        "sources.1.uri: cannot open cut.mp4",
        setup=lambda r: (_tiny_mp4(r / "whole.mp4"), (r / "cut.mp4").write_bytes((r / "whole.mp4").read_bytes()[:600])),
    ),
    V(
        "source audio only",
        cfg(sources=with_good("sound.mp4")),
        "sources.1.uri: cannot open sound.mp4: no video stream in the input",
        setup=lambda r: _audio_only(r / "sound.mp4"),
    ),
    V(
        "source text named .png",
        cfg(sources=with_good("note.png")),
        "sources.1.uri: cannot open note.png: Invalid data found when processing input",
        files={"note.png": "hello"},
    ),
    V("camera missing", cfg(sources=with_good("/dev/video99")), "sources.1.uri: no such camera device: /dev/video99"),
    V(
        "synthetic bad width",
        cfg(sources=with_good("synthetic://?width=abc")),
        "sources.1.uri: synthetic source: bad parameter",
    ),
    V("synthetic huge", cfg(sources=with_good("synthetic://?width=100000&height=100000")), "at most 7680x4320"),
    V(
        "synthetic fps 0",
        cfg(sources=with_good("synthetic://?fps=0")),
        "sources.1.uri: synthetic source: width and height",
    ),
    V(
        "gstreamer loop",
        cfg(sources=GOOD_SOURCE + "  - {name: b, uri: whole.mp4, decoder: gstreamer, loop: true}\n"),
        "sources.1.decoder: gstreamer does not loop files",
        setup=lambda r: _tiny_mp4(r / "whole.mp4"),
    ),
    # outputs validate checks where run would create them (nothing is created)
    V(
        "validate: jsonl under a file",
        cfg("outputs:\n  - {type: jsonl, path: f/g/stats.jsonl}\n"),
        "p.yaml:6: outputs.0.path: parent f is a file, not a folder",
        files={"f": "a file"},
    ),
    V(
        "validate: jsonl is a folder",
        cfg("outputs:\n  - {type: jsonl, path: d}\n"),
        "outputs.0.path: d is a folder",
        setup=lambda r: (r / "d").mkdir(),
    ),
    V(
        "validate: video under a file",
        cfg("outputs:\n  - {type: jsonl}\n  - {type: video, path: 'f/{stream}.mp4'}\n"),
        "p.yaml:7: outputs.1.path: parent f is a file, not a folder",
        files={"f": "a file"},
    ),
    V(
        "validate: snapshot folder is a file",
        cfg("outputs:\n  - {type: snapshot, path: 'snaps/{stream}'}\n"),
        "outputs.0.path: parent snaps/good is a file, not a folder",
        setup=lambda r: ((r / "snaps").mkdir(), (r / "snaps" / "good").write_text("x")),
    ),
    # a bad stream beside a good one: the run goes on, the good stream's output is whole
    R(
        "run: file missing",
        cfg(JSONL, sources=with_good("missing.mp4")),
        "stream 'bad' (missing.mp4): No such file or directory",
        check=good_stream_whole,
    ),
    R(
        "run: garbage file",
        cfg(JSONL, sources=with_good("junk.mp4")),
        "stream 'bad' (junk.mp4): Invalid data found when processing input",
        files={"junk.mp4": b"\x00junk" * 100},
        check=good_stream_whole,
    ),
    R(
        "run: folder as file",
        cfg(JSONL, sources=with_good("clips")),
        "stream 'bad' (clips): Is a directory",
        setup=lambda r: (r / "clips").mkdir(),
        check=good_stream_whole,
    ),
    R(
        "run: rtsp port closed",
        cfg(
            JSONL,
            sources=GOOD_SOURCE + "  - {name: bad, uri: 'rtsp://127.0.0.1:1/x', "
            "timeouts: {open_s: 1}, reconnect: {max_attempts: 0}}\n",
        ),
        "stream 'bad' (rtsp://127.0.0.1:1/x): gave up after 1 failure(s) in a row; last: Connection refused",
        check=good_stream_whole,
    ),
    R(
        "run: camera index absent",
        cfg(
            JSONL,
            sources=GOOD_SOURCE + "  - {name: bad, uri: '99', timeouts: {open_s: 1}, reconnect: {max_attempts: 0}}\n",
        ),
        "stream 'bad' (99): gave up after 1 failure(s) in a row; last: 99: cannot open camera",
        check=good_stream_whole,
    ),
    R(
        "run: audio only",
        cfg(JSONL, sources=with_good("sound.mp4")),
        "stream 'bad' (sound.mp4): no video stream in the input",
        setup=lambda r: _audio_only(r / "sound.mp4"),
        check=good_stream_whole,
    ),
    R(
        "run: text named .png",
        cfg(JSONL, sources=with_good("note.png")),
        "stream 'bad' (note.png): Invalid data found when processing input",
        files={"note.png": "hello"},
        check=good_stream_whole,
    ),
    R(
        "run: synthetic bad param",
        cfg(JSONL, sources=with_good("synthetic://?height=x")),
        "bad parameter",
        check=good_stream_whole,
    ),
    R(
        "run: truncated mp4",
        cfg(JSONL, sources=with_good("cut.mp4")),
        "stream 'bad' (cut.mp4): Invalid data found when processing input",
        setup=lambda r: (_tiny_mp4(r / "whole.mp4"), (r / "cut.mp4").write_bytes((r / "whole.mp4").read_bytes()[:600])),
        check=good_stream_whole,
    ),
    R(
        "run: 3 classes for a 2-class graph",
        cfg(JSONL, model="m/model.json"),
        "classes: the sidecar names 3",
        code=2,
        setup=lambda r: (_bundled_copy(r, _classes(3)), _write_previous_stats(r)),
        check=previous_stats_kept,
    ),
    R(
        "run: onnx does not load",
        cfg(JSONL, model="m/model.json"),
        "onnxruntime cannot load it",
        code=2,
        setup=lambda r: (
            _bundled_copy(r, _set("sha256", None)),
            (r / "m" / "selfie_landscape.onnx").write_bytes(b"\x08\x01junk"),
            _write_previous_stats(r),
        ),
        check=previous_stats_kept,
    ),
    # filesystem faults
    R(
        "jsonl under a regular file",
        cfg("outputs:\n  - {type: jsonl, path: f/stats.jsonl}\n"),
        "p.yaml:6: outputs.0.path: parent f is a file, not a folder",
        code=2,
        files={"f": "a file"},
    ),
    R(
        "jsonl path is a folder",
        cfg("outputs:\n  - {type: jsonl, path: d}\n"),
        "outputs.0.path: d is a folder",
        code=2,
        setup=lambda r: (r / "d").mkdir(),
    ),
    R("jsonl on a full disk", cfg("outputs:\n  - {type: jsonl, path: /dev/full}\n"), "No space left on device"),
    R(
        "video under a regular file",
        cfg("outputs:\n  - {type: video, path: 'f/{stream}.mp4'}\n"),
        "outputs.0.path: parent f is a file, not a folder",
        code=2,
        files={"f": "a file"},
    ),
    R(
        "video under a regular file beside jsonl keeps the previous stats",
        cfg(JSONL + "  - {type: video, path: 'f/{stream}.mp4'}\n"),
        "outputs.1.path: parent f is a file, not a folder",
        code=2,
        files={"f": "a file"},
        setup=_write_previous_stats,
        check=previous_stats_kept,
    ),
    R(
        "snapshot under a regular file",
        cfg("outputs:\n  - {type: snapshot, path: 'f/{stream}', every: 1}\n"),
        "outputs.0.path: parent f is a file, not a folder",
        code=2,
        files={"f": "a file"},
    ),
    R(
        "jsonl in /proc",
        cfg("outputs:\n  - {type: jsonl, path: /proc/streamseg/stats.jsonl}\n"),
        "jsonl output /proc/streamseg/stats.jsonl",
    ),
    R(
        "http host unresolvable",
        cfg(JSONL, http="http: {host: no.such.host.invalid, port: 0}\n"),
        "http server no.such.host.invalid:0: cannot listen",
        setup=_write_previous_stats,
        check=previous_stats_kept,
    ),
]


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield tmp_path
    for s, h in handlers.items():  # `run` installs its own
        signal.signal(s, h)


def run_cli(argv: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``streamseg ARGV`` in this process: (exit code, stderr); an escaping exception fails the test."""
    try:
        code = main(argv)
    except BaseException as e:  # SystemExit included: argparse must not exit on its own
        pytest.fail(f"streamseg {' '.join(argv)} raised {type(e).__name__}: {e}")
    return code, capfd.readouterr().err


def assert_one_error_line(stderr: str, fragment: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("streamseg: error: ")]
    assert len(errors) == 1, stderr
    assert fragment in errors[0], errors[0]
    return errors[0]


def test_the_corpus_is_large_enough() -> None:
    assert len(ROWS) + len(LATER_ROWS) >= 80
    assert len({r.id for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(row: Row, in_tmp: Path, capfd: pytest.CaptureFixture[str]) -> None:
    for name, content in row.files.items():
        path = in_tmp / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    if row.setup is not None:
        row.setup(in_tmp)
    code, stderr = run_cli(row.argv, capfd)
    line = assert_one_error_line(stderr, row.fragment)
    assert code == row.code, line
    assert "pw9" not in stderr  # a password in a URI never reaches a message
    if row.check is not None:
        row.check(in_tmp)


LATER_ROWS: list[str] = ["http port in use"]  # rows below need a resource held while they run


def test_http_port_in_use_leaves_previous_outputs(in_tmp: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Item 2: a run that cannot start touches no output: the previous statistics survive."""
    _write_previous_stats(in_tmp)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (in_tmp / "p.yaml").write_text(cfg(JSONL, http=f"http: {{port: {port}}}\n"))
        code, stderr = run_cli(["run", "p.yaml", "--max-frames", "2"], capfd)
    assert_one_error_line(stderr, f"http server 127.0.0.1:{port}: cannot listen: Address already in use")
    assert code == 1
    previous_stats_kept(in_tmp)


def test_validate_agrees_with_run_on_a_good_pipeline(in_tmp: Path, capfd: pytest.CaptureFixture[str]) -> None:
    _tiny_mp4(in_tmp / "clip.mp4")
    (in_tmp / "p.yaml").write_text(cfg(JSONL, sources=GOOD_SOURCE + "  - {name: clip, uri: clip.mp4}\n"))
    code, stderr = run_cli(["validate", "p.yaml"], capfd)
    assert code == 0 and "Traceback" not in stderr, stderr
    code, stderr = run_cli(["run", "p.yaml", "--max-frames", str(FRAMES)], capfd)
    assert code == 0 and "streamseg: error" not in stderr, stderr
    good_stream_whole(in_tmp)


def test_a_port_output_that_cannot_open_leaves_file_outputs_alone(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outputs that claim a port open before any file output truncates its file (RTSP needs
    GStreamer here, so a stand-in fails the way a port in use does)."""
    import streamseg.outputs.rtsp as rtsp
    from streamseg.config import parse_config
    from streamseg.errors import OutputError
    from streamseg.metrics import Metrics
    from streamseg.outputs import build_sinks

    def taken(*_: Any) -> None:
        raise OutputError("rtsp output: cannot listen on 127.0.0.1:8554 (port in use or address not local)")

    monkeypatch.setattr(rtsp.RtspSink, "__init__", taken)
    _write_previous_stats(in_tmp)
    text = cfg("outputs:\n  - {type: jsonl, path: out/stats.jsonl}\n  - {type: video}\n  - {type: rtsp}\n")
    outputs = list(parse_config(text, "p.yaml").outputs)
    with pytest.raises(OutputError, match="cannot listen"):
        build_sinks(outputs, ["a", "b"], lambda _: 25.0, Metrics(), None)
    previous_stats_kept(in_tmp)


def test_no_assert_guards_user_input(in_tmp: Path) -> None:
    """A live output built without the HTTP server, and an engine key asked of a model without an
    ONNX file, are one-line errors (they were bare asserts, which `python -O` removes)."""
    import dataclasses

    from streamseg.backends.tensorrt import TensorRTBackend
    from streamseg.config import parse_config
    from streamseg.errors import ConfigError, ModelError
    from streamseg.metrics import Metrics
    from streamseg.outputs import build_sinks

    outputs = list(parse_config(cfg("outputs:\n  - {type: live}\n", http="true"), "p.yaml").outputs)
    with pytest.raises(ConfigError, match=r"^a live output needs http.enabled: true$"):
        build_sinks(outputs, ["a"], lambda _: None, Metrics(), None)
    model = dataclasses.replace(load_model("selfie_landscape"), onnx_path=None)
    with pytest.raises(ModelError, match=r": onnx: TensorRT builds engines from an ONNX file; there is none$"):
        TensorRTBackend(model, "cuda").engine_key("GPU", "9.0", "10.0")
