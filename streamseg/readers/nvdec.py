"""NVDEC: files and RTSP decoded on an NVIDIA GPU through PyNvVideoCodec (``decoder: nvdec``).

The decoder writes NV12 surfaces in GPU memory; ``device_frames`` hands each one over as a torch
CUDA tensor (DLPack, no copy to the host): the (H * 3 / 2, W) uint8 layout of the luma plane
followed by the interleaved UV plane; ``Source`` wraps them in Frames of pixel format "nv12_device"
when the processing stage runs on the GPU. ``nv12_to_bgr`` is the one conversion the GPU processing
stage needs from it (BT.601 studio swing in OpenCV's arithmetic, as ``streamseg.yuv``); ``frames`` (the ``Reader``
interface, host memory) gives the decoder's planes as packed I420, the CPU path's own layout.

Which decoder a stream uses is decided once (``choose_decoder``) and logged: ``auto`` takes NVDEC
only when PyNvVideoCodec imports, a CUDA GPU with the driver's decode library is there and the
processing stage runs on that GPU (frames decoded there and copied back would only cost a bus
crossing); ``nvdec`` where it cannot work is a configuration error naming the stream.

PyNvVideoCodec raises RuntimeError, not ImportError, when the driver's libraries are missing, and
its import loads them: it is imported only after the CUDA driver was found (``hardware``).
Its demuxer has no open or read timeout for RTSP: a stalled camera is caught by the stream's
watchdog only when FFmpeg's own RTSP timeout (about 10 s over UDP) ends the read.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import ConfigError, MissingDependencyError, SourceError
from ..hardware import cuda_driver
from ..uri import redact

if TYPE_CHECKING:
    from ..config import SourceConfig
    from ..models._torch import Tensor
    from ..uri import SourceURI

log = logging.getLogger(__name__)

NVDEC_KINDS = ("file", "rtsp")  # what FFmpeg's demuxer inside PyNvVideoCodec opens
EXTRA = "nvdec"
PURPOSE = "hardware decoding (decoder: nvdec)"


@dataclass(frozen=True, slots=True)
class DecoderChoice:
    """How one stream is decoded: on the GPU (nvdec) or by the software reader (FFmpeg or
    GStreamer, as ``decoder`` and the host decide), and why."""

    name: Literal["nvdec", "software"]
    reason: str


def choose_decoder(cfg: SourceConfig, gpu_stage: bool) -> DecoderChoice:
    """The decoder of ``cfg``'s stream. ``gpu_stage``: the processing stage runs on the GPU and takes
    frames there. Raises ConfigError for ``decoder: nvdec`` where NVDEC cannot work."""
    kind = cfg.kind
    if cfg.decoder == "nvdec":
        problem = nvdec_problem(kind)
        if problem is not None:
            raise ConfigError(f"stream '{cfg.name}': decoder: {problem}")
        return DecoderChoice("nvdec", "decoder: nvdec")
    if cfg.decoder != "auto":
        return DecoderChoice("software", f"decoder: {cfg.decoder}")
    if kind not in NVDEC_KINDS:
        return DecoderChoice("software", f"{kind} sources are not video streams NVDEC decodes")
    reason = nvdec_unavailable_reason()
    if reason is not None:
        return DecoderChoice("software", f"auto: NVDEC not used: {reason}")
    if not gpu_stage:
        return DecoderChoice("software", "auto: NVDEC not used: the processing stage does not run on the GPU")
    return DecoderChoice("nvdec", "auto: NVDEC, frames stay on the GPU for the processing stage")


def nvdec_problem(kind: str) -> str | None:
    """Why ``decoder: nvdec`` cannot read a source of ``kind`` here (one line), or None."""
    if kind not in NVDEC_KINDS:
        return f"nvdec reads files and rtsp:// streams, not {kind} sources"
    reason = nvdec_unavailable_reason()
    return None if reason is None else f"nvdec is not available here: {reason}"


@functools.cache
def nvdec_unavailable_reason() -> str | None:
    """None when NVDEC can decode here, else why not in one line (for the log and ``doctor``).
    Checked in order of cost; the answer is cached for the process."""
    if importlib.util.find_spec("PyNvVideoCodec") is None:
        return f"PyNvVideoCodec is not installed (pip install 'streamseg[{EXTRA}]')"
    if cuda_driver() is None:
        return "no CUDA driver (libcuda.so.1 does not load)"
    try:
        ctypes.CDLL("libnvcuvid.so.1")
    except OSError:
        return (
            "the driver's decode library libnvcuvid.so.1 does not load "
            "(in a container: NVIDIA_DRIVER_CAPABILITIES needs 'video')"
        )
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed; NVDEC frames are handed over as torch tensors (pip install 'streamseg[torch]')"
    try:
        _nvc()
        from ..models._torch import torch
    except (SourceError, MissingDependencyError) as e:
        return str(e)
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device"
    return None


def _nvc() -> Any:
    """PyNvVideoCodec, imported once through the one door; its RuntimeError (a driver library
    missing) becomes a one-line SourceError."""
    from .._deps import require

    try:
        return require("PyNvVideoCodec", EXTRA, PURPOSE)
    except RuntimeError as e:  # not ImportError: "Failed to load NVENC library: libnvidia-encode.so.1" and more
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SourceError(f"PyNvVideoCodec does not import: {first}") from None


def nv12_to_bgr(nv12: Tensor) -> Tensor:
    """(H * 3 / 2, W) uint8 NV12 -> (H, W, 3) uint8 BGR on the same device: what the GPU stage
    preprocesses and blends. OpenCV's integer arithmetic (``gpu.nv12_to_bgr``), so NVDEC's frames
    give the model the input the software decoder's I420 of the same picture gives."""
    from ..gpu import nv12_to_bgr as exact

    return exact(nv12)


