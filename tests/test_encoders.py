"""The H.264 encoder choice (streamseg/encoders.py), against this host's real PyAV/FFmpeg.

Here (no GPU, no driver) FFmpeg has h264_nvenc but cannot open it: auto must fall back to libx264
and say why, and nvenc by name must be a one-line ConfigError. On a host whose GPU has NVENC the
fallback tests skip and the gpu test encodes with it; an H100/H200/A100 has none, so there they
fall back too, which is the point.
"""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest

from streamseg.encoders import NVENC, X264, EncoderChoice, choose_h264, nvenc_unavailable_reason
from streamseg.errors import ConfigError, StreamsegError

NVENC_MISSING = nvenc_unavailable_reason()
needs_no_nvenc = pytest.mark.skipif(NVENC_MISSING is None, reason="this host's GPU has NVENC")


@needs_no_nvenc
def test_auto_takes_x264_and_says_why_nvenc_was_not_used() -> None:
    choice = choose_h264("auto")
    assert choice.name == X264
    assert not choice.hardware
    assert choice.reason == f"libx264: NVENC not used ({NVENC_MISSING})"
    # the probe's reason is FFmpeg's own line (here: no CUDA driver), not a bare errno
    assert "h264_nvenc does not open: " in choice.reason or "has no h264_nvenc" in choice.reason
    assert "Operation not permitted" not in choice.reason


@needs_no_nvenc
def test_nvenc_by_name_where_absent_is_one_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        choose_h264("nvenc")
    assert isinstance(err.value, StreamsegError) and err.value.exit_code == 2
    message = str(err.value)
    assert message.startswith("encoder: nvenc is not usable here: ")
    assert NVENC_MISSING is not None and NVENC_MISSING in message
    assert "\n" not in message


def test_x264_by_name_never_probes_and_unknown_is_refused() -> None:
    assert choose_h264("x264") == EncoderChoice(X264, "libx264 (encoder: x264)")
    with pytest.raises(ConfigError, match="unknown preference 'qsv'"):
        choose_h264("qsv")  # type: ignore[arg-type]


def test_the_probe_leaves_ffmpeg_logging_as_it_was() -> None:
    """In a process of its own: PyAV hands FFmpeg's log lines to Python logging late (here at
    exit), so only a whole process shows whether a failed probe leaks an ERROR line."""
    code = (
        "import logging, av; logging.basicConfig(level=logging.DEBUG)\n"
        "av.logging.set_level(None)\n"
        "from streamseg.encoders import nvenc_unavailable_reason as probe\n"
        "print(probe()); print(av.logging.get_level())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    reason, level = done.stdout.splitlines()
    assert reason == str(NVENC_MISSING)  # the same verdict in every process
    assert level == "None"  # the level put back
    assert "ERROR" not in done.stderr, done.stderr  # a failed probe is a reason, not an error in the log


def _encode(choice: EncoderChoice, frames: int) -> int:
    """Encode ``frames`` 320x240 frames with the choice's options; the packets that came out."""
    ctx = av.CodecContext.create(choice.name, "w")
    ctx.width, ctx.height, ctx.pix_fmt = 320, 240, "yuv420p"
    ctx.time_base = Fraction(1, 25)
    ctx.options = choice.options(28)
    rng = np.random.default_rng(0)
    packets = 0
    for i in range(frames):
        image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
        frame.pts = i
        out = ctx.encode(frame)
        packets += len(out)
        if i == 0:
            # no lookahead, no B-frames: the first frame is out before the second goes in
            assert len(out) == 1 and out[0].is_keyframe
    return packets + len(ctx.encode(None))


def test_x264_options_encode_without_delay() -> None:
    assert _encode(choose_h264("x264"), 10) == 10


@pytest.mark.gpu
@pytest.mark.skipif(NVENC_MISSING is not None, reason=f"no NVENC here: {NVENC_MISSING}")
def test_nvenc_options_encode_without_delay() -> None:
    choice = choose_h264("auto")
    assert choice.name == NVENC
    assert _encode(choice, 10) == 10


def test_doctor_names_the_encoder_and_why() -> None:
    from streamseg.doctor import report

    rows = dict(report())
    want = NVENC if NVENC_MISSING is None else f"libx264 (NVENC not used: {NVENC_MISSING})"
    assert rows["h264 encoder"] == want
