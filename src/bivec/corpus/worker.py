"""The unit of work of both engines: one block of texts in, vectors and bad rows out."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bivec.encoder import DEFAULT_BATCH_SIZE
from bivec.models.default import DEFAULT_MODEL_NAME


@dataclass(frozen=True)
class EncoderSettings:
    """How each worker loads and runs its Encoder (see ``Encoder.from_pretrained`` / ``encode``).

    Over-long texts are bad rows unless ``truncate`` is True; ``max_batch_tokens`` is the
    padded-token budget of one forward pass.

    Example:
        >>> EncoderSettings(model="~/models/my-llm2vec", pooling="mean", normalize=True)  # doctest: +SKIP
    """

    model: str | None = None
    pooling: str = "mean"
    max_length: int = 512
    dtype: str | None = None
    normalize: bool = False
    truncate: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    max_batch_tokens: int | None = None
    compile: bool = False

    def check(self, *, load_model_here: bool) -> None:
        """Raise a ValueError naming the bad setting before any worker starts; the model path is
        checked only where this process would load it (a remote cluster has its own files)."""
        import torch

        from bivec.models.loading import resolve_dtype, resolve_model_path
        from bivec.pooling import check_pooling_mode

        check_pooling_mode(self.pooling)
        for name in ("max_length", "batch_size", "max_batch_tokens"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        resolve_dtype(self.dtype, torch.device("cpu"))
        if load_model_here:
            resolve_model_path(self.model)

    def identity(self) -> dict[str, Any]:
        """The settings that decide the vectors; recorded in the manifest and in shard names."""
        model = f"bivec default: {DEFAULT_MODEL_NAME}" if self.model is None else str(Path(self.model).expanduser().resolve())
        fields = asdict(self)
        for speed_only in ("batch_size", "max_batch_tokens", "compile"):
            fields.pop(speed_only)
        return {**fields, "model": model}


class BlockEncoder:
    """A Ray Data callable class (one per actor) that the local engine also calls directly.

    Input: a pyarrow Table with one row per block, columns ``key`` (int), ``texts`` and
    ``instructions`` (lists of strings). Output: per block, ``key``, ``embeddings`` (float32
    bytes, rows of the good texts in order), ``dim`` and ``errors`` (JSON list of
    ``[position in block, reason]``).

    Example:
        >>> worker = BlockEncoder(EncoderSettings(model="tiny-model"))  # doctest: +SKIP
        >>> worker(pa.table({"key": [0], "texts": [["a text"]], "instructions": [[""]]}))  # doctest: +SKIP
    """

    def __init__(self, settings: EncoderSettings) -> None:
        from bivec.encoder import Encoder

        self.settings = settings
        self.encoder = Encoder.from_pretrained(
            settings.model, pooling=settings.pooling, max_length=settings.max_length, dtype=settings.dtype,
            compile=settings.compile,
        )

    def __call__(self, batch: pa.Table) -> pa.Table:
        keys, embeddings, errors = [], [], []
        for block in batch.to_pylist():
            vectors, bad = self.encode_block(block["texts"], block["instructions"])
            keys.append(block["key"])
            embeddings.append(vectors.tobytes())
            errors.append(json.dumps(bad))
        dims = [self.encoder.dim] * len(keys)
        return pa.table({"key": keys, "embeddings": pa.array(embeddings, pa.binary()), "dim": dims, "errors": errors})

    def encode_block(self, texts: list[str], instructions: list[str]) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """Vectors of the texts the encoder accepts, and ``(position, reason)`` for the others."""
        items = [[instruction, text] if instruction else text for instruction, text in zip(instructions, texts)]
        truncate = self.settings.truncate
        bad: list[tuple[int, str]] = []
        try:
            self.encoder.tokenize(items, truncate=truncate)
        except ValueError:
            # Rare: find the offending items one by one, so one bad text costs only its own row.
            for position, item in enumerate(items):
                try:
                    self.encoder.tokenize([item], truncate=truncate)
                except ValueError as exc:
                    bad.append((position, "text " + str(exc).removeprefix("inputs[0] ")))
        skip = {position for position, _ in bad}
        good = [item for position, item in enumerate(items) if position not in skip]
        if not good:
            return np.zeros((0, self.encoder.dim), dtype=np.float32), bad
        vectors = self.encoder.encode(
            good,
            batch_size=self.settings.batch_size,
            max_batch_tokens=self.settings.max_batch_tokens,
            normalize=self.settings.normalize,
            truncate=truncate,
            show_progress=False,
        )
        return vectors, bad
