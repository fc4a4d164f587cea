"""`streamseg doctor`: what this host can run, checked without importing heavy libraries
(TensorRT and torch are looked up, not imported; a CUDA driver is probed with ctypes)."""

from __future__ import annotations

import importlib.util
import platform
import shutil
import sys

from . import __version__
from .errors import MissingDependencyError
from .hardware import cuda_driver


def cpu_model() -> str:
    """The CPU's marketing name, for benchmark and accuracy reports."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _module(name: str) -> str:
    return "installed" if importlib.util.find_spec(name) is not None else "not installed"


def report() -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = [
        ("streamseg", __version__),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("platform", f"{platform.system()} {platform.machine()}"),
    ]
    import cv2
    import numpy

    rows += [("numpy", numpy.__version__), ("opencv", cv2.__version__)]
    try:
        from .media import av_version, encoder_names

        rows.append(("pyav", av_version()))
        rows += [(f"codec {k}", "yes" if v else "NO") for k, v in encoder_names().items()]
    except MissingDependencyError as e:  # report, never fail: doctor runs on broken installs
        rows.append(("pyav", f"missing: {e}"))
    try:
        from .backends.onnxruntime import providers

        rows.append(("onnxruntime providers", ", ".join(providers())))
    except Exception as e:  # report, never fail: doctor runs on broken hosts
        rows.append(("onnxruntime", f"unavailable: {e}"))
    driver = cuda_driver()
    rows.append(("cuda driver", driver or "not found (no NVIDIA GPU path on this host)"))
    # NVDEC and NVENC are probed for real (PyNvVideoCodec imported, a test frame encoded) only where
    # the cheap checks pass: a listed codec or an installed package is no proof on a GPU without them.
    from .encoders import nvenc_unavailable_reason
    from .readers.nvdec import nvdec_unavailable_reason

    no_nvdec = nvdec_unavailable_reason()
    rows.append(("nvdec (decoder: nvdec)", f"not available: {no_nvdec}" if no_nvdec else "available"))
    try:
        no_nvenc = nvenc_unavailable_reason()
        rows.append(("h264 encoder", f"libx264 (NVENC not used: {no_nvenc})" if no_nvenc else "h264_nvenc"))
    except MissingDependencyError as e:  # report, never fail: doctor runs on broken installs
        rows.append(("h264 encoder", f"unavailable: {e}"))
    rows.append(("tensorrt (python)", _module("tensorrt")))
    rows.append(("pycuda", _module("pycuda")))
    rows.append(("torch", _module("torch")))
    rows.append(("tritonclient (backend: triton)", _module("tritonclient")))
    rows.append(("gstreamer (gst-launch-1.0)", shutil.which("gst-launch-1.0") or "not found"))
    from .gst import rtsp_output_unavailable_reason
    from .outputs.display import display_unavailable_reason

    rows.append(("rtsp output", rtsp_output_unavailable_reason() or "available"))
    rows.append(("display output", display_unavailable_reason() or "available"))
    return rows
