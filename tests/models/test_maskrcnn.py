"""Mask R-CNN (torchvision's, in the zoo): parameter count, the ops it needs where torchvision's
C++ ops do not load, the backbone loader, training steps through `streamseg train`."""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'streamseg[train]')")
if importlib.util.find_spec("torchvision") is None:  # not importorskip: the import goes through the zoo's door
    pytest.skip("torchvision is not installed (pip install 'streamseg[train]')", allow_module_level=True)

from streamseg.errors import ModelError  # noqa: E402
from streamseg.models import build, count_params, network_info  # noqa: E402
from streamseg.models._torchvision import _nms, roi_align_grid, torchvision  # noqa: E402

TINY = {"height": 64, "width": 80, "detections": 5, "rpn_pre_nms": 20, "rpn_post_nms": 10}
TINY_TRAIN = {"rpn_pre_nms_train": 40, "rpn_post_nms_train": 20, "box_batch": 16}


def test_parameter_count_is_torchvisions_44_4_m(capsys: pytest.CaptureFixture[str]) -> None:
    model = build("maskrcnn")  # 91 classes, torchvision's COCO configuration
    n = count_params(model)
    with capsys.disabled():
        print(f"\nMask R-CNN ResNet-50-FPN (91 classes): {n:,} parameters")
    assert n == 44_454_513
    assert abs(n / 1e6 - network_info("maskrcnn").paper_params_m) / 44.4 < 0.002  # type: ignore[operator]
    # each class: box classifier 1024 + 1, box regression 4 x (1024 + 1), mask predictor 256 + 1
    assert count_params(build("maskrcnn", 2)) == n - 89 * 5_382 == 43_975_515


def test_builds_with_the_options_it_is_given() -> None:
    model = build("maskrcnn", 3, **TINY)
    assert model.transform.min_size == (64,) and model.transform.max_size == 80
    assert model.roi_heads.detections_per_img == 5
    model.eval()
    with torch.inference_mode():
        (out,) = model([torch.rand(3, 64, 80)])
    assert set(out) == {"boxes", "labels", "scores", "masks"}
    assert out["masks"].shape[1:] == (1, 64, 80) and out["boxes"].shape[0] <= 5


def _reference_roi_align() -> object:
    torchvision()
    return importlib.import_module("torchvision.ops.roi_align")._roi_align.__wrapped__


@pytest.mark.parametrize("sampling_ratio", [1, 2, -1])
@pytest.mark.parametrize("aligned", [False, True])
def test_roi_align_matches_torchvisions_reference(sampling_ratio: int, aligned: bool) -> None:
    """The fast RoIAlign against torchvision's own pure-PyTorch transcription of its CUDA kernel,
    on boxes inside the map (outside it the kernel zeroes points and the transcription does not)."""
    ref = _reference_roi_align()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 20, 24, generator=g)
    corners = torch.rand(25, 4, generator=g) * torch.tensor([18.0, 14, 18, 14])
    boxes = torch.cat([corners[:, :2].minimum(corners[:, 2:]), corners[:, :2].maximum(corners[:, 2:])], 1)
    boxes[:3, 2:] = boxes[:3, :2] + 0.3  # below one pixel: aligned=False makes them 1x1
    rois = torch.cat([torch.randint(0, 2, (25, 1), generator=g).float(), boxes], 1)
    want = ref(x, rois, 1.0, 7, 5, sampling_ratio, aligned)  # type: ignore[operator]
    got = roi_align_grid(x, rois, 1.0, 7, 5, sampling_ratio, aligned)
    assert torch.allclose(got, want, atol=1e-5)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    (ga,) = torch.autograd.grad(ref(xa, rois, 1.0, 7, 5, sampling_ratio, aligned).pow(2).sum(), xa)  # type: ignore[operator]
    (gb,) = torch.autograd.grad(roi_align_grid(xb, rois, 1.0, 7, 5, sampling_ratio, aligned).pow(2).sum(), xb)
    assert torch.allclose(ga, gb, atol=1e-4)


def test_roi_align_zeroes_points_beyond_the_map_as_the_kernel_does() -> None:
    x = torch.ones(1, 1, 4, 4)
    inside = roi_align_grid(x, torch.tensor([[0.0, 0, 0, 4, 4]]), 1.0, 2, 2, 1, False)
    assert torch.equal(inside, torch.ones(1, 1, 2, 2))
    # a box from x = 2 to 8: its left bin samples x = 3.5 (clamped to the last column), its right
    # bin x = 6.5, past the map's edge (4)
    half = roi_align_grid(x, torch.tensor([[0.0, 2, 0, 8, 4]]), 1.0, 1, 2, 1, False)
    assert half[0, 0, 0].tolist() == [1.0, 0.0]


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]])
    scores = torch.tensor([0.5, 0.9, 0.3, 0.8])
    # IoU(1, 0) = 81/119 = 0.68; IoU(3, 0) = 0.9; IoU(1, 3) = 72/118 = 0.61
    assert _nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert _nms(boxes, scores, 0.65).tolist() == [1, 3, 2]
    assert _nms(boxes, scores, 0.95).tolist() == [1, 3, 0, 2]
    assert _nms(boxes[:0], scores[:0], 0.5).tolist() == []
    tv = torchvision()
    assert tv.ops.nms(boxes, scores, 0.65).tolist() == [1, 3, 2]  # torchvision's own entry point


