"""The CUDA layer of the TensorRT backend, through pycuda: the only module that imports pycuda.

pycuda builds only where a CUDA driver and toolkit exist (GPU hosts, Jetson), so it is imported
lazily and a missing install names the extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._deps import require


def _cuda() -> Any:
    return require("pycuda.driver", "tensorrt", "the TensorRT backend's CUDA layer")


class CudaContext:
    """A context on one device, pushed for the calling thread by ``__enter__``."""

    def __init__(self, device: int = 0) -> None:
        cuda = _cuda()
        cuda.init()
        self._cuda = cuda
        self.device = cuda.Device(device)
        self._ctx = self.device.retain_primary_context()

    @property
    def gpu_name(self) -> str:
        return str(self.device.name())

    @property
    def compute_capability(self) -> str:
        major, minor = self.device.compute_capability()
        return f"{major}.{minor}"

    def __enter__(self) -> CudaContext:
        self._ctx.push()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ctx.pop()

    def stream(self) -> Any:
        return new_stream()


def new_stream() -> Any:
    """A CUDA stream in the current context (pycuda needs one pushed: ``with CudaContext(...)``)."""
    return _cuda().Stream()


@dataclass
class HostDeviceBuffer:
    """A pinned host array and a device allocation of the same size, for one I/O tensor."""

    host: np.ndarray
    device: Any  # pycuda DeviceAllocation; int(device) is the address TensorRT wants

    @property
    def address(self) -> int:
        return int(self.device)


def allocate(shape: tuple[int, ...], dtype: np.dtype[Any]) -> HostDeviceBuffer:
    cuda = _cuda()
    host = cuda.pagelocked_empty(shape, dtype)  # pinned: async copies need it, and it's ~2x faster
    return HostDeviceBuffer(host, cuda.mem_alloc(host.nbytes))


def to_device(buf: HostDeviceBuffer, stream: Any, nbytes: int) -> None:
    _cuda().memcpy_htod_async(buf.device, buf.host.reshape(-1).view(np.uint8)[:nbytes], stream)


def to_host(buf: HostDeviceBuffer, stream: Any, nbytes: int) -> None:
    _cuda().memcpy_dtoh_async(buf.host.reshape(-1).view(np.uint8)[:nbytes], buf.device, stream)
