"""Model loading: the embedded default model and local Hugging Face directories."""

from bivec.models.default import DEFAULT_MODEL_NAME, default_model_dir, ensure_default_model
from bivec.models.loading import load_tokenizer, resolve_dtype, resolve_model_path

__all__ = [
    "DEFAULT_MODEL_NAME",
    "default_model_dir",
    "ensure_default_model",
    "load_tokenizer",
    "resolve_dtype",
    "resolve_model_path",
]