def test_pretrained_backbone_comes_from_a_local_torchvision_resnet50_file(tmp_path: Path) -> None:
    tv = torchvision()
    torch.manual_seed(1)
    resnet = tv.models.resnet50()
    path = tmp_path / "resnet50.pth"
    torch.save(resnet.state_dict(), path)
    model = build("maskrcnn", 3, pretrained_backbone=str(path), **TINY)
    body = model.backbone.body
    assert torch.equal(body.conv1.weight, resnet.conv1.weight)
    assert torch.equal(body.layer4[2].bn3.running_var, resnet.layer4[2].bn3.running_var)
    assert not body.conv1.weight.requires_grad and body.layer4[0].conv1.weight.requires_grad  # 3 stages train
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(ModelError, match=r"bad\.pth"):
        build("maskrcnn", 3, pretrained_backbone=str(bad), **TINY)


def write_coco(root: Path, images: int = 2, size: tuple[int, int] = (48, 64)) -> Path:
    """A COCO instances dataset of rectangles: class 1 on the left, class 2 on the right."""
    import cv2

    (root / "JPEGImages").mkdir(parents=True)
    h, w = size
    coco: dict[str, list[dict[str, object]]] = {"images": [], "annotations": [], "categories": []}
    coco["categories"] = [{"id": 1, "name": "left"}, {"id": 2, "name": "right"}]
    rng = np.random.default_rng(0)
    for i in range(images):
        image = rng.integers(0, 40, (h, w, 3), dtype=np.uint8)
        image[8:30, 4 + i : 24 + i] = (0, 0, 220)
        image[10:40, 36 : 60 - i] = (220, 0, 0)
        cv2.imwrite(str(root / "JPEGImages" / f"{i}.png"), image)
        coco["images"].append({"id": i, "file_name": f"JPEGImages/{i}.png", "height": h, "width": w})
        for cat, (x0, y0, x1, y1) in ((1, (4 + i, 8, 24 + i, 30)), (2, (36, 10, 60 - i, 40))):
            poly = [x0, y0, x1, y0, x1, y1, x0, y1]
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]),
                    "image_id": i,
                    "category_id": cat,
                    "segmentation": [poly],
                    "iscrowd": 0,
                }
            )
    path = root / "annotations.json"
    path.write_text(json.dumps(coco))
    return path


@pytest.mark.slow
def test_train_two_steps_writes_a_checkpoint_and_an_instance_sidecar(tmp_path: Path) -> None:
    from streamseg.cli import main
    from streamseg.contract import load_model

    data = write_coco(tmp_path / "data")
    options = [f"--option={k}={v}" for k, v in {**TINY, **TINY_TRAIN}.items() if k not in ("height", "width")]
    code = main(
        ["train", "maskrcnn", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1",
         "--batch-size", "1", "--size", "48x64", "--optimizer", "adamw", "--lr", "1e-4", *options]
    )  # fmt: skip
    assert code == 0
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert state["epoch"] == 1 and np.isfinite(state["loss"])
    assert state["meta"]["class_names"] == ["_background_", "left", "right"]
    assert state["meta"]["options"]["height"] == 48 and state["meta"]["std"] == (255.0, 255.0, 255.0)
    c = load_model(str(tmp_path / "run" / "last.json")).contract
    assert c.output.kind == "instances" and c.output.boxes == "boxes" and c.input.height == 48


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Any]:
    """An untrained tiny Mask R-CNN (3 classes, 48x64) checkpoint, its ONNX export, and a dataset."""
    from streamseg.export import export_onnx
    from streamseg.models.checkpoint import CheckpointMeta, save_checkpoint
    from streamseg.train_instances import MEAN, STD

    root = tmp_path_factory.mktemp("maskrcnn")
    torch.manual_seed(0)
    options = {**TINY, "height": 48, "width": 64}
    model = build("maskrcnn", 3, **options)
    meta = CheckpointMeta(
        "maskrcnn",
        3,
        ["_background_", "left", "right"],
        [(0, 0, 0), (255, 0, 0), (0, 0, 255)],
        48,
        64,
        options,
        MEAN,
        STD,
    )
    save_checkpoint(root / "last.pt", model, meta)
    report = export_onnx(root / "last.pt", root / "m.onnx")
    return root / "last.pt", root / "m.onnx", write_coco(root / "data"), report


