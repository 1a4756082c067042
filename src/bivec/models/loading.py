"""Resolve model paths, dtypes and tokenizers for local Hugging Face model directories."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from bivec.models.default import (
    DEFAULT_BASE,
    DEFAULT_ENCODER,
    ensure_default_model,
    ensure_gguf_model,
    shipped_encoder_dir,
)

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
    """A local model directory: ``None`` (or ``"bivec/default"``) is the trained default encoder
    shipped with bivec, ``"bivec/default-base"`` the untrained base it was trained from (also the
    fallback where no trained encoder is shipped); a ``.gguf`` file is converted once into a
    cached folder; a hub name is looked up in the local Hugging Face cache only, never downloaded."""
    if path is None or str(path) == DEFAULT_ENCODER:
        return shipped_encoder_dir() or ensure_default_model()
    if str(path) == DEFAULT_BASE:
        return ensure_default_model()
    if str(path).lower().endswith(".gguf") and Path(path).expanduser().is_file():
        return ensure_gguf_model(path)
    return resolve_local_dir(path, ("config.json", "adapter_config.json", "bivec_config.json"), "model path")


def resolve_local_dir(path: str | Path, markers: tuple[str, ...], what: str) -> Path:
    """A local directory holding one of ``markers``, or the snapshot of a hub name in the local
    Hugging Face cache (never downloaded); ``what`` names the argument in errors."""
    local = Path(path).expanduser()
    if local.is_dir():
        if not any((local / marker).is_file() for marker in markers):
            raise FileNotFoundError(f"{what} {str(path)!r} has no {' or '.join(markers)}")
        return local
    if local.exists():
        raise FileNotFoundError(f"{what} {str(path)!r} is a file; expected a directory")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        snapshot = Path(snapshot_download(str(path), local_files_only=True))
    except (HFValidationError, OSError, ValueError) as exc:
        raise FileNotFoundError(
            f"{what} {str(path)!r} does not exist, and no copy of it is in the local Hugging Face cache "
            "(bivec never downloads models)"
        ) from exc
    return resolve_local_dir(snapshot, markers, what)


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
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(sorted(_DTYPES))} "
                         "(Encoder.from_pretrained also takes auto and int8)")
    return _DTYPES[key]


def load_tokenizer(path: str | Path, *, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """A fast tokenizer (its character offsets locate the text inside instructions and chat
    templates) with a pad token set; code shipped with it runs only with ``trust_remote_code``."""
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if not tokenizer.is_fast:
        raise ValueError(
            f"the tokenizer in {str(path)!r} is a slow (Python) tokenizer; bivec needs a fast tokenizer "
            "(tokenizer.json) to map tokens to characters"
        )
    if tokenizer.pad_token_id is None:
        # Any id works: padded positions are masked out of attention and pooling.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token or tokenizer.convert_ids_to_tokens(0)
    return tokenizer


@dataclass(frozen=True)
class LoadOptions:
    """How to load an encoder, as every command takes it: a setting left at ``None`` comes from the
    checkpoint (``bivec_config.json`` / ``llm2vec_config.json``), else the encoder's default.

    Example:
        >>> options = LoadOptions(model="out/encoder", causal=True)  # doctest: +SKIP
        >>> Encoder.from_pretrained(options.model, **options.encoder_kwargs())  # doctest: +SKIP
    """

    model: str | None = None
    adapters: tuple[str, ...] = ()
    causal: bool = False
    pooling: str | None = None
    max_length: int | None = None
    dtype: str | None = "auto"
    compile: bool = False
    allow_pickle: bool = False
    trust_remote_code: bool = False
    backend: str = "torch"
    echo: bool | None = None

    def encoder_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``Encoder.from_pretrained`` (after the path)."""
        return dict(adapters=list(self.adapters), bidirectional=False if self.causal else None, pooling=self.pooling,
                    max_length=self.max_length, dtype=self.dtype, allow_pickle=self.allow_pickle,
                    trust_remote_code=self.trust_remote_code, compile=self.compile, backend=self.backend,
                    echo=self.echo)
