"""COCO RLE mask export (streamseg/rle.py): exact round trips through pycocotools, the encoder's
classes and cadence, the JSONL record, config errors, and the missing extra."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamseg.config import RleConfig, parse_config
from streamseg.errors import ConfigError, MissingDependencyError
from streamseg.frames import Frame, SegResult
from streamseg.outputs.jsonl import record
from streamseg.pipeline import Pipeline
from streamseg.rle import RleEncoder, encode

cocomask = pytest.importorskip("pycocotools.mask")
# pycocotools' decode calls np.array(copy=False) on its own type; numpy 2 warns about it
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.mark.parametrize(
    "mask",
    [
        np.zeros((144, 256), bool),
        np.ones((144, 256), bool),
        np.random.default_rng(0).random((144, 256)) < 0.5,  # the worst case for run lengths
        np.eye(7, 11, dtype=bool),
        np.ones((1, 1), bool),
    ],
    ids=["empty", "full", "noise", "diagonal", "one-pixel"],
)
def test_decode_gives_back_the_mask_exactly(mask: np.ndarray) -> None:
    rle = encode(mask)
    assert rle["size"] == list(mask.shape)
    assert isinstance(rle["counts"], str)
    json.dumps(rle)  # JSON-ready as it is
    decoded = cocomask.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    assert decoded.dtype == np.uint8 and decoded.shape == mask.shape
    assert np.array_equal(decoded.astype(bool), mask)
    assert cocomask.area({"size": rle["size"], "counts": rle["counts"]}) == mask.sum()


def test_counts_stay_within_bounds() -> None:
    """One run is at most a few characters; noise is the worst case and stays well under one per pixel."""
    noise = np.random.default_rng(1).random((144, 256)) < 0.5
    assert len(encode(noise)["counts"]) < 2 * noise.size
    assert len(encode(np.zeros((144, 256), bool))["counts"]) <= 4  # one run


def test_the_encoder_exports_the_configured_classes_on_every_nth_frame() -> None:
    cmap = np.random.default_rng(2).integers(0, 3, (9, 13), dtype=np.uint8)
    enc = RleEncoder(RleConfig(classes=["c2", "c0"], every=3), ["c0", "c1", "c2"])
    assert enc.encode(1, cmap) is None and enc.encode(2, cmap) is None
    out = enc.encode(3, cmap)
    assert out is not None and list(out) == ["c2", "c0"]
    for name, k in (("c2", 2), ("c0", 0)):
        assert np.array_equal(cocomask.decode(out[name]), (cmap == k).astype(np.uint8))
    assert RleEncoder(None, ["c0"]).encode(0, cmap) is None


def test_the_jsonl_record_carries_the_rle_and_only_when_set() -> None:
    frame = Frame("a", 0, 0.0, 0.0, 0.0, np.zeros((4, 4, 3), np.uint8))
    cmap = np.array([[0, 1], [1, 1]], np.uint8)
    ratios = np.array([0.25, 0.75])
    plain = record(SegResult(frame, cmap, ratios), ["bg", "person"])
    assert "rle" not in plain
    rle = RleEncoder(RleConfig(classes=["person"]), ["bg", "person"]).encode(0, cmap)
    rec = json.loads(json.dumps(record(SegResult(frame, cmap, ratios, rle=rle), ["bg", "person"])))
    assert np.array_equal(cocomask.decode(rec["rle"]["person"]), cmap)


@pytest.mark.parametrize(
    ("rle", "error"),
    [
        ("{classes: []}", "at least 1 item"),
        ("{classes: [person], every: 0}", "greater than or equal to 1"),
        ("{classes: [person], format: png}", r"t.yaml:3: postprocess.rle.format: unknown key"),
    ],
)
def test_bad_rle_settings_are_refused(rle: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse_config(
            f"sources: [{{name: a, uri: 'synthetic://'}}]\nmodel: {{path: selfie_landscape}}\n"
            f"postprocess: {{rle: {rle}}}\n",
            "t.yaml",
        )


def test_an_unknown_class_fails_the_pipeline_at_start() -> None:
    cfg = parse_config(
        "sources: [{name: a, uri: 'synthetic://'}]\nmodel: {path: selfie_landscape}\n"
        "postprocess: {rle: {classes: [car]}}\nhttp: {enabled: false}\n",
        "t.yaml",
    )
    with pytest.raises(ConfigError, match=r"postprocess.rle.classes: car is not a class of model selfie_landscape"):
        Pipeline(cfg)


def test_without_pycocotools_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pycocotools", None)
    monkeypatch.setitem(sys.modules, "pycocotools.mask", None)
    with pytest.raises(MissingDependencyError, match=r"streamseg\[rle\]"):
        RleEncoder(RleConfig(classes=["person"]), ["background", "person"])


def test_a_run_exports_the_class_map_of_each_frame(tmp_path: Path) -> None:
    out = tmp_path / "stats.jsonl"
    cfg = parse_config(
        f"""
sources: [{{name: a, uri: "synthetic://?width=64&height=48&frames=4"}}]
model: {{path: selfie_landscape}}
postprocess: {{rle: {{classes: [person, background], every: 2}}}}
outputs: [{{type: jsonl, path: "{out}"}}]
http: {{enabled: false}}
""",
        "t.yaml",
    )
    assert Pipeline(cfg).run().frames == {"a": 4}
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert ["rle" in r for r in records] == [True, False, True, False]
    for r in records[::2]:
        person, background = (cocomask.decode(r["rle"][n]) for n in ("person", "background"))
        assert person.shape == (144, 256)  # model resolution, not the 64x48 frame
        assert np.array_equal(person + background, np.ones_like(person))
        assert r["class_area_ratio"]["person"] == person.sum() / person.size


def test_event_records_carry_the_deciding_frames_masks(tmp_path: Path) -> None:
    import time

    from streamseg.events.config import EventsConfig
    from streamseg.events.sink import EventsSink
    from streamseg.metrics import Metrics

    cfg = EventsConfig.model_validate(
        {
            "rules": [{"name": "r", "stream": "a", "class": "person", "above": 0.5}],
            "jsonl": str(tmp_path / "e.jsonl"),
            "snapshots": None,
        }
    )
    sink = EventsSink(cfg, ["background", "person"], Metrics(), ["a"])
    enc = RleEncoder(RleConfig(classes=["person"]), ["background", "person"])
    maps = [np.zeros((4, 4), np.uint8), np.ones((4, 4), np.uint8), np.eye(4, dtype=np.uint8)]
    for i, cmap in enumerate(maps):
        f = Frame("a", i, i / 10, time.monotonic(), 1.0 + i / 10, np.zeros((4, 4, 3), np.uint8))
        ratios = np.bincount(cmap.ravel(), minlength=2) / cmap.size
        sink.write(SegResult(f, cmap, ratios, rle=enc.encode(i, cmap)), None)
    sink.close()
    lines = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["frame"]) for r in lines] == [("start", 1), ("end", 2)]
    assert np.array_equal(cocomask.decode(lines[0]["rle"]["person"]), maps[1])
    assert np.array_equal(cocomask.decode(lines[1]["rle"]["person"]), maps[2])
