"""Event latency: frame capture -> MQTT message received, on this machine.

Starts a real mosquitto on a free loopback port (tests/support/mqtt.py), subscribes with paho, and
runs the pipeline on the sample clip paced at its frame rate (looped) with low-threshold person
rules so that events happen every few seconds. Each event's payload carries ``wall_time``, the
frame's capture time (time.time() when the reader got it); the latency is the subscriber's
time.time() on arrival minus that: reader queue, batching, inference, overlay, the rules, the JPEG
snapshot, the queue to the MQTT worker, paho and the broker.

    .venv/bin/python benchmarks/event_latency.py [--seconds 60]

It prints a markdown table (docs/events.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests.support from a checkout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="how long the pipeline runs")
    args = ap.parse_args()

    from streamseg.config import parse_config
    from streamseg.pipeline import Pipeline
    from tests.support.mqtt import Mosquitto, Subscriber

    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp))
        broker.start()
        try:
            arrivals: list[tuple[float, bytes]] = []
            sub = Subscriber(broker.port, "streamseg/+/+")
            sub.client.on_message = lambda c, u, m: arrivals.append((time.time(), m.payload))
            text = f"""
sources: [{{name: bikes, uri: "{REPO}/samples/bikes.mp4", realtime: true, loop: true}}]
model: {{path: selfie_landscape}}
http: {{enabled: false}}
events:
  snapshots: "{tmp}/snap"
  mqtt: {{host: 127.0.0.1, port: {broker.port}}}
  rules:
    - {{name: any, stream: bikes, class: person, above: 0.02, clear: 0.01}}
    - {{name: large, stream: bikes, class: person, above: 0.1, clear: 0.05}}
"""
            p = Pipeline(parse_config(text), duration=args.seconds)
            t = threading.Thread(target=p.run)
            t.start()
            t.join()
            time.sleep(1)
            sub.close()
        finally:
            broker.stop()
    lat = sorted(1000 * (at - json.loads(payload)["wall_time"]) for at, payload in arrivals)
    if not lat:
        sys.exit("no events arrived")
    q = statistics.quantiles(lat, n=20) if len(lat) >= 2 else [lat[0]] * 19
    print(f"{platform.processor() or platform.machine()}, {args.seconds:g} s of bikes.mp4 at 25 fps, bundled model")
    print()
    print("| events | median ms | p95 ms | max ms |")
    print("|---:|---:|---:|---:|")
    print(f"| {len(lat)} | {statistics.median(lat):.1f} | {q[18]:.1f} | {lat[-1]:.1f} |")


if __name__ == "__main__":
    main()