def nv12_to_i420(nv12: Tensor) -> Tensor:
    """(H * 3 / 2, W) NV12 -> the same picture packed as I420 (``streamseg.yuv``'s layout): the
    interleaved UV plane split into U then V. Exact, on the tensor's device."""
    from ..models._torch import torch

    h, w = nv12.shape[0] * 2 // 3, nv12.shape[1]
    uv = nv12[h:].reshape(-1, 2)
    chroma = torch.cat((uv[:, 0], uv[:, 1])).view(h // 2, w)
    return torch.cat((nv12[:h], chroma))


class NvdecReader:
    """One file or RTSP stream decoded by NVDEC on GPU ``gpu``; ``loop`` starts a file again at its end."""

    def __init__(self, target: str, loop: bool, gpu: int = 0) -> None:
        problem = nvdec_unavailable_reason()
        if problem is not None:
            raise SourceError(f"decoder: nvdec is not available here: {problem}")
        from ..models._torch import torch

        self._nvc, self._torch = _nvc(), torch
        self._target, self._loop, self._gpu = target, loop, gpu
        self._device = torch.device("cuda", gpu)
        self._demuxer: Any = None
        self._decoder: Any = None
        self.fps: float | None = None
        self._open()
        self.frame_count: int | None = None if loop else _stated_frames(target)

    def _open(self) -> None:
        nvc = self._nvc
        try:
            self._demuxer = nvc.CreateDemuxer(filename=self._target)
            # cudacontext/cudastream 0: the GPU's primary context (torch's too) and a stream of the
            # decoder's own; torch.from_dlpack orders the hand-over with torch's stream.
            self._decoder = nvc.CreateDecoder(
                gpuid=self._gpu,
                codec=self._demuxer.GetNvCodecId(),
                cudacontext=0,
                cudastream=0,
                usedevicememory=True,
            )
        except Exception as e:  # PyNvVideoCodec raises its own and RuntimeError for unreadable input
            text = str(e).strip()
            raise SourceError(
                f"NVDEC cannot open {redact(self._target)}: {text.splitlines()[0] if text else type(e).__name__}"
            ) from None
        tb_num, tb_den = self._demuxer.GetTimebaseNum(), self._demuxer.GetTimebaseDen()
        self._timebase: float | None = float(tb_num) / float(tb_den) if tb_den else None
        rate = float(self._demuxer.FrameRate())
        self.fps = rate if rate > 0 else None

    def device_frames(self) -> Iterator[tuple[Tensor, float | None]]:
        """(NV12 (H * 3 / 2, W) uint8 CUDA tensor, pts in seconds or None) per frame, in display order.
        Each tensor is the frame's own copy: the decoder reuses its surfaces on the next packet."""
        offset = 0.0
        while True:
            last = None
            for packet in self._demuxer:  # the last packet is empty and flushes the decoder
                for decoded in self._decoder.Decode(packet):
                    # a contiguous copy: the surface has the decoder's pitch, and the decoder reuses it
                    surface = self._torch.from_dlpack(decoded)  # type: ignore[attr-defined]
                    tensor = surface.clone(memory_format=self._torch.contiguous_format)
                    if tensor.dtype != self._torch.uint8 or tensor.ndim != 2:
                        raise SourceError(
                            f"{redact(self._target)}: NVDEC gave a {tensor.dtype} {tuple(tensor.shape)} surface; "
                            "decoder: nvdec reads 8-bit 4:2:0 video (use decoder: ffmpeg)"
                        )
                    pts = self._seconds(decoded)
                    if pts is not None:
                        last = pts
                    yield tensor, None if pts is None else pts + offset
            if not self._loop or last is None:
                return
            offset += last + (1.0 / self.fps if self.fps else 0.04)
            self._open()  # the demuxer reads forward only: start the file again

    def frames(self) -> Iterator[tuple[np.ndarray, float | None]]:
        """The ``Reader`` interface: each frame copied to the host as packed I420 (H * 3 / 2, W)."""
        for nv12, pts in self.device_frames():
            yield nv12_to_i420(nv12).cpu().numpy(), pts

    def _seconds(self, decoded: Any) -> float | None:
        raw = decoded.getPTS()
        if self._timebase is None or raw is None or raw < 0:  # AV_NOPTS_VALUE comes as a negative number
            return None
        return float(raw) * self._timebase

    def close(self) -> None:
        self._decoder = None
        self._demuxer = None


def _stated_frames(target: str) -> int | None:
    """The frame count a file's container states (PyAV; the NVDEC demuxer does not say), else None."""
    if "://" in target:
        return None
    try:
        from ..media import VideoInput

        video = VideoInput(target)
    except Exception:  # a count is only for progress bars; NVDEC opened the file already
        return None
    try:
        return video.info.frames
    finally:
        video.close()


def open_nvdec(uri: SourceURI, cfg: SourceConfig) -> NvdecReader:
    return NvdecReader(uri.target, cfg.loop)
