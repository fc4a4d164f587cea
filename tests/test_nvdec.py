"""NVDEC decoding (streamseg/readers/nvdec.py): which decoder a stream gets and why, the refusal of
``decoder: nvdec`` where it cannot run, the NV12 conversions (on the CPU device here, the same torch
code as on the GPU), and on a GPU host the real decode of samples/bikes.mp4 against PyAV's.

Here there is no GPU, no driver and no PyNvVideoCodec: auto must take the software reader and log
why, and nvdec by name must stop ``streamseg validate`` with one line and exit code 2.
"""

from __future__ import annotations

import functools
import logging
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
from pydantic import ValidationError

import streamseg.pipeline as pipeline_mod
import streamseg.sources as sources_mod
from streamseg.config import SourceConfig, parse_config
from streamseg.contract import LoadedModel
from streamseg.errors import ConfigError, SourceError
from streamseg.frames import Picture, SegResult
from streamseg.metrics import Metrics
from streamseg.outputs import Sink
from streamseg.readers.nvdec import (
    DecoderChoice,
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


@pytest.mark.parametrize(
    ("gpu_stage", "where"), [(True, "frames stay on the GPU"), (False, "frames copied to the host")]
)
def test_an_nvdec_stream_logs_where_its_frames_go(
    gpu_stage: bool, where: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Device frames only for a stage that takes them; NVDEC is chosen for the source here (no GPU)."""
    monkeypatch.setattr(sources_mod, "choose_decoder", lambda cfg, gpu: DecoderChoice("nvdec", "decoder: nvdec"))
    with caplog.at_level(logging.INFO, logger="streamseg.sources"):
        source = Source(SourceConfig(name="cam", uri=str(CLIP)), Metrics(), gpu_stage=gpu_stage)
    assert source.device_frames is gpu_stage
    assert f"stream cam: decoder nvdec (decoder: nvdec; {where})" in caplog.messages


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


# --- NVDEC's device frames through the whole pipeline ---------------------------------------------


class StandInNvdec:
    """NvdecReader's two interfaces where there is no GPU: PyAV decodes the file to the planes NVDEC
    gives too (test_nvdec_decodes_bikes_like_pyav), and ``device_frames`` hands them over as NV12
    torch tensors on torch's CPU device, as NvdecReader hands CUDA ones; ``frames`` gives host I420."""

    def __init__(self, uri: Any, cfg: SourceConfig) -> None:
        from streamseg.readers.file import open_file

        self._inner = open_file(uri, cfg)
        self.fps = self._inner.fps
        self.frame_count = getattr(self._inner, "frame_count", None)

    def frames(self) -> Iterator[tuple[np.ndarray, float | None]]:
        return self._inner.frames()

    def device_frames(self) -> Iterator[tuple[Any, float | None]]:
        import torch

        for i420, pts in self._inner.frames():
            yield torch.from_numpy(_nv12(i420)), pts

    def close(self) -> None:
        self._inner.close()


class Capture(Sink):
    """Keeps, per frame, the result, the picture it was given (its pixels copied) and whether the
    frame had been copied off the device once this output had those pixels."""

    def __init__(self, raw: bool) -> None:
        self.wants_raw, self.wants_overlay = raw, not raw
        self.got: dict[int, tuple[SegResult, np.ndarray | None, str | None, bool]] = {}

    def write(self, result: SegResult, picture: Picture | None) -> None:
        data = None if picture is None else picture.data.copy()
        fmt = None if picture is None else picture.pixel_format
        downloaded = result.frame._host is not None
        self.got[result.frame.index] = (result, data, fmt, downloaded)


def _run_bikes(
    model: LoadedModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    nvdec: bool,
    gpu_stage: bool,
    mode: str,
    raw: bool,
    frames: int = 6,
) -> Capture:
    """bikes.mp4 through the real pipeline with torch on the CPU device; ``nvdec``: the stand-in
    decoder (else PyAV's I420); ``gpu_stage``: the torch GPU stage (else the CPU stage)."""
    pytest.importorskip("torch", reason="torch is not installed (pip install 'streamseg[torch]')")
    from streamseg.backends import REGISTRY
    from streamseg.backends.torch import TorchBackend
    from streamseg.gpu import TorchStage
    from streamseg.pipeline import Pipeline
    from streamseg.stages import OverlaySpec, Stage
    from streamseg.temporal import TemporalFilter

    class DeviceStageTorch(TorchBackend):
        def stage(self, overlay: OverlaySpec | None = None, temporal: TemporalFilter | None = None) -> Stage[Any]:
            return TorchStage(self._device, self.contract, overlay, temporal)

    capture = Capture(raw)
    cfg = parse_config(f"""
sources: [{{name: a, uri: "{CLIP}"}}]
model: {{path: "{model.sidecar}", backend: torch, device: cpu}}
batch: {{max_batch: 2, max_wait_ms: 5}}
overlay: {{mode: {mode}, legend: false}}
outputs: [{{type: jsonl, path: "{tmp_path}/{nvdec}-{gpu_stage}-{mode}-{raw}.jsonl"}}]
http: {{enabled: false, port: 0}}
""")
    real_build = pipeline_mod.build_sinks
    with monkeypatch.context() as mp:
        mp.setitem(REGISTRY, "torch", DeviceStageTorch if gpu_stage else TorchBackend)
        mp.setattr(pipeline_mod, "build_sinks", lambda *a, **k: [capture, *real_build(*a, **k)])
        if nvdec:  # NVDEC cannot be chosen here: the choice is made for it, the stand-in opened
            mp.setattr(sources_mod, "choose_decoder", lambda cfg, gpu: DecoderChoice("nvdec", "stand-in"))
            mp.setattr(sources_mod, "open_nvdec", StandInNvdec)
        box: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: box.setdefault("summary", Pipeline(cfg, max_frames=frames).run()))
        thread.start()
        thread.join(60)
        assert not thread.is_alive(), "the pipeline hung"
    assert box["summary"].frames == {"a": frames} and sorted(capture.got) == list(range(frames))
    return capture


@pytest.mark.parametrize(("mode", "raw"), [("blend", False), ("side-by-side", False), ("blend", True)])
def test_device_frames_through_the_pipeline_equal_software_decoding(
    mode: str, raw: bool, make_model: Callable[..., LoadedModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same clip decoded by the NVDEC stand-in (NV12 tensors kept as device frames for the GPU
    stage) and by PyAV (host I420): equal class maps, area ratios and pictures for every frame. The
    frame is copied off the device only where an output needs its pixels: never for the stage's own
    blend; for a raw output and for an overlay the worker draws (side by side), from the host I420."""
    model = make_model({"kind": "class_map", "height": 48, "width": 64}, {"input.mean": [128.0] * 3})
    run = functools.partial(_run_bikes, model, tmp_path, monkeypatch, gpu_stage=True, mode=mode, raw=raw)
    software, device = run(nvdec=False), run(nvdec=True)
    for i, (want, want_pic, want_fmt, _) in software.got.items():
        got, pic, fmt, downloaded = device.got[i]
        assert want.frame.pixel_format == "yuv420p" and got.frame.pixel_format == "nv12_device"
        assert np.array_equal(got.class_map, want.class_map) and np.array_equal(got.area_ratio, want.area_ratio)
        assert pic is not None and want_pic is not None and fmt == want_fmt and np.array_equal(pic, want_pic)
        if raw:  # the frame as decoded, downloaded for this output
            assert fmt == "yuv420p" and downloaded and np.array_equal(pic, got.frame.host_image())
        elif mode == "blend":  # blended by the stage where the frame is: nothing came to the host
            assert fmt == "bgr24" and got.overlay is not None and not downloaded
        else:  # drawn by the stream's worker, in I420, on the frame's host copy
            assert fmt == "yuv420p" and got.overlay is None and downloaded
    assert len({r.class_map.tobytes() for r, *_ in device.got.values()}) > 1  # real frames: the maps differ


def test_a_cpu_stage_gets_nvdec_frames_on_the_host(
    make_model: Callable[..., LoadedModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """decoder: nvdec beside the CPU stage: the source reads the reader's host frames (I420), not
    device ones the stage would download one by one."""
    model = make_model({"kind": "class_map", "height": 48, "width": 64}, {"input.mean": [128.0] * 3})
    got = _run_bikes(model, tmp_path, monkeypatch, nvdec=True, gpu_stage=False, mode="blend", raw=False, frames=2)
    assert all(r.frame.pixel_format == "yuv420p" for r, *_ in got.got.values())


@pytest.mark.gpu
@pytest.mark.skipif(MISSING is not None, reason=f"NVDEC is not available here: {MISSING}")
def test_nvdec_device_frames_on_the_cuda_stage_equal_pyav_frames() -> None:
    """On a GPU host: bikes.mp4 decoded by NVDEC into CUDA device frames, preprocessed by the CUDA
    stage without leaving the GPU, gives the input PyAV's I420 frames give; Picture.of downloads the
    planes PyAV decoded."""
    import torch

    from streamseg.contract import load_model
    from streamseg.frames import Frame
    from streamseg.gpu import TorchStage

    want = [i420 for i420, _ in _pyav_i420(limit=4)]
    reader = NvdecReader(str(CLIP), loop=False)
    try:
        got = []
        for nv12, _ in reader.device_frames():
            got.append(Frame("a", len(got), 0.0, 0.0, 0.0, nv12, "nv12_device"))
            if len(got) == len(want):
                break
    finally:
        reader.close()
    stage = TorchStage("cuda", load_model("selfie_landscape").contract)
    host = tuple(Frame("a", i, 0.0, 0.0, 0.0, p, "yuv420p") for i, p in enumerate(want))
    x = stage.preprocess(got)
    assert x.is_cuda and all(f._host is None for f in got)  # nothing went through host memory
    assert torch.equal(x, stage.preprocess(host))
    assert all(np.array_equal(Picture.of(f).data, w) for f, w in zip(got, want, strict=True))
