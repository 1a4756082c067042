"""Evaluation: sentence similarity (STS) now; MTEB and word-level probes build on it."""

from bivec.evaluation.sts import STSResult, evaluate_sts, read_sts_file

__all__ = ["STSResult", "evaluate_sts", "read_sts_file"]
