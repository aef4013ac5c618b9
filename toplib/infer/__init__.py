"""Inference: the token-dropping engine, batched prediction, gate schedules."""
from .engine import DropOutput, Predictions, eval_keep_table, predict, prune_forward
from .schedules import gates_for_sparsity, set_eval_sparsity

__all__ = ["DropOutput", "Predictions", "eval_keep_table", "gates_for_sparsity", "predict",
           "prune_forward", "set_eval_sparsity"]
