"""Which H.264 encoder this process uses: NVENC where the GPU has one, libx264 otherwise.

Data-centre GPUs (H100, H200, A100) decode in hardware (NVDEC) but have no NVENC, and PyAV's
FFmpeg lists ``h264_nvenc`` whether or not the GPU can run it: only opening the encoder and
encoding a frame tells. ``choose_h264`` does that once per process and per preference, and never
fails for lack of NVENC unless NVENC was asked for by name.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from .errors import ConfigError

log = logging.getLogger(__name__)

Preference = Literal["auto", "nvenc", "x264"]
NVENC = "h264_nvenc"
X264 = "libx264"


@dataclass(frozen=True, slots=True)
class EncoderChoice:
    """The H.264 encoder to open (an FFmpeg codec name) and why it was taken."""

    name: str  # "h264_nvenc" or "libx264"
    reason: str  # one line, for the log and `streamseg doctor`

    @property
    def hardware(self) -> bool:
        return self.name == NVENC

    def options(self, crf: int, fast: bool = True) -> dict[str, str]:
        """Codec options for a live, low-latency stream at quality ``crf`` (x264's scale, 0-51).

        Both without B-frames or lookahead, so a frame leaves the encoder as soon as it went in (the
        fragmented MP4 and the clip ring buffer rely on it). NVENC has no CRF: constant-quality VBR
        (``cq``) on the same scale is its nearest mode. ``fast``: x264 ``ultrafast``, NVENC ``p1``
        (its fastest preset); otherwise x264 ``veryfast`` and NVENC ``p4``.
        """
        if self.hardware:
            return {"preset": "p1" if fast else "p4", "tune": "ull", "rc": "vbr", "cq": str(crf), "bf": "0"}
        return {"crf": str(crf), "preset": "ultrafast" if fast else "veryfast", "tune": "zerolatency"}


@functools.cache
def choose_h264(preference: Preference = "auto") -> EncoderChoice:
    """The H.264 encoder for ``preference``: auto = NVENC when it really encodes here, else libx264;
    x264 = libx264; nvenc = NVENC or ConfigError saying why not. Decided (and logged) once per
    process and preference; a refusal is not cached, so it is raised at every call."""
    if preference not in ("auto", "nvenc", "x264"):
        raise ConfigError(f"encoder: unknown preference {preference!r} (auto, nvenc or x264)")
    if preference == "x264":
        choice = EncoderChoice(X264, "libx264 (encoder: x264)")
    elif (problem := nvenc_unavailable_reason()) is None:
        choice = EncoderChoice(NVENC, "h264_nvenc: this GPU has NVENC (a test frame encoded)")
    elif preference == "nvenc":
        raise ConfigError(f"encoder: nvenc is not usable here: {problem}; use encoder: auto or x264")
    else:
        choice = EncoderChoice(X264, f"libx264: NVENC not used ({problem})")
    log.info("H.264 encoder: %s", choice.reason)
    return choice


def nvenc_unavailable_reason() -> str | None:
    """None when PyAV's FFmpeg has h264_nvenc and it encodes a 256x144 frame; else why not, one line.

    Cached: the answer does not change while the process runs, and each probe loads the driver.
    Under a lock: the probe changes FFmpeg's process-wide log level, and two stream workers opening
    their first recording at once must not restore each other's.
    """
    with _PROBE_LOCK:
        return _probe_nvenc()


_PROBE_LOCK = threading.Lock()


@functools.cache
def _probe_nvenc() -> str | None:
    from ._deps import require

    av: Any = require("av", None, "video encoding")
    try:
        av.codec.Codec(NVENC, "w")
    except Exception:  # PyAV raises UnknownCodecError, not exported on every version
        return f"this FFmpeg build (PyAV {av.__version__}) has no {NVENC}"
    import numpy as np

    # FFmpeg says why in its log, not in the exception: raise the log level for the probe so PyAV
    # attaches the line to the error, and capture it: a failed probe is no error to log.
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        ctx = av.CodecContext.create(NVENC, "w")
        ctx.width, ctx.height, ctx.pix_fmt = 256, 144, "yuv420p"
        ctx.time_base = Fraction(1, 25)
        ctx.options = {"preset": "p1", "bf": "0"}
        frame = av.VideoFrame.from_ndarray(np.zeros((144 * 3 // 2, 256), np.uint8), format="yuv420p")
        frame.pts = 0
        with av.logging.Capture(True):
            packets = [*ctx.encode(frame), *ctx.encode(None)]
    except Exception as e:  # FFmpeg errors (EPERM without a driver, ENOSYS/EINVAL without NVENC)
        return f"{NVENC} does not open: {_ffmpeg_reason(e)}"
    finally:
        av.logging.set_level(level)
    if not packets:
        return f"{NVENC} opened but produced no packet for a test frame"
    return None


def _ffmpeg_reason(e: BaseException) -> str:
    """FFmpeg's own last log line when PyAV attached it (``Cannot load libcuda.so.1``), else the error."""
    log_entry = getattr(e, "log", None)
    if isinstance(log_entry, tuple) and len(log_entry) == 3 and str(log_entry[2]).strip():
        return str(log_entry[2]).strip().splitlines()[0]
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
