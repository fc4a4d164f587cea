"""The gpu-check entry for docs/gpu-validation.md (tools/gpu_check.sh appends what this prints).

    python tools/gpu_record.py WORK TEST_RC BENCH_RC SECONDS FILES...

WORK holds ``tests.log`` (pytest's output with -rs) and, when the benchmark ran, ``bench.md``.
The entry says what ran and what came of it: the GPU and driver (nvidia-smi), versions, the
commit, pytest's summary line, each failure, each distinct skip reason, and the benchmark's
figures or why there are none. Nothing is claimed that the logs do not hold.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path

TIMED_OUT = 124  # timeout(1)'s exit status
BENCH = "python benchmarks/gpu.py --seconds 6 --max-streams 32 --budget 150"


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _run(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def gpu_and_driver() -> tuple[str, str]:
    first = _run("nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader").splitlines()
    name, _, driver = (first[0] if first else "").partition(", ")
    return name or "unknown GPU", driver or "unknown"


def torch_line() -> str:
    try:
        import torch
    except ImportError:
        return "torch not installed"
    return f"torch {torch.__version__} (CUDA {torch.version.cuda})"


def test_summary(log: list[str]) -> tuple[str, list[str], list[str]]:
    """pytest's final summary line, its FAILED/ERROR lines, and the distinct skip reasons."""
    words = ("passed", "failed", "skipped", "error", "deselected", "no tests ran")
    summary = next(
        (line.strip("= ") for line in reversed(log) if " in " in line and any(w in line for w in words)),
        "no summary line (pytest did not finish)",
    )
    failures = [line for line in log if line.startswith(("FAILED", "ERROR"))]
    skips = sorted({line.split(": ", 1)[1] for line in log if line.startswith("SKIPPED") and ": " in line})
    return summary, failures, skips


def entry(work: Path, test_rc: int, bench_rc: int, seconds: int, files: list[str]) -> str:
    gpu, driver = gpu_and_driver()
    trt = version("tensorrt")
    if trt == "not installed":
        trt = version("tensorrt-cu12")
    log_path = work / "tests.log"
    log = log_path.read_text(errors="replace").splitlines() if log_path.exists() else []
    summary, failures, skips = test_summary(log)
    commit = _run("git", "rev-parse", "--short", "HEAD") or "unknown"
    late = ", timed out" if test_rc == TIMED_OUT else ""
    out = [
        "",
        f"## {datetime.date.today()} — gpu-check on {gpu}",
        "",
        f"`make gpu-check` (tools/gpu_check.sh) at commit {commit}, {seconds // 60} min {seconds % 60} s. "
        f"GPU {gpu}, driver {driver}; Python {platform.python_version()}; {torch_line()}; TensorRT {trt}; "
        f"PyNvVideoCodec {version('PyNvVideoCodec')}; PyAV {version('av')}.",
        "",
        f'Tests: `python -m pytest -m "gpu or tensorrt" {" ".join(files)}` (exit {test_rc}{late}): {summary}.',
    ]
    out += [f"- {line}" for line in failures]
    if skips:
        out += ["", "Skipped, with the reasons pytest gave:", "", *[f"- {s}" for s in skips]]
    out.append("")
    bench = work / "bench.md"
    if bench_rc == 0 and bench.exists():
        out.append(bench.read_text().rstrip())
    else:
        late = " (timed out)" if bench_rc == TIMED_OUT else ""
        out.append(f"Benchmark `{BENCH}`: exit {bench_rc}{late}; no figures.")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    work, test_rc, bench_rc, seconds, *files = argv
    sys.stdout.write(entry(Path(work), int(test_rc), int(bench_rc), int(seconds), files))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
