"""streamseg/media.py: what VideoEncoder writes decodes back frame for frame."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamseg.media import VideoEncoder, VideoInput, count_frames, describe_error, encoder_names


def _write(path: Path, width: int, height: int, pts: list[float], fps: float = 25.0) -> VideoEncoder:
    rng = np.random.default_rng(6)
    enc = VideoEncoder(path, width, height, fps)
    try:
        for t in pts:
            enc.write(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), t)
    finally:
        enc.close()
    return enc


def _decoded_pts(path: Path) -> list[float]:
    video = VideoInput(str(path))
    try:
        return [pts for _, pts in video.frames() if pts is not None]
    finally:
        video.close()


@pytest.mark.parametrize("frames", [1, 2, 17])
def test_written_frames_all_decode(tmp_path: Path, frames: int) -> None:
    path = tmp_path / "out.mp4"
    enc = _write(path, 64, 48, [i / 25 for i in range(frames)])
    assert enc.frames_written == frames
    assert count_frames(path) == frames


@pytest.mark.parametrize(("width", "height"), [(65, 49), (33, 48), (64, 17)])
def test_odd_sizes_drop_the_last_row_or_column(tmp_path: Path, width: int, height: int) -> None:
    path = tmp_path / "odd.mp4"
    enc = _write(path, width, height, [i / 25 for i in range(5)])
    assert (enc.width, enc.height) == (width - width % 2, height - height % 2)
    video = VideoInput(str(path))
    try:
        assert (video.info.width, video.info.height) == (enc.width, enc.height)
        assert all(image.shape == (enc.height, enc.width, 3) for image, _ in video.frames())
    finally:
        video.close()
    assert count_frames(path) == 5


def test_pts_strictly_increase_even_with_duplicate_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "dup.mp4"
    stamps = [0.0, 0.0, 0.0, 0.04, 0.04, 0.0001, 0.5, 0.5]  # repeats, a step back, sub-millisecond
    _write(path, 32, 32, stamps)
    pts = _decoded_pts(path)
    assert len(pts) == len(stamps)
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert pts[-1] == pytest.approx(0.5, abs=0.002)


def test_frames_come_back_close_to_what_was_written(tmp_path: Path) -> None:
    path = tmp_path / "flat.mp4"
    enc = VideoEncoder(path, 32, 32, 25, crf=0)
    image = np.full((32, 32, 3), (40, 120, 200), np.uint8)
    image[:, 16:] = (200, 30, 90)  # two halves, so a flipped or shifted picture fails
    enc.write(image, 0.0)
    enc.close()
    enc.close()  # closing twice is harmless
    video = VideoInput(str(path))
    try:
        (decoded, pts), *_ = list(video.frames())
    finally:
        video.close()
    assert pts == 0.0
    # crf 0 is lossless; what remains is FFmpeg's BGR -> yuv420p -> BGR conversion, which loses up to
    # 5 levels with swscale's default flags (255 comes back as 250..253).
    assert np.abs(decoded.astype(int) - image).max() <= 6


def test_video_input_info_of_the_sample(bikes: Path) -> None:
    video = VideoInput(str(bikes))
    try:
        info = video.info
    finally:
        video.close()
    assert (info.width, info.height, info.fps, info.frames) == (640, 272, 25.0, 250)


def test_unreadable_inputs(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00not a video" * 50)
    for target in (str(tmp_path / "missing.mp4"), str(garbage)):
        with pytest.raises(Exception) as info:  # FFmpeg raises several types; describe_error names them
            VideoInput(target)
        text = describe_error(info.value)
        assert text and "\n" not in text and str(tmp_path) not in text


def test_describe_error_drops_the_file_name() -> None:
    err = OSError(2, "No such file or directory", "rtsp://u:hunter2@cam/s")
    assert describe_error(err) == "No such file or directory"
    assert describe_error(ValueError("first line\nsecond")) == "first line"
    assert describe_error(EOFError()) == "EOFError"


def test_encoders_we_rely_on_exist() -> None:
    names = encoder_names()
    assert names["libx264 (encode)"] and names["h264 (decode)"]


_KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
import numpy as np
from streamseg.media import VideoEncoder
enc = VideoEncoder(Path(sys.argv[1]), 64, 48, 25, fragmented=sys.argv[2] == "fragmented", keyframe_s=1.0)
rng = np.random.default_rng(0)
for i in range(int(sys.argv[3])):
    enc.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), i / 25)
os.kill(os.getpid(), signal.SIGKILL)  # no close(): what a crash or the OOM killer leaves
"""


