"""Benchmarks: stage costs, the whole pipeline against a naive loop, and 1080p overlays against supervision.

Everything is measured in one run so the ratios compare numbers taken under the same conditions;
the markdown report records the command, date, CPU and library versions.

    .venv/bin/python benchmarks/run.py --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from streamseg import __version__  # noqa: E402
from streamseg.backends import select_backend  # noqa: E402
from streamseg.config import PipelineConfig  # noqa: E402
from streamseg.contract import LoadedModel, load_model  # noqa: E402
from streamseg.doctor import cpu_model  # noqa: E402
from streamseg.media import VideoEncoder, VideoInput, count_frames  # noqa: E402
from streamseg.overlay import Palette, Scratch, make_palette, render, voc_colors  # noqa: E402
from streamseg.pipeline import Pipeline  # noqa: E402
from streamseg.postprocess import area_ratios, to_class_maps  # noqa: E402
from streamseg.preprocess import preprocess  # noqa: E402

ALPHA = 0.5  # the overlay's default blend weight, used by every overlay measured here
PAGE_SIZE = (1920, 1080)  # the 1080p frame of section 3


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def per_item(
    fn: Callable[[int], Any], n: int, warmup: int = 5, before: Callable[[int], Any] | None = None
) -> list[float]:
    """Seconds per call of ``fn(i)`` for i in range(n), after ``warmup`` untimed calls; ``before(i)`` runs untimed."""
    out = []
    for j in range(-warmup, n):
        i = j % n
        if before is not None:
            before(i)
        t0 = time.perf_counter()
        fn(i)
        if j >= 0:
            out.append(time.perf_counter() - t0)
    return out


# --- 1. stages alone ----------------------------------------------------------------------------


def decode_all(clip: Path) -> tuple[list[np.ndarray], list[float], float]:
    """Decode the clip through VideoInput; per-frame seconds (time to the next BGR frame) and fps."""
    vin = VideoInput(str(clip))
    frames, times = [], []
    it = vin.frames()
    try:
        while True:
            t0 = time.perf_counter()
            item = next(it, None)
            if item is None:
                break
            times.append(time.perf_counter() - t0)
            frames.append(item[0])
    finally:
        vin.close()
    return frames, times, vin.info.fps or 25.0


def bench_stages(clip: Path, model: LoadedModel, palette: Palette, tmp: Path) -> tuple[list[np.ndarray], dict]:
    """Each stage alone on every frame of the clip: seconds per frame, by stage."""
    c = model.contract
    decode_all(clip)  # warm-up: file cache, codec init
    frames, decode_t, fps = decode_all(clip)
    n = len(frames)
    log(f"decoded {n} frames")
    res: dict[str, list[float]] = {"decode": decode_t}
    res["preprocess"] = per_item(lambda i: preprocess([frames[i]], c.input), n)

    # Batch 1 and batch 4 interleaved on the same frames, so their ratio is not the machine's drift.
    singles = [preprocess([f], c.input) for f in frames]
    quads = [preprocess(frames[i : i + 4], c.input) for i in range(0, n - 3, 4)]
    outputs: list[np.ndarray] = [np.empty(0)] * n
    res["infer_b1"], res["infer_b4"] = [], []
    with select_backend("onnxruntime", [], model, "cpu", 0, 4) as backend:  # warms up on enter
        for q in range(-2, len(quads)):  # two warm-up rounds
            k = q % len(quads)
            b1 = []
            for i in range(4 * k, 4 * k + 4):
                t0 = time.perf_counter()
                outputs[i] = backend.infer(singles[i])
                b1.append(time.perf_counter() - t0)
            b4 = timed(lambda k=k: backend.infer(quads[k]))
            if q >= 0:
                res["infer_b1"] += b1
                res["infer_b4"].append(b4 / 4)
        for i in range(4 * len(quads), n):  # the last frames that make no batch of 4
            outputs[i] = backend.infer(singles[i])
        description = backend.description

    def post(i: int) -> None:
        for cmap in to_class_maps(outputs[i], c):
            area_ratios(cmap, c.num_classes)

    res["postprocess"] = per_item(post, n)

    maps = [to_class_maps(o, c)[0] for o in outputs]
    ratios = [area_ratios(m, c.num_classes) for m in maps]
    work = np.empty_like(frames[0])
    scratch = Scratch()
    res["overlay"] = per_item(
        lambda i: render(work, maps[i], palette, "blend", ALPHA, ratios[i], True, scratch),
        n,
        before=lambda i: np.copyto(work, frames[i]),  # render blends into its input
    )

    h, w = frames[0].shape[:2]
    written = iter(range(10**6))
    enc = VideoEncoder(tmp / "stage-encode.mp4", w, h, fps)
    try:
        res["encode"] = per_item(lambda i: enc.write(frames[i], next(written) / fps), n)
    finally:
        enc.close()
    return frames, {"times": res, "fps": fps, "backend": description, "shape": (w, h)}


# --- 2. the whole pipeline and a naive loop -----------------------------------------------------


def pipeline_config(clip: Path, out: Path, threads: int) -> PipelineConfig:
    """The bundled clip through the bundled model, as pipelines/file.yaml does, minus the live view."""
    return PipelineConfig.model_validate(
        {
            "name": "bench",
            "sources": [{"name": "bikes", "uri": str(clip), "realtime": False}],
            "model": {"path": "selfie_landscape", "backend": "onnxruntime", "device": "cpu", "threads": threads},
            "batch": {"max_batch": 4, "max_wait_ms": 10},
            "overlay": {"mode": "blend", "alpha": ALPHA, "legend": True},
            "outputs": [
                {"type": "video", "path": str(out / "{stream}.mp4"), "preset": "ultrafast"},
                {"type": "jsonl", "path": str(out / "stats.jsonl")},
            ],
            "http": {"enabled": False},
        }
    )


def from_metrics(p: Pipeline, frames: int) -> tuple[dict[str, float], float]:
    """Seconds per frame spent in each stage, and the mean batch size, from the pipeline's histograms."""
    sums: dict[str, float] = {}
    batches = 0.0
    for metric in p.metrics.registry.collect():
        for s in metric.samples:
            if metric.name == "streamseg_stage_seconds" and s.name.endswith("_sum"):
                sums[s.labels["stage"]] = s.value / frames
            elif metric.name == "streamseg_batch_size" and s.name.endswith("_count"):
                batches = s.value
    return sums, frames / batches if batches else 0.0


