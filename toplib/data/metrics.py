"""GLUE-style metrics of raw model outputs, as floats in 0-1 (correlations -1..1), not percent."""
from __future__ import annotations

import functools
import logging
import warnings

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from .tasks import TaskSpec, get_task

logger = logging.getLogger(__name__)


def _correlation(fn, predictions: np.ndarray, labels: np.ndarray) -> float:
    """Pearson/Spearman; 0.0 for a constant input, so that model selection never meets NaN."""
    if np.ptp(predictions) == 0 or np.ptp(labels) == 0:
        logger.warning("%s is undefined for a constant input; reporting 0.0", fn.__name__)
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(predictions, labels)[0])


_METRICS = {  # name -> fn(predictions, labels) -> float
    "accuracy": lambda p, y: float(accuracy_score(y, p)),
    "f1": lambda p, y: float(f1_score(y, p, pos_label=1, zero_division=0.0)),  # positive = 1
    "matthews": lambda p, y: float(matthews_corrcoef(y, p)),
    "pearson": functools.partial(_correlation, stats.pearsonr),
    "spearman": functools.partial(_correlation, stats.spearmanr),
}


def compute_metrics(task: TaskSpec | str, predictions: np.ndarray, labels: np.ndarray,
                    primary_only: bool = False) -> dict[str, float]:
    """{metric: float}, primary first (``primary_only``: alone), of (B, C) logits or (B,) ids
    (regression: scores).

    Example:
        >>> compute_metrics("sst2", np.array([[2.0, 0.1], [0.0, 1.0]]), np.array([0, 0]))
        {'accuracy': 0.5}
    """
    spec = get_task(task)
    predictions, labels = predicted(spec, predictions), np.asarray(labels)
    if spec.is_regression:
        labels = labels.astype(float)
    if predictions.shape[0] != labels.shape[0]:
        raise ValueError(f"predictions has {predictions.shape[0]} rows but labels has "
                         f"{labels.shape[0]}; expected one prediction per label")
    names = spec.metrics[:1] if primary_only else spec.metrics
    return {name: _METRICS[name](predictions, labels) for name in names}


def predicted(task: TaskSpec | str, outputs) -> np.ndarray:
    """(B,) class ids of (B, C) logits (ids pass through), or a regression's (B,) scores."""
    spec, outputs = get_task(task), np.asarray(outputs)
    if spec.is_regression:
        return outputs.reshape(-1).astype(float)
    return outputs.argmax(axis=-1) if outputs.ndim == 2 else outputs


UNCORRELATED = ("matthews", "pearson", "spearman")
"""Metrics on which a constant guess scores 0."""


def chance_scores(task: TaskSpec | str, labels) -> dict[str, float]:
    """A constant guess's scores on ``labels``: majority class, f1's class 1, 0 for correlations.

    Example:
        >>> chance_scores("mrpc", [1, 1, 0, 1])
        {'f1': 0.8571428571428571, 'accuracy': 0.75}
    """
    spec, labels = get_task(task), np.asarray(labels)
    if labels.size == 0:
        raise ValueError(f"labels is empty: the chance score of task {spec.name!r} needs labels")
    values, counts = np.unique(labels, return_counts=True)
    majority = values[counts.argmax()]  # ties: the smallest class id
    return {name: 0.0 if name in UNCORRELATED else _METRICS[name](
        np.full_like(labels, 1 if name == "f1" else majority), labels) for name in spec.metrics}


def primary_metric(task: TaskSpec | str) -> str:
    """The metric that ranks checkpoints (the first of ``task.metrics``)."""
    return get_task(task).metrics[0]


def score(task: TaskSpec | str, metrics: dict[str, float]) -> float:
    """The primary metric's value from a `compute_metrics` result."""
    if (name := primary_metric(task)) not in metrics:
        raise ValueError(f"metrics={metrics!r} lacks the primary metric {name!r} of task "
                         f"{get_task(task).name!r}")
    return float(metrics[name])