@pytest.mark.parametrize("frames", [24, 25, 26, 60])
def test_a_killed_fragmented_file_keeps_every_whole_fragment(tmp_path: Path, frames: int) -> None:
    path = tmp_path / "killed.mp4"
    r = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(path), "fragmented", str(frames)], check=False)
    assert r.returncode == -signal.SIGKILL
    # A fragment (one 1 s GOP, 25 frames) reaches the file when the next keyframe starts the next one.
    assert count_frames(path) == (frames - 1) // 25 * 25


def test_a_killed_standard_file_is_unreadable(tmp_path: Path) -> None:
    """Why fragmented is the default: the standard MP4's index is written only by close()."""
    path = tmp_path / "killed.mp4"
    subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(path), "standard", "60"], check=False)
    with pytest.raises(Exception) as info:  # FFmpeg's InvalidDataError; describe_error names it
        count_frames(path)
    assert "Invalid data" in describe_error(info.value)


@pytest.mark.parametrize(("fragmented", "keyframe_s"), [(True, 1.0), (False, 1.0), (True, 0.4)])
def test_keyframes_come_every_keyframe_s_and_the_file_seeks(
    tmp_path: Path, fragmented: bool, keyframe_s: float
) -> None:
    import av

    path = tmp_path / "k.mp4"
    rng = np.random.default_rng(1)
    enc = VideoEncoder(path, 64, 48, 25, fragmented=fragmented, keyframe_s=keyframe_s)
    for i in range(100):
        enc.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), i / 25)
    enc.close()
    gop = round(25 * keyframe_s)
    with av.open(str(path)) as c:
        keys = [i for i, f in enumerate(c.decode(video=0)) if f.key_frame]
    assert keys == list(range(0, 100, gop))
    with av.open(str(path)) as c:  # a closed file, fragmented or not, has a duration and seeks
        assert c.duration == pytest.approx(4_000_000, abs=40_000)
        c.seek(2_000_000)
        assert next(c.decode(video=0)).time == pytest.approx(50 // gop * gop / 25)  # the keyframe at or before 2 s


@pytest.mark.parametrize(
    ("tags", "native"),
    [({}, True), ({"colorspace": 5, "color_range": 1}, True), ({"colorspace": 1}, False), ({"color_range": 2}, False)],
)
def test_native_frames_are_i420_only_where_yuv_converts_them_exactly(
    tmp_path: Path, tags: dict[str, int], native: bool
) -> None:
    """BT.709-tagged or full-range video keeps FFmpeg's own BGR conversion: streamseg.yuv's
    BT.601 studio-swing matrix would give the model other colours than before."""
    import av

    path = tmp_path / "tagged.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for key, value in tags.items():
            setattr(s.codec_context, key, value)
        for i in range(3):
            img = np.full((48, 64, 3), (40 * i, 200, 30), np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    video = VideoInput(str(path))
    try:
        got = [image for image, _ in video.frames(native=True)]
    finally:
        video.close()
    want_shape = (72, 64) if native else (48, 64, 3)
    assert len(got) == 3 and all(g.shape == want_shape for g in got)


def test_count_frames_skips_a_sample_cut_short_as_a_player_does(tmp_path: Path) -> None:
    """A SIGKILL while a fragment is being written leaves a truncated last sample: counted up to it,
    not an error (it raised InvalidDataError when the cut fell inside a frame)."""
    path = tmp_path / "a.mp4"
    enc = VideoEncoder(path, 64, 48, 25, crf=0, keyframe_s=1.0)
    rng = np.random.default_rng(0)
    for i in range(50):
        enc.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), i / 25)
    enc.close()
    whole = count_frames(path)
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) - 700])  # inside the last frame's data (crf 0 noise: several KB a frame)
    assert whole == 50
    assert 25 <= count_frames(cut) < 50
