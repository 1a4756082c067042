"""STS: cosine similarity of sentence pairs against gold scores, Spearman and Pearson x100."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bivec.correlation import pair_correlations
from bivec.encoder import DEFAULT_BATCH_SIZE
from bivec.textio import read_text_file


@dataclass(frozen=True)
class STSResult:
    name: str
    pairs: int
    spearman: float
    pearson: float


def read_sts_file(path: str | Path) -> tuple[list[float], list[str], list[str]]:
    """Read ``score<TAB>sentence1<TAB>sentence2`` lines; a malformed line raises a ValueError
    that names the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"STS file {str(path)!r} does not exist")
    scores, first, second = [], [], []
    for number, line in enumerate(read_text_file(path).splitlines(), 1):
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"{path}:{number}: expected 3 tab-separated columns (score, sentence1, sentence2), got {len(fields)}")
        try:
            score = float(fields[0])
        except ValueError:
            raise ValueError(f"{path}:{number}: score {fields[0]!r} is not a number") from None
        if not math.isfinite(score):
            raise ValueError(f"{path}:{number}: score {fields[0]!r} is not finite")
        if not fields[1].strip() or not fields[2].strip():
            raise ValueError(f"{path}:{number}: empty sentence")
        scores.append(score)
        first.append(fields[1])
        second.append(fields[2])
    check_scores(scores, str(path))
    return scores, first, second


def check_scores(scores: Sequence[float], where: str) -> None:
    """Refuse gold scores a correlation is undefined for: fewer than two pairs, or all equal."""
    if not scores:
        raise ValueError(f"{where}: no sentence pairs")
    if len(scores) < 2:
        raise ValueError(f"{where}: 1 sentence pair; a correlation needs at least 2")
    if min(scores) == max(scores):
        raise ValueError(f"{where}: every gold score is {scores[0]:g}; a correlation needs scores that differ")


_DATA_FILE_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def _load_dataset(datasets, path: Path, name: str, split: str):
    if path.is_file():
        if path.suffix not in _DATA_FILE_BUILDERS:
            raise ValueError(f"dataset file {name!r}: unsupported type {path.suffix!r} (use {', '.join(_DATA_FILE_BUILDERS)})")
        if path.stat().st_size == 0:
            raise ValueError(f"dataset file {name!r} is empty")
        return datasets.load_dataset(_DATA_FILE_BUILDERS[path.suffix], data_files=name, split="train")
    return datasets.load_dataset(name, split=split)


def read_sts_dataset(
    source: str | Path, *, split: str = "test", sentence1: str = "sentence1", sentence2: str = "sentence2",
    score: str = "score",
) -> tuple[list[float], list[str], list[str]]:
    """Read pairs from a `datasets` dataset: a directory written by ``save_to_disk``, a local
    .csv/.json/.jsonl/.parquet file (all its rows; ``split`` is ignored), or a hub name already in
    the local cache. Bad rows raise a ValueError naming the dataset and row.

    Example:
        >>> scores, first, second = read_sts_dataset("mteb/stsbenchmark-sts", split="test")  # doctest: +SKIP
    """
    import datasets

    name = str(source)
    try:
        if (Path(source) / "state.json").is_file() or (Path(source) / "dataset_dict.json").is_file():
            data = datasets.load_from_disk(name)
            if isinstance(data, datasets.DatasetDict):
                if split not in data:
                    raise ValueError(f"dataset {name!r} has no split {split!r} (it has {', '.join(data)})")
                data = data[split]
        else:
            data = _load_dataset(datasets, Path(source), name, split)
    except OSError as exc:  # missing files, offline hub and unknown names all land here
        raise FileNotFoundError(
            f"dataset {name!r} (split {split!r}) cannot be loaded: it is not a local dataset and not in the local "
            f"cache, or the hub cannot be reached ({type(exc).__name__}: {exc})"
        ) from exc
    missing = [c for c in (sentence1, sentence2, score) if c not in data.column_names]
    if missing:
        raise ValueError(f"dataset {name!r} has no column {', '.join(map(repr, missing))} (columns: {', '.join(data.column_names)})")
    scores, first, second = [], [], []
    for row, (gold, a, b) in enumerate(zip(data[score], data[sentence1], data[sentence2])):
        try:
            value = float(gold)
        except (TypeError, ValueError):
            raise ValueError(f"dataset {name!r} row {row}: score {gold!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"dataset {name!r} row {row}: score {gold!r} is not finite")
        if not isinstance(a, str) or not isinstance(b, str) or not a.strip() or not b.strip():
            raise ValueError(f"dataset {name!r} row {row}: empty or non-text sentence")
        scores.append(value)
        first.append(a)
        second.append(b)
    check_scores(scores, f"dataset {name!r} split {split!r}")
    return scores, first, second


def evaluate_pairs(
    encoder, scores: list[float], first: list[str], second: list[str], *, name: str, instruction: str = "",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> STSResult:
    """Spearman and Pearson (x100) of the cosine of each pair's embeddings against ``scores``;
    ``instruction`` goes before both sentences of a pair (STS is symmetric)."""
    if not len(scores) == len(first) == len(second) or not scores:
        raise ValueError(f"{name}: need as many scores as sentence pairs, at least one (got {len(scores)} scores, "
                         f"{len(first)} first and {len(second)} second sentences)")
    check_scores(scores, name)
    sentences = first + second
    vectors = encoder.encode([[instruction, s] for s in sentences] if instruction else sentences,
                             batch_size=batch_size, normalize=True)
    spearman, pearson = pair_correlations(scores, vectors[: len(first)], vectors[len(first):])
    return STSResult(name=name, pairs=len(scores), spearman=spearman, pearson=pearson)


def evaluate_sts(encoder, path: str | Path, *, instruction: str = "", batch_size: int = DEFAULT_BATCH_SIZE) -> STSResult:
    """Spearman and Pearson (x100) of cosine similarity against the gold scores of one file.

    Example:
        >>> evaluate_sts(encoder, "../shared/data/sts/sts12.tsv").spearman  # doctest: +SKIP
    """
    scores, first, second = read_sts_file(path)
    return evaluate_pairs(encoder, scores, first, second, name=Path(path).stem, instruction=instruction,
                          batch_size=batch_size)
