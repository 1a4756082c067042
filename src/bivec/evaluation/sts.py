"""STS: cosine similarity of sentence pairs against gold scores, Spearman and Pearson x100."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np


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
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            fields = line.rstrip("\n").split("\t")
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
    if not scores:
        raise ValueError(f"{path}: no sentence pairs")
    return scores, first, second


def evaluate_sts(encoder, path: str | Path, *, instruction: str = "", batch_size: int = 32) -> STSResult:
    """Spearman and Pearson (x100) of cosine similarity against the gold scores of one file."""
    from scipy.stats import pearsonr, spearmanr

    scores, first, second = read_sts_file(path)
    sentences = first + second
    vectors = encoder.encode([[instruction, s] for s in sentences] if instruction else sentences,
                             batch_size=batch_size, normalize=True)
    cosine = np.sum(vectors[: len(first)] * vectors[len(first):], axis=1)
    return STSResult(
        name=Path(path).stem,
        pairs=len(scores),
        spearman=100 * float(spearmanr(scores, cosine).statistic),
        pearson=100 * float(pearsonr(scores, cosine).statistic),
    )
