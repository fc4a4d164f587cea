"""A real Triton Inference Server for the test suite: pytriton's bundled ``tritonserver`` serving
the bundled model through ONNX Runtime (pytriton's build has the Python backend only).

    .venv-triton/bin/python tests/support/triton_server.py --http-port P --grpc-port Q --metrics-port R \
        [--sidecar streamseg/bundled/selfie_landscape/selfie_landscape.json] [--name NAME] \
        [--wrong-model NAME2] [--max-batch 8]

The model is bound under the sidecar's name (or ``--name``) with the sidecar's input/output names,
dtypes and dims, so ``backend: triton`` sees what a Triton server with
``deploy/triton/model_repository`` would report. ``--wrong-model NAME2`` binds the same model a
second time, under NAME2, declaring an input 16 rows taller than the sidecar's (for the mismatch
test). Once the server is ready it prints one line,
``READY <http> <grpc> <metrics>``, to stdout. SIGTERM/SIGINT stop it with exit status 0 (pytriton's
server ignores SIGTERM unless the serving script handles it). SIGKILL leaves ``tritonserver``
running as an orphan unless the process group is killed: the fixture starts this script in its own
session and kills the group.

It runs in its own environment, ``.venv-triton`` (``make triton-venv``: Debian's Python with
``nvidia-pytriton`` 0.7.0 and onnxruntime), not the project's venv, for two measured reasons:
tritonserver 2.51's Python backend stub answers every request with **empty output tensors** when
numpy 2 is importable in it (pytriton pins numpy<2; the project's venv has numpy 2), and under a
non-Debian Python the stub loads the system's libpython unless ``LD_LIBRARY_PATH`` points at the
interpreter's LIBDIR (set below for whichever Python runs this). Hence only the standard library,
numpy, onnxruntime and pytriton here: the sidecar is read as plain JSON, not through streamseg.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import sysconfig
import threading
from pathlib import Path
from typing import Any

import numpy as np

SIDECAR = Path(__file__).resolve().parents[2] / "streamseg/bundled/selfie_landscape/selfie_landscape.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="triton_server")
    ap.add_argument("--http-port", type=int, required=True)
    ap.add_argument("--grpc-port", type=int, required=True)
    ap.add_argument("--metrics-port", type=int, required=True)
    ap.add_argument("--sidecar", type=Path, default=SIDECAR, help="the model's sidecar (JSON)")
    ap.add_argument("--name", default=None, help="Triton model name (default: the sidecar's)")
    ap.add_argument(
        "--wrong-model", default=None, help="also serve the model under this name, declaring a wrong height"
    )
    ap.add_argument("--max-batch", type=int, default=8)
    args = ap.parse_args(argv)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    if libdir and libdir not in os.environ.get("LD_LIBRARY_PATH", "").split(":"):
        # tritonserver inherits this process' environment; the stub must load *this* libpython
        os.environ["LD_LIBRARY_PATH"] = ":".join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH")) if p)

    import onnxruntime as ort
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    c = json.loads(args.sidecar.read_text())
    name, layout, height, width = c["name"], c["input"]["layout"], c["input"]["height"], c["input"]["width"]
    in_name, out_name = c["input"]["name"], c["output"]["name"]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # the test machine has 2 cores; the pipeline needs the other
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    onnx = args.sidecar.parent / c["onnx"]
    session = ort.InferenceSession(str(onnx), opts, providers=["CPUExecutionProvider"])
    (out_meta,) = session.get_outputs()
    out_dtype = np.uint8 if out_meta.type == "tensor(uint8)" else np.int64

    @batch  # type: ignore[misc]
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        (out,) = session.run([out_name], {in_name: inputs[in_name]})
        return {out_name: np.asarray(out)}

    def in_shape(h: int) -> tuple[int, int, int]:
        return (3, h, width) if layout == "NCHW" else (h, width, 3)

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        metrics_address="127.0.0.1",
        metrics_port=args.metrics_port,
        exit_timeout_secs=2,
        log_verbose=0,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logging.basicConfig(level=logging.WARNING)
    with Triton(config=config) as triton:
        served = [(args.name or name, height)] + ([(args.wrong_model, height + 16)] if args.wrong_model else [])
        for model_name, h in served:
            triton.bind(
                model_name=model_name,
                infer_func=infer,
                inputs=[Tensor(name=in_name, dtype=np.float32, shape=in_shape(h))],
                outputs=[Tensor(name=out_name, dtype=out_dtype, shape=(height, width))],
                config=ModelConfig(
                    max_batch_size=args.max_batch,
                    # as deploy/triton/model_repository/selfie_landscape/config.pbtxt asks
                    batcher=DynamicBatcher(max_queue_delay_microseconds=2000, preferred_batch_size=[4, args.max_batch]),
                ),
                strict=True,
            )
        triton.run()  # starts the server, loads the model, returns once it is ready
        print(f"READY {args.http_port} {args.grpc_port} {args.metrics_port}", flush=True)
        while not stop.wait(0.2):
            if not triton.is_alive():
                print("tritonserver died", file=sys.stderr, flush=True)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
