"""GPU benchmark (run by ``make gpu-check``): how many 1080p streams one GPU sustains through the
real Pipeline with the torch CUDA backend, their latency p95, and 1080p decode on NVDEC against
PyAV on the CPU.

- decode: a 1080p H.264 clip (bikes.mp4 scaled up, 250 frames, made with libx264 at start) read
  whole, best of ``--repeats``: the file reader the pipeline uses (PyAV, CPU) and NVDEC, frames
  kept on the GPU and copied to the host as I420;
- streams: N copies of the clip, each paced at its 25 fps and looping, through ``Pipeline`` (torch
  backend on CUDA, a zoo network with seeded random weights at 360x640, JSON Lines output only: an
  H100/H200/A100 has no NVENC, so video encoding is CPU work and measured in docs/benchmarks.md).
  N doubles from 1 while the pipeline keeps up (>= 95 % of N x 25 frames/s in the steady state:
  from 1 s after the first frame to the end of ``--seconds``); latency is capture to outputs
  written, per frame, exactly (not from histogram buckets). Run once
  with the software decoder and, where NVDEC is available, with ``decoder: nvdec``.

    python benchmarks/gpu.py [--seconds 10] [--max-streams 32] [--budget 150] [--out FILE]

Prints markdown (tools/gpu_check.sh appends it to docs/gpu-validation.md). Without a CUDA device it
refuses with one line and measures nothing.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from streamseg.hardware import cuda_driver  # noqa: E402

CLIP = REPO / "samples" / "bikes.mp4"
FPS = 25
SIZE = (1920, 1080)


def log(msg: str) -> None:
    print(f"[gpu-bench] {msg}", file=sys.stderr, flush=True)


def cuda_missing() -> str | None:
    """Why this host cannot run the benchmark, or None. The driver first: torch is not imported without one."""
    if cuda_driver() is None:
        return "no NVIDIA GPU: the CUDA driver (libcuda.so.1) does not load"
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    import torch

    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device"
    return None


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def make_clip(out: Path, frames: int = 250) -> Path:
    """bikes.mp4 scaled to 1080p and encoded as H.264 (libx264 ultrafast, crf 23, keyframe every 2 s)."""
    import av
    import cv2

    with av.open(str(CLIP)) as src, av.open(str(out), mode="w") as dst:
        stream = dst.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23", "g": str(2 * FPS)}
        for n, frame in enumerate(src.decode(video=0), start=1):
            big = cv2.resize(frame.to_ndarray(format="bgr24"), SIZE, interpolation=cv2.INTER_LINEAR)
            for packet in stream.encode(av.VideoFrame.from_ndarray(big, format="bgr24")):
                dst.mux(packet)
            if n == frames:
                break
        for packet in stream.encode(None):
            dst.mux(packet)
    return out


def make_model(folder: Path, network: str) -> Path:
    """A zoo network at 360x640 with seeded random weights (speed does not depend on training)."""
    import torch

    from streamseg.models import build
    from streamseg.models.checkpoint import CheckpointMeta, save_checkpoint
    from streamseg.overlay import voc_colors

    torch.manual_seed(0)
    classes = 21
    model = build(network, classes).eval()
    meta = CheckpointMeta(network, classes, [f"c{i}" for i in range(classes)], voc_colors(classes), 360, 640)
    save_checkpoint(folder / f"{network}.pt", model, meta)
    return folder / f"{network}.json"


def bench_decode(clip: Path, repeats: int) -> list[tuple[str, int, float]]:
    """(decoder, frames, best seconds) for the whole clip."""
    import torch

    from streamseg.config import SourceConfig
    from streamseg.readers import READERS
    from streamseg.readers.nvdec import NvdecReader, nvdec_unavailable_reason
    from streamseg.uri import parse_source_uri

    def software() -> int:
        cfg = SourceConfig(name="d", uri=str(clip))
        reader = READERS["file"](parse_source_uri(cfg.uri), cfg)
        try:
            return sum(1 for _ in reader.frames())
        finally:
            reader.close()

    def nvdec(host: bool) -> int:
        reader = NvdecReader(str(clip), loop=False)
        try:
            n = sum(1 for _ in (reader.frames() if host else reader.device_frames()))
            torch.cuda.synchronize()
            return n
        finally:
            reader.close()

    kinds: list[tuple[str, Any]] = [("PyAV, CPU (the file reader)", software)]
    missing = nvdec_unavailable_reason()
    if missing is None:
        kinds += [
            ("NVDEC, frames on the GPU", lambda: nvdec(False)),
            ("NVDEC, copied to the host", lambda: nvdec(True)),
        ]
    else:
        log(f"NVDEC not measured: {missing}")
    rows = []
    for name, fn in kinds:
        fn()  # warm-up: codec initialisation, CUDA context
        times, n = [], 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            n = fn()
            times.append(time.perf_counter() - t0)
        rows.append((name, n, min(times)))
        log(f"decode {name}: {n / min(times):.0f} frames/s")
    return rows


class _Recorder:
    """Stands in for a stream's latency histogram child: keeps (when, value) of every frame, forwards it."""

    def __init__(self, child: Any, into: list[tuple[float, float]]) -> None:
        self._child, self._into = child, into

    def observe(self, value: float) -> None:
        self._into.append((time.monotonic(), value))  # list.append is atomic under the GIL: workers share it
        self._child.observe(value)


