"""The unit of work of both engines: one block of texts in, vectors and bad rows out."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from bivec.encoder import DEFAULT_BATCH_SIZE, InputTooLongError
from bivec.models.default import DEFAULT_BASE, DEFAULT_ENCODER
from bivec.models.loading import LoadOptions

if TYPE_CHECKING:
    from bivec.models.checkpoint import Checkpoint


@dataclass(frozen=True)
class WorkerSettings(LoadOptions):
    """How each worker loads its Encoder (the load options every command shares; ``pooling``,
    ``max_length`` and ``echo`` left at None come from the checkpoint) and runs ``encode``.

    Over-long texts are bad rows unless ``truncate`` is True; ``max_batch_tokens`` is the
    padded-token budget of one forward pass. ``dtype`` defaults to None (float32 on the CPU,
    bfloat16 on CUDA), not ``auto``: every worker must produce vectors in the same precision.

    Example:
        >>> WorkerSettings(model="~/models/my-llm2vec", pooling="mean", normalize=True)  # doctest: +SKIP
    """

    dtype: str | None = None
    normalize: bool = False
    truncate: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    max_batch_tokens: int | None = None

    def check(self, *, load_model_here: bool) -> Checkpoint | None:
        """Raise a ValueError naming the bad setting before any worker starts; the model path is
        checked, and its resolved checkpoint returned, only where this process would load it (a
        remote cluster has its own files)."""
        import torch

        from bivec.backends import check_backend_name
        from bivec.models.checkpoint import resolve_checkpoint
        from bivec.models.loading import resolve_dtype
        from bivec.pooling import check_pooling_mode

        if self.pooling is not None:
            check_pooling_mode(self.pooling)
        for name in ("max_length", "batch_size", "max_batch_tokens"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        resolve_dtype(self.dtype, torch.device("cpu"))
        if check_backend_name(self.backend) == "auto":
            raise ValueError("--backend auto: give the backend (torch, onnx, openvino or onnx-int8), so that every worker runs the same one")
        return resolve_checkpoint(self.model, self.adapters, allow_pickle=self.allow_pickle) if load_model_here else None

    def identity(self, checkpoint: Checkpoint | None) -> dict[str, Any]:
        """The settings that decide the vectors; recorded in the manifest and in shard names. Given
        the checkpoint this process loads (from :meth:`check`), they include the settings it records
        and a fingerprint of its weights, so that a ``bivec_config.json`` changed or an adapter trained
        again between two runs of one output is noticed like a changed flag."""
        from bivec.models.checkpoint import weights_fingerprint

        named = self.model is None or str(self.model) in (DEFAULT_ENCODER, DEFAULT_BASE)
        model = f"bivec: {self.model or DEFAULT_ENCODER}" if named else str(Path(self.model).expanduser().resolve())
        fields = asdict(self)
        for not_in_vectors in ("batch_size", "max_batch_tokens", "compile", "allow_pickle", "trust_remote_code"):
            fields.pop(not_in_vectors)
        identity = {**fields, "model": model, "adapters": [str(Path(a).expanduser().resolve()) for a in self.adapters]}
        if checkpoint is not None:
            identity["checkpoint_settings"] = asdict(checkpoint.settings)
            identity["weights"] = weights_fingerprint(checkpoint)
        return identity


class BlockEncoder:
    """A Ray Data callable class (one per actor) that the local engine also calls directly.

    Input: a pyarrow Table with one row per block, columns ``key`` (int), ``texts`` and
    ``instructions`` (lists of strings). Output: per block, ``key``, ``embeddings`` (float32
    bytes, rows of the good texts in order), ``dim``, ``errors`` (JSON list of
    ``[position in block, reason]``) and ``cut`` (how many texts were cut to ``max_length``).

    Example:
        >>> worker = BlockEncoder(WorkerSettings(model="tiny-model"))  # doctest: +SKIP
        >>> worker(pa.table({"key": [0], "texts": [["a text"]], "instructions": [[""]]}))  # doctest: +SKIP
    """

    def __init__(self, settings: WorkerSettings) -> None:
        from bivec.encoder import Encoder

        self.settings = settings
        self.encoder = Encoder.from_pretrained(settings.model, **settings.encoder_kwargs())

    def __call__(self, batch: pa.Table) -> pa.Table:
        keys, embeddings, errors, cuts = [], [], [], []
        for block in batch.to_pylist():
            vectors, bad, cut = self.encode_block(block["texts"], block["instructions"])
            keys.append(block["key"])
            embeddings.append(vectors.tobytes())
            errors.append(json.dumps(bad))
            cuts.append(cut)
        dims = [self.encoder.dim] * len(keys)
        return pa.table({"key": keys, "embeddings": pa.array(embeddings, pa.binary()), "dim": dims, "errors": errors,
                         "cut": cuts})

    def encode_block(self, texts: list[str], instructions: list[str]) -> tuple[np.ndarray, list[tuple[int, str]], int]:
        """Vectors of the texts the encoder accepts, ``(position, reason)`` for the others, and how
        many of the accepted were cut to ``max_length`` (``truncate``)."""
        items = [[instruction, text] if instruction else text for instruction, text in zip(instructions, texts)]
        truncate = self.settings.truncate
        bad: list[tuple[int, str]] = []
        try:
            good = self.encoder.tokenize(items, truncate=truncate)
        except InputTooLongError:
            # Rare: find the offending items one by one, so one bad text costs only its own row.
            good = []
            for position, item in enumerate(items):
                try:
                    good += self.encoder.tokenize([item], truncate=truncate)
                except InputTooLongError as exc:
                    bad.append((position, "text " + exc.reason))
        if not good:
            return np.zeros((0, self.encoder.dim), dtype=np.float32), bad, 0
        vectors = self.encoder.encode_tokenized(
            good,
            batch_size=self.settings.batch_size,
            max_batch_tokens=self.settings.max_batch_tokens,
            normalize=self.settings.normalize,
            show_progress=False,
        )
        return vectors, bad, sum(t.truncated for t in good)
