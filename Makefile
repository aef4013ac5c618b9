VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
comma := ,

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

## The reproduction (README: results), resumable: rerun after an interruption. First the
## study (benchmarks/ablations.py, STUDY_JOBS one-thread runs at a time, records in
## benchmarks/results/ablations/): ToP's budget at 1x/3x/10x, the prune layers, lower targets
## and the baselines on the same budget, 3 seeds each. Then the standard table through
## notebook 08 (the GLUE tasks, then 20news from its own folder), 3 seeds a task. Last, every
## table and figure again from the committed records alone (scripts/collect_results.py).
## Days of CPU on 2 cores.
STUDY_JOBS ?= 2
STUDY_ARMS ?= std_x1,std_x3,std_x10,std_x3_from1,std_x3_from2,std_x3_s030,std_x3_s050,norank_x3,topk_x3
STANDARD_TASKS ?= cola,mrpc,rte,stsb,sst2
SEEDS ?= 42,43,44
NEWS_DIR ?= $(firstword $(wildcard ../shared/data/20news))
STANDARD_RUN = $(PY) scripts/run_notebooks.py 08_reproduce -p preset=standard -p seeds=$(SEEDS) \
	-p output_dir=$(abspath runs/standard) -p figures_dir=$(abspath runs/standard/figures)
reproduce: setup
	$(PY) benchmarks/ablations.py run --jobs $(STUDY_JOBS) --only $(STUDY_ARMS)
	$(STANDARD_RUN) -p tasks=$(STANDARD_TASKS) -p data_dir=$(abspath $(GLUE_DIR))
	$(if $(NEWS_DIR),$(STANDARD_RUN) -p tasks=20news -p data_dir=$(abspath $(NEWS_DIR)))
	$(PY) scripts/collect_results.py --runs runs/standard --seeds $(SEEDS) --out results/standard \
		--tasks $(STANDARD_TASKS)$(if $(NEWS_DIR),$(comma)20news)
