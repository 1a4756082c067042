"""Model loading: the embedded default model, local Hugging Face directories, the LLM2Vec
checkpoint layout (base + stacked LoRA adapters) and safe loading."""

from bivec.models.adapters import apply_adapters
from bivec.models.checkpoint import Checkpoint, EncoderSettings, load_model, resolve_checkpoint
from bivec.models.default import DEFAULT_MODEL_NAME, default_model_dir, ensure_default_model
from bivec.models.loading import load_tokenizer, resolve_dtype, resolve_model_path
from bivec.models.safety import UnsafeCheckpointError

__all__ = [
    "DEFAULT_MODEL_NAME",
    "Checkpoint",
    "EncoderSettings",
    "UnsafeCheckpointError",
    "apply_adapters",
    "default_model_dir",
    "ensure_default_model",
    "load_model",
    "load_tokenizer",
    "resolve_checkpoint",
    "resolve_dtype",
    "resolve_model_path",
]
