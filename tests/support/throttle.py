"""A loopback TCP proxy whose server-to-client direction can be throttled to a trickle.

A slow camera (a saturated uplink, a congested Wi-Fi bridge) still sends bytes, so no socket
read ever times out; only a last-frame watchdog notices that no whole frame arrives:

    with ThrottledProxy(server.port) as proxy:
        url = f"rtsp://127.0.0.1:{proxy.port}/cam"
        proxy.rate = 200  # bytes per second, server -> client, for every connection
        proxy.rate = None  # unlimited again

Client-to-server bytes are never throttled (RTSP requests, RTCP receiver reports).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType

CHUNK = 64 * 1024


class ThrottledProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``upstream``; ``rate`` caps server->client bytes/s."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.rate: float | None = None
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen()
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            for src, dst, throttled in ((client, server, False), (server, client, True)):
                t = threading.Thread(target=self._pump, args=(src, dst, throttled), daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, throttled: bool) -> None:
        try:
            while not self._closed.is_set():
                rate = self.rate if throttled else None
                # Under a rate, move a few bytes at a time so the trickle is steady, never a burst.
                data = src.recv(CHUNK if rate is None else max(1, int(rate / 10)))
                if not data:
                    break
                dst.sendall(data)
                if rate is not None:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
        for t in self._threads:
            t.join(5)

    def __enter__(self) -> ThrottledProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
