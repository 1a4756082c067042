"""Tiny random models and a tiny word-level tokenizer, built offline for fast tests."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import AutoConfig, AutoModel, PreTrainedTokenizerFast

WORDS = (
    "a an the man woman child dog cat plays play playing guitar music piano someone is are was "
    "eats food sits on mat runs park stock market fell rose sharply today query passage retrieve "
    "represent sentence similar given find text of for to and in with . , : ? !"
).split()
SPECIALS = ["[PAD]", "[UNK]", "<s>", "</s>", "<|user|>", "<|end|>"]
VOCAB_SIZE = 128
CHAT_TEMPLATE = "{% for m in messages %}<|user|> {{ m['content'] }} <|end|>{% endfor %}"

# Architectures the foundation must support, and whether their transformers class has SDPA.
ARCHITECTURES = {"llama": True, "mistral": True, "qwen2": True, "qwen3": True, "gemma2": False, "phi3": True}


def tiny_config(model_type: str, attn_implementation: str = "eager", **overrides):
    kwargs = dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        tie_word_embeddings=False,
    )
    kwargs.update(overrides)
    config = AutoConfig.for_model(model_type, **kwargs)
    config._attn_implementation = attn_implementation
    return config


def tiny_model(model_type: str = "llama", attn_implementation: str = "eager", seed: int = 0, **overrides):
    torch.manual_seed(seed)
    model = AutoModel.from_config(tiny_config(model_type, attn_implementation, **overrides))
    return model.eval()


def tiny_tokenizer(chat_template: bool = True) -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate(SPECIALS + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(SPECIALS)
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="[PAD]", unk_token="[UNK]"
    )
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A saved tiny Llama with the tiny tokenizer: a local model directory like a user's."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_model("llama", "sdpa").save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(autouse=True, scope="session")
def _precision_check_off(tmp_path_factory):
    """dtype="auto" would otherwise time float32 against bfloat16 at every first load of a tiny
    model (on CPUs with native bf16), and write its verdicts to the user's cache;
    tests/test_precision.py turns the candidates back on where it tests the check. Yields the
    real ``candidates``."""
    from bivec import precision

    cache = tmp_path_factory.mktemp("precision") / "precision.json"
    real = precision.candidates
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(precision, "_cache_path", lambda: cache)
        patch.setattr(precision, "candidates", lambda device: [])
        yield real


@pytest.fixture
def no_loading(monkeypatch):
    """Make any model load an assertion failure, for bad inputs that must be refused before it."""
    from bivec import Encoder

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was refused")

    monkeypatch.setattr(Encoder, "from_pretrained", refuse)
