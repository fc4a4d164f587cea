#!/usr/bin/python3
"""Loopback RTSP server for the test suite: serves MP4 files as live H.264 cameras.

Runs under Debian's /usr/bin/python3 (which has PyGObject), not the project venv:

    /usr/bin/python3 tests/support/rtsp_server.py --port 8554 \
        --mount cam1=/path/a.mp4 --mount cam2=/path/b.mp4 [--loop] [--user U --password P]

Each mount is served at rtsp://127.0.0.1:PORT/NAME (RTP over RTSP/TCP or UDP). Once the
server listens it prints exactly one line, ``READY <port>``, to stdout; ``--port 0`` picks a
free port and READY names it. SIGTERM/SIGINT stop it with exit status 0.

Why two pipelines per mount. A GstRTSPMedia owns and seeks its own pipeline, which makes
looping a file inside it fragile. Instead, each time a mount's media is built (first client
after none), a *producer* pipeline starts decoding the file, releases frames at real-time
pace, and pushes them into a live ``appsrc`` inside the media:

    producer: filesrc ! qtdemux ! avdec_h264 ! videoconvert ! appsink
    media:    appsrc is-live=true do-timestamp=true ! videoconvert
              ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=<1 s> threads=1
              ! rtph264pay name=pay0 pt=96 config-interval=-1

The media therefore looks like a camera: not seekable; timestamps from its own clock, which
only increase (also across the loop seam) and stay steady when the CPU is busy; a keyframe
with SPS/PPS at least every second for clients joining a shared media; and a fresh encoder
(keyframe first) for the first client. ``--loop`` restarts the producer with non-flushing
segment seeks. Without ``--loop`` the media ends (RTCP BYE) at the end of the file.

Only the standard library and gi are used. ``--check`` reports whether every needed
GStreamer element is installed and exits 0 or 1 (used by tests/support/rtsp.py).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
import time
from typing import NoReturn

PROG = "rtsp_server"
MOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
AUTH_ROLE = "tester"
PROBE_TIMEOUT_S = 10.0

# Element -> Debian package that ships it, so a missing one is reported actionably.
REQUIRED_ELEMENTS = {
    "filesrc": "libgstreamer1.0-0",
    "appsrc": "gstreamer1.0-plugins-base",
    "appsink": "gstreamer1.0-plugins-base",
    "videoconvert": "gstreamer1.0-plugins-base",
    "qtdemux": "gstreamer1.0-plugins-good",
    "rtph264pay": "gstreamer1.0-plugins-good",
    "rtpbin": "gstreamer1.0-plugins-good",
    "avdec_h264": "gstreamer1.0-libav",
    "x264enc": "gstreamer1.0-plugins-ugly",
}

# Decode deterministically with avdec_h264 rather than decodebin, which could pick a
# hardware decoder (nvcodec, vaapi) on some machines and behave differently there.
PRODUCER_LAUNCH = (
    "filesrc name=file ! qtdemux ! avdec_h264 ! videoconvert"
    " ! video/x-raw,format=I420 ! appsink name=sink sync=false emit-signals=true"
)

# The appsrc queue is small and leaky so a media blocked before PLAY never backs up the
# producer; it just drops the oldest frames, as a camera would. threads=1 keeps one slice
# per frame: with zerolatency's sliced threads, rtph264pay (config-interval=-1) puts SPS/PPS
# before every IDR slice, and FFmpeg then decodes each keyframe as two frames with one PTS.
# key-int-max is overwritten per mount with one second's worth of frames.
MEDIA_LAUNCH = (
    "( appsrc name=src is-live=true format=time do-timestamp=true"
    " max-buffers=5 leaky-type=downstream"
    " ! videoconvert"
    " ! x264enc name=enc tune=zerolatency speed-preset=ultrafast key-int-max=25 threads=1"
    " ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)


def log(message: str) -> None:
    # One write per line: several threads log, and print() writes the newline separately.
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()


def fail(message: str, status: int = 1) -> NoReturn:
    log(f"error: {message}")
    sys.exit(status)


def import_gi():
    """Import and initialise GStreamer; a missing binding is a one-line error, not a traceback."""
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtspServer
    except (ImportError, ValueError) as exc:
        raise RuntimeError(
            f"cannot import GStreamer bindings ({exc}); apt-get install python3-gi gir1.2-gst-rtsp-server-1.0"
        ) from exc
    Gst.init(None)
    return GLib, Gst, GstRtspServer


def missing_elements(Gst) -> list[str]:
    return [
        f"{name} (Debian package {package})"
        for name, package in REQUIRED_ELEMENTS.items()
        if Gst.ElementFactory.find(name) is None
    ]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8554, help="TCP port on 127.0.0.1; 0 = any")
    parser.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="serve the MP4 at PATH as rtsp://127.0.0.1:PORT/NAME (repeatable)",
    )
    parser.add_argument("--loop", action="store_true", help="repeat each file forever")
    parser.add_argument("--user", help="require RTSP basic auth with this user name")
    parser.add_argument("--password", help="password for --user")
    parser.add_argument("--check", action="store_true", help="only check that GStreamer is usable, then exit")
    args = parser.parse_args(argv)
    if args.check:
        return args
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0..65535, got {args.port}")
    if not args.mount:
        parser.error("at least one --mount NAME=PATH is required")
    if (args.user is None) != (args.password is None):
        parser.error("--user and --password go together")
    mounts: dict[str, str] = {}
    for spec in args.mount:
        name, sep, path = spec.partition("=")
        if not sep or not MOUNT_NAME.fullmatch(name) or not path:
            parser.error(f"--mount expects NAME=PATH with NAME like 'cam1', got {spec!r}")
        if name in mounts:
            parser.error(f"mount {name!r} given twice")
        mounts[name] = path
    args.mounts = mounts
    return args


class Producer:
    """Decodes one file at real-time pace and hands each raw frame to a callback.

    ``on_frame(buffer, due)`` gets the decoded buffer and ``due``, the time.monotonic() at
    which the frame should have been shown (None if the file has no usable timestamp).

    Looping uses segment seeks: a SEGMENT seek makes the demuxer post SEGMENT_DONE instead of
    EOS, and a non-flushing SEGMENT seek back to 0 answers it, so the file restarts without
    flushing or renegotiating anything downstream.

    Pacing is done here rather than by appsink's clock sync: on a non-flushing loop seek,
    qtdemux (1.22) starts the next segment's running time at the last frame's *start*, so
    clock sync would play each loop's first frame together with the previous loop's last
    one and run ahead by one frame per loop. Instead each frame is released at
    ``start + loop offset + position in the file`` on the monotonic clock.
    """

    def __init__(self, Gst, path: str, loop: bool, on_frame, on_end) -> None:
        self._Gst = Gst
        self._loop = loop
        self._on_frame = on_frame
        self._on_end = on_end
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._stopped = False
        self._t0: float | None = None  # monotonic time of the first frame
        self._loop_offset = 0.0  # seconds of file played in earlier loops
        self._last_end = 0.0  # end of the previous frame, in seconds of the file
        self._last_pos = -1.0
        self.pipeline = Gst.parse_launch(PRODUCER_LAUNCH)
        self.pipeline.get_by_name("file").set_property("location", path)
        self._sink = self.pipeline.get_by_name("sink")

    def preroll(self, timeout_s: float = PROBE_TIMEOUT_S):
        """Go to PAUSED and return the negotiated raw caps; raise RuntimeError on failure."""
        Gst = self._Gst
        self.pipeline.set_state(Gst.State.PAUSED)
        bus = self.pipeline.get_bus()
        message = bus.timed_pop_filtered(
            int(timeout_s * Gst.SECOND), Gst.MessageType.ASYNC_DONE | Gst.MessageType.ERROR
        )
        if message is None:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s opening the file")
        if message.type == Gst.MessageType.ERROR:
            error, _debug = message.parse_error()
            raise RuntimeError(error.message)
        caps = self._sink.get_static_pad("sink").get_current_caps()
        if caps is None:
            raise RuntimeError("no video stream could be decoded")
        return caps

    def start(self) -> None:
        """Preroll, arm the loop seek if asked, and play; bus messages go to the main loop."""
        Gst = self._Gst
        self.preroll()
        if self._loop:
            self._seek(Gst.SeekFlags.FLUSH | Gst.SeekFlags.SEGMENT)
        self._sink.connect("new-sample", self._new_sample)
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self._on_message)
        self.pipeline.set_state(Gst.State.PLAYING)

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._stopping.set()  # wakes a streaming thread waiting for its frame's time
        self.pipeline.get_bus().remove_signal_watch()
        self.pipeline.set_state(self._Gst.State.NULL)

    def _seek(self, flags) -> None:
        Gst = self._Gst
        ok = self.pipeline.seek(1.0, Gst.Format.TIME, flags, Gst.SeekType.SET, 0, Gst.SeekType.NONE, -1)
        if not ok:
            log("warning: loop seek refused by the pipeline; the stream will end")

    def _new_sample(self, sink):
        Gst = self._Gst
        sample = sink.emit("pull-sample")
        if sample is None:
            return Gst.FlowReturn.EOS
        buffer = sample.get_buffer()
        position = sample.get_segment().to_stream_time(Gst.Format.TIME, buffer.pts)
        if position != Gst.CLOCK_TIME_NONE:
            position_s = position / Gst.SECOND
            if position_s <= self._last_pos:  # the file started over
                self._loop_offset += self._last_end
            self._last_pos = position_s
            duration = buffer.duration
            self._last_end = position_s + (duration / Gst.SECOND if duration != Gst.CLOCK_TIME_NONE else 0.0)
            now = time.monotonic()
            if self._t0 is None:
                self._t0 = now - position_s
            due = self._t0 + self._loop_offset + position_s
            if due > now and self._stopping.wait(due - now):
                return Gst.FlowReturn.FLUSHING
            self._on_frame(buffer, due)
        else:
            self._on_frame(buffer, None)
        return Gst.FlowReturn.OK

    def _on_message(self, _bus, message) -> None:
        Gst = self._Gst
        if message.type == Gst.MessageType.SEGMENT_DONE:
            self._seek(Gst.SeekFlags.SEGMENT)
        elif message.type == Gst.MessageType.EOS:
            self._on_end()
        elif message.type == Gst.MessageType.ERROR:
            error, _debug = message.parse_error()
            log(f"producer error: {error.message}")
            self._on_end()


class Mount:
    """One RTSP mount: a shared media factory whose every new media gets a fresh producer."""

    def __init__(self, Gst, GstRtspServer, name: str, path: str, loop: bool, caps) -> None:
        self._Gst = Gst
        self.name = name
        self.path = path
        self.loop = loop
        self.caps = caps
        self.producers: set[Producer] = set()
        ok, num, den = caps.get_structure(0).get_fraction("framerate")
        # One keyframe per second of video; 25 when the file declares no usable rate.
        self.keyframe_interval = max(1, round(num / den)) if ok and num > 0 and den > 0 else 25
        self.factory = GstRtspServer.RTSPMediaFactory()
        self.factory.set_launch(MEDIA_LAUNCH)
        self.factory.set_shared(True)
        self.factory.connect("media-configure", self._media_configure)

    def _media_configure(self, _factory, media) -> None:
        Gst = self._Gst
        bin_ = media.get_element()
        bin_.get_by_name("enc").set_property("key-int-max", self.keyframe_interval)
        appsrc = bin_.get_by_name("src")
        appsrc.set_property("caps", self.caps)

        def on_frame(buffer, due: float | None) -> None:
            # Replace the file's timestamps (which restart every loop) by the media's running
            # time at the frame's due time: these only increase, and a busy CPU that delays
            # the push does not jitter them. Without a clock yet (media not playing) or a
            # due time, appsrc's do-timestamp stamps the frame on arrival instead.
            buffer = buffer.copy()
            pts = Gst.CLOCK_TIME_NONE
            clock = appsrc.get_clock()
            if clock is not None and due is not None:
                running = clock.get_time() - appsrc.get_base_time()
                late = max(0, int((time.monotonic() - due) * Gst.SECOND))
                pts = max(0, running - late)
            buffer.pts = pts
            buffer.dts = pts
            appsrc.emit("push-buffer", buffer)

        producer = Producer(Gst, self.path, self.loop, on_frame, lambda: appsrc.emit("end-of-stream"))
        self.producers.add(producer)

        def unprepared(_media) -> None:
            producer.stop()
            self.producers.discard(producer)
            log(f"{self.name}: media closed")

        media.connect("unprepared", unprepared)
        try:
            producer.start()
        except RuntimeError as exc:
            log(f"{self.name}: cannot start producer: {exc}")
            producer.stop()
            self.producers.discard(producer)
            return
        log(f"{self.name}: media started")

    def stop(self) -> None:
        for producer in list(self.producers):
            producer.stop()
        self.producers.clear()


def run_check() -> int:
    try:
        _GLib, Gst, _GstRtspServer = import_gi()
    except RuntimeError as exc:
        print(exc)
        return 1
    missing = missing_elements(Gst)
    if missing:
        print("missing GStreamer elements: " + ", ".join(missing))
        return 1
    return 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.check:
        return run_check()
    for name, path in args.mounts.items():
        if not os.path.isfile(path):
            fail(f"mount {name}: no such file: {path}", 2)
    try:
        GLib, Gst, GstRtspServer = import_gi()
    except RuntimeError as exc:
        fail(str(exc))
    missing = missing_elements(Gst)
    if missing:
        fail("missing GStreamer elements: " + ", ".join(missing))

    # Open every file once up front so a bad clip fails here, not on a client's first PLAY.
    mounts = []
    for name, path in args.mounts.items():
        probe = Producer(Gst, path, False, None, None)
        try:
            caps = probe.preroll()
        except RuntimeError as exc:
            fail(f"mount {name}: cannot decode {path}: {exc}")
        finally:
            probe.pipeline.set_state(Gst.State.NULL)
        mounts.append(Mount(Gst, GstRtspServer, name, path, args.loop, caps))

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mount_points = server.get_mount_points()
    for mount in mounts:
        mount_points.add_factory(f"/{mount.name}", mount.factory)

    if args.user is not None:
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, AUTH_ROLE)
        auth = GstRtspServer.RTSPAuth()
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
        role = Gst.Structure.new_from_string(
            f"{AUTH_ROLE}, {GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS}=(boolean)true,"
            f" {GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT}=(boolean)true"
        )
        for mount in mounts:
            mount.factory.add_role_from_structure(role)

    if server.attach(None) == 0:
        fail(f"cannot listen on 127.0.0.1:{args.port} (port in use?)")

    main_loop = GLib.MainLoop()

    def quit_loop(*_args) -> bool:
        main_loop.quit()
        return GLib.SOURCE_REMOVE

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, quit_loop)
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, quit_loop)

    # The one line a test fixture waits for; everything else goes to stderr.
    print(f"READY {server.get_bound_port()}", flush=True)
    main_loop.run()
    for mount in mounts:
        mount.stop()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
