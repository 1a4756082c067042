"""A drop-in for the reference ``llm2vec.LLM2Vec`` class, so its users' code runs unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bivec.encoder import EncodeInput, Encoder


class LLM2Vec:
    """The reference library's interface on bivec's encoder.

    Example:
        >>> from bivec import LLM2Vec
        >>> l2v = LLM2Vec.from_pretrained("path/to/base", "path/to/mntp-adapter",
        ...                               pooling_mode="mean", torch_dtype=torch.float32)  # doctest: +SKIP
        >>> l2v.encode(["a text", ["Given a query, retrieve passages:", "a query"]]).shape  # doctest: +SKIP
        torch.Size([2, 4096])
    """

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder

    @property
    def model(self):
        return self.encoder.model

    @property
    def tokenizer(self):
        return self.encoder.tokenizer

    @property
    def pooling_mode(self) -> str:
        return self.encoder.pooling

    @property
    def max_length(self) -> int:
        return self.encoder.max_length

    @classmethod
    def from_pretrained(
        cls,
        base_model_name_or_path: str | Path | None,
        peft_model_name_or_path: str | Path | None = None,
        enable_bidirectional: bool = True,
        extra_model_name_or_path: str | Path | Sequence[str | Path] | None = None,
        *,
        pooling_mode: str | None = None,
        max_length: int | None = None,
        torch_dtype: str | torch.dtype | None = None,
        device_map: str | torch.device | None = None,
        **kwargs: Any,
    ) -> LLM2Vec:
        """Load a base model (or a published ``-mntp`` directory, whose adapter names its base), then
        the peft adapter and any extra adapters, merged in order; see :meth:`Encoder.from_pretrained`.

        Accepts the reference's keyword arguments; ``merge_peft`` is accepted for compatibility
        (adapters are always merged), ``skip_instruction`` must stay True and ``doc_max_length``
        is not used (texts are cut at ``max_length``). ``pooling_mode`` and ``max_length`` default
        to the checkpoint's ``llm2vec_config.json``. ``use_safetensors=False`` allows pickle
        checkpoints; ``trust_remote_code`` is off unless given.
        """
        kwargs.pop("merge_peft", None)
        kwargs.pop("doc_max_length", None)
        if not kwargs.pop("skip_instruction", True):
            raise ValueError("skip_instruction=False is not supported: bivec always pools over the text only")
        dtype = kwargs.pop("dtype", torch_dtype)
        attn_implementation = kwargs.pop("attn_implementation", "sdpa")
        allow_pickle = not kwargs.pop("use_safetensors", True)
        trust_remote_code = kwargs.pop("trust_remote_code", False)
        if kwargs:
            raise TypeError(f"LLM2Vec.from_pretrained got unexpected arguments: {', '.join(sorted(kwargs))}")
        if isinstance(extra_model_name_or_path, (str, Path)):
            extra_model_name_or_path = [extra_model_name_or_path]
        adapters = [p for p in (peft_model_name_or_path, *(extra_model_name_or_path or [])) if p is not None]
        encoder = Encoder.from_pretrained(
            base_model_name_or_path,
            adapters=adapters,
            bidirectional=enable_bidirectional,
            pooling=pooling_mode,
            max_length=max_length,
            dtype=dtype,
            device=device_map if device_map != "auto" else None,
            attn_implementation=attn_implementation,
            allow_pickle=allow_pickle,
            trust_remote_code=trust_remote_code,
        )
        return cls(encoder)

    def encode(
        self,
        sentences: EncodeInput | Sequence[EncodeInput],
        batch_size: int = 32,
        show_progress_bar: bool = True,
        convert_to_numpy: bool = False,
        convert_to_tensor: bool = False,
        device: str | torch.device | None = None,
    ) -> torch.Tensor | np.ndarray:
        """Embed sentences (strings or [instruction, text] pairs); a torch tensor unless
        ``convert_to_numpy`` is set, like the reference."""
        vectors = self.encoder.encode(sentences, batch_size=batch_size, show_progress=show_progress_bar)
        if convert_to_numpy and not convert_to_tensor:
            return vectors
        tensor = torch.from_numpy(vectors)
        return tensor.to(device) if device is not None else tensor
