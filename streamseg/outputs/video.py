"""Overlay video per stream: H.264 in MP4, finalized on exit (SIGINT/SIGTERM included).

By default the MP4 is fragmented, so a run killed outright (SIGKILL, OOM killer, power loss) still
leaves a file that plays up to about ``keyframe_s`` before the kill. With ``segment_s`` each stream
records the way NVRs do: a new file every N seconds of video, named by ``{start}`` or ``{index}``,
each one finalized as the next begins, and ``retention`` deleting the oldest files of the stream.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from ..encoders import NVENC, choose_h264
from ..errors import OutputError
from ..frames import Picture, SegResult
from ..media import VideoEncoder, describe_error
from ..schema import MAX_FPS, Strict
from .base import OutputConfig, OutputKind, Sink, make_parent

if TYPE_CHECKING:
    from ..metrics import Metrics

log = logging.getLogger(__name__)


class Retention(Strict):
    """Which recordings of a video output to keep; the oldest go first, whichever limit is hit."""

    max_files: int | None = Field(None, ge=1, le=1_000_000, description="keep at most this many files per stream")
    max_bytes: int | None = Field(
        None, ge=1, le=1 << 60, description="keep the closed files of a stream within this many bytes"
    )
    max_age_s: float | None = Field(
        None, gt=0, le=10 * 365 * 86400, description="delete files last written longer ago than this"
    )


class VideoOutput(OutputConfig):
    type: Literal["video"]
    path: str = Field(
        "out/{stream}.mp4",
        min_length=1,
        description="H.264 MP4 per stream; {stream} is replaced, and in the file name {start} (UTC start "
        "time, 20260131T235959.123Z) and {index} (000000, continuing after the files already there)",
    )
    fps: float | None = Field(None, gt=0, le=MAX_FPS, description="nominal rate; default: the source's")
    max_fps: float | None = Field(
        None,
        gt=0,
        le=MAX_FPS,
        description="write at most this many frames a second (by the stream's clock), skipping the rest: "
        "encoding costs most of the CPU per frame; null = every frame",
    )
    width: int | None = Field(
        None,
        ge=64,
        le=7680,
        description="scale the video down to this width (height in proportion, even sizes) before encoding; "
        "null = the overlay's own size",
    )
    crf: int = Field(23, ge=0, le=51, description="x264 quality (lower is better)")
    preset: Literal[
        "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"
    ] = Field("ultrafast", description="x264 preset (NVENC: p1 for ultrafast/superfast, p4 otherwise)")
    encoder: Literal["auto", "nvenc", "x264"] = Field(
        "auto",
        description="H.264 encoder: auto = NVENC where the GPU has one (a test frame encodes), libx264 "
        "otherwise (H100/H200/A100 have none); nvenc = NVENC or refuse to start; x264 = libx264",
    )
    threads: int = Field(
        1,
        ge=0,
        le=64,
        description="libx264 threads per stream: 1 (each stream's encoder runs on its own thread already; "
        "measured: more fps and less CPU than x264's own threads with 2 streams of 1080p on 2 cores); "
        "0 = x264's choice (slice threads, one per core: for one large stream that needs more than a core)",
    )
    streams: list[str] | None = Field(None, description="only these streams; null = all")
    container: Literal["fragmented", "standard"] = Field(
        "fragmented",
        description="fragmented: MP4 written fragment by fragment, a killed run (SIGKILL, power loss) keeps "
        "all but about keyframe_s; standard: one index at the end, nothing playable until a clean stop",
    )
    keyframe_s: float = Field(
        1.0, ge=0.04, le=60, description="seconds between keyframes, and the fragment length when fragmented"
    )
    fsync_s: float | None = Field(
        5.0, gt=0, le=3600, description="force written video onto the disk this often and on close; null = the OS's"
    )
    segment_s: float | None = Field(
        None,
        ge=1,
        le=7 * 86400,
        description="start a new file every this many seconds of video (path needs {start} or {index}); "
        "null = one file per run",
    )
    retention: Retention | None = Field(
        None,
        description="delete old files of each stream, this run's and earlier ones' (path needs {start} or "
        "{index}); null = keep all",
    )

    def selected_streams(self) -> list[str] | None:
        return self.streams

    @model_validator(mode="after")
    def _placeholders(self) -> VideoOutput:
        parent, _, name = self.path.rpartition("/")
        if "{start}" in parent or "{index}" in parent:
            raise ValueError("path: {start} and {index} may only appear in the file name, not in a folder")
        if name.count("{start}") > 1 or name.count("{index}") > 1:
            raise ValueError("path: {start} and {index} may each appear once")
        numbered = "{start}" in name or "{index}" in name
        if self.segment_s is not None and not numbered:
            raise ValueError("segment_s needs {start} or {index} in path, or every segment overwrites the last")
        if self.retention is not None and not numbered:
            raise ValueError("retention needs {start} or {index} in path to tell its files apart")
        return self


# {start}: UTC, millisecond resolution so that segments of a file read faster than real time get
# distinct names; fixed width, so names sort in time order.
_START_RE = r"\d{8}T\d{6}\.\d{3}Z"
_INDEX_WIDTH = 6


def format_start(wall_time: float) -> str:
    """``{start}`` for a wall-clock time: ``20260131T235959.123Z``."""
    ms = int(wall_time * 1000)
    # timezone.utc, not datetime.UTC: that is Python 3.11+, and JetPack 6 ships 3.10
    return datetime.fromtimestamp(ms // 1000, timezone.utc).strftime("%Y%m%dT%H%M%S") + f".{ms % 1000:03d}Z"


class FileNames:
    """The files one stream's recordings go to: ``path`` with ``{stream}`` filled in, ``{start}`` and
    ``{index}`` filled per file, and the pattern that recognises them (earlier runs' included)."""

    def __init__(self, template: str, stream: str) -> None:
        path = Path(template.replace("{stream}", stream))
        self.folder, name = path.parent, path.name
        self.numbered = "{start}" in name or "{index}" in name
        pattern = ""
        for part in re.split(r"(\{start\}|\{index\})", name):
            if part == "{start}":
                pattern += f"(?P<start>{_START_RE})"
            elif part == "{index}":
                pattern += rf"(?P<index>\d{{{_INDEX_WIDTH},}})"
            else:
                pattern += re.escape(part)
        self._name = name
        self._pattern = re.compile(pattern)

    def render(self, start: float, index: int) -> Path:
        name = self._name.replace("{start}", format_start(start)).replace("{index}", f"{index:0{_INDEX_WIDTH}d}")
        return self.folder / name

    def existing(self) -> list[Path]:
        """This stream's files on disk, oldest first (by index, then start time)."""
        if not self.numbered:
            return []
        try:
            names = os.listdir(self.folder)
        except OSError:  # no folder yet, or not readable: nothing of ours to list
            return []
        found = []
        for n in names:
            m = self._pattern.fullmatch(n)
            if m:
                index = m.groupdict().get("index")
                found.append((int(index) if index else -1, m.groupdict().get("start") or "", n))
        return [self.folder / n for *_, n in sorted(found)]

    def index_of(self, path: Path) -> int | None:
        m = self._pattern.fullmatch(path.name)
        index = m.groupdict().get("index") if m else None
        return int(index) if index else None


class _Recording:
    """One stream's recording: the open file, where its segment started, rotation and retention."""

    def __init__(self, cfg: VideoOutput, stream: str, fps: float, taken: set[Path] | None = None) -> None:
        self.cfg = cfg
        self.stream = stream
        # files this sink wrote earlier in the run (a stream removed and added again): never reopened
        self._taken = taken if taken is not None else set()
        self.fps = fps
        self.codec = choose_h264(cfg.encoder)  # decided once per process; said in the log
        self.names = FileNames(cfg.path, stream)
        self.encoder: VideoEncoder | None = None
        self.path: Path | None = None
        self._segment_pts = 0.0
        self._next_index: int | None = None
        self._last_start = -1.0
        self.files: list[Path] = []  # every file this run wrote, in order
        self._next_due: float | None = None  # max_fps: the stream time of the next frame to write

    def due(self, pts: float) -> bool:
        """Whether the frame at ``pts`` is written under ``max_fps``: one per 1/max_fps of stream
        time, on a grid so the average holds (25 fps at max_fps 10 writes 10, not 8.3, a second)."""
        if self.cfg.max_fps is None:
            return True
        gap = 1.0 / self.cfg.max_fps
        due = self._next_due
        if due is not None and due - 2 * gap <= pts < due - 1e-6:
            return False
        if due is None or not due - 2 * gap <= pts < due + gap:  # the first frame, a gap, or a restarted clock
            self._next_due = pts + gap
        else:
            self._next_due = due + gap
        return True

    def write(self, picture: Picture, pts: float, wall_time: float) -> None:
        seg = self.cfg.segment_s
        # A segment ends at the first frame at or past its length; 1 µs of slack absorbs pts that are
        # sums of float frame steps.
        enc = self.encoder
        if enc is not None and seg is not None and pts - self._segment_pts >= seg - 1e-6:
            enc = None
            failure = self._finalize()
            if failure:
                raise OutputError(f"video output {failure}")
        if enc is None:
            enc = self._open(picture, pts, wall_time)
        h, w = picture.size
        if not (0 <= w - enc.width <= 1 and 0 <= h - enc.height <= 1):
            # a camera that reconnected at another size: the file keeps its first size
            picture = picture.resized(enc.width, enc.height)
        try:
            enc.write(picture.data, pts - self._segment_pts, picture.pixel_format)
        except Exception as e:  # FFmpeg errors: disk full, bad size
            if not (enc.codec == NVENC and enc.frames_written == 0 and self.cfg.encoder == "auto"):
                raise OutputError(f"video output {self.path}: {describe_error(e)}") from None
            # NVENC probed fine but this session did not open (a consumer GPU's session limit):
            # auto never fails for lack of NVENC, so this recording goes on with libx264
            log.warning("video output %s: NVENC failed (%s); libx264 for this file", self.path, describe_error(e))
            self._discard_open_file()
            self.codec = choose_h264("x264")
            self.write(picture, pts, wall_time)

    def _discard_open_file(self) -> None:
        """Drop the file just opened and not written to (so the next open reuses its name)."""
        enc, path = self.encoder, self.path
        self.encoder = None
        if enc is not None:
            with contextlib.suppress(Exception):
                enc.close()
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink()
            if self.files and self.files[-1] == path:
                self.files.pop()
            self._taken.discard(path)

    def _open(self, picture: Picture, pts: float, wall_time: float) -> VideoEncoder:
        path = self._next_path(wall_time)
        height, width = picture.size
        try:
            make_parent(path)
            enc = VideoEncoder(
                path,
                width,
                height,
                self.fps,
                self.cfg.crf,
                self.cfg.preset,
                fragmented=self.cfg.container == "fragmented",
                keyframe_s=self.cfg.keyframe_s,
                fsync_s=self.cfg.fsync_s,
                codec=self.codec,
                threads=self.cfg.threads,
            )
        except Exception as e:  # FFmpeg raises OSError subclasses and ValueErrors
            raise OutputError(f"video output {path}: cannot open: {describe_error(e)}") from None
        self.encoder, self.path, self._segment_pts = enc, path, pts
        self.files.append(path)
        log.info("writing %s (%dx%d, %.3g fps)", path, enc.width, enc.height, self.fps)
        self._prune()
        return enc

    def _next_path(self, wall_time: float) -> Path:
        """A name no file has yet: {index} continues after the highest on disk, {start} is the first
        frame's wall-clock time, moved on by a millisecond where a file already has that name."""
        if not self.names.numbered:
            path = self.names.render(wall_time, 0)
            n = 2
            while path in self._taken:  # keep the earlier recording: name-2.mp4, name-3.mp4, ...
                first = self.names.render(wall_time, 0)
                path = first.with_name(f"{first.stem}-{n}{first.suffix}")
                n += 1
            self._taken.add(path)
            return path
        if self._next_index is None:
            indices = [self.names.index_of(p) for p in self.names.existing()]
            self._next_index = max((i for i in indices if i is not None), default=-1) + 1
        start = max(wall_time, self._last_start + 0.001)
        while True:
            path = self.names.render(start, self._next_index)
            self._next_index += 1
            self._last_start = start
            if not path.exists():
                return path
            start += 0.001

    def _finalize(self) -> str | None:
        """Close the open file; a failure comes back as "PATH: finalize failed: why"."""
        enc, path = self.encoder, self.path
        self.encoder = None
        if enc is None:
            return None
        try:
            enc.close()
        except Exception as e:  # FFmpeg raises OSError subclasses (disk full) and ValueErrors
            return f"{path}: finalize failed: {describe_error(e)}"
        log.info("finalized %s (%d frames)", path, enc.frames_written)
        return None

    def _prune(self) -> None:
        """Delete this stream's oldest files until every retention limit holds. The newest file (the
        one being written, or at close the one just finalized) is never deleted; it counts toward
        max_files, and toward max_bytes once it is closed."""
        keep = self.cfg.retention
        if keep is None:
            return
        now = time.time()
        files = []
        for p in self.names.existing():
            try:
                files.append((p, p.stat()))
            except OSError:  # gone meanwhile, or unreadable: not ours to judge
                continue
        count = len(files)
        total = sum(st.st_size for p, st in files if p != self.path or self.encoder is None)
        for p, st in files:
            too_many = keep.max_files is not None and count > keep.max_files
            too_big = keep.max_bytes is not None and total > keep.max_bytes
            too_old = keep.max_age_s is not None and now - st.st_mtime > keep.max_age_s
            if p == self.path or not (too_many or too_big or too_old):
                break  # oldest first: once one file may stay, the newer ones may too
            try:
                p.unlink()
            except OSError as e:  # a file we cannot delete must not stop the recording
                log.warning("video output %s: cannot delete old recording: %s", p, describe_error(e))
                continue
            count, total = count - 1, total - st.st_size
            log.info("deleted old recording %s (retention)", p)

    def close(self) -> str | None:
        """Finalize the open file and apply retention; returns the failure, if any."""
        was_open = self.encoder is not None
        failure = self._finalize()
        if was_open:
            self._prune()
        return failure


class VideoSink(Sink):
    wants_overlay = True

    def __init__(self, cfg: VideoOutput, fps_of: Callable[[str], float | None], metrics: Metrics) -> None:
        self.cfg = cfg
        self._fps_of = fps_of
        self._recordings: dict[str, _Recording] = {}
        self._taken: set[Path] = set()  # unnumbered files written this run, shared by the recordings
        self._lock = threading.Lock()
        self._encode = metrics.stage_seconds.labels("encode")
        choose_h264(cfg.encoder)  # nvenc asked for where there is none: refused before anything is written

    @property
    def paths(self) -> dict[str, Path]:
        """The file each stream is writing now (or wrote last)."""
        with self._lock:
            return {s: r.path for s, r in self._recordings.items() if r.path is not None}

    def files(self, stream: str) -> list[Path]:
        """Every file this run wrote for ``stream``, in order (some may since have been pruned)."""
        with self._lock:
            rec = self._recordings.get(stream)
            return list(rec.files) if rec else []

    def write(self, result: SegResult, picture: Picture | None) -> None:
        frame = result.frame
        if self.cfg.streams is not None and frame.stream not in self.cfg.streams:
            return
        rec = self._recordings.get(frame.stream)
        if rec is None:
            fps = self.cfg.fps or self._fps_of(frame.stream) or 25.0
            if self.cfg.max_fps is not None:
                fps = min(fps, self.cfg.max_fps)
            rec = _Recording(self.cfg, frame.stream, fps, self._taken)
            with self._lock:
                self._recordings[frame.stream] = rec
        if not rec.due(frame.pts):
            return
        start = time.perf_counter()
        rec.write((picture or Picture.of(frame)).scaled(self.cfg.width), frame.pts, frame.wall_time)
        self._encode.observe(time.perf_counter() - start)

    def close_stream(self, stream: str) -> None:
        """Finalize ``stream``'s file now (the stream was removed); a stream added again with the
        same name starts a new recording; with a path without {start}/{index} it goes to NAME-2.mp4
        (then -3, ...), so the finalized file is never overwritten within a run."""
        with self._lock:
            rec = self._recordings.pop(stream, None)
        failure = rec.close() if rec is not None else None
        if failure:
            raise OutputError(failure)

    def close(self) -> None:
        """Finalize every stream's file, each even when another fails; then report the failures."""
        with self._lock:
            recordings = list(self._recordings.values())
        failures = [f for f in (rec.close() for rec in recordings) if f]
        if failures:
            raise OutputError("; ".join(failures))


KIND = OutputKind(
    VideoOutput, lambda cfg, ctx: VideoSink(cfg, ctx.fps_of, ctx.metrics), rank=1, writes="file", per_stream=True
)
