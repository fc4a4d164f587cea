"""A real MQTT broker (Debian's mosquitto) on a free loopback port, and a paho subscriber.

``Mosquitto.stop()``/``start()`` kill and restart the broker on the same port, for reconnect tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if Path(p).exists()), None
    )


class Mosquitto:
    def __init__(self, folder: Path, users: dict[str, str] | None = None) -> None:
        self.binary = mosquitto_binary()
        if self.binary is None:
            raise RuntimeError("mosquitto is not installed (tools/install-system-deps.sh)")
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        # persistence: a restarted broker keeps the subscriber's session (its subscription and the
        # QoS 1 messages queued for it), so a restart test cannot lose messages to a subscribe race
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {folder}/",
            "log_dest stderr",
        ]
        if os.geteuid() == 0:  # as root, mosquitto would switch to user mosquitto, who cannot read tmp_path
            lines.append("user root")
        if users:
            pw = folder / "passwd"
            pw.touch()
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pw), user, password], check=True, capture_output=True)
            pw.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        self.conf.write_text("\n".join(lines) + "\n")
        self.log = folder / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.binary is not None
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-500:]}") from None
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen within 10 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: mosquitto saves its sessions and exits, closing every client's connection."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


class Subscriber:
    """Collects every message on ``topic`` (a wildcard filter) as (topic, payload)."""

    def __init__(self, port: int, topic: str = "#", username: str | None = None, password: str | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        # a persistent session (clean_session False, fixed id): messages published while this
        # client reconnects after a broker restart wait for it on the broker
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{port}", clean_session=False)
        if username:
            c.username_pw_set(username, password)
        c.on_connect = lambda cl, *_: cl.subscribe(topic, qos=1)
        c.on_subscribe = lambda *_: self._subscribed.set()
        c.on_message = self._on_message
        c.reconnect_delay_set(1, 1)
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c
        if not self._subscribed.wait(10):
            raise RuntimeError("subscriber did not subscribe within 10 s")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload))

    def wait_for(self, count: int, timeout: float = 20, suffix: str = "") -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.matching(suffix)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        return self.matching(suffix)

    def matching(self, suffix: str = "") -> list[tuple[str, bytes]]:
        with self._lock:
            if suffix:
                return [m for m in self.messages if m[0].endswith(suffix)]
            return [m for m in self.messages if not m[0].endswith("/snapshot")]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
