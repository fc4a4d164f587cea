#!/usr/bin/env bash
# `make gpu-check`: on an NVIDIA GPU host, every GPU/TensorRT test and benchmarks/gpu.py, with the
# figures appended to docs/gpu-validation.md, in under 8 minutes. Where there is no NVIDIA GPU it
# says so in one line and exits 0, running and recording nothing.
#
#   tools/gpu_check.sh                   the check
#   tools/gpu_check.sh wheelhouse [3.12] build .whl/gpu-wheels-cp312.tar.xz here (needs the PyPI index)
#
# The Python: $GPU_CHECK_PYTHON, else python3 (the one that holds the host's CUDA torch). streamseg
# runs from this checkout (PYTHONPATH); the dependencies that Python lacks (typically PyAV,
# pydantic, the HTTP stack, PyNvVideoCodec on a CUDA PyTorch image) are installed with
# `pip install --target` into a folder of their own on PYTHONPATH, from the wheelhouse where one
# was built (a host without an index), else from the index. Not a venv with
# --system-site-packages: created from a venv's Python (as on CUDA PyTorch images) it would see
# the base interpreter's packages, not the host's torch.
#
# The wheelhouse travels as one xz archive of wheels re-stored uncompressed (contents unchanged):
# xz packs the shared libraries inside PyAV and PyNvVideoCodec far tighter than the wheels' own
# deflate (63 MiB of wheels -> about 46 MiB), so with the checkout and samples/bikes.mp4 it fits
# the 64 MiB a device machine of this project receives (docs/gpu-validation.md: "How to run").
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
PY=${GPU_CHECK_PYTHON:-python3}
DOC=docs/gpu-validation.md
# Distributions the check needs beyond a CUDA PyTorch image (numpy, OpenCV, ONNX Runtime, onnx,
# PyYAML, prometheus-client, tqdm, urllib3, pytest are there; see the device notes' package list).
WHEELS=(av pydantic pydantic-core annotated-types typing-inspection fastapi starlette uvicorn paho-mqtt PyNvVideoCodec)

