"""streamseg/outputs/video.py: recordings that survive a kill, segments, retention.

Frames carry their number painted as 16 black/white blocks, so a decoded file tells which frames it
holds: segments must join with no frame lost or repeated at a boundary.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from streamseg.config import parse_config
from streamseg.errors import ConfigError
from streamseg.frames import Frame, SegResult
from streamseg.media import VideoInput, count_frames
from streamseg.metrics import Metrics
from streamseg.outputs.video import FileNames, VideoOutput, VideoSink, format_start

ROOT = Path(__file__).resolve().parents[1]
FPS = 25
BLOCK = 16  # 4x4 blocks of 16 px: 16 bits of frame number, robust to x264's losses


def numbered_image(i: int) -> np.ndarray:
    bits = (i >> np.arange(16)) & 1
    grid = (bits.reshape(4, 4) * 255).astype(np.uint8)
    image = np.repeat(np.repeat(grid, BLOCK, 0), BLOCK, 1)
    return np.repeat(image[:, :, None], 3, 2)


def read_numbers(path: Path) -> list[int]:
    video = VideoInput(str(path))
    try:
        numbers = []
        for image, _ in video.frames():
            cells = image[:, :, 1].reshape(4, BLOCK, 4, BLOCK).mean(axis=(1, 3)).reshape(16)
            numbers.append(int(((cells > 128) << np.arange(16)).sum()))
        return numbers
    finally:
        video.close()


def result(stream: str, i: int, wall_time: float = 0.0) -> SegResult:
    image = numbered_image(i)
    frame = Frame(stream, i, i / FPS, time.monotonic(), wall_time or time.time(), image)
    return SegResult(frame, np.zeros((4, 4), np.uint8), np.array([1.0]))


def record(cfg: VideoOutput, frames: int, stream: str = "cam") -> VideoSink:
    sink = VideoSink(cfg, lambda _: FPS, Metrics())
    try:
        for i in range(frames):
            sink.write(result(stream, i), None)
    finally:
        sink.close()
    return sink


def video(tmp_path: Path, **kw: object) -> VideoOutput:
    return VideoOutput.model_validate({"type": "video", "path": f"{tmp_path}/{{stream}}-{{index}}.mp4", **kw})


@pytest.mark.parametrize("container", ["fragmented", "standard"])
def test_segments_split_at_segment_s_and_join_without_a_gap(tmp_path: Path, container: str) -> None:
    sink = record(video(tmp_path, segment_s=1, container=container), 60)
    files = sink.files("cam")
    assert [f.name for f in files] == ["cam-000000.mp4", "cam-000001.mp4", "cam-000002.mp4"]
    numbers = [read_numbers(f) for f in files]
    assert [len(n) for n in numbers] == [25, 25, 10]
    assert [n for seg in numbers for n in seg] == list(range(60))  # every frame once, in order, across the boundaries
    for f in files:  # each segment is a whole file that starts at time 0
        v = VideoInput(str(f))
        try:
            pts = [p for _, p in v.frames()]
        finally:
            v.close()
        assert pts[0] == 0.0


def test_index_continues_after_earlier_runs(tmp_path: Path) -> None:
    record(video(tmp_path, segment_s=1), 50)
    sink = record(video(tmp_path, segment_s=1), 30)
    assert [f.name for f in sink.files("cam")] == ["cam-000002.mp4", "cam-000003.mp4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"cam-00000{i}.mp4" for i in range(4)]
    assert read_numbers(tmp_path / "cam-000001.mp4") == list(range(25, 50))  # the first run's kept


def test_start_names_are_utc_and_distinct_even_faster_than_real_time(tmp_path: Path) -> None:
    cfg = VideoOutput(type="video", path=f"{tmp_path}/{{stream}}/{{start}}.mp4", segment_s=1)
    sink = VideoSink(cfg, lambda _: FPS, Metrics())
    wall = 1_780_000_000.0  # every frame has the same wall-clock time: names must still differ
    for i in range(75):
        sink.write(result("cam", i, wall), None)
    sink.close()
    names = [f.name for f in sink.files("cam")]
    assert names == ["20260528T202640.000Z.mp4", "20260528T202640.001Z.mp4", "20260528T202640.002Z.mp4"]
    assert format_start(wall) == "20260528T202640.000Z"
    assert [n for f in sink.files("cam") for n in read_numbers(f)] == list(range(75))


def test_retention_keeps_the_newest_files_of_its_own_stream(tmp_path: Path) -> None:
    (tmp_path / "cam-2-000000.mp4").write_bytes(b"another stream's")  # "cam-" prefix, not ours
    (tmp_path / "cam-notes.txt").write_bytes(b"not a recording")
    record(video(tmp_path, segment_s=1), 100)  # an earlier run: 4 files
    sink = record(video(tmp_path, segment_s=1, retention={"max_files": 3}), 150)  # 6 more
    assert [f.name for f in sink.files("cam")] == [f"cam-{i:06d}.mp4" for i in range(4, 10)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cam-000007.mp4",
        "cam-000008.mp4",
        "cam-000009.mp4",
        "cam-2-000000.mp4",
        "cam-notes.txt",
    ]
    assert [len(read_numbers(tmp_path / f"cam-00000{i}.mp4")) for i in (7, 8, 9)] == [25, 25, 25]


def test_retention_by_bytes_and_by_age(tmp_path: Path) -> None:
    old = tmp_path / "cam-000000.mp4"
    old.write_bytes(b"x" * 10)
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    record(video(tmp_path, segment_s=1, retention={"max_age_s": 60}), 30)
    assert not old.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["cam-000001.mp4", "cam-000002.mp4"]

    sizes = [p.stat().st_size for p in sorted(tmp_path.iterdir())]
    # Room for the newest closed file only: on the next run's close, everything older goes.
    record(video(tmp_path, segment_s=1, retention={"max_bytes": sizes[1] + 1}), 20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam-000003.mp4"]


def test_file_names_pattern_matches_only_its_own() -> None:
    names = FileNames("rec/{stream}.{start}.{index}.mp4", "a.b")
    path = names.render(0.0, 7)
    assert path == Path("rec/a.b.19700101T000000.000Z.000007.mp4")
    assert names.index_of(path) == 7
    assert names.index_of(Path("rec/axb.19700101T000000.000Z.000007.mp4")) is None  # "." is literal


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"segment_s": 60}, "segment_s needs {start} or {index} in path"),
        ({"retention": {"max_files": 3}}, "retention needs {start} or {index}"),
        ({"path": "out/{start}/{stream}.mp4", "segment_s": 60}, "may only appear in the file name"),
        ({"path": "out/{index}-{index}.mp4"}, "may each appear once"),
        ({"path": "out/{index}.mp4", "segment_s": 0.5}, "greater than or equal to 1"),
        ({"keyframe_s": 0}, "greater than or equal to 0.04"),
        ({"keyframe_s": 61}, "less than or equal to 60"),
        ({"fsync_s": 0}, "greater than 0"),
        ({"container": "mkv"}, "'fragmented' or 'standard'"),
        ({"path": "out/{index}.mp4", "retention": {"max_files": 0}}, "greater than or equal to 1"),
        ({"path": "out/{index}.mp4", "retention": {"max_age_s": float("inf")}}, "finite number"),
        ({"path": "out/{index}.mp4", "retention": {"max_age_s": 1e12}}, "less than or equal to"),
        ({"path": "out/{index}.mp4", "retention": {"keep": 3}}, "Extra inputs are not permitted"),
    ],
)
def test_bad_video_options(fields: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        VideoOutput.model_validate({"type": "video", **fields})


def test_defaults_are_fragmented_with_one_second_fragments() -> None:
    cfg = VideoOutput(type="video")
    assert (cfg.container, cfg.keyframe_s, cfg.segment_s, cfg.retention) == ("fragmented", 1.0, None, None)


def test_config_error_names_the_line() -> None:
    text = "sources: [{name: a, uri: 'synthetic://'}]\nmodel: {path: selfie_landscape}\noutputs:\n"
    text += "  - {type: video, segment_s: 60}\n"
    with pytest.raises(ConfigError, match=r"p.yaml:4: outputs\.0.*segment_s needs \{start\} or \{index\}"):
        parse_config(text, "p.yaml")


# --- a real run, killed ---------------------------------------------------------------------------


def _run(tmp_path: Path, video_line: str) -> subprocess.Popen[str]:
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        f"""
sources:
  - {{name: cam, uri: "synthetic://?width=320&height=180&fps={FPS}", realtime: true}}
