"""Instance datasets: COCO instances JSON (polygons, RLE, crowd, labelme's background category)
and VOC's SegmentationObject layout, with one-line errors for what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamseg.datasets import open_instance_dataset, target_from_masks
from streamseg.errors import ConfigError

pytest.importorskip("pycocotools", reason="pycocotools is not installed (pip install 'streamseg[rle]')")
pytest.importorskip("PIL", reason="Pillow is not installed (pip install 'streamseg[train]')")

LABELME = Path("/usr/share/doc/labelme-examples/examples/instance_segmentation")


def coco_file(root: Path, categories: list[dict[str, object]], annotations: list[dict[str, object]]) -> Path:
    (root / "img").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "img" / "a.png"), np.zeros((10, 12, 3), np.uint8))
    data = {
        "images": [{"id": 7, "file_name": "img/a.png", "height": 10, "width": 12}],
        "annotations": annotations,
        "categories": categories,
    }
    path = root / "annotations.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_polygons_rle_and_crowd(tmp_path: Path) -> None:
    from pycocotools import mask as mask_utils

    m = np.zeros((10, 12), np.uint8)
    m[6:9, 1:4] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    rle["counts"] = rle["counts"].decode("ascii")
    coco_file(
        tmp_path,
        [{"id": 3, "name": "cat"}, {"id": 1, "name": "dog"}],  # COCO's ids: no background, not in order
        [
            {"id": 1, "image_id": 7, "category_id": 3, "segmentation": [[2, 1, 6, 1, 6, 4, 2, 4]], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "segmentation": rle, "iscrowd": 0},
            {"id": 3, "image_id": 7, "category_id": 1, "segmentation": rle, "iscrowd": 1},  # crowd: left out
        ],
    )
    ds = open_instance_dataset(tmp_path)  # the folder finds annotations.json
    assert ds.kind == "coco" and ds.class_names == ("_background_", "dog", "cat")
    image, t = ds.load(0)
    assert image.shape == (10, 12, 3)
    assert t.labels.tolist() == [2, 1]
    assert t.masks[1].tolist() == m.tolist()
    assert t.boxes[1].tolist() == [1, 6, 4, 9]  # x2, y2 one past the last pixel
    assert t.masks[0, 1:4, 2:6].all() and t.masks[0].sum() <= 5 * 4  # the polygon's pixels


def test_labelme_background_category_is_index_0() -> None:
    if not LABELME.is_dir():
        pytest.skip("Debian's labelme-examples is not installed (tools/install-system-deps.sh)")
    coco = open_instance_dataset(LABELME / "data_dataset_coco" / "annotations.json")
    voc = open_instance_dataset(LABELME / "data_dataset_voc")
    assert coco.class_names == voc.class_names and coco.class_names[15] == "person"
    assert (coco.kind, voc.kind, len(coco), len(voc)) == ("coco", "voc", 3, 3)
    # the same annotations through both exports: same objects, masks within a polygon's outline
    for name in ("2011_000003", "2011_000025"):
        (a,) = [i for i, s in enumerate(coco.samples) if s.name == name]
        (b,) = [i for i, s in enumerate(voc.samples) if s.name == name]
        ta, tb = coco.load(a)[1], voc.load(b)[1]
        assert sorted(ta.labels.tolist()) == sorted(tb.labels.tolist())
        assert abs(int(ta.masks.sum()) - int(tb.masks.sum())) < 0.03 * int(tb.masks.sum())


def test_voc_segmentation_object_layout(tmp_path: Path) -> None:
    from PIL import Image

    for d in ("JPEGImages", "SegmentationClass", "SegmentationObject"):
        (tmp_path / d).mkdir()
    cv2.imwrite(str(tmp_path / "JPEGImages" / "x.jpg"), np.zeros((8, 8, 3), np.uint8))
    objects = np.zeros((8, 8), np.uint8)
    classes = np.zeros((8, 8), np.uint8)
    objects[1:3, 1:3], classes[1:3, 1:3] = 1, 2
    objects[5:8, 4:8], classes[5:8, 4:8] = 2, 1
    objects[5, 4], classes[5, 4] = 255, 255  # VOC's boundary: neither object nor class
    classes[7, 7] = 2  # a stray pixel: the object's class is its majority
    Image.fromarray(objects, mode="L").save(tmp_path / "SegmentationObject" / "x.png")
    Image.fromarray(classes, mode="L").save(tmp_path / "SegmentationClass" / "x.png")
    (tmp_path / "class_names.txt").write_text("background\ncar\nperson\n")
    ds = open_instance_dataset(tmp_path)
    _, t = ds.load(0)
    assert ds.class_names == ("background", "car", "person")
    assert t.labels.tolist() == [2, 1]
    assert t.boxes.tolist() == [[1, 1, 3, 3], [4, 5, 8, 8]]
    assert t.masks[1].sum() == 11 and t.masks[1, 5, 4] == 0


def test_target_from_masks_drops_empty_masks() -> None:
    masks = np.zeros((2, 4, 4), np.uint8)
    masks[1, 2, 3] = 1
    t = target_from_masks(masks, np.array([5, 6]))
    assert t.labels.tolist() == [6] and t.boxes.tolist() == [[3, 2, 4, 3]]


@pytest.mark.parametrize(
    ("setup", "error"),
    [
        (lambda p: p / "nothing", "no such file or folder"),
        (lambda p: (p / "x.json").write_text("{") and p / "x.json", "cannot read COCO JSON"),
        (lambda p: (p / "x.json").write_text("[]") and p / "x.json", "not a COCO instances file"),
        (
            lambda p: coco_file(p, [{"id": 1, "name": "a"}], [{"image_id": 7, "category_id": 9, "segmentation": []}]),
            "unknown category_id 9",
        ),
        (lambda p: coco_file(p, [{"id": 1}], []), "malformed COCO entry: KeyError 'name'"),
        (lambda p: (p / "JPEGImages").mkdir() or p, "instance datasets are a COCO JSON or a VOC folder"),
    ],
)
def test_bad_datasets_are_one_line_errors(tmp_path: Path, setup: object, error: str) -> None:
    path = setup(tmp_path)  # type: ignore[operator]
    with pytest.raises(ConfigError, match=error) as e:
        open_instance_dataset(path)
    assert "\n" not in str(e.value)
