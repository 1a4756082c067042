"""Correlation of embedding similarities with gold scores: below both STS evaluation and the
precision check, which share it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pair_correlations(scores: Sequence[float], first: np.ndarray, second: np.ndarray) -> tuple[float, float]:
    """Spearman and Pearson (x100) of the cosine of each row pair (``first[i]``, ``second[i]``)
    against ``scores``."""
    from scipy.stats import pearsonr, spearmanr

    cosine = np.sum(first * second, axis=1) / np.linalg.norm(first, axis=1) / np.linalg.norm(second, axis=1)
    return 100 * float(spearmanr(scores, cosine).statistic), 100 * float(pearsonr(scores, cosine).statistic)
