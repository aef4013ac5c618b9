"""Data: tasks, sources (files, GLUE TSVs, offline corpus, hub), tokenizing, batching, metrics."""
from .batching import Collator, TaskData, dataset_statistics, encode, make_loader  # noqa: I001
from .batching import pad_examples, prepare_data, real_lengths, sort_by_length, to_device
from .metrics import chance_scores, compute_metrics, predicted, primary_metric, score
from .sources import DataFiles, load_task_data, resolve_task, task_files
from .labels import check_label_space, infer_custom_labels, label_key, parse_labels
from .tables import TextData, parse_text_columns
from .tasks import TASKS, TaskSpec, get_task
