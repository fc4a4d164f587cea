"""What recording that survives a kill costs: encode time and size of each MP4 mode.

    .venv/bin/python benchmarks/mp4_modes.py [--reps 5]

Encodes the 250 frames of samples/bikes.mp4 (640x272, and upscaled to 1920x1080) with
``VideoEncoder`` in each mode, the modes interleaved rep by rep so that a noisy machine slows them
alike; prints a markdown table of wall-clock and CPU ms per frame (median over reps, min-max; CPU
time counts every thread and is what to compare on a loaded machine) and file size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamseg.media import VideoEncoder, VideoInput  # noqa: E402

MODES: dict[str, dict[str, object]] = {
    "standard, x264 default GOP (250): the old default": {"fragmented": False, "keyframe_s": None},
    "standard, keyframe_s 1": {"fragmented": False, "keyframe_s": 1.0},
    "fragmented, keyframe_s 1: the new default": {"fragmented": True, "keyframe_s": 1.0},
    "fragmented, keyframe_s 1, fsync every 0.2 s": {"fragmented": True, "keyframe_s": 1.0, "fsync_s": 0.2},
}


def frames(size: tuple[int, int] | None) -> list[np.ndarray]:
    video = VideoInput(str(ROOT / "samples" / "bikes.mp4"))
    try:
        out = [image for image, _ in video.frames()]
    finally:
        video.close()
    return [cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in out] if size else out


def encode(images: list[np.ndarray], path: Path, opts: dict[str, object]) -> tuple[float, float]:
    """Wall-clock and CPU (all threads) milliseconds per frame."""
    h, w = images[0].shape[:2]
    start, cpu = time.perf_counter(), time.process_time()
    enc = VideoEncoder(path, w, h, 25.0, **opts)  # type: ignore[arg-type]
    for i, image in enumerate(images):
        enc.write(image, i / 25)
    enc.close()
    n = len(images)
    return (time.perf_counter() - start) * 1000 / n, (time.process_time() - cpu) * 1000 / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    print("| input | mode | wall ms / frame (median) | min–max | CPU ms / frame (median) | min–max | size |")
    print("|---|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, size in (("640x272", None), ("1920x1080", (1920, 1080))):
            images = frames(size)
            encode(images[:25], Path(tmp) / "warm.mp4", {})
            times: dict[str, list[tuple[float, float]]] = {m: [] for m in MODES}
            sizes: dict[str, int] = {}
            for _ in range(args.reps):
                for i, (mode, opts) in enumerate(MODES.items()):
                    path = Path(tmp) / f"{i}.mp4"
                    times[mode].append(encode(images, path, opts))
                    sizes[mode] = path.stat().st_size
            for mode in MODES:
                wall, cpu = zip(*times[mode], strict=True)
                print(
                    f"| {label} | {mode} | {statistics.median(wall):.2f} | {min(wall):.2f}–{max(wall):.2f} "
                    f"| {statistics.median(cpu):.2f} | {min(cpu):.2f}–{max(cpu):.2f} | {sizes[mode] / 1024:.0f} KiB |"
                )


if __name__ == "__main__":
    main()
