"""Everything that touches Hugging Face internals: the encoder patch (one loop for the
masked and the token-dropping path), attention on HF weights, ToPModel, checkpoints."""
from .encoder import apply_patch
from .loading import load_checkpoint, load_classifier, load_tokenizer, resolve_model_path
from .model import ToPModel, ToPOutput
