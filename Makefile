# The README's two commands: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The demo needs only the base install (ONNX Runtime on the CPU): no torch, no test tools.
DEMO_STAMP := $(VENV)/.installed-base

.PHONY: demo test test-fast lint unit venv samples system-deps bench clean triton-venv image gpu-check

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $(DEMO_STAMP)

$(STAMP): pyproject.toml | $(BIN)/python
	# torch 2.13.0's CPU wheel first: an unpinned torch would pull a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0 torchvision==0.28.0  # torchvision pinned to this torch, or pip upgrades torch
	$(BIN)/pip install -q -e '.[dev,bench,train]'
	touch $(STAMP)

venv: $(STAMP)

# The Triton test server's own environment (tests/integration/test_triton.py): Debian's Python with
# nvidia-pytriton, whose tritonserver 2.51 Python backend returns empty outputs under numpy 2.
TRITON_VENV := .venv-triton
$(TRITON_VENV)/bin/python:
	/usr/bin/python3 -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/pip install -q nvidia-pytriton==0.7.0 onnxruntime

triton-venv: $(TRITON_VENV)/bin/python

samples/bikes.mp4: | $(DEMO_STAMP)
	$(BIN)/streamseg fetch-sample --out samples/bikes.mp4

samples: samples/bikes.mp4

system-deps:
	bash tools/install-system-deps.sh

# The clip loops (pipelines/file.yaml) so the live view at http://127.0.0.1:8080/ stays up for a
# minute; Ctrl-C stops earlier, and either way the outputs are finalized.
demo: $(DEMO_STAMP) samples
	$(BIN)/streamseg run pipelines/file.yaml --duration 60
	@echo "outputs:" && ls -l out/

lint: venv
	$(BIN)/ruff check streamseg tests tools benchmarks
	$(BIN)/ruff format --check streamseg tests tools benchmarks
	$(BIN)/mypy streamseg

unit: venv samples
	$(BIN)/python -m pytest -q

# Everything but the tests marked slow (training, export, the wheel in a fresh venv).
test-fast: venv samples
	$(BIN)/python -m pytest -q -m "not slow"

test: system-deps venv triton-venv samples lint unit

bench: venv samples
	$(BIN)/python benchmarks/run.py --out docs/benchmarks.md
	$(BIN)/python benchmarks/throughput.py --out docs/benchmarks.md

# The CPU image (deploy/docker/Dockerfile): wheels built here (the image's Python is CPython 3.11),
# installed in the image with no index. See docs/deploy.md.
image: $(DEMO_STAMP)
	$(BIN)/pip wheel -q . -w wheelhouse
	docker build -f deploy/docker/Dockerfile -t streamseg:cpu .

# On an NVIDIA GPU host: every gpu/tensorrt test and benchmarks/gpu.py, figures appended to
# docs/gpu-validation.md (under 8 minutes). Without a GPU: one line, exit 0, nothing recorded.
# Uses the host's python3 (its CUDA torch), not .venv; see docs/gpu-validation.md, "How to run".
gpu-check:
	bash tools/gpu_check.sh

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
