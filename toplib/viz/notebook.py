"""What the notebooks share: logging, tables, figure folders, announcements of long steps,
per-task parameters, running notebooks and the ``metrics.json`` each one writes last."""
from __future__ import annotations

import ast
import difflib
import json
import logging
import math
import os
from typing import Any

logger = logging.getLogger(__name__)

FIGURES_SUBDIR = "figures"
STEP_SECONDS = {"finetune": 1.35, "prune": 1.8}
"""Seconds per optimiser step at batch 16, evaluations included: MiniLM-L6 on a 2-core AMD EPYC,
one torch thread (announcements scale it by batch size)."""
REFERENCE_BATCH = 16

METRICS_FILE = "metrics.json"
NOTEBOOK_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                            os.pardir, os.pardir, "notebooks"))
"""The repository's notebooks/ folder (an editable install keeps it beside toplib/)."""


def setup_notebook(level: int = logging.WARNING) -> None:
    """Quiet notebook output (toplib logs at ``level``, no HF progress bars), after refusing
    papermill parameters the notebook does not declare."""
    from transformers.utils import logging as hf_logging
    check_injected_parameters()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("toplib").setLevel(level)
    hf_logging.disable_progress_bar()


def check_injected_parameters(cells: list[str] | None = None) -> None:
    """Refuse injected papermill parameters the parameters cell does not declare, or of another
    type than its default (None always passes; an int is a float); ``cells`` default: ``In``."""
    if cells is None:
        from IPython import get_ipython
        shell = get_ipython()
        cells = list(shell.user_ns.get("In", [])) if shell is not None else []
    at = next((i for i, c in enumerate(cells) if i and c.startswith("# Parameters\n")), None)
    if at is None:
        return
    declared, given = _assignments(cells[at - 1]), _assignments(cells[at])
    for name, value in given.items():
        if name not in declared:
            near = difflib.get_close_matches(name, declared, n=1)
            raise ValueError(f"parameter {name}={value!r} is not one of this notebook's parameters "
                             + (f"(did you mean {near[0]!r}?)" if near else
                                f"({', '.join(declared)})"))
        default = declared[name]
        if not _same_kind(default, value):
            raise ValueError(f"parameter {name}={value!r} has type {type(value).__name__}; "
                             f"the notebook's default {default!r} has type "
                             f"{type(default).__name__}")


def _assignments(source: str) -> dict[str, Any]:
    """``name -> value`` of a cell's top-level ``name = literal`` lines (``...``: not a literal)."""
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                out[node.targets[0].id] = ...
    return out


def _same_kind(default: Any, value: Any) -> bool:
    if default is None or default is ... or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    widened = {float: (int, float), list: (list, tuple), tuple: (list, tuple)}
    return isinstance(value, widened.get(type(default), type(default)))


def show_table(df, caption: str | None = None, precision: int = 3, index: bool = False):
    """``df`` as a pandas Styler: numbers at ``precision`` decimals, missing values as a dash.

    Example:
        >>> import pandas as pd
        >>> "<table" in show_table(pd.DataFrame({"score": [0.91234]})).to_html()
        True
    """
    styler = df.style.format(precision=precision, na_rep="–")
    if not index:
        styler = styler.hide(axis="index")
    return styler.set_caption(caption) if caption else styler


def figure_dir(figures_dir: str | None, output_dir: str) -> str:
    """``figures_dir`` when given (``make figures`` passes the repository's), else beside the run.

    Example:
        >>> figure_dir(None, "runs/rte")
        'runs/rte/figures'
    """
    return figures_dir or os.path.join(output_dir, FIGURES_SUBDIR)


def announce(what: str, run_dir: str, config=None, kind: str = "prune",
             overwrite: bool = False) -> bool:
    """Say whether a long step reuses ``run_dir``'s finished run or trains (about how long);
    returns whether it will train.

    Example:
        >>> announce("ToP at sparsity 0.5", "no/such/run")
        ToP at sparsity 0.5: training a new run in no/such/run.
        True
    """
    from toplib.train.records import finished_run  # lazy: toplib.train imports transformers
    if kind not in STEP_SECONDS:
        raise ValueError(f"kind={kind!r}: must be one of {sorted(STEP_SECONDS)}")
    if not overwrite and finished_run(run_dir) is not None:
        print(f"{what}: reusing the finished run in {run_dir} (overwrite=True trains again).")
        return False
    print(f"{what}: training a new run in {run_dir}{_estimate(config, kind)}.")
    return True


