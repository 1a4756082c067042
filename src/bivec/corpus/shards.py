"""Output layout: Parquet shards named from their content, written atomically, a manifest,
and a reader for the result."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from bivec.corpus.reader import Corpus, CorpusError
from bivec.textio import atomic_write
from bivec.vectors import write_vector_table

MANIFEST = "manifest.json"
ERRORS = "errors.jsonl"
_ERRORS_KEY = b"bivec.errors"


@dataclass(frozen=True)
class Shard:
    """Good rows ``start:stop`` of the corpus, saved as ``name`` in the output directory."""

    index: int
    start: int
    stop: int
    name: str


def plan_shards(corpus: Corpus, shard_size: int, identity: dict[str, Any]) -> list[Shard]:
    """Cut the good rows into shards of ``shard_size``; each name carries a hash of the rows'
    ids, texts and instructions and of the encoder settings, so a rerun on the same input
    finds its finished shards, and a changed row or setting never reuses a stale one."""
    settings = json.dumps(identity, sort_keys=True).encode()
    shards = []
    for index, start in enumerate(range(0, len(corpus.ids), shard_size)):
        stop = min(start + shard_size, len(corpus.ids))
        digest = hashlib.sha256(settings)
        for i in range(start, stop):
            for value in (corpus.ids[i], corpus.texts[i], corpus.instructions[i]):
                data = value.encode()
                digest.update(len(data).to_bytes(8, "little") + data)
        shards.append(Shard(index, start, stop, f"part-{index:05d}-{digest.hexdigest()[:16]}.parquet"))
    return shards


def write_shard(path: Path, ids: list[str], vectors: np.ndarray, errors: list[dict[str, Any]]) -> None:
    """Save (id, embedding) rows; the shard's bad rows ride along in the file's metadata, so
    they survive a resume exactly like its vectors."""
    write_vector_table(path, "id", ids, vectors, {_ERRORS_KEY: json.dumps(errors)})


def finished_shard(path: Path, expected_rows: int) -> list[dict[str, Any]] | None:
    """The bad rows stored in a finished shard, or None when it is absent or incomplete."""
    if not path.is_file():
        return None
    try:
        metadata = pq.read_metadata(path)
    except (OSError, ValueError):
        return None
    errors = json.loads((metadata.metadata or {}).get(_ERRORS_KEY, b"[]"))
    return errors if metadata.num_rows + len(errors) == expected_rows else None


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))


def write_errors(path: Path, errors: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in errors)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def read_manifest(output: str | Path) -> dict[str, Any]:
    path = Path(output) / MANIFEST
    if not path.is_file():
        raise CorpusError(f"output {str(output)!r} has no {MANIFEST}; it is not an embed-corpus output")
    return json.loads(path.read_text(encoding="utf-8"))


def read_embeddings(output: str | Path) -> tuple[list[str], np.ndarray]:
    """Ids and float32 vectors of a finished embed-corpus output, in input order, all in memory
    (for outputs larger than memory, read the shards listed in the manifest one by one).

    Example:
        >>> ids, vectors = read_embeddings("embeddings/")  # doctest: +SKIP
        >>> vectors.shape  # doctest: +SKIP
        (1000000, 576)
    """
    manifest = read_manifest(output)
    if manifest.get("status") != "complete":
        raise CorpusError(f"output {str(output)!r} is unfinished; run the same embed-corpus command again to complete it")
    ids: list[str] = []
    dim = manifest["dim"]
    parts = [np.zeros((0, dim), dtype=np.float32)]
    for shard in manifest["shards"]:
        table = pq.read_table(Path(output) / shard["file"])
        ids.extend(table.column("id").to_pylist())
        embedding = table.column("embedding").combine_chunks()
        parts.append(embedding.flatten().to_numpy().reshape(len(table), dim))
    return ids, np.concatenate(parts)
