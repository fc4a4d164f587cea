"""Probes of the host's hardware that import nothing heavy: a low-level module that ``doctor``
(the CLI's report) and the backends both use, so neither imports the other."""

from __future__ import annotations

import ctypes


def cuda_driver() -> str | None:
    """The CUDA driver version when libcuda loads, else None. TensorRT must not be touched
    without it: deserializing an engine on a driverless host segfaults the interpreter."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    version = ctypes.c_int(0)
    if lib.cuDriverGetVersion(ctypes.byref(version)) != 0:
        return "present (version unknown)"
    v = version.value
    return f"{v // 1000}.{(v % 1000) // 10}"