@pytest.mark.slow
def test_export_parity_boxes_scores_masks(exported: tuple[Path, Path, Path, Any]) -> None:
    import onnx

    from streamseg.contract import load_model
    from streamseg.export import InstanceParityReport, export_instances

    _, onnx_path, _, report = exported
    assert isinstance(report, InstanceParityReport) and report.detections > 0
    assert report.max_box_diff < 0.01 and report.max_score_diff < 1e-4 and report.max_mask_diff < 1e-3

    def ops(graph: onnx.GraphProto) -> set[str]:  # with the subgraphs of If/Loop (batched NMS is scripted)
        found = set()
        for node in graph.node:
            found.add(node.op_type)
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    found |= ops(a.g)
        return found

    assert {"RoiAlign", "NonMaxSuppression"} <= ops(onnx.load(str(onnx_path)).graph)  # TensorRT 10: native layers
    c = load_model(str(onnx_path)).contract
    assert (c.output.kind, c.output.name, c.input.std) == ("instances", "masks", (255.0, 255.0, 255.0))
    # the gate refuses, writing nothing, when torch and ONNX Runtime disagree beyond its limits
    with pytest.raises(ModelError, match=r"parity failed.*nothing written"):
        export_instances(exported[0], onnx_path.parent / "strict.onnx", max_score_diff=-1.0)
    assert not (onnx_path.parent / "strict.onnx").exists()


@pytest.mark.slow
def test_onnxruntime_backend_gives_torchs_instances_and_eval_agrees(exported: tuple[Path, Path, Path, Any]) -> None:
    from streamseg.backends import select_backend
    from streamseg.contract import load_model
    from streamseg.datasets import open_instance_dataset
    from streamseg.evaluate import evaluate_instances_backend
    from streamseg.models.checkpoint import load_network
    from streamseg.preprocess import preprocess
    from streamseg.train_instances import evaluate_instances

    checkpoint, onnx_path, data, _ = exported
    model = load_model(str(onnx_path))
    ds = open_instance_dataset(data)
    image, _ = ds.load(0)
    x = preprocess([image, image[:, ::-1].copy()], model.contract.input)
    net, meta = load_network(checkpoint)
    net.eval()
    with select_backend("auto", ["torch", "onnxruntime"], model, "cpu", 0, 2) as engine:
        assert engine.name == "onnxruntime"  # torch runs no instance models: skipped with its reason
        outs = engine.infer_instances(x)
    assert len(outs) == 2
    for out, item in zip(outs, x, strict=True):
        with torch.inference_mode():
            (ref,) = net([torch.from_numpy(item)])
        assert np.array_equal(out.labels, ref["labels"].numpy())
        assert np.allclose(out.boxes, ref["boxes"].numpy(), atol=1e-3)
        assert np.allclose(out.masks, ref["masks"].numpy(), atol=1e-3)
    # mask AP through the pipeline's backend equals mask AP from the torch model itself
    via_onnx = evaluate_instances_backend(str(onnx_path), str(data))
    via_torch = evaluate_instances(net, [ds], meta, torch.device("cpu"))
    assert via_onnx.detections == via_torch.detections > 0 and via_onnx.instances == 4
    assert (via_onnx.ap, via_onnx.ap50) == pytest.approx((via_torch.ap, via_torch.ap50))


@pytest.mark.slow
def test_pipeline_runs_an_instance_model_into_records_and_metrics(
    exported: tuple[Path, Path, Path, Any], tmp_path: Path
) -> None:
    """streamseg run on an exported Mask R-CNN: each frame's instances in the JSON Lines record, their
    per-class counts on the metric, and the area ratios those of the class map painted from them."""
    from streamseg.config import parse_config
    from streamseg.pipeline import Pipeline

    _, onnx_path, _, _ = exported
    sidecar = json.loads(onnx_path.with_suffix(".json").read_text())
    sidecar["output"]["score_threshold"] = 0.0  # an untrained head scores ~1/3: keep everything it finds
    (tmp_path / "m.json").write_text(json.dumps({**sidecar, "onnx": str(onnx_path)}))
    cfg = parse_config(f"""
sources: [{{name: cam, uri: "synthetic://?width=128&height=96&frames=3"}}]
model: {{path: "{tmp_path / "m.json"}", backend: auto, device: cpu}}
batch: {{max_batch: 2, max_wait_ms: 5}}
outputs: [{{type: jsonl, path: "{tmp_path}/stats.jsonl"}}]
http: {{enabled: false, port: 0}}
""")
    pipeline = Pipeline(cfg)
    summary = pipeline.run()
    assert summary.frames == {"cam": 3} and "onnxruntime" in summary.backend
    records = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == [0, 1, 2]
    last = records[-1]["instances"]
    assert 0 < len(last) <= TINY["detections"]
    assert [r["score"] for r in last] == sorted((r["score"] for r in last), reverse=True)
    for r in last:
        x1, y1, x2, y2 = r["box"]
        assert r["class"] in ("left", "right") and 0 <= x1 <= x2 <= 128 and 0 <= y1 <= y2 <= 96  # frame pixels
    text = pipeline.metrics.exposition().decode()
    for name in ("left", "right"):
        n = sum(r["class"] == name for r in last)
        assert f'streamseg_instances{{class="{name}",stream="cam"}} {float(n)}' in text
    assert 'streamseg_instances{class="_background_"' not in text
    ratios = records[-1]["class_area_ratio"]  # of the class map painted from the instances' masks
    painted = {r["class"] for r in last if r["mask_area"] > 0}
    assert {name for name in ("left", "right") if ratios[name] > 0} <= painted