wheelhouse() {
    local pyver=${1:-3.12} tag dl stored out
    tag=cp${pyver/./}
    out=.whl/gpu-wheels-$tag.tar.xz
    dl=$(mktemp -d) stored=$(mktemp -d)
    trap 'rm -rf "$dl" "$stored"' RETURN
    # The versions this checkout's .venv runs (what CI tests), else the newest that fit pyproject.
    local pins=()
    for name in "${WHEELS[@]}"; do
        local v=""
        if [[ -x .venv/bin/python ]]; then
            v=$(.venv/bin/python -c "import importlib.metadata as m, sys
try: print(m.version(sys.argv[1]))
except m.PackageNotFoundError: pass" "$name")
        fi
        if [[ -n "$v" ]]; then pins+=("$name==$v"); elif [[ "$name" == av ]]; then pins+=("av<19"); else pins+=("$name"); fi
    done
    echo "gpu-check: downloading ${pins[*]} for CPython $pyver (manylinux x86_64)"
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$dl" "${pins[@]}"
    "$PY" - "$dl" "$stored" <<'EOF'
import sys, zipfile
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
for wheel in sorted(src.glob("*.whl")):
    with zipfile.ZipFile(wheel) as zin, zipfile.ZipFile(dst / wheel.name, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            info.compress_type = zipfile.ZIP_STORED
            zout.writestr(info, data)
EOF
    mkdir -p .whl
    tar -C "$stored" -cf - . | xz -T0 -6 >"$out.tmp"
    mv "$out.tmp" "$out"
    echo "gpu-check: $out ($(du -h "$out" | cut -f1)); carry .whl and samples/bikes.mp4 to the GPU host"
}

gpu_found() {
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
        return 0
    fi
    # No nvidia-smi (some containers): a driver that counts at least one device.
    "$PY" - <<'EOF' >/dev/null 2>&1
import ctypes, sys
try:
    cuda = ctypes.CDLL("libcuda.so.1")
except OSError:
    sys.exit(1)
n = ctypes.c_int(0)
sys.exit(0 if cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(n)) == 0 and n.value > 0 else 1)
EOF
}

if [[ "${1:-}" == wheelhouse ]]; then
    wheelhouse "${2:-3.12}"
    exit 0
fi

if ! gpu_found; then
    echo "gpu-check: no NVIDIA GPU found (nvidia-smi lists none and no CUDA driver counts one); nothing run, nothing recorded"
    exit 0
fi

START=$SECONDS
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PYVER=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
SITE=${GPU_CHECK_SITE:-${TMPDIR:-/tmp}/streamseg-gpu-site-cp$PYVER}
export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

missing() {
    "$PY" - <<'EOF'
import importlib.util
mods = {"av": "av", "pydantic": "pydantic", "fastapi": "fastapi", "starlette": "starlette", "uvicorn": "uvicorn",
        "paho": "paho-mqtt", "PyNvVideoCodec": "PyNvVideoCodec", "yaml": "PyYAML", "numpy": "numpy",
        "cv2": "opencv-python-headless", "onnxruntime": "onnxruntime", "onnx": "onnx", "torch": "torch",
        "prometheus_client": "prometheus-client", "tqdm": "tqdm", "urllib3": "urllib3", "pytest": "pytest"}
print(" ".join(dist for mod, dist in mods.items() if importlib.util.find_spec(mod) is None))
EOF
}

NEED=$(missing)
if [[ -n "$NEED" ]]; then
    ARCHIVE=.whl/gpu-wheels-cp$PYVER.tar.xz
    mkdir -p "$SITE"
    if [[ -f "$ARCHIVE" ]]; then
        echo "gpu-check: missing here: $NEED; installing the wheelhouse $ARCHIVE into $SITE"
        tar -C "$WORK" -xJf "$ARCHIVE"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WORK"/*.whl
    else
        echo "gpu-check: missing here: $NEED; installing from the package index into $SITE"
        # shellcheck disable=SC2086  # one argument per distribution
        if ! "$PY" -m pip install -q --no-cache-dir --upgrade --target "$SITE" $NEED; then
            echo "gpu-check: cannot install $NEED: no index reachable and no $ARCHIVE (build it where there is one: tools/gpu_check.sh wheelhouse ${PYVER:0:1}.${PYVER:1})" >&2
            exit 1
        fi
    fi
    STILL=$(missing)
    STILL=${STILL//PyNvVideoCodec/}  # optional: the NVDEC tests and figures say why they are missing
    if [[ -n "${STILL// /}" ]]; then
        echo "gpu-check: still missing after the install: $STILL" >&2
        exit 1
    fi
fi

# Every test file with a gpu or tensorrt mark; only those are collected (the others import servers'
# clients and tools a GPU image need not have).
mapfile -t FILES < <(grep -rlE 'mark\.(gpu|tensorrt)\b' tests --include='test_*.py' | sort)
echo "gpu-check: ${#FILES[@]} test files with gpu/tensorrt tests; GPU: $(nvidia-smi -L 2>/dev/null | head -1 || echo unknown)"
TEST_CMD=(timeout 270 "$PY" -m pytest -q -rs -p no:cacheprovider -m "gpu or tensorrt" "${FILES[@]}")
set +e
"${TEST_CMD[@]}" 2>&1 | tee "$WORK/tests.log"
TEST_RC=${PIPESTATUS[0]}
BENCH_CMD=(timeout 170 "$PY" benchmarks/gpu.py --seconds 6 --max-streams 32 --out "$WORK/bench.md")
"${BENCH_CMD[@]}"
BENCH_RC=$?
set -e

"$PY" - "$WORK" "$TEST_RC" "$BENCH_RC" "$((SECONDS - START))" "${FILES[*]}" >>"$DOC" <<'EOF'
import datetime, importlib.metadata as md, platform, subprocess, sys
from pathlib import Path

work, test_rc, bench_rc, seconds, files = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]

def version(dist):
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"

def run(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""

smi = run("nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader").splitlines()
gpu, _, driver = (smi[0] if smi else "unknown GPU, ").partition(", ")
import torch
trt = version("tensorrt") if version("tensorrt") != "not installed" else version("tensorrt-cu12")
log = (work / "tests.log").read_text(errors="replace").splitlines()
summary = next((l.strip("= ") for l in reversed(log) if " in " in l and ("passed" in l or "failed" in l or "skipped" in l or "error" in l)), "no summary line")
skips = sorted({l.split(": ", 1)[1] for l in log if l.startswith("SKIPPED") and ": " in l})
fails = [l for l in log if l.startswith(("FAILED", "ERROR"))]
commit = run("git", "rev-parse", "--short", "HEAD") or "unknown"
out = [
    "",
    f"## {datetime.date.today()} — gpu-check on {gpu}",
    "",
    f"`make gpu-check` (tools/gpu_check.sh) at commit {commit}, {seconds // 60} min {seconds % 60} s. GPU {gpu}, driver "
    f"{driver or 'unknown'}; Python {platform.python_version()}; torch {torch.__version__} (CUDA {torch.version.cuda}); "
    f"TensorRT {trt}; PyNvVideoCodec {version('PyNvVideoCodec')}; PyAV {version('av')}.",
    "",
    f"Tests: `python -m pytest -m \"gpu or tensorrt\" {files}` (exit {test_rc}{', timed out' if test_rc == 124 else ''}): "
    f"{summary}.",
]
out += [f"- {l}" for l in fails]
if skips:
    out += ["", "Skipped, with the reasons pytest gave:", ""] + [f"- {s}" for s in skips]
out.append("")
bench = work / "bench.md"
if bench_rc == 0 and bench.exists():
    out.append(bench.read_text().rstrip())
else:
    out.append(f"Benchmark `python benchmarks/gpu.py --seconds 6 --max-streams 32`: exit {bench_rc}"
               f"{' (timed out)' if bench_rc == 124 else ''}; no figures.")
print("\n".join(out))
EOF
echo "gpu-check: recorded in $DOC ($((SECONDS - START)) s; tests exit $TEST_RC, benchmark exit $BENCH_RC)"
if [[ $TEST_RC -ne 0 || $BENCH_RC -ne 0 ]]; then
    exit 1
fi
