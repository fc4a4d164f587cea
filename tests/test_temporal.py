"""Temporal smoothing (streamseg/temporal.py): exact majority votes on synthetic sequences, per-stream
state, the EMA on score models, config validation, and a real run with the bundled model."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from streamseg.config import TemporalConfig, parse_config
from streamseg.contract import load_model
from streamseg.errors import ConfigError
from streamseg.frames import Frame
from streamseg.pipeline import Pipeline
from streamseg.temporal import TemporalFilter, majority

# pycocotools' decode calls np.array(copy=False) on its own type; numpy 2 warns about it
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

IMG = np.zeros((4, 6, 3), np.uint8)


def frame(stream: str, index: int, t: float | None = None, image: np.ndarray = IMG) -> Frame:
    return Frame(stream, index, index / 25, index / 25 if t is None else t, 0.0, image)


def contract(kind: str = "class_map", classes: int = 2, layout: str = "NCHW") -> Any:
    doc = {
        "name": "m",
        "onnx": "m.onnx",
        "input": {"name": "x", "layout": layout, "height": 1, "width": 3},
        "output": {"name": "y", "kind": kind},
        "classes": [{"name": f"c{i}", "color": [0, 0, 0]} for i in range(classes)],
    }
    from streamseg.contract import ModelContract

    return ModelContract.model_validate(doc)


def run_majority(seq: list[list[int]], k: int, classes: int = 2) -> list[list[int]]:
    """Feed 1x3 class maps of one stream through a majority filter, one frame per batch."""
    f = TemporalFilter(TemporalConfig(mode="majority", k=k), contract(classes=classes))
    out = []
    for i, row in enumerate(seq):
        maps = np.array([[row]], np.uint8)  # (N=1, h=1, w=3)
        out.append(f.class_maps([frame("a", i)], maps)[0, 0].tolist())
    return out


def test_a_single_frame_flicker_is_removed_with_k3() -> None:
    seq = [[0, 1, 1]] * 3 + [[1, 0, 1]] + [[0, 1, 1]] * 3
    assert run_majority(seq, 3) == [[0, 1, 1]] * 7


@pytest.mark.parametrize("k", [2, 3, 4, 5, 7])
def test_a_real_change_passes_after_ceil_k_over_2_frames(k: int) -> None:
    seq = [[0, 0, 0]] * 8 + [[1, 1, 0]] * 8
    out = run_majority(seq, k)
    first = next(i for i, row in enumerate(out) if row == [1, 1, 0])
    assert first - 8 + 1 == -(-k // 2)  # seen on the ceil(k/2)-th frame of the new labels
    assert out[first:] == [[1, 1, 0]] * (16 - first)
    assert out[:first] == [[0, 0, 0]] * first


def test_majority_of_c_classes_equals_a_per_pixel_count_and_ties_go_to_the_current_label() -> None:
    rng = np.random.default_rng(3)
    maps = [rng.integers(0, 4, (5, 7), dtype=np.uint8) for _ in range(4)]
    got = majority(maps, 4)
    for y in range(5):
        for x in range(7):
            votes = np.bincount([int(m[y, x]) for m in maps], minlength=4)
            best = np.flatnonzero(votes == votes.max())
            cur = int(maps[-1][y, x])
            assert got[y, x] == (cur if cur in best else best[0])  # other ties: the lowest class
    # two classes take the count path: the same answer as the C-class one
    bin_maps = [m % 2 for m in maps]
    two = majority(bin_maps, 2)
    classes = np.arange(2, dtype=np.uint8)[:, None, None]
    counts = 2 * (np.stack(bin_maps)[None] == classes[:, None]).sum(axis=1) + (bin_maps[-1][None] == classes)
    assert np.array_equal(two, np.argmax(counts, axis=0))


def test_streams_keep_their_own_past() -> None:
    f = TemporalFilter(TemporalConfig(mode="majority", k=3), contract())
    ones, zeros = np.ones((1, 1, 3), np.uint8), np.zeros((1, 1, 3), np.uint8)
    for i in range(3):  # a all ones, b all zeros, interleaved in one batch
        out = f.class_maps([frame("a", i), frame("b", i)], np.concatenate([ones, zeros]))
        assert out[0].tolist() == ones[0].tolist() and out[1].tolist() == zeros[0].tolist()
    # one flickering frame on b alone is voted away; a's switch is its own
    out = f.class_maps([frame("a", 3), frame("b", 3)], np.concatenate([zeros, ones]))
    assert out[0].tolist() == ones[0].tolist() and out[1].tolist() == zeros[0].tolist()


@pytest.mark.parametrize(
    "change",
    [
        {"t": 10.0},  # frames stopped for longer than reset_gap_s: a reconnect
        {"image": np.zeros((8, 6, 3), np.uint8)},  # another frame size
        {"index": 0},  # the index did not rise: a new source under the name
    ],
    ids=["gap", "size", "index"],
)
def test_a_stream_starts_afresh_after_a_gap_a_new_size_or_a_restart(change: dict[str, Any]) -> None:
    f = TemporalFilter(TemporalConfig(mode="majority", k=5, reset_gap_s=2.0), contract())
    zeros, ones = np.zeros((1, 1, 3), np.uint8), np.ones((1, 1, 3), np.uint8)
    for i in range(5):
        f.class_maps([frame("a", i)], zeros)
    args = {"index": 5, "t": None, "image": IMG} | change
    out = f.class_maps([frame("a", args["index"], args["t"], args["image"])], ones)
    assert out[0].tolist() == ones[0].tolist()  # no past to outvote it


def test_without_a_reset_the_past_outvotes_the_same_frame() -> None:
    f = TemporalFilter(TemporalConfig(mode="majority", k=5), contract())
    zeros, ones = np.zeros((1, 1, 3), np.uint8), np.ones((1, 1, 3), np.uint8)
    for i in range(5):
        f.class_maps([frame("a", i)], zeros)
    assert f.class_maps([frame("a", 5)], ones)[0].tolist() == zeros[0].tolist()


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_ema_averages_softmaxed_logits(layout: str) -> None:
    alpha = 0.25
    f = TemporalFilter(TemporalConfig(mode="ema", alpha=alpha), contract("logits", 2, layout))
    # one pixel-row of three: class 1 strongly for 3 frames, then one frame of class 0 at 0.7
    strong = np.log(np.array([0.1, 0.9]))
    weak0 = np.log(np.array([0.7, 0.3]))

    def batch(p: np.ndarray) -> np.ndarray:
        hw = np.broadcast_to(p, (1, 3, 2)).astype(np.float32)  # (h, w, C)
        return (hw.transpose(2, 0, 1) if layout == "NCHW" else hw)[None]

    for i in range(3):
        assert f.class_maps([frame("a", i)], batch(strong))[0].tolist() == [[1, 1, 1]]
    # p(class 1) = 0.75 * 0.9 + 0.25 * 0.3 = 0.75: still class 1, where the plain argmax says 0
    assert f.class_maps([frame("a", 3)], batch(weak0))[0].tolist() == [[1, 1, 1]]


def test_mode_none_is_to_class_maps() -> None:
    f = TemporalFilter(TemporalConfig(), contract("logits", 3))
    scores = np.random.default_rng(0).normal(size=(2, 3, 1, 3)).astype(np.float32)
    assert not f.active
    out = f.class_maps([frame("a", 0), frame("b", 0)], scores)
    assert np.array_equal(out, np.argmax(scores, axis=1).astype(np.uint8))


@pytest.mark.parametrize(
    ("temporal", "error"),
    [
        ({"mode": "majority", "k": 1}, "greater than or equal to 2"),
        ({"mode": "majority", "k": 16}, "less than or equal to 15"),
        ({"mode": "ema", "alpha": 0}, "greater than 0"),
        ({"mode": "ema", "alpha": 1.5}, "less than or equal to 1"),
        ({"mode": "median"}, "'none', 'majority' or 'ema'"),
        ({"mode": "majority", "window": 3}, "Extra inputs are not permitted"),
        ({"reset_gap_s": 0}, "greater than 0"),
    ],
)
def test_bad_temporal_settings_are_refused(temporal: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        TemporalConfig.model_validate(temporal)


def test_ema_on_a_class_map_model_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError, match="ema averages probabilities, but model m outputs a class map") as info:
        TemporalFilter(TemporalConfig(mode="ema"), contract("class_map"))
    assert "\n" not in str(info.value)


def test_ema_on_the_bundled_model_fails_the_pipeline_at_start() -> None:
    cfg = parse_config(
        "sources: [{name: a, uri: 'synthetic://'}]\nmodel: {path: selfie_landscape}\n"
        "postprocess: {temporal: {mode: ema}}\nhttp: {enabled: false}\n",
        "t.yaml",
    )
    with pytest.raises(ConfigError, match="use mode: majority"):
        Pipeline(cfg)


# --- a real run ---------------------------------------------------------------------------------------


def _run(tmp_path: Path, bikes: Path, name: str, temporal: str) -> list[dict[str, Any]]:
    pytest.importorskip("pycocotools")
    out = tmp_path / f"{name}.jsonl"
    cfg = parse_config(
        f"""
