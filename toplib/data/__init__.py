"""Data: the task table, sources (files, GLUE TSVs, the offline corpus, the hub),
tokenization and batching, and the GLUE metrics."""
from .batching import (
                       Collator,
                       dataset_statistics,
                       encode,
                       make_loader,
                       pad_examples,
                       real_lengths,
                       sort_by_length,
                       to_device,
)
from .metrics import compute_metrics, primary_metric, score
from .sources import DataFiles, load_task_data, resolve_task
from .tables import TextData
from .tasks import TASKS, TaskSpec, get_task

__all__ = ["Collator", "DataFiles", "TASKS", "TaskSpec", "TextData", "compute_metrics", "dataset_statistics",
           "encode", "get_task", "load_task_data", "make_loader", "pad_examples", "primary_metric",
           "real_lengths", "resolve_task", "score", "sort_by_length", "to_device"]
