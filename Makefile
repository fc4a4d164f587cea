# The README's two commands: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit venv samples system-deps bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch 2.13.0's CPU wheel first: an unpinned torch would pull a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,bench,train]'
	touch $(STAMP)

venv: $(STAMP)

samples/bikes.mp4: | $(STAMP)
	$(BIN)/streamseg fetch-sample --out samples/bikes.mp4

samples: samples/bikes.mp4

system-deps:
	bash tools/install-system-deps.sh

demo: venv samples
	$(BIN)/streamseg run pipelines/file.yaml
	@echo "outputs:" && ls -l out/

lint: venv
	$(BIN)/ruff check streamseg tests tools benchmarks
	$(BIN)/ruff format --check streamseg tests tools benchmarks
	$(BIN)/mypy streamseg

unit: venv samples
	$(BIN)/python -m pytest -q

test: system-deps venv samples lint unit

bench: venv samples
	$(BIN)/python benchmarks/run.py --out docs/benchmarks.md

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
