VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup quickstart lint test test-all figures notebooks report reproduce

setup: $(VENV)/.toplib-setup
$(VENV)/.toplib-setup: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

## The main job on the offline default: teacher + ToP at sparsity 0.5, evaluated.
quickstart: setup
	$(VENV)/bin/toplib quickstart --output-dir runs/rotten_tomatoes

## ruff: pyflakes, bugbear, unused arguments, import order (pyproject.toml [tool.ruff]).
lint: setup
	$(VENV)/bin/ruff check toplib tests scripts notebooks

## What CI runs: the linter, unit tests, notebooks under papermill with tiny parameters, and
## the JupyterLab explorer driven in Debian's headless Chromium (installed by apt).
test: setup lint
	bash scripts/install_browser.sh
	$(PY) -m pytest -m "not slow" -q

## Everything, including the real-data tests.
test-all: setup
	$(PY) -m pytest -q

## The notebooks under papermill with tiny parameters (`make test` runs them too).
notebooks: setup
	$(PY) -m pytest -m notebooks -q --durations=0

## Regenerate every figure in figures/ (PNG + SVG): notebooks 00-08 in order, default
## parameters, fixed seeds; finished runs in runs/ are reused. With GLUE files (GLUE_DIR,
## default ../shared/data/glue when present) 08 reproduces REPRO_TASKS, else the offline
## default only. Override parameters with NOTEBOOK_ARGS, e.g. NOTEBOOK_ARGS="-p device=cuda".
GLUE_DIR ?= $(firstword $(wildcard ../shared/data/glue))
REPRO_TASKS ?= rotten_tomatoes,cola,mrpc,rte,stsb,sst2
NOTEBOOK_ARGS ?=
figures: setup
	$(PY) scripts/run_notebooks.py $(if $(GLUE_DIR),-p data_dir=$(abspath $(GLUE_DIR)) -p tasks=$(REPRO_TASKS)) $(NOTEBOOK_ARGS)

## A static report to open or share: every notebook executed with papermill at the quick
## preset (finished runs in runs/ are reused) and exported to self-contained HTML pages with
## an index, in report/ (REPORT_DIR). Open report/index.html in a browser.
REPORT_DIR ?= report
report: setup
	$(PY) scripts/build_report.py --out $(REPORT_DIR) $(NOTEBOOK_ARGS)

## The results table with seeds (README: results): the standard preset (full training data,
## the release's schedule at 1/100) on the GLUE tasks, 3 seeds each, through notebook 08;
## then the runs' records (no weights), table and figures collected into results/standard.
## Resumable: rerun after an interruption. About an hour a task on 2 CPU cores.
STANDARD_TASKS ?= cola,mrpc,rte,stsb,sst2
SEEDS ?= 42,43,44
reproduce: setup
	$(PY) scripts/run_notebooks.py 08_reproduce -p preset=standard -p tasks=$(STANDARD_TASKS) \
		-p seeds=$(SEEDS) -p data_dir=$(abspath $(GLUE_DIR)) -p output_dir=$(abspath runs/standard) \
		-p figures_dir=$(abspath runs/standard/figures)
	$(PY) scripts/collect_results.py --runs runs/standard --tasks $(STANDARD_TASKS) \
		--seeds $(SEEDS) --out results/standard
