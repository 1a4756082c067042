"""Corpus files of random sentences over the tiny tokenizer's vocabulary."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def make_sentences(words):
    """``make_sentences(n, seed=0)``: n random sentences of 2 to 24 of the tiny tokenizer's words."""

    def sentences(n: int, seed: int = 0) -> list[str]:
        rng = random.Random(seed)
        return [" ".join(rng.choice(words) for _ in range(rng.randint(2, 24))) for _ in range(n)]

    return sentences


@pytest.fixture(scope="session")
def write_jsonl():
    """``write_jsonl(path, rows)``: write ``rows`` (dicts) as JSON lines; returns ``path``."""
    return _write_jsonl


@pytest.fixture
def corpus_file(tmp_path, make_sentences) -> Path:
    """2,000 rows: ids doc-0000.., texts of 2 to 24 words."""
    rows = [{"id": f"doc-{i:04d}", "text": text} for i, text in enumerate(make_sentences(2000))]
    return _write_jsonl(tmp_path / "corpus.jsonl", rows)
