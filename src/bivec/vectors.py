"""Embeddings out: float32 vectors saved as .npy, .parquet or .jsonl, and quantised codes (int8
with a per-dimension scale, or packed sign bits).

The scale is part of quantised codes, so codes can be read back (``dequantize``) and batches
quantised separately can share one scale (pass ``scale=`` from a first batch or a calibration
set), which keeps their codes comparable.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from bivec.textio import atomic_write, check_writable_dir

QuantizationKind = Literal["int8", "binary"]
KINDS: tuple[str, ...] = ("int8", "binary")
_INT8_MAX = 127
OUTPUT_SUFFIXES = (".npy", ".parquet", ".jsonl")


@dataclass(frozen=True)
class QuantizedVectors:
    """Quantised vectors and how to read them back.

    ``int8``: ``codes`` is int8 (n, dim) and a value is ``code * scale[d]``.
    ``binary``: ``codes`` is uint8 (n, ceil(dim / 8)), one bit per dimension (``numpy.packbits``
    order, 1 where the value is positive) and a value is ``+scale[d]`` or ``-scale[d]``.
    """

    kind: str
    codes: np.ndarray
    scale: np.ndarray
    dim: int

    def dequantize(self) -> np.ndarray:
        """Float32 vectors (n, dim) rebuilt from the codes and scale."""
        if self.kind == "int8":
            return self.codes.astype(np.float32) * self.scale
        signs = np.unpackbits(self.codes, axis=1, count=self.dim).astype(np.float32) * 2 - 1
        return signs * self.scale

    def save(self, path: str | Path) -> Path:
        """Write codes, scale, kind and dim to an ``.npz`` file."""
        path = Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"quantised vectors are saved as .npz (codes + scale), got {path}")
        arrays = dict(kind=np.array(self.kind), codes=self.codes, scale=self.scale, dim=np.array(self.dim))

        def write(tmp: str) -> None:
            # Through an open file: np.savez would add ".npz" to the temporary file's name.
            with open(tmp, "wb") as out:
                np.savez(out, **arrays)

        atomic_write(path, write)
        return path

    @classmethod
    def load(cls, path: str | Path) -> QuantizedVectors:
        """Read a file written by :meth:`save`."""
        with np.load(path) as data:
            missing = {"kind", "codes", "scale", "dim"} - set(data.files)
            if missing:
                raise ValueError(f"{path} is not a bivec quantised-vectors file: missing {', '.join(sorted(missing))}")
            return cls(str(data["kind"]), data["codes"], data["scale"], int(data["dim"]))


def _check_vectors(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.floating):
        raise ValueError(f"vectors must be a 2-D float array (n, dim), got {vectors.dtype} with shape {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError("vectors contain NaN or infinite values")
    return vectors.astype(np.float32, copy=False)


def _check_scale(scale: np.ndarray, dim: int) -> np.ndarray:
    scale = np.asarray(scale, dtype=np.float32)
    if scale.shape != (dim,):
        raise ValueError(f"scale must have shape ({dim},), one value per dimension, got {scale.shape}")
    if not (np.isfinite(scale).all() and (scale >= 0).all()):
        raise ValueError("scale must be finite and non-negative")
    return scale


def quantize(vectors: np.ndarray, kind: QuantizationKind, *, scale: np.ndarray | None = None) -> QuantizedVectors:
    """Quantise float vectors (n, dim) to ``"int8"`` or ``"binary"`` codes, recording the scale.

    int8 is symmetric per dimension: by default ``scale[d] = max |v[:, d]| / 127``, so the largest
    value of each dimension maps to +-127; values beyond a given ``scale`` are clipped. binary keeps
    the sign; its ``scale[d]`` (default: mean ``|v[:, d]|``, the best reconstruction for a sign code)
    is only used by ``dequantize``.

    Example:
        >>> q = quantize(np.array([[0.5, -1.0], [0.25, 0.5]]), "int8")
        >>> q.codes.tolist(), q.scale.tolist()
        ([[127, -127], [64, 64]], [0.003937007859349251, 0.007874015718698502])
        >>> quantize(np.array([[0.5, -1.0]]), "binary").codes.tolist()
        [[128]]
    """
    if kind not in KINDS:
        raise ValueError(f"unknown quantisation {kind!r}; choose one of {', '.join(KINDS)}")
    vectors = _check_vectors(vectors)
    dim = vectors.shape[1]
    magnitude = np.abs(vectors)
    if kind == "int8":
        if scale is None:
            scale = magnitude.max(axis=0, initial=0.0) / _INT8_MAX
            scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        scale = _check_scale(scale, dim)
        safe = np.where(scale > 0, scale, 1.0)
        codes = np.clip(np.rint(vectors / safe), -_INT8_MAX, _INT8_MAX).astype(np.int8)
        return QuantizedVectors(kind, codes, scale, dim)
    if scale is None:
        scale = magnitude.mean(axis=0) if len(vectors) else np.zeros(dim, dtype=np.float32)
    return QuantizedVectors(kind, np.packbits(vectors > 0, axis=1), _check_scale(scale, dim), dim)


def check_output_path(path: str | Path) -> None:
    """Refuse an output :func:`write_vectors` cannot write (its suffix, or a folder that does not
    exist or is not writable), before any work is done."""
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValueError(f"--output {path}: unsupported format; use {', '.join(OUTPUT_SUFFIXES)}")
    check_writable_dir(path.parent, f"--output {path}")


def write_vector_table(path: str | Path, key: str, keys: Sequence[str], vectors: np.ndarray,
                       metadata: dict[bytes, str] | None = None) -> None:
    """Save Parquet rows of a string column ``key`` and an ``embedding`` column (fixed-size float32
    lists), atomically; ``metadata`` goes into the file's schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float32, copy=False).ravel()), vectors.shape[1])
    table = pa.table({key: pa.array(list(keys), pa.string()), "embedding": embedding})
    if metadata:
        table = table.replace_schema_metadata(metadata)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def write_vectors(path: str | Path, texts: Sequence[str], vectors: np.ndarray) -> None:
    """Save ``vectors`` as .npy (vectors only), .parquet or .jsonl (columns ``text`` and ``embedding``).

    Example:
        >>> write_vectors("out.parquet", ["a text"], np.zeros((1, 4), dtype=np.float32))  # doctest: +SKIP
    """
    check_output_path(path)
    if len(texts) != len(vectors):
        raise ValueError(f"{len(texts)} texts but {len(vectors)} vectors")
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        write_vector_table(path, "text", texts, vectors)
        return

    def write(tmp: str) -> None:
        # Through an open file: np.save would add ".npy" to the temporary file's name.
        with open(tmp, "wb") as out:
            if suffix == ".npy":
                np.save(out, vectors)
                return
            for text, vector in zip(texts, vectors):
                row = {"text": text, "embedding": vector.tolist()}
                out.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))

    atomic_write(path, write)