def run_pipeline(clip: Path, out: Path, threads: int) -> dict[str, Any]:
    cfg = pipeline_config(clip, out, threads)
    c0, t0 = time.process_time(), time.perf_counter()
    p = Pipeline(cfg)
    summary = p.run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = summary.frames.get("bikes", 0)
    if summary.failed or n == 0:
        raise RuntimeError(f"pipeline run failed: {summary.failed or 'no frames'}")
    stages, batch = from_metrics(p, n)
    return {"frames": n, "wall": wall, "cpu": cpu, "stages": stages, "batch": batch, "video": out / "bikes.mp4"}


def run_naive(clip: Path, out: Path, model: LoadedModel, lut_bgr: np.ndarray, threads: int = 0) -> dict[str, Any]:
    """What one writes for this model without streamseg: one thread, one frame at a time, library defaults
    (``threads`` > 0 sets onnxruntime's intra-op thread count)."""
    import av
    import onnxruntime as ort

    c = model.contract
    stages = dict.fromkeys(("decode", "preprocess", "infer", "postprocess", "overlay", "encode"), 0.0)
    c0, t0 = time.process_time(), time.perf_counter()
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model.onnx_path), options, providers=["CPUExecutionProvider"])
    src = av.open(str(clip))
    vs = src.streams.video[0]
    rate = vs.average_rate or Fraction(25)
    dst = av.open(str(out / "naive.mp4"), "w")
    enc = dst.add_stream("libx264", rate=rate)
    enc.width, enc.height = vs.codec_context.width, vs.codec_context.height
    enc.pix_fmt = "yuv420p"
    enc.options = {"preset": "ultrafast", "crf": "23"}
    if len(set(c.input.mean)) != 1 or len(set(c.input.std)) != 1 or c.input.color != "RGB":
        raise ValueError("the naive loop is written for RGB models with one mean and std for all channels")
    mean, std = np.float32(c.input.mean[0]), np.float32(c.input.std[0])
    n = 0
    frames: Iterator[Any] = src.decode(vs)
    with open(out / "naive.jsonl", "w", encoding="utf-8") as jsonl:
        while True:
            t = time.perf_counter()
            frame = next(frames, None)
            if frame is None:
                break
            image = frame.to_ndarray(format="bgr24")
            t1 = time.perf_counter()
            small = cv2.cvtColor(cv2.resize(image, (c.input.width, c.input.height)), cv2.COLOR_BGR2RGB)
            tensor = ((small.astype(np.float32) - mean) / std)[None]
            t2 = time.perf_counter()
            (cmap,) = session.run([c.output.name], {c.input.name: tensor})
            cmap = cmap[0]
            t3 = time.perf_counter()
            counts = np.bincount(cmap.ravel(), minlength=c.num_classes) / cmap.size
            record = {
                "stream": "bikes",
                "frame": n,
                "pts": frame.time,
                "time": time.time(),
                "class_area_ratio": dict(zip(c.class_names, counts.tolist(), strict=True)),
            }
            jsonl.write(json.dumps(record) + "\n")
            t4 = time.perf_counter()
            color = cv2.resize(lut_bgr[cmap], (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST_EXACT)
            shown = cv2.addWeighted(image, 1 - ALPHA, color, ALPHA, 0)
            t5 = time.perf_counter()
            vf = av.VideoFrame.from_ndarray(shown, format="bgr24")
            vf.pts = n
            for packet in enc.encode(vf):
                dst.mux(packet)
            t6 = time.perf_counter()
            for name, a, b in zip(stages, (t, t1, t2, t3, t4, t5), (t1, t2, t3, t4, t5, t6), strict=True):
                stages[name] += b - a
            n += 1
    for packet in enc.encode(None):
        dst.mux(packet)
    dst.close()
    src.close()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "frames": n,
        "wall": wall,
        "cpu": cpu,
        "stages": {k: v / n for k, v in stages.items()},
        "video": out / "naive.mp4",
    }