sources: [{{name: clip, uri: "{bikes}"}}]
model: {{path: selfie_landscape}}
postprocess: {{temporal: {temporal}, rle: {{classes: [person]}}}}
outputs: [{{type: jsonl, path: "{out}"}}]
http: {{enabled: false}}
""",
        "t.yaml",
    )
    summary = Pipeline(cfg, max_frames=12).run()
    assert summary.frames == {"clip": 12}
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_a_run_with_majority_smoothing_writes_the_vote_of_the_unsmoothed_masks(tmp_path: Path, bikes: Path) -> None:
    from pycocotools import mask as cocomask

    raw = _run(tmp_path, bikes, "raw", "{mode: none}")
    smooth = _run(tmp_path, bikes, "smooth", "{mode: majority, k: 3}")
    assert [r["frame"] for r in smooth] == list(range(12))
    c = load_model("selfie_landscape").contract
    person = [cocomask.decode(r["rle"]["person"]) for r in raw]
    for i, r in enumerate(smooth):
        assert r["rle"]["person"]["size"] == [c.input.height, c.input.width]
        got = cocomask.decode(r["rle"]["person"])
        assert np.array_equal(got, majority(person[max(0, i - 2) : i + 1], 2))
        # the record's areas are those of the smoothed map
        assert r["class_area_ratio"]["person"] == got.sum() / got.size

    def flips(ms: list[np.ndarray]) -> int:
        return sum(int((a != b).sum()) for a, b in itertools.pairwise(ms))

    assert flips([cocomask.decode(r["rle"]["person"]) for r in smooth]) <= flips(person)


def _tiny_run(model: Any, tmp_path: Path, name: str, temporal: str) -> list[dict[str, Any]]:
    out = tmp_path / f"{name}.jsonl"
    cfg = parse_config(
        f"""
