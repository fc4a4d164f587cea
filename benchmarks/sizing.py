"""Sizing: CPU time per frame of the whole pipeline at 720p and 1080p, as streams per core.

The bundled clip is upscaled to 1280x720 and 1920x1080 and re-encoded as H.264 (what a camera
sends), then run through ``Pipeline`` with the bundled model, unpaced, in two output setups:
overlay video (MP4, libx264 ultrafast) + JSONL, and JSONL only (no overlay drawn, nothing
encoded). The figure is process CPU time (all threads) per frame, which holds on a machine that
other jobs load, unlike wall-clock fps. Start-up (model load, warm-up, encoder set-up) is taken out by
running each setup twice, for a short and a long number of frames, and dividing the difference
of CPU time by the difference of frames.

    .venv/bin/python benchmarks/sizing.py            # prints a markdown table
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from streamseg.config import PipelineConfig  # noqa: E402
from streamseg.doctor import cpu_model  # noqa: E402
from streamseg.pipeline import Pipeline  # noqa: E402

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
SETUPS = ("overlay video + JSONL", "JSONL only")
RATES = (15, 25)  # frames per second per stream for the "streams per core" columns
PROCESSED, DROPPED = "streamseg_frames_processed_total", "streamseg_frames_dropped_total"
REASONS = ("queue_full", "fps_cap")


def log(msg: str) -> None:
    print(f"[sizing] {msg}", file=sys.stderr, flush=True)


def make_clip(src: Path, dst: Path, size: tuple[int, int]) -> int:
    """``src`` resized to ``size`` (bilinear) as H.264 (libx264 veryfast, crf 23, x264's default GOP and
    B-frames: closer to a camera's stream than the ultrafast recordings streamseg writes). Frames written."""
    import av

    n = 0
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vs = inp.streams.video[0]
        enc = out.add_stream("libx264", rate=vs.average_rate or 25)
        enc.width, enc.height = size
        enc.pix_fmt = "yuv420p"
        enc.options = {"preset": "veryfast", "crf": "23"}
        for frame in inp.decode(vs):
            image = cv2.resize(frame.to_ndarray(format="bgr24"), size, interpolation=cv2.INTER_LINEAR).astype(np.uint8)
            vf = av.VideoFrame.from_ndarray(image, format="bgr24")
            vf.pts = n
            out.mux(enc.encode(vf))
            n += 1
        out.mux(enc.encode(None))
    return n


def config(clip: Path, out: Path, setup: str, threads: int, streams: int = 1, paced: bool = False) -> PipelineConfig:
    outputs: list[dict[str, Any]] = [{"type": "jsonl", "path": str(out / "stats.jsonl")}]
    if setup.startswith("overlay"):
        outputs.insert(0, {"type": "video", "path": str(out / "{stream}.mp4")})  # default preset: ultrafast
    return PipelineConfig.model_validate(
        {
            "name": "sizing",
            "sources": [
                {"name": "cam" if streams == 1 else f"cam{i}", "uri": str(clip), "realtime": paced, "loop": True}
                for i in range(streams)
            ],
            "model": {"path": "selfie_landscape", "backend": "onnxruntime", "device": "cpu", "threads": threads},
            "batch": {"max_batch": 4, "max_wait_ms": 10},
            "overlay": {"mode": "blend", "alpha": 0.5, "legend": True},
            "outputs": outputs,
            "http": {"enabled": False},
        }
    )


def run_once(clip: Path, out: Path, setup: str, frames: int, threads: int) -> tuple[float, int, float]:
    """(process CPU seconds, frames processed, frames per engine call) of one run stopped after ``frames``."""
    out.mkdir(parents=True)
    c0 = time.process_time()
    p = Pipeline(config(clip, out, setup, threads), max_frames=frames)
    summary = p.run()
    cpu = time.process_time() - c0
    n = summary.frames.get("cam", 0)
    if summary.failed or summary.output_errors or n != frames:
        raise RuntimeError(f"sizing run failed: {summary.failed or summary.output_errors or f'{n} of {frames} frames'}")
    reg = p.metrics.registry
    dropped = sum(
        reg.get_sample_value("streamseg_frames_dropped_total", {"stream": "cam", "reason": r}) or 0
        for r in ("queue_full", "fps_cap")
    )
    if dropped:
        raise RuntimeError(f"sizing run dropped {dropped:.0f} frames: CPU per processed frame would be wrong")
    calls = reg.get_sample_value("streamseg_batch_size_count") or 1
    return cpu, n, (reg.get_sample_value("streamseg_batch_size_sum") or 0) / calls


def run_paced(clip: Path, out: Path, setup: str, streams: int, seconds: float, threads: int) -> dict[str, float]:
    """``streams`` copies of the clip paced at its frame rate (what a camera farm sends), measured for
    ``seconds`` from the moment the pipeline is ready (model loaded and warmed up)."""
    out.mkdir(parents=True)
    p = Pipeline(config(clip, out, setup, threads, streams, paced=True))
    reg = p.metrics.registry
    names = [s.name for s in p.cfg.sources]

    def total(metric: str, reasons: tuple[str, ...] = ()) -> float:
        if not reasons:
            return sum(reg.get_sample_value(metric, {"stream": s}) or 0 for s in names)
        return sum(reg.get_sample_value(metric, {"stream": s, "reason": r}) or 0 for s in names for r in reasons)

    failed: list[BaseException] = []
    thread = threading.Thread(target=lambda: _run_catching(p, failed), daemon=True)
    thread.start()
    if not p.ready.wait(120) or failed:
        raise RuntimeError(f"paced run did not start: {failed}")
    time.sleep(1)  # the readers' first frames
    f0, d0, c0, t0 = total(PROCESSED), total(DROPPED, REASONS), time.process_time(), time.perf_counter()
    time.sleep(seconds)
    f1, d1, c1, t1 = total(PROCESSED), total(DROPPED, REASONS), time.process_time(), time.perf_counter()
    p.stop()
    thread.join(60)
    if failed:
        raise RuntimeError(f"paced run failed: {failed[0]}")
    return {"cpu": c1 - c0, "wall": t1 - t0, "frames": f1 - f0, "dropped": d1 - d0}


def _run_catching(p: Pipeline, failed: list[BaseException]) -> None:
    try:
        summary = p.run()
        if summary.failed or summary.output_errors:
            failed.append(RuntimeError(str(summary.failed or summary.output_errors)))
    except BaseException as e:  # handed to the measuring thread
        failed.append(e)
        p.ready.set()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, default=REPO / "samples" / "bikes.mp4")
    ap.add_argument("--short", type=int, default=25, help="frames of the short run (start-up cost)")
    ap.add_argument("--long", type=int, default=300, help="frames of the long run (the clip loops)")
    ap.add_argument("--repeats", type=int, default=3, help="pairs of runs per setup, interleaved")
    ap.add_argument("--threads", type=int, default=1, help="model.threads (1: see docs/benchmarks.md section 2)")
    ap.add_argument("--paced-seconds", type=float, default=15, help="length of each paced cross-check (0: none)")
    ap.add_argument("--paced-load", type=float, default=0.5, help="cores each paced cross-check should load")
    args = ap.parse_args()
    if not args.clip.is_file():
        print(f"sizing: {args.clip} not found; run `make samples` first", file=sys.stderr)
        return 2
    started = time.perf_counter()
    load0 = os.getloadavg()[0]
    per_frame: dict[tuple[str, str], list[float]] = {}
    batch: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="streamseg-sizing-") as tmp_name:
        tmp = Path(tmp_name)
        clips = {}
        for res, size in SIZES.items():
            clips[res] = tmp / f"{res}.mp4"
            log(f"{res}: {make_clip(args.clip, clips[res], size)} frames encoded")
        k = 0
        for rep in range(args.repeats + 1):  # round 0 warms the file cache and the libraries up
            for res in SIZES:
                for setup in SETUPS:
                    k += 1
                    short = run_once(clips[res], tmp / f"{k}s", setup, args.short, args.threads)
                    long = run_once(clips[res], tmp / f"{k}l", setup, args.long, args.threads)
                    ms = (long[0] - short[0]) / (long[1] - short[1]) * 1e3
                    if rep:
                        per_frame.setdefault((res, setup), []).append(ms)
                        batch.setdefault((res, setup), []).append(long[2])
                    log(f"round {rep} {res} {setup}: {ms:.2f} CPU ms/frame, {long[2]:.2f} frames per call")
        paced: dict[tuple[str, str], tuple[int, dict[str, float]]] = {}
        if args.paced_seconds > 0:
            for (res, setup), xs in per_frame.items():
                # as many 25 fps streams as the unpaced figure says load --paced-load cores
                n = max(1, round(args.paced_load * 1000 / (statistics.median(xs) * 25)))
                k += 1
                r = run_paced(clips[res], tmp / f"{k}p", setup, n, args.paced_seconds, args.threads)
                paced[res, setup] = n, r
                log(f"paced {res} {setup}: {n} streams, {r['cpu'] / r['wall']:.2f} cores, {r['dropped']:.0f} dropped")
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load1 = os.getloadavg()[0]
    print(
        f"{now}, {cpu_model()}, {os.cpu_count()} logical cores, load average {load0:.1f} → {load1:.1f}, "
        f"{time.perf_counter() - started:.0f} s; model.threads {args.threads}, max_batch 4; "
        f"{args.repeats} pairs of runs ({args.short} and {args.long} frames) per row.\n"
    )
    print(
        "| input | outputs | CPU ms / frame (median) | min–max | frames per engine call | "
        + " | ".join(f"streams per core at {r} fps" for r in RATES)
        + " |"
    )
    print("|---|---|---:|---:|---:|" + "---:|" * len(RATES))
    for (res, setup), xs in per_frame.items():
        m = statistics.median(xs)
        cells = " | ".join(f"{1000 / (m * r):.1f}" for r in RATES)
        w, h = SIZES[res]
        print(
            f"| {res} ({w}x{h}) | {setup} | {m:.1f} | {min(xs):.1f}–{max(xs):.1f} "
            f"| {statistics.fmean(batch[res, setup]):.2f} | {cells} |"
        )
    if paced:
        print(
            f"\nPaced cross-check: N copies of the clip at its 25 fps for {args.paced_seconds:g} s each (N chosen so "
            f"the figure above predicts {args.paced_load:g} core), measured from the moment the pipeline is ready.\n"
        )
        print("| input | outputs | streams | predicted cores | measured cores | CPU ms / frame | frames | dropped |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for (res, setup), (n, r) in paced.items():
            predicted = statistics.median(per_frame[res, setup]) * 25 * n / 1000
            print(
                f"| {res} | {setup} | {n} | {predicted:.2f} | {r['cpu'] / r['wall']:.2f} "
                f"| {r['cpu'] / max(r['frames'], 1) * 1e3:.1f} | {r['frames']:.0f} | {r['dropped']:.0f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
