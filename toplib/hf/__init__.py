"""Everything that touches Hugging Face internals: the encoder patch (one loop and one
attention for the masked and the token-dropping path), ToPModel, checkpoints, loading."""
from .encoder import apply_patch
from .model import ToPModel, ToPOutput, load_checkpoint, resolve_model_path
