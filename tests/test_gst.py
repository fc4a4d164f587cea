"""GStreamer decoding: the pipeline strings, and real decoding with GStreamer's software decoder
(the Jetson chain nvv4l2decoder + nvvidconv is the same pipeline with another decoder; it runs
only on Jetson and is not executed here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamseg import gst
from streamseg.config import SourceConfig
from streamseg.media import VideoInput
from streamseg.metrics import Metrics
from streamseg.sources import Source

CLIP = Path(__file__).resolve().parents[1] / "samples" / "bikes.mp4"


def test_pipeline_strings() -> None:
    hw = "nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx"
    s = gst.pipeline_string("rtsp", "rtsp://cam/stream", hw, latency_ms=100)
    assert s.startswith('rtspsrc location="rtsp://cam/stream" protocols=tcp latency=100')
    assert "parsebin ! nvv4l2decoder ! nvvidconv" in s and s.endswith("sync=false emit-signals=false")
    assert "decodebin" in gst.pipeline_string("file", "/a.mp4", None)


@pytest.fixture
def need_gst() -> None:
    if not gst.has_element("decodebin") or not gst.has_element("avdec_h264"):
        pytest.skip("GStreamer with python3-gi and gstreamer1.0-libav is not installed")


def _read(cfg: dict[str, object]) -> tuple[Source, list[np.ndarray]]:
    metrics = Metrics()
    source = Source(SourceConfig.model_validate(cfg), metrics)
    source.start()
    frames = []
    while not (source.finished.is_set() and len(source.queue) == 0):
        frame = source.queue.get_nowait()
        if frame is None:
            source.finished.wait(0.01)
            continue
        frames.append(frame.image)
    source.join(5)
    return source, frames


def test_gstreamer_decodes_the_clip_like_ffmpeg(need_gst: None) -> None:
    source, frames = _read({"name": "g", "uri": str(CLIP), "decoder": "gstreamer", "queue_size": 16})
    assert source.error is None
    assert len(frames) == 250
    video = VideoInput(str(CLIP))
    reference = [img for img, _ in video.frames()]
    video.close()
    # same H.264 decoder (libavcodec); only the YUV->BGR conversion differs between the two
    diffs = [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(frames, reference, strict=True)]
    assert max(diffs) < 3.0


def test_gstreamer_missing_file_is_a_one_line_error(need_gst: None, tmp_path: Path) -> None:
    source, frames = _read({"name": "g", "uri": str(tmp_path / "none.mp4"), "decoder": "gstreamer"})
    assert frames == []
    assert source.error is not None and source.error.startswith(f"stream 'g' ({tmp_path}/none.mp4): ")
    assert "\n" not in source.error


@pytest.mark.parametrize(
    ("fps", "rate", "gop"),
    [(25.0, "25/1", 25), (30000 / 1001, "30000/1001", 30), (60000 / 1001, "60000/1001", 60), (29.97, "2997/100", 30)],
)
def test_encoder_launch_frame_rate(fps: float, rate: str, gop: int) -> None:
    launch = gst.encoder_launch(640, 360, fps, 2000)
    assert f"framerate={rate}," in launch.replace(" ", ",") and f"key-int-max={gop} " in launch
    assert "bitrate=2000 " in launch and "name=pay0" in launch


def test_encoder_launch_refuses_odd_sizes() -> None:
    with pytest.raises(ValueError, match="even frame size, got 641x360"):
        gst.encoder_launch(641, 360, 25, 2000)
    assert gst.even_size(853, 481) == (852, 480)
    assert gst.even_size(640, 360) == (640, 360)
    assert gst.even_size(1, 1) == (2, 2)


def test_encoder_launch_parses_with_this_gstreamer() -> None:
    # Every element and property must exist here: a misspelt or too-new property is a GLib.Error
    # from parse_launch, while gst-rtsp-server would only warn and run without it.
    if not all(gst.has_element(e) for e in ("appsrc", "x264enc", "rtph264pay")):
        pytest.skip("GStreamer with gstreamer1.0-plugins-ugly/-good is not installed")
    launch = gst.encoder_launch(320, 180, 29.97, 1000).strip("() ")
    pipeline = gst._gst_module().parse_launch(launch)
    assert pipeline.get_by_name("src") is not None and pipeline.get_by_name("pay0") is not None


@pytest.mark.parametrize("size", [(852, 480), (540, 960), (322, 270), (1280, 720)])
def test_i420_pushed_in_gstreamers_layout(size: tuple[int, int], need_gst: None) -> None:
    """appsrc's I420 caps mean GStreamer's strides (rows padded to 4 bytes): a packed 852-wide
    picture is the wrong size and stops x264enc; gst_i420 lays each plane out where VideoInfo says."""
    from streamseg.yuv import bgr_to_i420, planes

    gst._gst_module()
    import gi

    gi.require_version("GstVideo", "1.0")
    from gi.repository import GstVideo

    w, h = size
    info = GstVideo.VideoInfo()
    info.set_format(GstVideo.VideoFormat.I420, w, h)
    data = bgr_to_i420(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))
    out = np.frombuffer(gst.gst_i420(data), np.uint8)
    assert out.size == info.size
    for plane, stride, offset in zip(planes(data), info.stride, info.offset, strict=False):
        rows, cols = plane.shape
        got = out[offset : offset + rows * stride].reshape(rows, stride)[:, :cols]
        assert np.array_equal(got, plane)
