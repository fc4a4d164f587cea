"""GStreamer decoding, for hardware decoders (Jetson's nvv4l2decoder + nvvidconv): the only
module that imports ``gi``.

PyGObject comes from the system (Debian/Ubuntu/JetPack package ``python3-gi``), not from pip, so
a venv that cannot import ``gi`` retries with the system's dist-packages folder.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import numpy as np

from ._deps import require
from .errors import MissingDependencyError, OutputError, SourceError
from .yuv import i420_size, planes

SYSTEM_DIST_PACKAGES = "/usr/lib/python3/dist-packages"
_lock = threading.Lock()
_gst: Any = None


def _gst_module() -> Any:
    global _gst
    with _lock:
        if _gst is not None:
            return _gst
        try:
            gi = importlib.import_module("gi")
        except ImportError:
            # A venv does not see the system's PyGObject: retry once with its folder on the path.
            sys.path.append(SYSTEM_DIST_PACKAGES)
            try:
                gi = require("gi", None, "GStreamer", install="apt-get install python3-gi gstreamer1.0-plugins-base")
            finally:
                sys.path.remove(SYSTEM_DIST_PACKAGES)
        gi.require_version("Gst", "1.0")
        from gi.repository import Gst

        Gst.init(None)
        _gst = Gst
        return Gst


def has_element(name: str) -> bool:
    try:
        return _gst_module().ElementFactory.find(name) is not None
    except MissingDependencyError:
        return False


def hardware_decoder() -> str | None:
    """The hardware decode chain this host offers, if any (Jetson: nvv4l2decoder + nvvidconv)."""
    if has_element("nvv4l2decoder") and has_element("nvvidconv"):
        return "nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx"
    return None


def pipeline_string(kind: str, target: str, hardware: str | None, latency_ms: int = 200) -> str:
    """The decode pipeline ending in an appsink named 'sink' that yields BGR frames.

    ``parsebin`` finds the depayloader/demuxer and parser for H.264 or H.265; with ``hardware``
    the decoder is Jetson's, otherwise ``decodebin`` picks a software one.
    """
    if kind == "rtsp":
        src = f'rtspsrc location="{target}" protocols=tcp latency={latency_ms} drop-on-latency=true'
    elif kind == "file":
        src = f'filesrc location="{target}"'
    else:
        raise SourceError(f"GStreamer decoding supports rtsp and file sources, not {kind}")
    decode = f"parsebin ! {hardware}" if hardware else "decodebin"
    return (
        f"{src} ! {decode} ! videoconvert ! video/x-raw,format=BGR ! "
        "appsink name=sink max-buffers=4 drop=false sync=false emit-signals=false"
    )


class GstReader:
    """A source reader over a GStreamer pipeline (same interface as the FFmpeg reader)."""

    def __init__(self, kind: str, target: str, read_timeout_s: float, hardware: str | None) -> None:
        gst = _gst_module()
        self._gst = gst
        self._pipeline = gst.parse_launch(pipeline_string(kind, target, hardware))
        self._sink = self._pipeline.get_by_name("sink")
        self._timeout_ns = int(read_timeout_s * 1e9)
        self.fps: float | None = None
        if self._pipeline.set_state(gst.State.PLAYING) == gst.StateChangeReturn.FAILURE:
            try:
                self._raise_bus_error()
            finally:
                self.close()
            raise SourceError("GStreamer could not start the decode pipeline")

    def frames(self) -> Iterator[tuple[np.ndarray, float | None]]:
        gst = self._gst
        while True:
            sample = self._sink.emit("try-pull-sample", self._timeout_ns)
            if sample is None:
                self._raise_bus_error()
                return  # end of stream or read timeout: the caller treats both as an end
            caps = sample.get_caps().get_structure(0)
            width, height = caps.get_value("width"), caps.get_value("height")
            if self.fps is None:
                ok, num, den = caps.get_fraction("framerate")
                self.fps = num / den if ok and den and num else None
            buf = sample.get_buffer()
            ok, info = buf.map(gst.MapFlags.READ)
            if not ok:
                raise SourceError("GStreamer buffer could not be mapped")
            try:
                stride = len(info.data) // height
                image = np.frombuffer(info.data, np.uint8).reshape(height, stride)[:, : width * 3]
                image = image.reshape(height, width, 3).copy()
            finally:
                buf.unmap(info)
            pts = None if buf.pts == gst.CLOCK_TIME_NONE else buf.pts / 1e9
            yield image, pts

    def _raise_bus_error(self) -> None:
        gst = self._gst
        msg = self._pipeline.get_bus().pop_filtered(gst.MessageType.ERROR)
        if msg is not None:
            err, _debug = msg.parse_error()
            raise SourceError(f"GStreamer: {err.message}")

    def close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.set_state(self._gst.State.NULL)
            self._pipeline = None


def _rtsp_modules() -> tuple[Any, Any, Any]:
    """(Gst, GstRtspServer, GLib); the server library is a separate Debian package."""
    gst = _gst_module()
    import gi

    try:
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, GstRtspServer
    except (ValueError, ImportError):
        raise MissingDependencyError(
            "gi.repository.GstRtspServer",
            None,
            "RTSP output",
            install="apt-get install gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp",
        ) from None
    return gst, GstRtspServer, GLib


def rtsp_output_unavailable_reason() -> str | None:
    """Why ``type: rtsp`` outputs cannot run here, or None (for ``streamseg doctor``)."""
    try:
        _rtsp_modules()
    except MissingDependencyError as e:
        return str(e)
    missing = [e for e in ("appsrc", "videoconvert", "x264enc", "rtph264pay") if not has_element(e)]
    if missing:
        return f"GStreamer elements missing: {', '.join(missing)} (apt-get install gstreamer1.0-plugins-ugly ...-good)"
    return None


def encoder_launch(width: int, height: int, fps: float, bitrate_kbps: int) -> str:
    """The per-mount pipeline: I420 frames pushed into appsrc 'src' -> H.264 -> RTP payloader 'pay0'.
    I420 is what x264 encodes, and what decoded video already is: nothing converts it on the way.

    A leaky queue keeps at most 4 frames and drops the oldest: a slow viewer never grows memory or
    stalls the pipeline (a queue rather than appsrc's own leaky-type, which needs GStreamer 1.20;
    JetPack 5 has 1.16). One key frame a second (and SPS/PPS with each) lets a viewer start
    within a second. x264 takes I420, which needs even sizes: see ``even_size``.
    """
    if width % 2 or height % 2:
        raise ValueError(f"H.264 (I420) needs an even frame size, got {width}x{height}")
    rate = Fraction(fps).limit_denominator(1001)  # NTSC 29.97... -> 30000/1001
    caps = f"video/x-raw,format=I420,width={width},height={height},framerate={rate.numerator}/{rate.denominator}"
    return (
        f"( appsrc name=src is-live=true format=time do-timestamp=true caps={caps} ! "
        "queue leaky=downstream max-size-buffers=4 max-size-bytes=0 max-size-time=0 ! "
        f"x264enc tune=zerolatency speed-preset=ultrafast bitrate={bitrate_kbps} key-int-max={max(1, round(fps))} ! "
        "rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def even_size(width: int, height: int) -> tuple[int, int]:
    """The largest even size within (width, height): what an RTSP mount publishes."""
    return max(2, width & ~1), max(2, height & ~1)


def gst_i420(data: np.ndarray) -> bytes:
    """A packed I420 picture in GStreamer's default I420 layout, whose rows are padded to 4 bytes
    (luma ``ceil4(W)``, chroma ``ceil4(W / 2)``): the same bytes when W is a multiple of 8, else
    each plane copied into padded rows (an 852-wide picture sent packed stops x264enc)."""
    if i420_size(data)[1] % 8 == 0:
        return np.ascontiguousarray(data).tobytes()
    parts = []
    for plane in planes(data):
        rows, cols = plane.shape
        padded = np.zeros((rows, (cols + 3) & ~3), np.uint8)
        padded[:, :cols] = plane
        parts.append(padded.reshape(-1))
    return np.concatenate(parts).tobytes()


class RtspServer:
    """gst-rtsp-server publishing one H.264 mount per stream (``rtsp://HOST:PORT/STREAM``).

    Frames are pushed from the pipeline's worker threads; GStreamer's own main loop runs in one
    daemon thread. A mount encodes only while at least one viewer is connected, and all its
    viewers share that one encoder.
    """

    def __init__(self, host: str, port: int) -> None:
        gst, rtsp, glib = _rtsp_modules()
        self._gst, self._rtsp = gst, rtsp
        self._lock = threading.Lock()
        self._appsrcs: dict[str, list[Any]] = {}
        self._sizes: dict[str, tuple[int, int]] = {}
        self._clients: dict[Any, set[str]] = {}  # connected RTSP client -> the mounts it set up
        self._context = glib.MainContext.new()
        self._loop = glib.MainLoop.new(self._context, False)
        self._server = rtsp.RTSPServer.new()
        self._server.set_address(host)
        self._server.set_service(str(port))
        self._server.connect("client-connected", self._on_client)
        self._source_id = self._server.attach(self._context)
        if not self._source_id:
            raise OutputError(f"rtsp output: cannot listen on {host}:{port} (port in use or address not local)")
        self.host = host
        self.port = int(self._server.get_bound_port())
        self._thread = threading.Thread(target=self._loop.run, name="rtsp-server", daemon=True)
        self._thread.start()

    def url(self, stream: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"rtsp://{host}:{self.port}/{stream}"

    def publish(self, stream: str, width: int, height: int, fps: float, bitrate_kbps: int) -> str:
        """Mount ``/stream`` for frames of this size; returns its URL."""
        factory = self._rtsp.RTSPMediaFactory.new()
        factory.set_launch(encoder_launch(width, height, fps, bitrate_kbps))
        factory.set_shared(True)
        factory.connect("media-configure", self._on_media, stream)
        with self._lock:
            self._appsrcs[stream] = []
            self._sizes[stream] = (width, height)
        self._server.get_mount_points().add_factory(f"/{stream}", factory)
        return self.url(stream)

    def _on_media(self, _factory: Any, media: Any, stream: str) -> None:
        appsrc = media.get_element().get_by_name_recurse_up("src")
        with self._lock:
            self._appsrcs[stream].append(appsrc)

        def gone(_media: Any) -> None:
            with self._lock:
                if appsrc in self._appsrcs[stream]:
                    self._appsrcs[stream].remove(appsrc)

        media.connect("unprepared", gone)

    # Viewer counting rides on signals gst-rtsp-server emits anyway (on its own main-loop thread):
    # a client is counted on a mount once it sets a track of it up, until its connection closes.
    def _on_client(self, _server: Any, client: Any) -> None:
        with self._lock:
            self._clients[client] = set()
        client.connect("setup-request", self._on_setup)
        client.connect("closed", self._on_closed)

    def _on_setup(self, client: Any, context: Any) -> None:
        uri = getattr(context, "uri", None)
        path = getattr(uri, "abspath", None) or ""
        mount = path.strip("/").split("/")[0]  # /STREAM/stream=0 -> STREAM
        with self._lock:
            if client in self._clients and mount in self._appsrcs:
                self._clients[client].add(mount)

    def _on_closed(self, client: Any) -> None:
        with self._lock:
            self._clients.pop(client, None)

    def clients(self, stream: str) -> int:
        """RTSP clients connected to ``stream``'s mount now (each counted once, however many tracks)."""
        with self._lock:
            return sum(stream in mounts for mounts in self._clients.values())

    def size(self, stream: str) -> tuple[int, int] | None:
        return self._sizes.get(stream)

    def viewers(self, stream: str) -> int:
        with self._lock:
            return len(self._appsrcs.get(stream, ()))

    def push(self, stream: str, image: np.ndarray) -> bool:
        """Hand one packed I420 picture (``streamseg.yuv``, the published size) to the mount's
        encoder; False when nobody watches."""
        with self._lock:
            targets = list(self._appsrcs.get(stream, ()))
        if not targets:
            return False
        data = gst_i420(image)
        for appsrc in targets:
            appsrc.emit("push-buffer", self._gst.Buffer.new_wrapped(data))
        return True

    def close(self) -> None:
        """End every viewer's stream, disconnect them and stop the server thread."""
        with self._lock:
            targets = [a for srcs in self._appsrcs.values() for a in srcs]
        for appsrc in targets:
            appsrc.emit("end-of-stream")
        self._server.client_filter(lambda _server, _client: self._rtsp.RTSPFilterResult.REMOVE)
        source = self._context.find_source_by_id(self._source_id)
        if source is not None:
            source.destroy()
        self._loop.quit()
        self._thread.join(timeout=5)
