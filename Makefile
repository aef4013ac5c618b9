VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup quickstart test test-all figures

setup: $(VENV)/.toplib-setup
$(VENV)/.toplib-setup: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

## The main job on the offline default: teacher + ToP at sparsity 0.5, evaluated.
quickstart: setup
	$(VENV)/bin/toplib quickstart --output-dir runs/quickstart

## What CI runs: unit tests, notebooks under papermill with tiny parameters.
test: setup
	$(PY) -m pytest -m "not slow" -q

## Everything, including the real-data tests.
test-all: setup
	$(PY) -m pytest -q
