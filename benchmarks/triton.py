"""Triton against local ONNX Runtime, on this machine: round trip per batch and pipeline fps.

Starts the test server (tests/support/triton_server.py: pytriton's tritonserver 2.51, the bundled
model through ONNX Runtime in its Python backend, 1 intra-op thread) on loopback ports, then:

- round trip per batch (1 and 4 frames of bikes.mp4): ``TritonBackend.infer`` over gRPC and HTTP
  (serialization, the server's queue and the model) against ``OnnxRuntimeBackend.infer``,
  interleaved call by call so both see the same machine load;
- pipeline fps: ``streamseg run`` on bikes.mp4 (decode, preprocess, infer, JSON Lines; no video
  output, no pacing), alternating onnxruntime and triton runs.

    .venv/bin/python benchmarks/triton.py [--frames 250] [--rounds 3] [--calls 200]

It prints a markdown table (docs/deploy.md, "Triton"). Needs ``make triton-venv``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests.support from a checkout

from streamseg.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from streamseg.backends.triton import TritonBackend, TritonConfig  # noqa: E402
from streamseg.contract import load_model  # noqa: E402
from streamseg.media import VideoInput  # noqa: E402
from streamseg.preprocess import preprocess  # noqa: E402
from tests.support import triton as ts  # noqa: E402

CLIP = REPO / "samples" / "bikes.mp4"


def _frames(n: int) -> list:  # type: ignore[type-arg]
    video, out = VideoInput(str(CLIP)), []
    try:
        for image, _ in video.frames():
            out.append(image)
            if len(out) == n:
                break
    finally:
        video.close()
    return out


def round_trips(server: ts.TritonServer, calls: int) -> dict[str, dict[int, list[float]]]:
    model = load_model("selfie_landscape")
    images = _frames(8)
    times: dict[str, dict[int, list[float]]] = {"grpc": {}, "http": {}, "local": {}}
    backends = {
        p: TritonBackend(model, max_batch=4, options=TritonConfig(url=server.url(p), protocol=p))
        for p in ("grpc", "http")
    }
    local = OnnxRuntimeBackend(model, max_batch=4)
    with backends["grpc"], backends["http"], local:
        for n in (1, 4):
            batch = preprocess(images[:n], model.contract.input)
            for _ in range(calls):
                for name, b in (("local", local), ("grpc", backends["grpc"]), ("http", backends["http"])):
                    t = time.perf_counter()
                    b.infer(batch)
                    times[name].setdefault(n, []).append(time.perf_counter() - t)
    return times


def pipeline_fps(server: ts.TritonServer, frames: int, rounds: int) -> dict[str, list[float]]:
    fps: dict[str, list[float]] = {"onnxruntime": [], "triton": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for backend in ("onnxruntime", "triton"):
                cfg = Path(tmp) / f"{backend}.yaml"
                cfg.write_text(
                    f"name: bench\nsources:\n  - name: bikes\n    uri: {CLIP}\n    loop: true\n"
                    f"model: {{path: selfie_landscape, backend: {backend}, triton: {{url: '{server.url()}'}}}}\n"
                    "batch: {max_batch: 4, max_wait_ms: 10}\n"
                    f"outputs:\n  - type: jsonl\n    path: {tmp}/{backend}.jsonl\nhttp: {{enabled: false}}\n"
                )
                cmd = [sys.executable, "-m", "streamseg", "run", str(cfg), "--max-frames", str(frames)]
                done = subprocess.run([*cmd, "--status-interval", "0"], capture_output=True, text=True, check=True)
                # "processed N frames in S s (F FPS) ..."
                fps[backend].append(float(done.stdout.split("(")[1].split(" FPS")[0]))
    return fps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=250, help="frames per pipeline run")
    ap.add_argument("--rounds", type=int, default=3, help="pipeline runs per backend, alternating")
    ap.add_argument("--calls", type=int, default=200, help="timed calls per batch size and backend")
    args = ap.parse_args()
    reason = ts.skip_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 1
    server = ts.TritonServer()
    server.start()
    try:
        rt = round_trips(server, args.calls)
        fps = pipeline_fps(server, args.frames, args.rounds)
    finally:
        server.close()

    def ms(v: list[float]) -> str:
        q = statistics.quantiles(v, n=20)
        return f"{statistics.median(v) * 1e3:.1f} (p95 {q[18] * 1e3:.1f})"

    print(f"<!-- {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores -->")
    print("| batch | local ONNX Runtime, ms | Triton gRPC, ms | Triton HTTP, ms |")
    print("|---|---|---|---|")
    for n in (1, 4):
        print(f"| {n} | {ms(rt['local'][n])} | {ms(rt['grpc'][n])} | {ms(rt['http'][n])} |")
    print()
    print("| pipeline (bikes.mp4, 640x272, batch 4) | fps per run | median |")
    print("|---|---|---|")
    for backend, values in fps.items():
        shown = "onnxruntime (local)" if backend == "onnxruntime" else "triton (gRPC, loopback)"
        print(f"| {shown} | {', '.join(f'{v:.0f}' for v in values)} | {statistics.median(values):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
