"""Evaluation: STS, MTEB (``bivec.evaluation.mteb_wrapper``, imported on demand because mteb is
heavy), word-level probes, and result reports."""

from bivec.correlation import pair_correlations
from bivec.evaluation.probes import ProbeConfig, ProbeResult, evaluate_word_task, read_conll
from bivec.evaluation.report import EvalResult, compare_markdown, compare_plot
from bivec.evaluation.sts import (
    STSResult,
    evaluate_pairs,
    evaluate_sts,
    read_sts_dataset,
    read_sts_file,
)

__all__ = [
    "EvalResult",
    "ProbeConfig",
    "ProbeResult",
    "STSResult",
    "compare_markdown",
    "compare_plot",
    "evaluate_pairs",
    "evaluate_sts",
    "evaluate_word_task",
    "pair_correlations",
    "read_conll",
    "read_sts_dataset",
    "read_sts_file",
]