model: {{path: selfie_landscape}}
outputs:
  - {video_line}
  - {{type: jsonl, path: "{tmp_path}/stats.jsonl"}}
http: {{enabled: false}}
"""
    )
    return subprocess.Popen(
        [sys.executable, "-m", "streamseg", "run", str(cfg)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_and_kill(proc: subprocess.Popen[str], jsonl: Path, frames: int, sig: signal.Signals) -> int:
    """Let the run record ``frames`` frames (the JSONL line is written after the video frame), send
    ``sig``, and return how many frames it had written."""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if jsonl.exists() and len(jsonl.read_text().splitlines()) >= frames:
                break
            time.sleep(0.05)
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL, err  # not an exit of its own before the kill
    else:
        assert proc.returncode == 0, err
    return len(jsonl.read_text().splitlines())


@pytest.mark.slow  # a child process per run, > 2 s each
def test_sigkill_keeps_all_but_the_last_second(tmp_path: Path) -> None:
    # The default video output (no options): before fragmented MP4 this file decoded 0 frames.
    proc = _run(tmp_path, f'{{type: video, path: "{tmp_path}/{{stream}}.mp4"}}')
    written = _wait_and_kill(proc, tmp_path / "stats.jsonl", 4 * FPS, signal.SIGKILL)
    assert written >= 4 * FPS
    decoded = count_frames(tmp_path / "cam.mp4")
    # keyframe_s 1: the fragment being written is lost, at most 1 s (+1 frame for the JSONL race).
    assert written - FPS - 1 <= decoded <= written + 1, (written, decoded)


@pytest.mark.slow  # a child process per run, > 2 s each
def test_sigkill_with_segments_keeps_closed_segments_whole(tmp_path: Path) -> None:
    line = f'{{type: video, path: "{tmp_path}/{{stream}}-{{index}}.mp4", segment_s: 2}}'
    written = _wait_and_kill(_run(tmp_path, line), tmp_path / "stats.jsonl", 5 * FPS, signal.SIGKILL)
    files = sorted(tmp_path.glob("cam-*.mp4"))
    assert [f.name for f in files] == [f"cam-{i:06d}.mp4" for i in range(written // (2 * FPS) + 1)]
    counts = [count_frames(f) for f in files]
    assert counts[:-1] == [2 * FPS] * (len(files) - 1)  # closed segments: whole
    decoded = sum(counts)
    assert written - FPS - 1 <= decoded <= written + 1, (written, decoded)


@pytest.mark.slow  # a child process per run, > 2 s each
def test_sigterm_still_finalizes_a_whole_file(tmp_path: Path) -> None:
    proc = _run(tmp_path, f'{{type: video, path: "{tmp_path}/{{stream}}.mp4"}}')
    written = _wait_and_kill(proc, tmp_path / "stats.jsonl", 2 * FPS, signal.SIGTERM)
    path = tmp_path / "cam.mp4"
    assert count_frames(path) == written
    import av  # what players see: a duration from the finalized index, and seeking that lands

    with av.open(str(path)) as c:
        assert c.duration == pytest.approx(written / FPS * 1e6, abs=1e6 / FPS)
        c.seek(1_000_000)
        assert next(c.decode(video=0)).time == pytest.approx(1.0)


def test_a_stream_added_again_keeps_its_earlier_recording(tmp_path: Path) -> None:
    # Removed then added again in one run (API or SIGHUP): with a path without {start}/{index} the
    # second recording must not overwrite the finalized first one.
    cfg = VideoOutput.model_validate({"type": "video", "path": f"{tmp_path}/{{stream}}.mp4"})
    sink = VideoSink(cfg, lambda _: FPS, Metrics())
    try:
        for i in range(10):
            sink.write(result("cam", i), None)
        sink.close_stream("cam")
        for i in range(6):
            sink.write(result("cam", 20 + i), None)
    finally:
        sink.close()
    assert read_numbers(tmp_path / "cam.mp4") == list(range(10))
    assert read_numbers(tmp_path / "cam-2.mp4") == list(range(20, 26))


def test_max_fps_writes_frames_on_a_grid_of_the_stream_clock(tmp_path: Path) -> None:
    cfg = VideoOutput(type="video", path=str(tmp_path / "{stream}.mp4"), max_fps=10)
    record(cfg, 50)  # 2 s at 25 fps
    numbers = read_numbers(tmp_path / "cam.mp4")
    assert len(numbers) == 20  # 10 a second, not 25 and not 8.3 (every third frame)
    gaps = np.diff(numbers)
    assert set(gaps.tolist()) <= {2, 3} and numbers[0] == 0


def test_width_scales_the_recording_in_its_own_pixel_format(tmp_path: Path) -> None:
    from streamseg.yuv import bgr_to_i420

    cfg = VideoOutput(type="video", path=str(tmp_path / "{stream}.mp4"), width=64)
    sink = VideoSink(cfg, lambda _: FPS, Metrics())
    for i in range(5):
        big = np.repeat(np.repeat(numbered_image(i), 2, 0), 2, 1)  # 128x128: halved back to 64x64
        frame = Frame("cam", i, i / FPS, time.monotonic(), time.time(), bgr_to_i420(big), "yuv420p")
        sink.write(SegResult(frame, np.zeros((4, 4), np.uint8), np.array([1.0])), None)
    sink.close()
    video = VideoInput(str(tmp_path / "cam.mp4"))
    try:
        assert (video.info.width, video.info.height) == (64, 64)
    finally:
        video.close()
    assert read_numbers(tmp_path / "cam.mp4") == [0, 1, 2, 3, 4]


def test_auto_encoder_goes_on_with_x264_when_nvenc_does_not_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # NVENC that passed the start-up probe but does not open for this file (a consumer GPU's session
    # limit): here h264_nvenc really fails to open (no CUDA driver), as it would there
    from streamseg.encoders import NVENC, EncoderChoice

    cfg = VideoOutput(type="video", path=str(tmp_path / "{stream}.mp4"))
    sink = VideoSink(cfg, lambda _: FPS, Metrics())
    sink.write(result("cam", 0), None)  # the recording exists now; its next file would be NVENC
    rec = sink._recordings["cam"]
    rec._finalize()
    rec.encoder, rec.codec = None, EncoderChoice(NVENC, "forced by the test")
    try:
        for i in range(1, 10):
            sink.write(result("cam", i), None)
    finally:
        sink.close()
    assert "NVENC failed" in caplog.text
    assert read_numbers(tmp_path / "cam-2.mp4") == list(range(1, 10))