def cpu_ticks() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs from /proc/stat; (0, 0) where there is none."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0, 0
    return fields[7], sum(fields)


def bench_end_to_end(clip: Path, model: LoadedModel, repeats: int, tmp: Path) -> dict[str, Any]:
    """Interleaved runs (pipeline and naive, each with default and one ORT thread) so drift hits all alike."""
    lut = np.zeros((256, 3), np.uint8)
    for i, k in enumerate(model.contract.classes):
        lut[i] = k.color[::-1]
    kinds: dict[str, Callable[[Path], dict[str, Any]]] = {
        "pipeline": lambda d: run_pipeline(clip, d, 0),
        "pipeline_t1": lambda d: run_pipeline(clip, d, 1),
        "naive": lambda d: run_naive(clip, d, model, lut),
        "naive_t1": lambda d: run_naive(clip, d, model, lut, 1),
    }
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    steal0, total0 = cpu_ticks()
    for r in range(repeats + 1):  # round 0 is a warm-up
        for name, fn in kinds.items():
            out = tmp / f"{name}-{r}"
            out.mkdir()
            result = fn(out)
            if r:
                runs[name].append(result)
                log(f"{name} run {r}: {result['frames'] / result['wall']:.1f} fps")
    steal1, total1 = cpu_ticks()
    steal = (steal1 - steal0) / (total1 - total0) if total1 > total0 else None
    written = {k: count_frames(v[-1]["video"]) for k, v in runs.items()}
    return {"runs": runs, "written": written, "steal": steal}


# --- 3. overlay + statistics of a 1080p frame ---------------------------------------------------


