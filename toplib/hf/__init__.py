"""Hugging Face surgery: the encoder patch, ToPModel, checkpoints, loading."""
from .checkpoint import CheckpointError, label_space, verify_checkpoint
from .encoder import apply_patch
from .loading import check_sequence_length, resolve_model_path
from .model import ToPModel, ToPOutput, load_checkpoint
