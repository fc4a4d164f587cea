#!/usr/bin/env bash
# `make gpu-check`: on an NVIDIA GPU host, every GPU/TensorRT test and benchmarks/gpu.py, with the
# figures appended to docs/gpu-validation.md, in under 8 minutes. Where there is no NVIDIA GPU it
# says so in one line and exits 0, running and recording nothing.
#
#   tools/gpu_check.sh                   the check (GPU_CHECK_OUT=DIR: the entry and test log copied there too)
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
        case "$name" in  # pyproject's bounds where .venv has no version
            av) [[ -n "$v" ]] || v="<19" ;;
            PyNvVideoCodec) [[ -n "$v" ]] || v="<2.3" ;;
        esac
        if [[ -z "$v" ]]; then pins+=("$name"); elif [[ "$v" == "<"* ]]; then pins+=("$name$v"); else pins+=("$name==$v"); fi
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
# The checkout first: PyNvVideoCodec's wheel puts top-level folders named samples/ and benchmarks/ in SITE.
export PYTHONPATH="$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH}"
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
BENCH_CMD=(timeout 170 "$PY" benchmarks/gpu.py --seconds 6 --max-streams 32 --budget 150 --out "$WORK/bench.md")  # tools/gpu_record.py names it
"${BENCH_CMD[@]}"
BENCH_RC=$?
set -e

# Written whole or not at all: a failing writer appends nothing.
ENTRY=$("$PY" tools/gpu_record.py "$WORK" "$TEST_RC" "$BENCH_RC" "$((SECONDS - START))" "${FILES[@]}")
printf '%s\n' "$ENTRY" >>"$DOC"
# A copy for a machine whose checkout does not come back (the device tool: GPU_CHECK_OUT=$OUT).
if [[ -n "${GPU_CHECK_OUT:-}" ]]; then
    mkdir -p "$GPU_CHECK_OUT"
    printf '%s\n' "$ENTRY" >"$GPU_CHECK_OUT/gpu-check.md"
    cp "$WORK/tests.log" "$GPU_CHECK_OUT/gpu-check-tests.log"
fi
echo "gpu-check: recorded in $DOC ($((SECONDS - START)) s; tests exit $TEST_RC, benchmark exit $BENCH_RC)"
if [[ $TEST_RC -ne 0 || $BENCH_RC -ne 0 ]]; then
    exit 1
fi
