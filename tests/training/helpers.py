"""A tiny causal LM directory with a tokenizer that has a mask token, and small data files."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import tiny_config, tiny_tokenizer

SENTENCES = [
    "a man plays a guitar .", "a woman plays the piano .", "the dog runs in the park .",
    "a cat sits on the mat .", "the child eats food .", "the stock market fell sharply today .",
    "someone is playing music .", "a man is playing the guitar .", "the market rose today .",
    "a dog is playing in the park .", "the woman eats food .", "a child sits on a mat .",
]


def tiny_lm(seed: int = 0):
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_config("llama", "sdpa")).eval()


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-lm")
    tiny_lm().save_pretrained(path)
    tokenizer = tiny_tokenizer()
    tokenizer.add_special_tokens({"mask_token": "[MASK]"})
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "sentences.txt"
    path.write_text("\n".join(SENTENCES) + "\n")
    return path