def _estimate(config, kind: str) -> str:
    """", N steps, about M min on ..." for a config with a known training-set size."""
    if config is None:
        return ""
    if not config.max_train_samples:
        return " on the full training set (the progress bar gives the time left)"
    epochs = config.finetune_epochs if kind == "finetune" else config.epochs
    steps = math.ceil(config.max_train_samples / config.batch_size) * epochs
    minutes = steps * STEP_SECONDS[kind] * config.batch_size / REFERENCE_BATCH / 60
    return (f", {steps:.0f} steps (at most {config.max_train_samples} examples x {epochs:g} "
            f"epochs): about {max(minutes, 1):.0f} min on 2 CPU cores with MiniLM-L6")


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, numpy scalars/arrays -> Python values."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalar or array, torch tensor
        return _clean(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def record_metrics(metrics: dict, output_dir: str, notebook: str | None = None) -> str:
    """Write ``metrics`` as strict JSON (NaN becomes null) to ``<output_dir>/metrics.json``.

    Example:
        >>> import tempfile
        >>> path = record_metrics({"score": 0.9, "gap": float("nan")}, tempfile.mkdtemp())
        >>> read_metrics(os.path.dirname(path))["gap"] is None
        True
    """
    os.makedirs(output_dir, exist_ok=True)
    record = _clean(dict(metrics, **({"notebook": notebook} if notebook else {})))
    path = os.path.join(output_dir, METRICS_FILE)
    with open(path, "w") as f:
        json.dump(record, f, indent=2, allow_nan=False)
    logger.info("metrics written to %s", path)
    return path


def read_metrics(output_dir: str) -> dict:
    """The metrics a notebook recorded in ``output_dir``."""
    with open(os.path.join(output_dir, METRICS_FILE)) as f:
        return json.load(f)


def per_task_values(text: str | float | None, tasks: list[str]) -> dict[str, float | None]:
    """Per-task values: None/'' -> preset (None), '0.5' -> all tasks, 'sst2:0.4,rte:0.6'.

    Example:
        >>> per_task_values("sst2:0.4", ["sst2", "rte"])
        {'sst2': 0.4, 'rte': None}
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        return {t: None for t in tasks}
    if not isinstance(text, str) or ":" not in text:
        return {t: float(text) for t in tasks}
    values = {}
    for part in text.split(","):
        task, _, value = part.partition(":")
        if task.strip() not in tasks:
            raise ValueError(f"{text!r}: task {task.strip()!r} is not among tasks {tasks}")
        values[task.strip()] = float(value)
    return {t: values.get(t) for t in tasks}


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``-p KEY=VALUE`` pairs as parameters: Python literals become values, the rest stay strings.

    Example:
        >>> parse_overrides(["sparsity=0.5", "task=rte", "data_dir=None"])
        {'sparsity': 0.5, 'task': 'rte', 'data_dir': None}
    """
    overrides = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"parameter={pair!r}: expected KEY=VALUE")
        overrides[key] = _literal(text)
    return overrides


def _literal(text: str) -> Any:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return value if value is None or isinstance(value, (bool, int, float, str)) else text


def execute_notebook(name: str, output_path: str, parameters: dict,
                     kernel_name: str = "python3", cwd: str | None = None,
                     declared_only: bool = False) -> str:
    """Execute ``notebooks/<name>.ipynb`` with papermill into ``output_path``; ``cwd`` defaults to
    the notebooks folder; ``declared_only`` passes only the parameters the notebook declares."""
    import papermill  # lazy: only the driver notebook and tests execute notebooks

    path = os.path.join(NOTEBOOK_DIR, f"{name}.ipynb")
    if declared_only:
        declared = papermill.inspect_notebook(path)
        parameters = {k: v for k, v in parameters.items() if k in declared}
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    papermill.execute_notebook(path, output_path, parameters=parameters, kernel_name=kernel_name,
                               cwd=cwd or NOTEBOOK_DIR, progress_bar=False)
    return output_path
