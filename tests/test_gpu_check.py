"""`make gpu-check` (tools/gpu_check.sh) and benchmarks/gpu.py on a host without an NVIDIA GPU:
one line, nothing run, nothing recorded. On a GPU host these skip: there the check itself is the test.
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "gpu-validation.md"
SKIP_LINE = (
    "gpu-check: no NVIDIA GPU found (nvidia-smi lists none and no CUDA driver counts one); "
    "nothing run, nothing recorded\n"
)


def _gpu_here() -> bool:
    if shutil.which("nvidia-smi"):
        return True
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


pytestmark = pytest.mark.skipif(_gpu_here(), reason="this host has an NVIDIA GPU or driver: run make gpu-check")


def _digest() -> str:
    return hashlib.sha256(DOC.read_bytes()).hexdigest()


@pytest.mark.parametrize("command", [["bash", "tools/gpu_check.sh"], ["make", "-s", "gpu-check"]])
def test_gpu_check_skips_in_one_line_and_records_nothing(command: list[str], tmp_path: Path) -> None:
    if command[0] == "make" and shutil.which("make") is None:
        pytest.skip("make is not installed")
    before = _digest()
    site = tmp_path / "site"
    env = {"PATH": "/usr/bin:/bin", "GPU_CHECK_SITE": str(site), "HOME": str(tmp_path)}
    r = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == SKIP_LINE
    assert r.stderr == ""
    assert _digest() == before  # nothing appended
    assert not site.exists()  # nothing installed


def test_gpu_benchmark_refuses_in_one_line() -> None:
    r = subprocess.run(
        [sys.executable, "benchmarks/gpu.py", "--seconds", "1"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 1
    assert r.stdout == ""
    reason = "no NVIDIA GPU: the CUDA driver (libcuda.so.1) does not load"
    assert r.stderr == f"benchmarks/gpu.py: {reason}; nothing measured\n"


@pytest.mark.slow  # a pytest run and three record runs that import torch: ~15 s on 2 cores
def test_the_record_holds_what_pytest_and_the_benchmark_said(tmp_path: Path) -> None:
    """tools/gpu_record.py on a real pytest log of the gpu tests here (all skipped, with reasons)."""
    files = ["tests/test_encoders.py"]
    log = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-m", "gpu or tensorrt", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    (tmp_path / "tests.log").write_text(log.stdout + log.stderr)

    def record(bench_rc: int) -> str:
        r = subprocess.run(
            [sys.executable, "tools/gpu_record.py", str(tmp_path), str(log.returncode), str(bench_rc), "125", *files],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return r.stdout

    text = record(1)
    lines = text.splitlines()
    assert lines[0] == "" and lines[1].startswith("## ") and lines[1].endswith(" — gpu-check on unknown GPU")
    assert "`make gpu-check` (tools/gpu_check.sh) at commit " in text and ", 2 min 5 s. " in text
    summary = next(line for line in lines if line.startswith("Tests: "))
    assert summary.startswith('Tests: `python -m pytest -m "gpu or tensorrt" tests/test_encoders.py` (exit 0): ')
    assert "1 skipped" in summary and "deselected" in summary
    assert "- no NVENC here: " in text  # the skip reason, as pytest gave it
    assert (
        lines[-1]
        == "Benchmark `python benchmarks/gpu.py --seconds 6 --max-streams 32 --budget 150`: exit 1; no figures."
    )
    (tmp_path / "bench.md").write_text("### Benchmark\n\n| a | b |\n")
    assert record(0).endswith("\n### Benchmark\n\n| a | b |\n")
    assert record(124).splitlines()[-1].endswith("exit 124 (timed out); no figures.")
