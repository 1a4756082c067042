"""Embed a corpus of many texts into Parquet shards, locally or on Ray Data, resumably.

Example:
    >>> from bivec.corpus import CorpusConfig, embed_corpus, read_embeddings
    >>> summary = embed_corpus("docs/*.jsonl", "embeddings/", CorpusConfig(engine="ray"))  # doctest: +SKIP
    >>> ids, vectors = read_embeddings("embeddings/")  # doctest: +SKIP
"""

from bivec.corpus.embed import CorpusConfig, CorpusSummary, embed_corpus
from bivec.corpus.engines import RayOptions
from bivec.corpus.reader import BadRow, Columns, CorpusError, find_input_files, read_corpus
from bivec.corpus.shards import read_embeddings
from bivec.corpus.worker import BlockEncoder, WorkerSettings

__all__ = [
    "BadRow", "BlockEncoder", "Columns", "CorpusConfig", "CorpusError", "CorpusSummary", "WorkerSettings",
    "RayOptions", "embed_corpus", "find_input_files", "read_corpus", "read_embeddings",
]
