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
from streamseg.media import VideoEncoder, VideoInput, count_frames  # noqa: E402
from streamseg.overlay import Palette, Scratch, make_palette, render  # noqa: E402
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


def repeat(fn: Callable[[], Any], n: int, warmup: int = 3, before: Callable[[], Any] | None = None) -> list[float]:
    """Seconds per call of ``fn`` over ``n`` calls after ``warmup``; ``before`` runs untimed before each."""
    out = []
    for i in range(warmup + n):
        if before is not None:
            before()
        t = timed(fn)
        if i >= warmup:
            out.append(t)
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
    """Each stage alone on the clip: seconds per frame per call, by stage."""
    c = model.contract
    decode_all(clip)  # warm-up: file cache, codec init
    frames, decode_t, fps = decode_all(clip)
    n = len(frames)
    log(f"decoded {n} frames")
    res: dict[str, list[float]] = {"decode": decode_t}

    it = iter(range(10**9))
    res["preprocess"] = repeat(lambda: preprocess([frames[next(it) % n]], c.input), n)

    outputs: list[np.ndarray] = []
    with select_backend("onnxruntime", [], model, "cpu", 0, 4) as backend:  # warms up on enter
        singles = [preprocess([f], c.input) for f in frames]
        for x in singles[:5]:
            backend.infer(x)
        res["infer_b1"] = []
        for x in singles:
            t0 = time.perf_counter()
            outputs.append(backend.infer(x))
            res["infer_b1"].append(time.perf_counter() - t0)
        quads = [preprocess(frames[i : i + 4], c.input) for i in range(0, n - 3, 4)]
        for x in quads[:3]:
            backend.infer(x)
        res["infer_b4"] = [timed(lambda x=x: backend.infer(x)) / 4 for x in quads]
        description = backend.description
    del singles, quads

    def post(out: np.ndarray) -> None:
        for cmap in to_class_maps(out, c):
            area_ratios(cmap, c.num_classes)

    res["postprocess"] = [timed(lambda o=o: post(o)) for o in outputs]

    maps = [to_class_maps(o, c)[0] for o in outputs]
    ratios = [area_ratios(m, c.num_classes) for m in maps]
    work = np.empty_like(frames[0])
    scratch = Scratch()
    k = iter(range(10**9))
    idx = [0]

    def load() -> None:
        idx[0] = next(k) % n
        np.copyto(work, frames[idx[0]])

    def draw() -> None:
        i = idx[0]
        render(work, maps[i], palette, "blend", ALPHA, ratios[i], True, scratch)

    res["overlay"] = repeat(draw, n, warmup=5, before=load)

    h, w = frames[0].shape[:2]
    enc = VideoEncoder(tmp / "stage-encode.mp4", w, h, fps)
    try:
        for i, f in enumerate(frames[:5]):
            enc.write(f, i / fps)
        res["encode"] = [timed(lambda i=i, f=f: enc.write(f, (i + 5) / fps)) for i, f in enumerate(frames)]
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


def stage_means(p: Pipeline, frames: int) -> dict[str, float]:
    """Seconds per frame spent in each stage, from the pipeline's own histograms."""
    sums: dict[str, float] = {}
    for metric in p.metrics.registry.collect():
        if metric.name == "streamseg_stage_seconds":
            for s in metric.samples:
                if s.name.endswith("_sum"):
                    sums[s.labels["stage"]] = s.value / frames
    return sums


def run_pipeline(clip: Path, out: Path, threads: int) -> dict[str, Any]:
    cfg = pipeline_config(clip, out, threads)
    c0, t0 = time.process_time(), time.perf_counter()
    p = Pipeline(cfg)
    summary = p.run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = summary.frames.get("bikes", 0)
    if summary.failed or n == 0:
        raise RuntimeError(f"pipeline run failed: {summary.failed or 'no frames'}")
    return {"frames": n, "wall": wall, "cpu": cpu, "stages": stage_means(p, n), "video": out / "bikes.mp4"}