sources:
  - {{name: a, uri: "synthetic://?width=24&height=16&frames=6"}}
  - {{name: b, uri: "synthetic://?width=32&height=16&frames=6"}}
model: {{path: "{model.sidecar}", backend: onnxruntime, device: cpu}}
batch: {{max_batch: 2, max_wait_ms: 5}}
postprocess: {{temporal: {temporal}, rle: {{classes: [c0, c2]}}}}
outputs: [{{type: jsonl, path: "{out}"}}]
http: {{enabled: false}}
""",
        "t.yaml",
    )
    assert Pipeline(cfg).run().frames == {"a": 6, "b": 6}
    return sorted((json.loads(line) for line in out.read_text().splitlines()), key=lambda r: (r["stream"], r["frame"]))


def test_a_run_with_ema_on_a_logits_model(make_model: Any, tmp_path: Path) -> None:
    pytest.importorskip("pycocotools")
    model = make_model()  # 3 classes, logits, 8x12
    plain = _tiny_run(model, tmp_path, "plain", "{mode: none}")
    whole = _tiny_run(model, tmp_path, "whole", "{mode: ema, alpha: 1.0}")  # alpha 1: only the new frame
    smooth = _tiny_run(model, tmp_path, "smooth", "{mode: ema, alpha: 0.3}")
    assert [(r["class_area_ratio"], r["rle"]) for r in whole] == [(r["class_area_ratio"], r["rle"]) for r in plain]
    assert len(smooth) == 12
    assert all(r["rle"]["c0"]["size"] == [8, 12] for r in smooth)
    assert all(sum(r["class_area_ratio"].values()) == pytest.approx(1.0) for r in smooth)


def test_validate_names_the_line_of_a_temporal_or_rle_problem(tmp_path: Path) -> None:
    import streamseg.preflight as preflight

    for text, error in (
        ("postprocess:\n  temporal:\n    mode: ema\n", r"p\.yaml:7: postprocess\.temporal\.mode: ema averages"),
        ("postprocess:\n  rle:\n    classes: [car]\n", r"p\.yaml:7: postprocess\.rle\.classes: car is not a class"),
    ):
        path = tmp_path / "p.yaml"
        path.write_text(
            f"sources:\n  - name: a\n    uri: 'synthetic://?frames=1'\nmodel: {{path: selfie_landscape}}\n{text}"
        )
        with pytest.raises(ConfigError, match=error):
            preflight.check_pipeline(parse_config(path.read_text(), str(path)), str(path))
