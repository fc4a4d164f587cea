"""Soak: run one pipeline for N minutes and report whether memory, file descriptors or threads grow.

Not part of CI. The pipeline runs in this process: a looping RTSP camera from the test server
(killed and restarted every ``--outage-every`` seconds, so reconnects are soaked too) beside a
paced synthetic stream, into MP4, JSONL and the live view over HTTP. Every ``--every`` seconds
the process's RSS, open fds and OS threads are sampled from /proc; after ``--warmup`` seconds
the least-squares slope of each (per minute) is printed, with the first/last values.

    .venv/bin/python benchmarks/soak.py --minutes 5

``--no-rtsp`` swaps the camera for a second synthetic stream (no Debian GStreamer needed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from streamseg.config import parse_config  # noqa: E402
from streamseg.pipeline import Pipeline  # noqa: E402
from tests.support.rtsp import RtspServer, skip_reason  # noqa: E402

CLIP = REPO / "samples" / "bikes.mp4"


def log(msg: str) -> None:
    print(f"[soak] {msg}", file=sys.stderr, flush=True)


def sample() -> tuple[float, float, int, int]:
    """(RSS MiB, anonymous RSS MiB, open fds, OS threads) of this process, from /proc.

    Anonymous RSS is what a leak grows; the whole RSS also counts mapped library and model pages,
    which the kernel drops and reloads under memory pressure from other processes.
    """
    fields: dict[str, str] = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()[0] if value.split() else "0"
    mib = 1 / 1024
    return (
        int(fields["VmRSS"]) * mib,
        int(fields["RssAnon"]) * mib,
        len(os.listdir("/proc/self/fd")),
        int(fields["Threads"]),
    )


def slope_per_minute(ts: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over ts (seconds), per minute."""
    n = len(ts)
    mt, my = sum(ts) / n, sum(ys) / n
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0:
        return 0.0
    return 60.0 * sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / var


def config_yaml(out: Path, camera: str | None) -> str:
    first = (
        f'{{name: cam, uri: "{camera}", timeouts: {{open_s: 3, read_s: 2, watchdog_s: 2}}}}'
        if camera
        else '{name: cam, uri: "synthetic://?width=640&height=272&fps=25", realtime: true}'
    )
    return f"""
name: soak
sources:
  - {first}
  - {{name: synth, uri: "synthetic://?width=640&height=360&fps=15", realtime: true}}
model: {{path: selfie_landscape}}
outputs:
  - {{type: video, path: "{out}/{{stream}}.mp4"}}
  - {{type: jsonl, path: "{out}/stats.jsonl"}}
  - {{type: live}}
http: {{port: 0}}
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="how long to run (default 10)")
    ap.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds left out of the slopes")
    ap.add_argument("--outage-every", type=float, default=60.0, help="kill/restart the camera this often; 0 = never")
    ap.add_argument("--no-rtsp", action="store_true", help="two synthetic streams, no RTSP server")
    args = ap.parse_args()
    if args.minutes * 60 <= args.warmup + 3 * args.every:
        ap.error("--minutes must leave at least three samples after --warmup")

    with ExitStack() as stack:
        out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
        server: RtspServer | None = None
        if not args.no_rtsp:
            reason = skip_reason()
            if reason:
                log(f"{reason}; use --no-rtsp")
                return 1
            server = stack.enter_context(RtspServer({"cam": CLIP}, loop=True))
        pipeline = Pipeline(parse_config(config_yaml(out, server.url("cam") if server else None), "soak.yaml"))
        runner = threading.Thread(target=pipeline.run, name="soak-pipeline", daemon=True)
        runner.start()
        stack.callback(runner.join, 60)
        stack.callback(pipeline.stop)
        if not pipeline.ready.wait(60):
            log("pipeline did not start")
            return 1

        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        next_outage = t0 + args.outage_every if server and args.outage_every > 0 else float("inf")
        ts: list[float] = []
        rows: list[tuple[float, float, int, int]] = []
        while (now := time.monotonic()) < end and runner.is_alive():
            if now >= next_outage and server is not None:
                server.kill()
                time.sleep(5)
                server.start()
                next_outage += args.outage_every
            ts.append(now - t0)
            rows.append(sample())
            rss, anon, fds, threads = rows[-1]
            log(f"t={ts[-1]:6.0f}s rss={rss:7.1f} MiB anon={anon:7.1f} MiB fds={fds} threads={threads}")
            time.sleep(max(0.0, min(args.every, end - time.monotonic())))
        processed = {
            s: pipeline.metrics.registry.get_sample_value("streamseg_frames_processed_total", {"stream": s})
            for s in ("cam", "synth")
        }

    keep = [i for i, t in enumerate(ts) if t >= args.warmup]
    kt = [ts[i] for i in keep]
    print(f"# soak {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {args.minutes:g} min, samples every {args.every:g} s")
    print(f"command: {shlex.join(['python', *sys.argv])}")
    print(f"frames processed: {processed}")
    print(f"slopes over t >= {args.warmup:g} s ({len(keep)} samples):")
    for j, (name, unit) in enumerate([("rss", "MiB"), ("rss_anon", "MiB"), ("fds", "fds"), ("threads", "threads")]):
        ys = [float(rows[i][j]) for i in keep]
        print(f"  {name:8s} {slope_per_minute(kt, ys):+8.3f} {unit}/min  (first {ys[0]:.1f}, last {ys[-1]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
