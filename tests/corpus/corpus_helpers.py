"""Corpus files of random sentences over the tiny tokenizer's vocabulary (import the fixture by name)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from conftest import WORDS


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 24))) for _ in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def corpus_file(tmp_path) -> Path:
    """2,000 rows: ids doc-0000.., texts of 2 to 24 words."""
    rows = [{"id": f"doc-{i:04d}", "text": text} for i, text in enumerate(sentences(2000))]
    return write_jsonl(tmp_path / "corpus.jsonl", rows)
