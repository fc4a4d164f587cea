"""Instances in the pipeline: the contract's instance kind, instances -> class map (exact on
synthetic masks), outlines, JSON Lines records, the per-class count metric, mask AP with known values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamseg.contract import LoadedModel, ModelContract, TensorInfo, check_io
from streamseg.datasets import InstanceTarget
from streamseg.errors import ModelError
from streamseg.frames import Frame, SegResult
from streamseg.instances import Instance, InstanceOutput, class_map, counts, draw_outlines, records, select
from streamseg.metrics import Metrics
from streamseg.outputs.jsonl import record

CLASSES = ["background", "person", "car"]


def contract(**output: object) -> dict[str, object]:
    out = {"name": "masks", "kind": "instances", "boxes": "boxes", "labels": "labels", "scores": "scores", **output}
    return {
        "name": "m",
        "onnx": "m.onnx",
        "input": {"name": "input", "layout": "NCHW", "height": 8, "width": 10, "mean": [0, 0, 0], "std": [255] * 3},
        "output": out,
        "classes": [{"name": n, "color": [i * 50, 0, 0]} for i, n in enumerate(CLASSES)],
    }


def graph_outputs(**changes: TensorInfo) -> list[TensorInfo]:
    outs = {
        "boxes": TensorInfo("boxes", (None, 4), "float32"),
        "labels": TensorInfo("labels", (None,), "int64"),
        "scores": TensorInfo("scores", (None,), "float32"),
        "masks": TensorInfo("masks", (None, 1, 8, 10), "float32"),
    }
    outs.update(changes)
    return list(outs.values())


def loaded(raw: dict[str, object]) -> LoadedModel:
    return LoadedModel(ModelContract.model_validate(raw), Path("m.json"), Path("m.onnx"))


def test_a_good_instance_contract_passes() -> None:
    model = loaded(contract(score_threshold=0.7))
    check_io(model, [TensorInfo("input", (1, 3, 8, 10), "float32")], graph_outputs())
    assert model.contract.output.score_threshold == 0.7 and model.contract.output.mask_threshold == 0.5


@pytest.mark.parametrize(
    ("output", "error"),
    [
        ({"boxes": None}, "kind instances needs the graph's output names for boxes"),
        ({"scores": "masks"}, "four different outputs"),
        ({"score_threshold": 1.5}, "less than or equal to 1"),
        ({"mask_threshold": 0}, "greater than 0"),
        ({"kind": "class_map", "boxes": "b", "labels": None, "scores": None}, "boxes: only for kind instances"),
    ],
)
def test_bad_instance_contracts_are_one_line_errors(output: dict[str, object], error: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=error) as e:
        ModelContract.model_validate(contract(**output))
    assert e.value.error_count() == 1


@pytest.mark.parametrize(
    ("inputs", "changes", "error"),
    [
        ((4, 3, 8, 10), {}, "input: an instance graph takes one image, graph input has batch 4"),
        (
            (1, 3, 8, 10),
            {"boxes": TensorInfo("bbox", (None, 4), "float32")},
            "output.boxes: graph has no output 'boxes'",
        ),
        (
            (1, 3, 8, 10),
            {"boxes": TensorInfo("boxes", (None, 5), "float32")},
            r"output.boxes: .* must be float32 \(K,4\)",
        ),
        ((1, 3, 8, 10), {"labels": TensorInfo("labels", (None,), "float32")}, r"output.labels: .* must be int64 \(K\)"),
        ((1, 3, 8, 10), {"masks": TensorInfo("masks", (None, 1, 4, 5), "float32")}, r"output.name: .* \(K,1,8,10\)"),
        ((1, 3, 8, 10), {"scores": TensorInfo("scores", (None, 1), "float32")}, "output.scores"),
    ],
)
def test_graphs_that_do_not_fit_the_instance_kind(
    inputs: tuple[int, ...], changes: dict[str, TensorInfo], error: str
) -> None:
    with pytest.raises(ModelError, match=error) as e:
        check_io(loaded(contract()), [TensorInfo("input", inputs, "float32")], graph_outputs(**changes))
    assert "\n" not in str(e.value) and "m.json" in str(e.value)


def square(y: int, x: int, size: int, shape: tuple[int, int] = (8, 10)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y : y + size, x : x + size] = True
    return m


def test_class_map_paints_masks_in_score_order_exactly() -> None:
    a = Instance(1, 0.9, (0, 0, 4, 4), square(0, 0, 4))
    b = Instance(2, 0.6, (2, 2, 7, 7), square(2, 2, 5))  # overlaps a on rows/cols 2..3
    c = Instance(1, 0.3, (6, 5, 9, 8), square(5, 6, 3))
    got = class_map((a, c, b), 8, 10)  # any order in: painted by score
    want = np.zeros((8, 10), np.uint8)
    want[5:8, 6:9] = 1  # c first
    want[2:7, 2:7] = 2  # b over c
    want[0:4, 0:4] = 1  # a on top of both
    assert np.array_equal(got, want)
    assert counts((a, b, c), 3).tolist() == [0, 2, 1]
    with pytest.raises(ValueError, match="does not fit"):
        class_map((a,), 4, 4)


def test_select_thresholds_scores_and_masks() -> None:
    probs = np.zeros((3, 1, 8, 10), np.float32)
    probs[0, 0, :2, :2] = 0.5  # exactly the threshold: in
    probs[0, 0, 2, 2] = 0.49
    probs[2, 0, 5:, 5:] = 0.9
    out = InstanceOutput(
        np.array([[0, 0, 2, 2], [1, 1, 3, 3], [5, 5, 10, 8]], np.float32),
        np.array([2, 1, 1]),
        np.array([0.55, 0.4, 0.95], np.float32),
        probs,
    )
    got = select(out, score_threshold=0.5)
    assert [(i.label, round(i.score, 2), i.area) for i in got] == [(1, 0.95, 15), (2, 0.55, 4)]
    with pytest.raises(ValueError, match="one K"):
        InstanceOutput(np.zeros((2, 4)), np.zeros(3), np.zeros(3), np.zeros((3, 1, 8, 10)))
    with pytest.raises(ValueError, match="label must be a class >= 1"):
        Instance(0, 0.9, (0, 0, 1, 1), square(0, 0, 1))


def test_outlines_are_drawn_in_the_class_color_at_frame_size() -> None:
    image = np.zeros((16, 20, 3), np.uint8)
    colors = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255]], np.uint8)  # RGB
    inst = Instance(1, 0.9, (2, 2, 7, 6), square(2, 2, 4))  # class-map pixels 2..5 -> frame 4..11
    out = draw_outlines(image, (inst,), colors, thickness=1)
    assert out is image
    drawn = np.argwhere(image.any(axis=2))
    assert drawn[:, 0].min() >= 3 and drawn[:, 0].max() <= 12 and drawn[:, 1].min() >= 3 and drawn[:, 1].max() <= 12
    b, g, r = image[4, 8].tolist()  # on the top edge: red in BGR (anti-aliased, so nearly full)
    assert (b, g) == (0, 0) and r > 200
    assert not image[7, 7].any()  # inside stays untouched


def frame(h: int = 16, w: int = 20) -> Frame:
    return Frame("cam", 3, 0.12, 0.0, 1000.0, np.zeros((h, w, 3), np.uint8))


def test_jsonl_records_instances_in_frame_pixels() -> None:
    a = Instance(2, 0.87654, (1, 2, 5, 6), square(2, 1, 4))
    b = Instance(1, 0.5, (0, 0, 2, 2), square(0, 0, 2))
    cmap = class_map((a, b), 8, 10)
    result = SegResult(frame(), cmap, np.bincount(cmap.ravel(), minlength=3) / cmap.size, instances=(a, b))
    rec = record(result, CLASSES)
    assert rec["instances"] == [
        {"class": "car", "score": 0.8765, "box": [2.0, 4.0, 10.0, 12.0], "mask_area": 64},
        {"class": "person", "score": 0.5, "box": [0.0, 0.0, 4.0, 4.0], "mask_area": 16},
    ]
    json.dumps(rec)  # plain JSON types
    plain = SegResult(frame(), cmap, np.bincount(cmap.ravel(), minlength=3) / cmap.size)
    assert "instances" not in record(plain, CLASSES)
    assert records((), CLASSES, (16, 20)) == []


def test_instance_count_gauge_on_the_exposition() -> None:
    m = Metrics()
    m.add_instances("cam", CLASSES)
    text = m.exposition().decode()
    assert 'streamseg_instances{class="person",stream="cam"} 0.0' in text
    assert 'class="background",stream="cam"} 0.0' not in text.split("streamseg_instances")[-1]
    m.set_instances("cam", [0, 3, 1], CLASSES)
    text = m.exposition().decode()
    assert 'streamseg_instances{class="person",stream="cam"} 3.0' in text
    assert 'streamseg_instances{class="car",stream="cam"} 1.0' in text
    m.remove_stream("cam")
    assert "streamseg_instances{" not in m.exposition().decode()


def test_mask_ap_known_values() -> None:
    pytest.importorskip("pycocotools", reason="pycocotools is not installed (pip install 'streamseg[rle]')")
    from streamseg.maskap import MaskAPAccumulator

    masks = np.stack([square(0, 0, 4, (20, 20)), square(10, 10, 6, (20, 20))]).astype(np.uint8)
    truth = InstanceTarget(np.array([[0, 0, 4, 4], [10, 10, 16, 16]], np.float32), np.array([1, 1]), masks)

    perfect = MaskAPAccumulator()
    perfect.update(truth, np.array([1, 1]), np.array([0.9, 0.8]), masks)
    r = perfect.result()
    assert (r.ap, r.ap50, r.ap75, r.instances) == (1.0, 1.0, 1.0, 2)

    # one of two instances missed: precision 1 up to recall 0.5, then nothing -> 51 of COCO's 101 points
    missing = MaskAPAccumulator()
    missing.update(truth, np.array([1]), np.array([0.9]), masks[:1])
    r = missing.result()
    assert r.ap50 == pytest.approx(51 / 101) and r.ap == pytest.approx(51 / 101)

    # a false positive scored above both true ones: precision 1/2 then 2/3 -> the envelope is 2/3
    extra = MaskAPAccumulator()
    wrong = square(0, 12, 5, (20, 20)).astype(np.uint8)[None]
    extra.update(truth, np.array([1, 1, 1]), np.array([0.95, 0.9, 0.8]), np.concatenate([wrong, masks]))
    assert extra.result().ap50 == pytest.approx(2 / 3, abs=1e-6)

    # a mask at IoU 2/3 with its truth counts at IoU thresholds 0.50..0.65 (4 of COCO's 10), not at 0.75
    loose = MaskAPAccumulator()
    half = square(10, 10, 6, (20, 20)).astype(np.uint8)
    half[10:16, 14:16] = 0  # 24 of 36 pixels: IoU 2/3
    one = InstanceTarget(truth.boxes[1:], truth.labels[1:], masks[1:])
    loose.update(one, np.array([1]), np.array([0.9]), half[None])
    r = loose.result()
    assert (r.ap50, r.ap75, r.ap) == (pytest.approx(1.0), 0.0, pytest.approx(0.4))


def test_outlines_on_i420_match_the_bgr_outlines_and_touch_only_their_box() -> None:
    from streamseg.instances import draw_outlines_i420
    from streamseg.yuv import bgr_to_i420, i420_to_bgr, planes

    base = np.full((90, 160, 3), 90, np.uint8)
    colors = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255]], np.uint8)
    inst = Instance(2, 0.9, (4, 3, 12, 9), square(3, 4, 6, (18, 32)))  # class map 18x32, frame 5x
    want = planes(bgr_to_i420(draw_outlines(base.copy(), (inst,), colors, thickness=2)))  # as x264 gets it
    data = bgr_to_i420(base)
    got = planes(draw_outlines_i420(data.copy(), (inst,), colors, thickness=2))
    assert np.abs(got[0].astype(int) - want[0].astype(int)).max() <= 2  # the same contour, antialiased alike
    changed = np.argwhere(got[0] != planes(data)[0])
    assert len(changed) > 50
    assert changed[:, 0].min() >= 13 and changed[:, 0].max() <= 48 and changed[:, 1].min() >= 18
    b, _g, r = i420_to_bgr(draw_outlines_i420(data.copy(), (inst,), colors, 2))[15, 30].tolist()  # top edge
    assert b > 150 and r < 60  # class 2's colour is blue (RGB 0, 0, 255)