class _LatencyTap:
    def __init__(self, histogram: Any) -> None:
        self._histogram = histogram
        self.values: list[tuple[float, float]] = []

    def labels(self, *names: str) -> _Recorder:
        return _Recorder(self._histogram.labels(*names), self.values)


def run_streams(
    clip: Path, sidecar: Path, n: int, seconds: float, decoder: str, folder: Path, device: str = "cuda"
) -> dict[str, Any]:
    from streamseg.config import PipelineConfig
    from streamseg.pipeline import Pipeline

    cfg = PipelineConfig.model_validate(
        {
            "name": "gpu-bench",
            "sources": [
                {"name": f"s{i}", "uri": str(clip), "realtime": True, "loop": True, "decoder": decoder}
                for i in range(n)
            ],
            "model": {"path": str(sidecar), "backend": "torch", "device": device},
            "batch": {"max_batch": min(max(n, 1), 32), "max_wait_ms": 10},
            "outputs": [{"type": "jsonl", "path": str(folder / f"{decoder}-{n}.jsonl")}],
            "http": {"enabled": False},
        }
    )
    p = Pipeline(cfg, duration=seconds)
    tap = _LatencyTap(p.metrics.frame_latency)
    p.metrics.frame_latency = tap  # the workers take their histogram child when the run starts
    summary = p.run()
    # Steady state: from 1 s after the first frame was done (model warm-up and stream opening
    # excluded) to the last; latency over the same frames.
    done = sorted(tap.values)
    start = done[0][0] + 1.0 if done else 0.0
    steady = [(t, v) for t, v in done if t >= start]
    span = steady[-1][0] - start if steady else 0.0
    fps = len(steady) / span if span > 0 else 0.0
    lat = [v for _, v in steady]
    return {
        "streams": n,
        "fps": fps,
        "p95_ms": statistics.quantiles(lat, n=20)[18] * 1e3 if len(lat) >= 20 else float("nan"),
        "kept_up": fps >= 0.95 * n * FPS and not summary.failed,
        "failed": "; ".join(summary.failed.values()),
        "backend": summary.backend,
    }


BUDGET_STOP = "not run: time budget spent"


def sustained(
    clip: Path, sidecar: Path, decoder: str, seconds: float, max_streams: int, folder: Path, deadline: float
) -> list[dict]:  # type: ignore[type-arg]
    """Rounds of 1, 2, 4, ... streams until one falls behind, ``max_streams`` or ``deadline`` (monotonic)."""
    rows: list[dict] = []  # type: ignore[type-arg]
    n = 1
    while n <= max_streams:
        # a round takes its seconds plus the pipeline's start (model load, CUDA warm-up, opening streams)
        if time.monotonic() + seconds + 10 > deadline:
            rows.append({"streams": n, "fps": 0.0, "p95_ms": float("nan"), "kept_up": False, "failed": BUDGET_STOP})
            log(f"{decoder} x{n}: {BUDGET_STOP}")
            break
        try:
            row = run_streams(clip, sidecar, n, seconds, decoder, folder)
        except Exception as e:  # a failing round is a result to record, not a reason to lose the others
            row = {"streams": n, "fps": 0.0, "p95_ms": float("nan"), "kept_up": False, "failed": str(e).splitlines()[0]}
        rows.append(row)
        log(f"{decoder} x{n}: {row['fps']:.1f} fps, p95 {row['p95_ms']:.1f} ms, kept up: {row['kept_up']}")
        if not row["kept_up"]:
            break
        n *= 2
    return rows