def blocky_map(h: int, w: int, classes: int, block: int = 16) -> np.ndarray:
    """A class map of square blocks cycling through every class (all present, background included)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return (((yy // block) * 7 + (xx // block) * 3) % classes).astype(np.uint8)


def bench_1080p(
    frame: np.ndarray, cmap: np.ndarray, palette: Palette, colors_rgb: list[tuple[int, int, int]], rounds: int
) -> dict[str, Any]:
    """Seconds per call (medians) of each way to draw and count ``cmap`` over ``frame``.

    The four measurements are interleaved, one call of each per round, so the machine's drift
    affects them alike and their ratios stay meaningful.
    """
    import supervision as sv

    fh, fw = frame.shape[:2]
    k = palette.num_classes
    work = np.empty_like(frame)

    # streamseg: statistics on the model-resolution map, blend + legend into the frame.
    scratch = Scratch()

    def streamseg() -> None:
        ratios = area_ratios(cmap, k)
        render(work, cmap, palette, "blend", ALPHA, ratios, True, scratch)

    # plain cv2: LUT at model resolution, nearest upscale, addWeighted over the whole frame.
    lut = np.zeros((256, 1, 3), np.uint8)
    lut[: len(palette.colors_bgr), 0] = palette.colors_bgr

    def plain() -> None:
        np.bincount(cmap.ravel(), minlength=k)
        small = cv2.LUT(cv2.merge([cmap, cmap, cmap]), lut)
        big = cv2.resize(small, (fw, fh), interpolation=cv2.INTER_NEAREST_EXACT)
        cv2.addWeighted(work, 1 - ALPHA, big, ALPHA, 0, dst=work)

    # supervision: one full-size boolean mask per present painted class, then MaskAnnotator.
    painted = {i for i in range(k) if palette.lut[i, 3]}
    detections: list[sv.Detections] = []

    def build() -> None:
        big = cv2.resize(cmap, (fw, fh), interpolation=cv2.INTER_NEAREST_EXACT)
        present = [int(i) for i in np.flatnonzero(np.bincount(big.ravel(), minlength=k)) if int(i) in painted]
        masks = np.stack([big == i for i in present])
        det = sv.Detections(xyxy=sv.mask_to_xyxy(masks).astype(np.float32), mask=masks, class_id=np.array(present))
        _ = det.area / (fh * fw)  # the statistics a supervision user reads
        detections[:] = [det]

    annotator = sv.MaskAnnotator(
        color=sv.ColorPalette([sv.Color(r=r, g=g, b=b) for r, g, b in colors_rgb]),
        opacity=ALPHA,
        color_lookup=sv.ColorLookup.CLASS,
    )

    def annotate() -> None:
        annotator.annotate(work, detections[0])

    def floor() -> None:
        cv2.addWeighted(work, 1 - ALPHA, frame, ALPHA, 0, dst=work)

    ways = {"streamseg": streamseg, "cv2": plain, "sv_masks": build, "sv_annotate": annotate, "floor": floor}
    times: dict[str, list[float]] = {name: [] for name in ways}
    for r in range(rounds + 3):  # the first 3 rounds warm up
        for name, fn in ways.items():
            np.copyto(work, frame)
            t = timed(fn)
            if r >= 3:
                times[name].append(t)

    # Same picture? streamseg without its legend against supervision.
    np.copyto(work, frame)
    a = render(work, cmap, palette, "blend", ALPHA, None, False, Scratch()).copy()
    np.copyto(work, frame)
    b = annotator.annotate(work, detections[0])
    diff = int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())
    out: dict[str, Any] = {name: median(ts) for name, ts in times.items()}
    out.update(masks=len(detections[0]), diff=diff, rounds=rounds)
    return out


# --- report -------------------------------------------------------------------------------------


def sv_version() -> str:
    import supervision

    return str(supervision.__version__)


def versions() -> str:
    import av
    import onnxruntime
    import supervision

    libav = av.library_versions.get("libavcodec", ())
    parts = [
        f"streamseg {__version__}",
        f"Python {platform.python_version()}",
        f"numpy {np.__version__}",
        f"OpenCV {cv2.__version__}",
        f"onnxruntime {onnxruntime.__version__}",
        f"PyAV {av.__version__} (libavcodec {'.'.join(map(str, libav))})",
        f"supervision {supervision.__version__}",
    ]
    return ", ".join(parts)


def fps_of(runs: list[dict[str, Any]]) -> list[float]:
    return [r["frames"] / r["wall"] for r in runs]


def report(command: str, stages: dict[str, Any], e2e: dict[str, Any], hd: dict[str, dict[int, Any]], args: Any) -> str:
    t = stages["times"]
    w, h = stages["shape"]
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    clip = args.clip.relative_to(REPO) if args.clip.is_relative_to(REPO) else args.clip
    lines: list[str] = [
        "# Benchmarks",
        "",
        f"Generated {now} by `{command}` ({args.elapsed:.0f} s).",
        "",
        f"- Machine: {cpu_model()}, {cores} logical cores ({usable} usable by this process), {platform.system()}.",
        f"- Libraries: {versions()}.",
        f"- Inputs: `{clip}` ({w}x{h}, {len(t['decode'])} frames, {stages['fps']:g} fps) and the bundled model "
        f"`selfie_landscape` (ONNX, 144x256 NHWC in, uint8 class map out, 2 classes) on {stages['backend']}.",
        "- Method: each measurement is warmed up, then timed with `time.perf_counter`; per-frame figures are "
        "medians over the samples stated. All numbers come from this one run, so ratios compare like with like. "
        "The machine is small and shared: run-to-run spread is large, hence the min–max column and the "
        "interleaved runs.",
        "",
        "## 1. Each stage alone",
        "",
        "| stage | what is timed | ms / frame (median) | samples |",
        "|---|---|---:|---:|",
    ]
    rows = [
        ("decode", "decode", "`VideoInput.frames()`: PyAV decode + BGR24 conversion"),
        ("preprocess", "preprocess", "`preprocess`: resize, RGB, normalize, batch of 1"),
        ("infer, batch 1", "infer_b1", "`select_backend('onnxruntime')` `.infer`, default threads"),
        ("infer, batch 4", "infer_b4", "the same, batch of 4, per frame (interleaved with batch 1)"),
        ("postprocess", "postprocess", "`to_class_maps` + `area_ratios`"),
        ("overlay", "overlay", f"`render` blend, legend on, reused `Scratch`, {w}x{h}"),
        ("encode", "encode", "`VideoEncoder.write`: libx264 ultrafast, zerolatency, crf 23"),
    ]
    for label, key, what in rows:
        lines.append(f"| {label} | {what} | {ms(median(t[key]))} | {len(t[key])} |")
    serial = sum(median(t[k]) for k in ("decode", "preprocess", "infer_b4", "postprocess", "overlay", "encode"))
    lines += [
        "",
        f"All stages one after the other (batch-4 inference): {ms(serial)} ms per frame, about "
        f"{1 / serial:.0f} fps on one core.",
        "",
    ]

    runs = e2e["runs"]
    fps = {k: median(fps_of(v)) for k, v in runs.items()}
    names = {
        "pipeline": "streamseg pipeline",
        "pipeline_t1": "streamseg pipeline, `model.threads: 1`",
        "naive": "naive loop",
        "naive_t1": "naive loop, `intra_op_num_threads = 1`",
    }
    ratio = fps["pipeline"] / fps["naive"]
    lines += [
        "## 2. Whole clip: streamseg pipeline vs a naive loop",
        "",
        "Each run takes the whole clip to an H.264 MP4 (libx264 ultrafast, crf 23) and a JSON Lines file of "
        "per-frame class areas, in a temporary folder. fps = frames / wall time of the whole run, start-up "
        f"(model load, session creation) included. {args.repeats} runs of each kind, interleaved, after one "
        "warm-up run of each. CPU = process CPU time (all threads) per frame.",
        "",
        "- **streamseg pipeline**: `Pipeline(cfg).run()` with `pipelines/file.yaml`'s settings (max_batch 4, "
        "max_wait_ms 10, blend with legend), `realtime: false`, `http.enabled: false`, `model.threads: 0` "
        "(onnxruntime's default: one intra-op thread per core).",
        "- **naive loop**: one thread, one frame at a time: PyAV decode → `cv2.resize` + RGB + float → "
        "`onnxruntime.InferenceSession` (default options, batch 1) → `np.bincount` + `json.dumps` → palette "
        "colorize, `cv2.resize` nearest, `cv2.addWeighted` over the whole frame → PyAV libx264 ultrafast.",
        "- The `threads: 1` rows change only onnxruntime's intra-op thread count, in both.",
        "",
        "| run | fps (median) | fps min–max | CPU ms / frame | frames per engine call | runs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    cpu = {k: median([r["cpu"] / r["frames"] for r in v]) for k, v in runs.items()}
    for key, label in names.items():
        f = fps_of(runs[key])
        batch = f"{statistics.fmean(r['batch'] for r in runs[key]):.2f}" if "batch" in runs[key][0] else "1"
        lines.append(
            f"| {label} | {fps[key]:.1f} | {min(f):.1f}–{max(f):.1f} | {ms(cpu[key])} | {batch} | {len(runs[key])} |"
        )
    lines += [
        "",
        f"- **pipeline / naive, both with library defaults: {ratio:.2f}x** (target ≥ 1.5x: "
        f"{'met' if ratio >= 1.5 else 'not met'}).",
        f"- pipeline with `model.threads: 1` / naive with defaults: {fps['pipeline_t1'] / fps['naive']:.2f}x.",
        f"- pipeline / naive, both with one onnxruntime thread: {fps['pipeline_t1'] / fps['naive_t1']:.2f}x.",
        f"- CPU per frame, onnxruntime's default thread pool → one intra-op thread: pipeline "
        f"{ms(cpu['pipeline'])} → {ms(cpu['pipeline_t1'])} ms, naive {ms(cpu['naive'])} → {ms(cpu['naive_t1'])} ms. "
        "The default pool's extra worker spin-waits between runs (onnxruntime's "
        "`session.intra_op.allow_spinning`) and takes a core from decoding and encoding, while this small model "
        "gains little or nothing from a second thread (compare the infer row below).",
        (
            f"- CPU time stolen by the hypervisor while these runs went: {100 * e2e['steal']:.1f} %."
            if e2e["steal"] is not None
            else "- CPU steal time: not available here."
        ),
        f"- Output check: the last video of each kind holds {', '.join(map(str, e2e['written'].values()))} "
        f"frames (in the table's order) of the clip's {len(t['decode'])}.",
        "",
        "Where the time goes, ms per frame: alone (section 1, median) and inside the runs (mean over the runs; "
        "the pipeline's from its own `streamseg_stage_seconds` histograms divided by frames). The pipeline's "
        "stages run on three threads (reader, inference loop, outputs) sharing the cores, so a stage's time "
        "inside it includes waiting for a core or the GIL, and the stages overlap.",
        "",
        "| stage | alone | naive | naive, threads 1 | pipeline | pipeline, threads 1 |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def in_run(kind: str, stage: str) -> str:
        return ms(statistics.fmean(r["stages"].get(stage, 0.0) for r in runs[kind]))

    for stage in ("decode", "preprocess", "infer", "postprocess", "overlay", "encode"):
        alone = ms(median(t["infer_b4" if stage == "infer" else stage]))
        label = "infer (alone: batch 4)" if stage == "infer" else stage
        cells = " | ".join(in_run(k, stage) for k in ("naive", "naive_t1", "pipeline", "pipeline_t1"))
        lines.append(f"| {label} | {alone} | {cells} |")
    walls = " | ".join(ms(1 / fps[k]) for k in ("naive", "naive_t1", "pipeline", "pipeline_t1"))
    lines += [
        f"| **wall time per frame** | {ms(serial)} (sum) | {walls} |",
        "",
    ]

    lines += [
        "## 3. Overlay + statistics of a 1080p frame: streamseg vs supervision",
        "",
        f"Frame: clip frame {args.hd_frame} upscaled to {PAGE_SIZE[0]}x{PAGE_SIZE[1]} (`cv2.resize`, bilinear). "
        "2 classes: the model's own class map of that frame (144x256). 21 classes: a synthetic 144x256 map of "
        "16-pixel blocks cycling through all 21 classes, PASCAL VOC colors. Two scenarios: **every class "
        "painted** (the like-for-like comparison: supervision gets one mask per present class, background "
        "included, and both draw the same picture) and **background see-through** (streamseg's default for "
        "classes named background; supervision gets masks of the painted classes only). Median of "
        f"{args.rounds} rounds; each round times one call of each column (interleaved, so drift affects all "
        "alike), the frame restored untimed before each call.",
        "",
        "- **streamseg**: `area_ratios` on the model-resolution map + `render(..., 'blend', legend=True)` with a "
        "reused `Scratch`.",
        "- **plain cv2**: `np.bincount` + `cv2.LUT` at model resolution + `cv2.resize` nearest + "
        "`cv2.addWeighted` over the whole frame.",
        "- **sv masks**: what a supervision user must do first: nearest upscale of the class map to 1080p, one "
        "boolean 1080p mask per present painted class, `sv.mask_to_xyxy`, `sv.Detections`, `Detections.area` "
        "for the statistics.",
        "- **sv annotate**: `sv.MaskAnnotator(opacity=0.5, color_lookup=CLASS).annotate` alone.",
        "- **one addWeighted**: a single `cv2.addWeighted` of two 1080p frames, the floor for any full-frame blend.",
        "",
    ]
    for scenario, results in hd.items():
        lines += [
            f"### {scenario}",
            "",
            "| classes | masks | streamseg | plain cv2 | sv masks | sv annotate | one addWeighted | "
            "sv annotate / streamseg | (sv masks + annotate) / streamseg | target |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for classes, target in ((2, 10), (21, 40)):
            r = results[classes]
            ss, both = r["streamseg"], r["sv_annotate"] + r["sv_masks"]
            lines.append(
                f"| {classes} | {r['masks']} | {ms(ss)} | {ms(r['cv2'])} | {ms(r['sv_masks'])} "
                f"| {ms(r['sv_annotate'])} | {ms(r['floor'])} | **{r['sv_annotate'] / ss:.1f}x** "
                f"| **{both / ss:.1f}x** | ≥ {target}x |"
            )
        lines += [
            "",
            "Times in ms per frame. streamseg also draws its legend; supervision draws none. Check: streamseg with "
            "the legend off and supervision draw the same picture (largest difference "
            f"{results[2]['diff']} and {results[21]['diff']} levels of 255 for 2 and 21 classes).",
            "",
        ]
        for classes, target in ((2, 10), (21, 40)):
            r = results[classes]
            alone, both = r["sv_annotate"] / r["streamseg"], (r["sv_annotate"] + r["sv_masks"]) / r["streamseg"]
            verdict = (
                "met" if min(alone, both) >= target else "met counting mask building" if both >= target else "not met"
            )
            lines.append(f"- {classes} classes, target ≥ {target}x: {verdict} ({alone:.1f}x on annotate alone).")
        lines.append("")
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="markdown report to write (default: print it)")
    ap.add_argument("--clip", type=Path, default=REPO / "samples" / "bikes.mp4")
    ap.add_argument("--repeats", type=int, default=9, help="whole-clip runs of each kind (after one warm-up)")
    ap.add_argument("--rounds", type=int, default=40, help="timed rounds of the 1080p overlay measurements")
    ap.add_argument("--hd-frame", type=int, default=120, help="clip frame used for the 1080p overlay")
    args = ap.parse_args()
    args.clip = args.clip.resolve()
    if not args.clip.is_file():
        print(f"benchmark: {args.clip} not found; run `make samples` first", file=sys.stderr)
        return 2
    try:
        import supervision  # noqa: F401
    except ImportError:
        print("benchmark: supervision is missing: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    exe = os.path.relpath(sys.executable) if not os.path.relpath(sys.executable).startswith("..") else sys.executable
    command = shlex.join([exe, os.path.relpath(sys.argv[0]), *sys.argv[1:]])
    started = time.perf_counter()

    model = load_model("selfie_landscape")
    c = model.contract
    palette = make_palette(c.class_names, [k.color for k in c.classes])
    with tempfile.TemporaryDirectory(prefix="streamseg-bench-") as tmp_name:
        tmp = Path(tmp_name)
        log("1. stages alone")
        frames, stages = bench_stages(args.clip, model, palette, tmp)
        log("2. whole clip: pipeline vs naive")
        e2e = bench_end_to_end(args.clip, model, args.repeats, tmp)

    log("3. 1080p overlay vs supervision")
    big = cv2.resize(frames[args.hd_frame], PAGE_SIZE, interpolation=cv2.INTER_LINEAR)
    with select_backend("onnxruntime", [], model, "cpu", 0, 1) as backend:
        selfie_map = to_class_maps(backend.infer(preprocess([big], c.input)), c)[0].copy()
    colors2 = [k.color for k in c.classes]
    colors21 = voc_colors(21)
    names21 = ["background", *(f"class{i}" for i in range(1, 21))]
    map21 = blocky_map(c.input.height, c.input.width, 21)
    hd: dict[str, dict[int, dict[str, Any]]] = {}
    # "every class painted" is the like-for-like comparison: supervision gets one mask per class.
    for scenario, transparent in (("every class painted", []), ("background see-through", None)):
        hd[scenario] = {
            2: bench_1080p(big, selfie_map, make_palette(c.class_names, colors2, transparent), colors2, args.rounds),
            21: bench_1080p(big, map21, make_palette(names21, colors21, transparent), colors21, args.rounds),
        }

    args.elapsed = time.perf_counter() - started
    text = report(command, stages, e2e, hd, args)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        # Only this script's block is replaced: the hand-kept sections (recording modes, soak) and
        # benchmarks/throughput.py's block in the same file stay as they are.
        old = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        start, end = "<!-- run.py: start -->", "<!-- run.py: end -->"
        block = f"{start}\n{text.rstrip()}\n{end}\n"
        if start in old and end in old:
            text = old.split(start, 1)[0] + block + "\n" + old.split(end, 1)[1].lstrip("\n")
        else:
            text = block + ("\n" + old if old else "")
        args.out.write_text(text, encoding="utf-8")
        log(f"wrote {args.out} in {args.elapsed:.0f} s")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
