"""Inference: the token-dropping engine, batched prediction, gate schedules."""
from .engine import DropOutput, Predictions, eval_keep_table, predict, prune_forward  # noqa: I001
from .engine import gates_for_sparsity, set_eval_sparsity
