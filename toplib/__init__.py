"""toplib: constraint-aware, ranking-distilled token pruning (ToP, Li et al., KDD'23)."""
from .config import PruneConfig, TrainConfig, build_train_config
from .model import ToPModel, ToPOutput

__version__ = "0.1.0"
__all__ = ["PruneConfig", "TrainConfig", "build_train_config", "ToPModel", "ToPOutput"]
