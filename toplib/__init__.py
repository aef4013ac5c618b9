"""toplib: constraint-aware, ranking-distilled token pruning (ToP, Li et al., KDD'23).

Layers, imports pointing down only: ``core`` (the method, torch only) <- ``hf``, ``data``
<- ``train``, ``infer`` <- ``viz`` <- ``bench`` <- ``cli``."""
from __future__ import annotations

import importlib

__version__ = "0.1.0"
_EXPORTS = {"PruneConfig": "toplib.core.config", "TrainConfig": "toplib.train.config",
            "build_train_config": "toplib.train.config", "ToPModel": "toplib.hf.model",
            "ToPOutput": "toplib.hf.model"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    """Load the public names lazily: ``import toplib.core`` needs torch only."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'toplib' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
