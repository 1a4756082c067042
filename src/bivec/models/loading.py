"""Resolve model paths, dtypes and tokenizers for local Hugging Face model directories."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from bivec.models.default import ensure_default_model

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


def resolve_model_path(path: str | Path | None) -> Path:
    """A local model directory: ``None`` is the embedded default model; a hub name is looked up
    in the local Hugging Face cache only, never downloaded."""
    if path is None:
        return ensure_default_model()
    local = Path(path).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise FileNotFoundError(f"model path {str(path)!r} has no config.json, so it is not a model directory")
        return local
    if local.exists():
        raise FileNotFoundError(f"model path {str(path)!r} is a file; expected a model directory")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        return Path(snapshot_download(str(path), local_files_only=True))
    except (HFValidationError, OSError, ValueError) as exc:
        raise FileNotFoundError(
            f"model path {str(path)!r} does not exist, and no copy of it is in the local Hugging Face cache "
            "(bivec never downloads models)"
        ) from exc


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` picks CUDA when present, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None`` is float32 on the CPU (exact) and bfloat16 on CUDA (native there)."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in set(_DTYPES.values()):
            raise ValueError(f"dtype {dtype} is not supported; use float32, bfloat16 or float16")
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(sorted(_DTYPES))}")
    return _DTYPES[key]


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """A fast tokenizer (its character offsets locate the text inside instructions and chat
    templates) with a pad token set."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    if not tokenizer.is_fast:
        raise ValueError(
            f"the tokenizer in {str(path)!r} is a slow (Python) tokenizer; bivec needs a fast tokenizer "
            "(tokenizer.json) to map tokens to characters"
        )
    if tokenizer.pad_token_id is None:
        # Any id works: padded positions are masked out of attention and pooling.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token or tokenizer.convert_ids_to_tokens(0)
    return tokenizer
