"""Mask flicker on the sample clip, without and with temporal smoothing (postprocess.temporal).

Runs the real pipeline (``Pipeline.run``, bundled model, the ONNX Runtime CPU backend) on the first
N frames of samples/bikes.mp4 once per setting, with ``postprocess.rle`` exporting the person mask
of every frame into the JSONL records, and measures on the decoded masks (model resolution):

- mean |Δ person area ratio| between consecutive frames;
- mean fraction of pixels whose label flips between consecutive frames.

The cost per frame of the smoothing itself is timed on the unsmoothed maps of the same run
(``TemporalFilter.class_maps``, one frame per call, as the loop calls it for batch 1), and the
RLE encoding of one mask beside it.

    .venv/bin/python benchmarks/flicker.py [--frames 250] [--k 3 5]

It prints a markdown table (docs/flicker.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def run(clip: Path, frames: int, temporal: str, out: Path) -> list[np.ndarray]:
    """The person masks of one pipeline run, in frame order, decoded from its JSONL records."""
    from pycocotools import mask as cocomask

    from streamseg.config import parse_config
    from streamseg.pipeline import Pipeline

    cfg = parse_config(
        f"""
sources: [{{name: clip, uri: "{clip}"}}]
model: {{path: selfie_landscape, backend: onnxruntime}}
postprocess: {{temporal: {temporal}, rle: {{classes: [person]}}}}
outputs: [{{type: jsonl, path: "{out}"}}]
http: {{enabled: false}}
""",
        "flicker.yaml",
    )
    summary = Pipeline(cfg, max_frames=frames).run()
    if summary.frames.get("clip") != frames:
        raise SystemExit(f"expected {frames} frames, the run processed {summary.frames}")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    records.sort(key=lambda r: r["frame"])
    with warnings.catch_warnings():  # pycocotools' decode and numpy 2's copy keyword
        warnings.simplefilter("ignore", DeprecationWarning)
        return [cocomask.decode(r["rle"]["person"]).astype(bool) for r in records]


def flicker(masks: list[np.ndarray]) -> tuple[float, float]:
    """(mean |Δ person area ratio|, mean fraction of flipped pixels) between consecutive frames."""
    area = np.array([m.mean() for m in masks])
    flips = [float(np.mean(a != b)) for a, b in itertools.pairwise(masks)]
    return float(np.mean(np.abs(np.diff(area)))), float(np.mean(flips))


def cost_ms(masks: list[np.ndarray], temporal: dict[str, object]) -> float:
    """Median milliseconds of one frame through ``TemporalFilter.class_maps`` (batch of 1)."""
    from streamseg.config import TemporalConfig
    from streamseg.contract import load_model
    from streamseg.frames import Frame
    from streamseg.temporal import TemporalFilter

    f = TemporalFilter(TemporalConfig.model_validate(temporal), load_model("selfie_landscape").contract)
    image = np.zeros((272, 640, 3), np.uint8)
    times = []
    for i, m in enumerate(masks):
        maps = m.astype(np.uint8)[None]
        frame = Frame("clip", i, i / 25, i / 25, 0.0, image)
        t0 = time.perf_counter()
        f.class_maps([frame], maps)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def rle_ms(masks: list[np.ndarray]) -> float:
    from streamseg.rle import encode

    times = []
    for m in masks:
        t0 = time.perf_counter()
        encode(m)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=250, help="first N frames of the clip (it has 250)")
    ap.add_argument("--k", type=int, nargs="+", default=[3, 5], help="majority window sizes")
    ap.add_argument("--clip", type=Path, default=REPO / "samples" / "bikes.mp4")
    args = ap.parse_args()

    settings: list[tuple[str, str, dict[str, object]]] = [("none", "{mode: none}", {"mode": "none"})]
    settings += [(f"majority, k={k}", f"{{mode: majority, k: {k}}}", {"mode": "majority", "k": k}) for k in args.k]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        raw: list[np.ndarray] = []
        for label, yaml_value, temporal in settings:
            masks = run(args.clip, args.frames, yaml_value, Path(tmp) / "stats.jsonl")
            raw = raw or masks
            d_area, flipped = flicker(masks)
            rows.append((label, d_area, flipped, cost_ms(raw, temporal)))
    print(f"{args.frames} frames of {args.clip.name}, model selfie_landscape (144x256 class maps),")
    print(f"{platform.processor() or platform.machine()}, numpy {np.__version__}\n")
    print("| temporal | mean abs Δ person area ratio | mean flipped pixels | vs none | smoothing ms/frame |")
    print("|---|---:|---:|---|---:|")
    base_area, base_flip = rows[0][1], rows[0][2]
    for label, d_area, flipped, ms in rows:
        rel = "" if label == "none" else f"{d_area / base_area:.0%} / {flipped / base_flip:.0%}"
        print(f"| {label} | {d_area:.5f} | {flipped:.5f} | {rel} | {ms:.3f} |")
    print(f"\nRLE of one person mask (pycocotools encode): {rle_ms(raw):.3f} ms median")


if __name__ == "__main__":
    main()
