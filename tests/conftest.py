"""Tiny random models and a tiny word-level tokenizer, built offline for fast tests.

Every helper is a fixture: factories (``make_tiny_model``, ``make_tiny_tokenizer``, ...) return a
function, constants are returned as they are, and the supported architectures parametrize the tests
that take ``architecture``, ``sdpa_architecture`` or ``arch_and_impl`` (pytest_generate_tests). Tests never import this
module."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, PreTrainedTokenizerFast

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
# Every (architecture, attention implementation) pair: eager everywhere, SDPA where the class has it.
IMPLEMENTATIONS = [(arch, impl) for arch, sdpa in ARCHITECTURES.items()
                   for impl in ("eager", "sdpa") if sdpa or impl == "eager"]

# Short sentences over the tiny vocabulary, for training data.
SENTENCES = [
    "a man plays a guitar .", "a woman plays the piano .", "the dog runs in the park .",
    "a cat sits on the mat .", "the child eats food .", "the stock market fell sharply today .",
    "someone is playing music .", "a man is playing the guitar .", "the market rose today .",
    "a dog is playing in the park .", "the woman eats food .", "a child sits on a mat .",
]


def _tiny_config(model_type: str, attn_implementation: str = "eager", **overrides):
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


def _tiny_model(model_type: str = "llama", attn_implementation: str = "eager", seed: int = 0, **overrides):
    torch.manual_seed(seed)
    model = AutoModel.from_config(_tiny_config(model_type, attn_implementation, **overrides))
    return model.eval()


def _tiny_tokenizer(chat_template: bool = True) -> PreTrainedTokenizerFast:
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


def _tiny_lm(seed: int = 0):
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(_tiny_config("llama", "sdpa")).eval()


def _build_base(out: Path, model_type: str = "llama", *, chat_template: bool = True, seed: int = 0) -> Path:
    """A base model directory: tiny random weights (safetensors) and the tiny tokenizer; 1024
    positions, so that bivec's default max_length fits."""
    attention = "sdpa" if ARCHITECTURES[model_type] else "eager"
    _tiny_model(model_type, attention, seed=seed, max_position_embeddings=1024).save_pretrained(out)
    _tiny_tokenizer(chat_template).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def make_tiny_config():
    """``make_tiny_config(model_type, attn_implementation="eager", **overrides)``: a tiny config."""
    return _tiny_config


@pytest.fixture(scope="session")
def make_tiny_model():
    """``make_tiny_model(model_type="llama", attn_implementation="eager", seed=0, **overrides)``: a
    tiny random base model (no LM head), in eval mode."""
    return _tiny_model


@pytest.fixture(scope="session")
def make_tiny_tokenizer():
    """``make_tiny_tokenizer(chat_template=True)``: the tiny word-level tokenizer; it adds <s>."""
    return _tiny_tokenizer


@pytest.fixture(scope="session")
def make_tiny_lm():
    """``make_tiny_lm(seed=0)``: a tiny random Llama causal LM (SDPA), in eval mode."""
    return _tiny_lm


@pytest.fixture(scope="session")
def build_base():
    """``build_base(out, model_type="llama", *, chat_template=True, seed=0)``: a base model
    directory for the checkpoint layouts of checkpoint_layouts.py; returns ``out``."""
    return _build_base


@pytest.fixture(scope="session")
def words():
    """The tiny tokenizer's words (their ids follow the special tokens')."""
    return WORDS


@pytest.fixture(scope="session")
def specials():
    """The tiny tokenizer's special tokens (ids 0 to len(specials) - 1)."""
    return SPECIALS


@pytest.fixture(scope="session")
def tiny_sentences():
    """Twelve short sentences over the tiny vocabulary."""
    return SENTENCES


@pytest.fixture(scope="session")
def architectures():
    """The supported architectures, and whether their transformers class has SDPA."""
    return ARCHITECTURES


# Arguments that tests take to run once per supported architecture: (values, ids).
ARCHITECTURE_PARAMETERS = {
    "architecture": (list(ARCHITECTURES), None),  # every supported model_type
    "sdpa_architecture": ([arch for arch, sdpa in ARCHITECTURES.items() if sdpa], None),  # those with SDPA
    "arch_and_impl": (IMPLEMENTATIONS, [f"{arch}-{impl}" for arch, impl in IMPLEMENTATIONS]),  # (model_type, attention)
}


@pytest.hookimpl(trylast=True)
def pytest_generate_tests(metafunc):
    """Parametrize the tests that take ``architecture``, ``sdpa_architecture`` or ``arch_and_impl``.
    Last, after a test's own parametrize marks, as a mark under them would: the test ids and their
    order are those of ``@pytest.mark.parametrize(name, values)`` written closest to the test."""
    for name, (values, ids) in ARCHITECTURE_PARAMETERS.items():
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, values, ids=ids)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A saved tiny Llama with the tiny tokenizer: a local model directory like a user's."""
    path = tmp_path_factory.mktemp("tiny-llama")
    _tiny_model("llama", "sdpa").save_pretrained(path)
    _tiny_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory):
    """A saved tiny causal LM with the tiny tokenizer plus a [MASK] token: a model to train."""
    path = tmp_path_factory.mktemp("tiny-lm")
    _tiny_lm().save_pretrained(path)
    tokenizer = _tiny_tokenizer()
    tokenizer.add_special_tokens({"mask_token": "[MASK]"})
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(autouse=True, scope="session")
def _precision_check_off(tmp_path_factory):
    """dtype="auto" would otherwise time float32 against bfloat16 at every first load of a tiny
    model (on CPUs with native bf16), and write its verdicts (and backend checks') to the user's cache;
    tests/test_precision.py turns the candidates back on where it tests the check. Yields the
    real ``candidates``."""
    from bivec import precision

    verdicts = tmp_path_factory.mktemp("verdicts")
    real = precision.candidates
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(precision, "_verdict_dir", lambda: verdicts)
        patch.setattr(precision, "candidates", lambda device: [])
        yield real


@pytest.fixture
def no_loading(monkeypatch):
    """Make any model load an assertion failure, for bad inputs that must be refused before it."""
    from bivec import Encoder

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was refused")

    monkeypatch.setattr(Encoder, "from_pretrained", refuse)
