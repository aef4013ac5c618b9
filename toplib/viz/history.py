"""A run's history records as the training-curve figures and notebooks read them: the fit term
it logged, and the configuration a reused run was trained with."""
from __future__ import annotations

FIT_KEYS = ("distill_loss", "task_loss")


def fit_key(history: list[dict]) -> str:
    """The fit term a run logged: ``distill_loss`` (ToP, classification) or ``task_loss``."""
    train = [r for r in history if r.get("kind") == "train"]
    return next((k for k in FIT_KEYS if any(k in r for r in train)), FIT_KEYS[1])


def reused_config(results: dict, requested, run_dir: str):
    """The TrainConfig the run was trained with, printing a notice for each knob that differs
    from ``requested``.

    Example:
        >>> from toplib.train import build_train_config
        >>> c = build_train_config("rotten_tomatoes", "quick", {})
        >>> reused_config({"config": dict(c.to_dict(), sparsity=0.7)}, c, "runs/x").sparsity
        NOTICE: runs/x was trained with sparsity=0.7, not the requested 0.5; the observations below describe the run as trained. To train with the parameters asked for, pass a new output_dir or overwrite=True.
        0.7
    """
    from ..train import TrainConfig
    from ..train.config import config_differences
    differ = config_differences(requested.to_dict(), results["config"], shared_only=True)
    if differ:
        knobs = ", ".join(f"{k}={run!r}, not the requested {asked!r}"
                          for k, (asked, run) in differ.items())
        print(f"NOTICE: {run_dir} was trained with {knobs}; the observations below describe the "
              "run as trained. To train with the parameters asked for, pass a new output_dir "
              "or overwrite=True.")
    return TrainConfig.from_dict(results["config"])
