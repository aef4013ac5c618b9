"""Inference: the token-dropping engine, batched prediction, gate schedules."""
from .engine import DropOutput, Predictions, eval_keep_table, keep_plan, plan_counts  # noqa: I001
from .engine import check_right_padded, length_batches, predict, prune_forward
from .engine import gates_for_sparsity, set_eval_sparsity