def run_naive(clip: Path, out: Path, model: LoadedModel, lut_bgr: np.ndarray) -> dict[str, Any]:
    """What one writes without streamseg: one thread, one frame at a time, library defaults."""
    import av
    import onnxruntime as ort

    c = model.contract
    stages = dict.fromkeys(("decode", "preprocess", "infer", "postprocess", "overlay", "encode"), 0.0)
    c0, t0 = time.process_time(), time.perf_counter()
    session = ort.InferenceSession(str(model.onnx_path), providers=["CPUExecutionProvider"])
    src = av.open(str(clip))
    vs = src.streams.video[0]
    rate = vs.average_rate or Fraction(25)
    dst = av.open(str(out / "naive.mp4"), "w")
    enc = dst.add_stream("libx264", rate=rate)
    enc.width, enc.height = vs.codec_context.width, vs.codec_context.height
    enc.pix_fmt = "yuv420p"
    enc.options = {"preset": "ultrafast", "crf": "23"}
    mean, std = np.float32(c.input.mean[0]), np.float32(c.input.std[0])  # selfie: same for all channels
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
            color = cv2.resize(lut_bgr[cmap], (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
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


def bench_end_to_end(clip: Path, model: LoadedModel, repeats: int, tmp: Path) -> dict[str, Any]:
    """Interleaved runs (pipeline, pipeline with one ORT thread, naive) so drift hits all alike."""
    lut = np.zeros((256, 3), np.uint8)
    for i, k in enumerate(model.contract.classes):
        lut[i] = k.color[::-1]
    kinds: dict[str, Callable[[Path], dict[str, Any]]] = {
        "pipeline": lambda d: run_pipeline(clip, d, 0),
        "pipeline_t1": lambda d: run_pipeline(clip, d, 1),
        "naive": lambda d: run_naive(clip, d, model, lut),
    }
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for r in range(repeats + 1):  # round 0 is a warm-up
        for name, fn in kinds.items():
            out = tmp / f"{name}-{r}"
            out.mkdir()
            result = fn(out)
            if r:
                runs[name].append(result)
                log(f"{name} run {r}: {result['frames'] / result['wall']:.1f} fps")
    written = {k: count_frames(v[-1]["video"]) for k, v in runs.items()}
    return {"runs": runs, "written": written}


# --- 3. overlay + statistics of a 1080p frame ---------------------------------------------------


def voc_colors(n: int) -> list[tuple[int, int, int]]:
    """The PASCAL VOC color map (RGB), a common palette for 21 classes."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return out


def blocky_map(h: int, w: int, classes: int, block: int = 16) -> np.ndarray:
    """A class map of square blocks cycling through every class (all present, background included)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return (((yy // block) * 7 + (xx // block) * 3) % classes).astype(np.uint8)


def bench_1080p(
    frame: np.ndarray, cmap: np.ndarray, palette: Palette, colors_rgb: list[tuple[int, int, int]], n: int
) -> dict[str, Any]:
    import supervision as sv

    H, W = frame.shape[:2]
    k = palette.num_classes
    work = np.empty_like(frame)

    def reset() -> None:
        np.copyto(work, frame)

    # streamseg: statistics on the model-resolution map, blend + legend into the frame.
    scratch = Scratch()

    def streamseg() -> None:
        ratios = area_ratios(cmap, k)
        render(work, cmap, palette, "blend", ALPHA, ratios, True, scratch)

    t_ss = repeat(streamseg, n, before=reset)

    # plain cv2: LUT at model resolution, nearest upscale, addWeighted over the whole frame.
    lut = np.zeros((256, 1, 3), np.uint8)
    lut[: len(palette.colors_bgr), 0] = palette.colors_bgr

    def plain() -> None:
        np.bincount(cmap.ravel(), minlength=k)
        small = cv2.LUT(cv2.merge([cmap, cmap, cmap]), lut)
        big = cv2.resize(small, (W, H), interpolation=cv2.INTER_NEAREST)
        cv2.addWeighted(work, 1 - ALPHA, big, ALPHA, 0, dst=work)

    t_cv = repeat(plain, n, before=reset)

    # supervision: one full-size boolean mask per present painted class, then MaskAnnotator.
    painted = [i for i in range(k) if palette.lut[i, 3]]
    det_box: list[sv.Detections] = []

    def build() -> None:
        big = cv2.resize(cmap, (W, H), interpolation=cv2.INTER_NEAREST)
        present = [i for i in np.flatnonzero(np.bincount(big.ravel(), minlength=k)) if i in painted]
        masks = np.stack([big == i for i in present])
        det = sv.Detections(xyxy=sv.mask_to_xyxy(masks).astype(np.float32), mask=masks, class_id=np.array(present))
        _ = det.area / (H * W)  # the statistics a supervision user reads
        det_box[:] = [det]

    t_masks = repeat(build, n)
    annotator = sv.MaskAnnotator(
        color=sv.ColorPalette([sv.Color(r=r, g=g, b=b) for r, g, b in colors_rgb]),
        opacity=ALPHA,
        color_lookup=sv.ColorLookup.CLASS,
    )
    t_sv = repeat(lambda: annotator.annotate(work, det_box[0]), n, before=reset)

    # Same picture? streamseg without its legend against supervision.
    reset()
    a = render(work, cmap, palette, "blend", ALPHA, None, False, Scratch()).copy()
    reset()
    b = annotator.annotate(work, det_box[0])
    diff = int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())
    return {
        "streamseg": median(t_ss),
        "cv2": median(t_cv),
        "sv_masks": median(t_masks),
        "sv_annotate": median(t_sv),
        "masks": len(det_box[0]),
        "diff": diff,
    }


# --- report -------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


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


def fps_cell(runs: list[dict[str, Any]]) -> tuple[float, str]:
    fps = [r["frames"] / r["wall"] for r in runs]
    return median(fps), f"{median(fps):.1f} | {min(fps):.1f}–{max(fps):.1f}"


def report(command: str, stages: dict[str, Any], e2e: dict[str, Any], hd: dict[str, Any], args: Any) -> str:
    t = stages["times"]
    w, h = stages["shape"]
    L: list[str] = []
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    L += [
        "# Benchmarks",
        "",
        f"Generated {now} by `{command}` (about {args.elapsed:.0f} s).",
        "",
        f"Machine: {cpu_model()}, {cores} logical cores ({usable} usable by this process), {platform.system()}.",
        "",
        f"Libraries: {versions()}.",
        "",
        f"Inputs: `{args.clip.relative_to(REPO) if args.clip.is_relative_to(REPO) else args.clip}` "
        f"({w}x{h}, {len(t['decode'])} frames, {stages['fps']:g} fps) and the bundled model `selfie_landscape` "
        f"(ONNX, 144x256 NHWC in, uint8 class map out, 2 classes), run by {stages['backend']}.",
        "",
        "Method: every measurement is warmed up first and timed with `time.perf_counter`; per-frame figures "
        "are medians over the samples stated; all numbers come from this one run, so ratios compare like with "
        "like. This is a small shared machine: run-to-run spread is large, hence the min–max columns.",
        "",
        "## 1. Each stage alone (per frame)",
        "",
        "| stage | what is timed | ms / frame (median) | samples |",
        "|---|---|---:|---:|",
    ]
    rows = [
        ("decode", "decode", "`VideoInput.frames()` (PyAV, BGR24 out)"),
        ("preprocess", "preprocess", "`preprocess`: resize, RGB, normalize, batch of 1"),
        ("infer batch 1", "infer_b1", "`OnnxRuntimeBackend.infer`, batch 1"),
        ("infer batch 4", "infer_b4", "`OnnxRuntimeBackend.infer`, batch 4, divided by 4"),
        ("postprocess", "postprocess", "`to_class_maps` + `area_ratios`"),
        ("overlay", "overlay", f"`render` blend, legend on, reused `Scratch` ({w}x{h})"),
        ("encode", "encode", "`VideoEncoder.write` (libx264 ultrafast, zerolatency)"),
    ]
    for label, key, what in rows:
        L.append(f"| {label} | {what} | {ms(median(t[key]))} | {len(t[key])} |")
    serial = sum(median(t[k]) for k in ("decode", "preprocess", "infer_b4", "postprocess", "overlay", "encode"))
    L += [
        "",
        f"Sum of the stages with batch-4 inference: {ms(serial)} ms per frame, so one core doing them one after "
        f"the other would reach about {1 / serial:.0f} fps.",
        "",
    ]

    runs = e2e["runs"]
    p_fps, p_cell = fps_cell(runs["pipeline"])
    t1_fps, t1_cell = fps_cell(runs["pipeline_t1"])
    n_fps, n_cell = fps_cell(runs["naive"])

    def cpu(rs: list[dict[str, Any]]) -> str:
        return ms(median([r["cpu"] / r["frames"] for r in rs]))

    L += [
        "## 2. Whole clip: streamseg pipeline vs a naive loop",
        "",
        f"Each run processes the whole clip into an MP4 (libx264 ultrafast, crf 23) and a JSON Lines file in a "
        f"temporary folder; FPS = frames / wall time of the whole run, start-up included. {args.repeats} runs "
        f"of each, interleaved, after one warm-up run of each. CPU is process CPU time (all threads) per frame.",
        "",
        "- **pipeline**: `Pipeline(cfg).run()` with `pipelines/file.yaml`'s settings (max_batch 4, "
        "max_wait_ms 10, blend + legend), `http.enabled: false`, `model.threads: 0` (onnxruntime's default).",
        "- **pipeline, model.threads: 1**: the same with one onnxruntime intra-op thread.",
        "- **naive**: one thread, one frame at a time: PyAV decode → cv2 resize + RGB + float → "
        "`onnxruntime.InferenceSession` (default options, batch 1) → `np.bincount` + `json.dumps` → palette "
        "colorize, `cv2.resize` nearest, `cv2.addWeighted` over the whole frame → PyAV libx264 ultrafast.",
        "",
        "| run | fps (median) | fps min–max | CPU ms / frame | runs |",
        "|---|---:|---:|---:|---:|",
        f"| pipeline | {p_cell} | {cpu(runs['pipeline'])} | {len(runs['pipeline'])} |",
        f"| pipeline, model.threads: 1 | {t1_cell} | {cpu(runs['pipeline_t1'])} | {len(runs['pipeline_t1'])} |",
        f"| naive | {n_cell} | {cpu(runs['naive'])} | {len(runs['naive'])} |",
        "",
        f"**pipeline / naive = {p_fps / n_fps:.2f}x** (target ≥ 1.5x: {'met' if p_fps / n_fps >= 1.5 else 'not met'}); "
        f"with `model.threads: 1` {t1_fps / n_fps:.2f}x. Frames in the last output videos: "
        + ", ".join(f"{k} {v}" for k, v in e2e["written"].items())
        + ".",
        "",
        "Where the time goes, ms per frame: alone (section 1, median) and inside each run (mean over the runs; "
        "the pipeline's from its own `streamseg_stage_seconds` histograms, divided by frames; the pipeline's "
        "stages run on three threads, so they overlap and their sum can exceed the wall time per frame).",
        "",
        "| stage | alone | naive loop | pipeline | pipeline, threads 1 |",
        "|---|---:|---:|---:|---:|",
    ]

    def in_run(kind: str, stage: str) -> str:
        return ms(statistics.fmean(r["stages"].get(stage, 0.0) for r in runs[kind]))

    alone = {"infer": "infer_b4"}
    for stage in ("decode", "preprocess", "infer", "postprocess", "overlay", "encode"):
        a = ms(median(t[alone.get(stage, stage)]))
        label = "infer (alone: batch 4)" if stage == "infer" else stage
        L.append(
            f"| {label} | {a} | {in_run('naive', stage)} | {in_run('pipeline', stage)} | "
            f"{in_run('pipeline_t1', stage)} |"
        )
    L += [
        f"| wall time per frame | {ms(serial)} (sum) | {ms(1 / n_fps)} | {ms(1 / p_fps)} | {ms(1 / t1_fps)} |",
        "",
    ]

    L += [
        "## 3. Overlay + statistics of a 1080p frame: streamseg vs supervision",
        "",
        f"Frame: clip frame {args.hd_frame} upscaled to {PAGE_SIZE[0]}x{PAGE_SIZE[1]} (`cv2.resize`, bilinear). "
        "2 classes: the model's real class map of that frame (144x256). 21 classes: a synthetic 144x256 map of "
        "16-pixel blocks cycling through all 21 classes, PASCAL VOC colors. In both, class 0 is background and "
        f"left unpainted. Medians of {args.samples} calls each, the frame restored (untimed) before each call.",
        "",
        "- **streamseg**: `area_ratios` on the model-resolution map + `render(..., 'blend', legend=True)` with a "
        "reused `Scratch`.",
        "- **plain cv2**: `np.bincount` + `cv2.LUT` at model resolution + `cv2.resize` nearest + `cv2.addWeighted` "
        "over the whole frame (background darkened: not the same picture).",
        "- **supervision masks**: what a user must do before annotating: nearest upscale of the class map to "
        "1080p, one boolean 1080p mask per present painted class, `sv.mask_to_xyxy`, `sv.Detections`, and "
        "`Detections.area` for the statistics.",
        "- **supervision annotate**: `MaskAnnotator(opacity=0.5, color_lookup=CLASS).annotate` alone.",
        "",
        "| classes | masks | streamseg | plain cv2 | sv masks | sv annotate | sv annotate + masks | "
        "× vs annotate | × vs annotate + masks | target |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for classes, r, target in ((2, hd[2], 10), (21, hd[21], 40)):
        both = r["sv_annotate"] + r["sv_masks"]
        L.append(
            f"| {classes} | {r['masks']} | {ms(r['streamseg'])} | {ms(r['cv2'])} | {ms(r['sv_masks'])} | "
            f"{ms(r['sv_annotate'])} | {ms(both)} | {r['sv_annotate'] / r['streamseg']:.1f} | "
            f"{both / r['streamseg']:.1f} | ≥ {target} |"
        )
    L += [
        "",
        "Times in ms. \"× vs annotate\" = supervision annotate alone / streamseg; \"× vs annotate + masks\" = "
        "(supervision annotate + mask building) / streamseg. streamseg also draws its legend, which supervision "
        "does not. Check: streamseg with the legend off and supervision draw the same picture, largest "
        f"difference {hd[2]['diff']} (2 classes) and {hd[21]['diff']} (21 classes) levels of 255.",
        "",
    ]
    return "\n".join(L)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="markdown report to write (default: print it)")
    ap.add_argument("--clip", type=Path, default=REPO / "samples" / "bikes.mp4")
    ap.add_argument("--repeats", type=int, default=5, help="whole-clip runs of each kind (after one warm-up)")
    ap.add_argument("--samples", type=int, default=30, help="timed calls per 1080p overlay measurement")
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
    hd = {2: bench_1080p(big, selfie_map, palette, [k.color for k in c.classes], args.samples)}
    colors21 = voc_colors(21)
    names21 = ["background", *(f"class{i}" for i in range(1, 21))]
    map21 = blocky_map(c.input.height, c.input.width, 21)
    hd[21] = bench_1080p(big, map21, make_palette(names21, colors21), colors21, args.samples)

    args.elapsed = time.perf_counter() - started
    text = report(command, stages, e2e, hd, args)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        log(f"wrote {args.out} in {args.elapsed:.0f} s")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
