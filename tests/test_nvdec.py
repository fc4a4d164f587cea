"""NVDEC decoding (streamseg/readers/nvdec.py): which decoder a stream gets and why, the refusal of
``decoder: nvdec`` where it cannot run, the NV12 conversions (on the CPU device here, the same torch
code as on the GPU), and on a GPU host the real decode of samples/bikes.mp4 against PyAV's.

Here there is no GPU, no driver and no PyNvVideoCodec: auto must take the software reader and log
why, and nvdec by name must stop ``streamseg validate`` with one line and exit code 2.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from streamseg.config import SourceConfig
from streamseg.errors import ConfigError, SourceError
from streamseg.metrics import Metrics
from streamseg.readers.nvdec import (
    NvdecReader,
    choose_decoder,
    nv12_to_bgr,
    nv12_to_i420,
    nvdec_problem,
    nvdec_unavailable_reason,
)
from streamseg.sources import Source

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "samples" / "bikes.mp4"
MISSING = nvdec_unavailable_reason()
needs_no_nvdec = pytest.mark.skipif(MISSING is None, reason="NVDEC works on this host")


def _cfg(uri: str = str(CLIP), decoder: str = "auto") -> SourceConfig:
    # model_construct: the decoder's own check is what is under test, not the field validator's
    return SourceConfig.model_construct(**{**SourceConfig(name="cam", uri=uri).model_dump(), "decoder": decoder})


@needs_no_nvdec
@pytest.mark.parametrize("gpu_stage", [False, True])
def test_auto_is_software_here_with_the_reason(gpu_stage: bool) -> None:
    choice = choose_decoder(_cfg(), gpu_stage)
    assert choice.name == "software"
    assert choice.reason == f"auto: NVDEC not used: {MISSING}"


def test_when_pynvvideocodec_is_missing_the_reason_names_the_extra() -> None:
    import importlib.util

    if importlib.util.find_spec("PyNvVideoCodec") is not None:
        pytest.skip("PyNvVideoCodec is installed here")
    assert MISSING == "PyNvVideoCodec is not installed (pip install 'streamseg[nvdec]')"


@pytest.mark.parametrize(
    ("uri", "decoder", "gpu_stage", "name", "reason"),
    [
        (str(CLIP), "ffmpeg", True, "software", "decoder: ffmpeg"),
        (str(CLIP), "gstreamer", True, "software", "decoder: gstreamer"),
        ("synthetic://?width=16&height=16", "auto", True, "software", "synthetic sources are not video streams"),
        ("/dev/video0", "auto", True, "software", "camera sources are not video streams"),
    ],
)
def test_software_choices_on_any_host(uri: str, decoder: str, gpu_stage: bool, name: str, reason: str) -> None:
    choice = choose_decoder(_cfg(uri, decoder), gpu_stage)
    assert choice.name == name and choice.reason.startswith(reason)


@pytest.mark.skipif(MISSING is not None, reason=f"NVDEC is not available here: {MISSING}")
def test_auto_takes_nvdec_only_for_a_gpu_stage() -> None:
    assert choose_decoder(_cfg(), True).name == "nvdec"
    off = choose_decoder(_cfg(), False)
    assert off.name == "software" and "processing stage does not run on the GPU" in off.reason


def test_nvdec_for_a_camera_is_refused_on_any_host() -> None:
    assert nvdec_problem("camera") == "nvdec reads files and rtsp:// streams, not camera sources"
    with pytest.raises(ValidationError, match="stream 'cam': nvdec reads files and rtsp:// streams, not camera"):
        SourceConfig(name="cam", uri="/dev/video0", decoder="nvdec")


@needs_no_nvdec
def test_nvdec_requested_here_is_a_config_error_naming_the_stream() -> None:
    with pytest.raises(ValidationError, match=re.escape(f"stream 'cam': nvdec is not available here: {MISSING}")):
        SourceConfig(name="cam", uri=str(CLIP), decoder="nvdec")
    with pytest.raises(ConfigError) as err:  # the same check where a Source is built from a checked config
        choose_decoder(_cfg(decoder="nvdec"), True)
    assert str(err.value) == f"stream 'cam': decoder: nvdec is not available here: {MISSING}"
    with pytest.raises(SourceError, match="decoder: nvdec is not available here"):
        NvdecReader(str(CLIP), False)


@needs_no_nvdec
def test_validate_stops_nvdec_here_with_one_line_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        f"model: {{path: selfie_landscape}}\nsources:\n  - name: door\n    uri: {CLIP}\n    decoder: nvdec\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "streamseg", "validate", str(path)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr  # no traceback
    where = f"streamseg: error: {path}:5: sources.0.decoder"
    assert lines[0] == f"{where}: stream 'door': nvdec is not available here: {MISSING}"


@needs_no_nvdec
def test_a_stream_logs_its_decoder(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="streamseg.sources"):
        source = Source(SourceConfig(name="cam", uri=str(CLIP)), Metrics(), gpu_stage=True)
    assert source.decoder.name == "software"
    assert f"stream cam: decoder software (auto: NVDEC not used: {MISSING})" in caplog.messages


def _pyav_i420(limit: int | None = None) -> list[tuple[np.ndarray, float | None]]:
    """bikes.mp4 decoded by PyAV (FFmpeg's software H.264 decoder): packed I420 planes and pts."""
    out = []
    with av.open(str(CLIP)) as c:
        for frame in c.decode(video=0):
            out.append((frame.to_ndarray(format="yuv420p"), frame.time))
            if limit is not None and len(out) == limit:
                break
    return out


def _nv12(i420: np.ndarray) -> np.ndarray:
    h, w = i420.shape[0] * 2 // 3, i420.shape[1]
    u = i420[h : h + h // 4].reshape(h // 2, w // 2)
    v = i420[h + h // 4 :].reshape(h // 2, w // 2)
    return np.concatenate([i420[:h], np.stack([u, v], axis=-1).reshape(h // 2, w)])


def test_nv12_conversions_match_the_cpu_path_on_real_frames() -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'streamseg[torch]')")
    for i420, _ in _pyav_i420(limit=8):
        nv12 = _nv12(i420)
        assert np.array_equal(nv12_to_i420(torch.from_numpy(nv12)).numpy(), i420)  # exact
        got = nv12_to_bgr(torch.from_numpy(nv12)).numpy()
        want = cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)  # what streamseg.yuv.i420_to_bgr gives
        assert got.shape == want.shape and got.dtype == np.uint8
        assert np.array_equal(got, want)  # OpenCV's fixed point on the device: the same bytes


@pytest.mark.gpu
@pytest.mark.skipif(MISSING is not None, reason=f"NVDEC is not available here: {MISSING}")
def test_nvdec_decodes_bikes_like_pyav() -> None:
    """H.264 decoding is exact: NVDEC's planes must equal FFmpeg's, frame for frame, with the same pts."""
    import torch

    want = _pyav_i420()
    reader = NvdecReader(str(CLIP), loop=False)
    try:
        assert reader.fps == pytest.approx(25.0)
        assert reader.frame_count == len(want) == 250
        got = []
        for nv12, pts in reader.device_frames():
            assert nv12.is_cuda and nv12.dtype == torch.uint8
            got.append((nv12_to_i420(nv12).cpu().numpy(), pts))
    finally:
        reader.close()
    assert len(got) == len(want)
    for i, ((g, gp), (w, wp)) in enumerate(zip(got, want, strict=True)):
        assert np.array_equal(g, w), f"frame {i}: {np.abs(g.astype(int) - w).max()} max difference"
        assert gp == pytest.approx(wp, abs=1e-6), f"frame {i}: pts {gp} vs {wp}"
    host = NvdecReader(str(CLIP), loop=False)  # the Reader interface: the same planes on the host
    try:
        first, pts = next(iter(host.frames()))
    finally:
        host.close()
    assert isinstance(first, np.ndarray) and np.array_equal(first, want[0][0]) and pts == pytest.approx(0.0)


def test_doctor_says_whether_nvdec_is_available_and_why_not() -> None:
    from streamseg.doctor import report

    rows = dict(report())
    assert rows["nvdec (decoder: nvdec)"] == ("available" if MISSING is None else f"not available: {MISSING}")
