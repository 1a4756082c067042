"""Training data files (the tiny causal LM, tiny_lm_dir, is in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def text_file(tmp_path_factory, tiny_sentences):
    """A text file with one of the tiny sentences per line."""
    path = tmp_path_factory.mktemp("text") / "sentences.txt"
    path.write_text("\n".join(tiny_sentences) + "\n")
    return path