def report(command: str, decode: list[tuple[str, int, float]], streams: dict[str, list[dict]], args: Any) -> str:  # type: ignore[type-arg]
    import torch

    from streamseg.readers.nvdec import nvdec_unavailable_reason

    gpu = torch.cuda.get_device_name(0)
    lines = [
        f"### Benchmark (`{command}`)",
        "",
        f"GPU {gpu}; torch {torch.__version__} (CUDA {torch.version.cuda}); PyAV {version('av')}; "
        f"PyNvVideoCodec {version('PyNvVideoCodec')} (NVDEC: {nvdec_unavailable_reason() or 'available'}).",
        "",
        f"Decode, 1080p H.264 ({SIZE[0]}x{SIZE[1]}, {FPS} fps, bikes.mp4 scaled up), whole clip, "
        f"best of {args.repeats}:",
        "",
        "| decoder | frames | frames/s | ms/frame |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {n} | {n / s:.0f} | {s / n * 1e3:.2f} |" for name, n, s in decode]
    lines += [
        "",
        f"1080p streams at {FPS} fps each through the Pipeline ({args.network} 360x640, seeded random weights, "
        f"torch backend on CUDA, JSON Lines output), {args.seconds:g} s per round:",
        "",
        "| decoder | streams | frames/s | latency p95 ms | kept up | backend / error |",
        "|---|---|---|---|---|---|",
    ]
    for decoder, rows in streams.items():
        for r in rows:
            lines.append(
                f"| {decoder} | {r['streams']} | {r['fps']:.1f} | {r['p95_ms']:.1f} "
                f"| {'yes' if r['kept_up'] else 'no'} | {r.get('failed') or r.get('backend', '')} |"
            )
        best = max((r["streams"] for r in rows if r["kept_up"]), default=0)
        # stopped by the clock while still keeping up: the GPU sustains at least this many
        bound = "at least " if rows and rows[-1].get("failed") == BUDGET_STOP else ""
        lines.append(f"| {decoder} | **{bound}{best} sustained** | | | | |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="write the markdown here (default: print it)")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each streams round")
    ap.add_argument("--max-streams", type=int, default=32, help="stop doubling the stream count here")
    ap.add_argument("--repeats", type=int, default=3, help="whole-clip decodes per decoder, best taken")
    ap.add_argument("--network", default="linknet", help="zoo network run by the torch backend")
    ap.add_argument("--budget", type=float, default=150.0, help="seconds for the whole benchmark; rounds stop there")
    args = ap.parse_args()
    missing = cuda_missing()
    if missing is not None:
        print(f"benchmarks/gpu.py: {missing}; nothing measured", file=sys.stderr)
        return 1
    from streamseg.readers.nvdec import nvdec_unavailable_reason

    command = "python benchmarks/gpu.py " + " ".join(sys.argv[1:])
    deadline = time.monotonic() + args.budget
    with tempfile.TemporaryDirectory(prefix="streamseg-gpu-") as tmp:
        folder = Path(tmp)
        log("making the 1080p clip")
        clip = make_clip(folder / "bikes-1080p.mp4")
        sidecar = make_model(folder, args.network)
        decode = bench_decode(clip, args.repeats)
        decoders = ["ffmpeg"] + (["nvdec"] if nvdec_unavailable_reason() is None else [])
        streams = {}
        for i, d in enumerate(decoders):  # the time left, shared between the decoders still to run
            share = (deadline - time.monotonic()) / (len(decoders) - i)
            streams[d] = sustained(clip, sidecar, d, args.seconds, args.max_streams, folder, time.monotonic() + share)
    text = report(command.strip(), decode, streams, args)
    if args.out:
        args.out.write_text(text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
