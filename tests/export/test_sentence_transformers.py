import json

import numpy as np
import pytest
from checkpoint_layouts import build_adapter, build_mntp, drop_added_tokens
from sentence_transformers import SentenceTransformer
from typer.testing import CliRunner

from bivec import Encoder
from bivec.attention import BidirectionalError, check_bidirectional
from bivec.cli import app
from bivec.export.sentence_transformers import ExportError, export_sentence_transformers, verify_export

# Lengths differ, so a batch is padded; the tiny tokenizer adds <s> and has a chat template.
BATCH = ["a man plays a guitar", "the stock market fell sharply today and someone sold", "a dog", "the cat sits on the mat"]
SINGLE = ["someone is playing music in the park"]


@pytest.fixture(scope="module")
def stacked(tmp_path_factory, build_base):
    """A published-layout checkpoint with a second-stage adapter, loaded with bivec."""
    root = tmp_path_factory.mktemp("stacked")
    base = build_base(root / "base")
    mntp = build_mntp(base, root / "mntp", base_name=str(base))
    simcse = build_adapter(base, root / "simcse", seed=2)
    return Encoder.from_pretrained(mntp, adapters=[simcse])


def _assert_same_vectors(model, encoder, normalize=False):
    for texts in (BATCH, SINGLE):
        expected = encoder.encode(texts, normalize=normalize)
        np.testing.assert_allclose(model.encode(texts, batch_size=len(texts)), expected, atol=1e-5)


def test_sentence_transformers_reproduces_bivec(stacked, tmp_path):
    out = export_sentence_transformers(stacked, tmp_path / "st")
    model = SentenceTransformer(str(out))  # plain: no trust_remote_code, no bivec module classes
    assert [type(m).__name__ for m in model] == ["Transformer", "WordWeights", "Pooling"]
    assert model.max_seq_length == stacked.max_length
    _assert_same_vectors(model, stacked)
    # The BOS token is left out of pooling, as bivec's pooling mask leaves it out.
    assert json.loads((out / "1_WordWeights" / "config.json").read_text())["word_weights"] == {"<s>": 0.0}
    normalized = export_sentence_transformers(stacked, tmp_path / "normalized", normalize=True)
    model = SentenceTransformer(str(normalized))
    assert type(model[-1]).__name__ == "Normalize"
    _assert_same_vectors(model, stacked, normalize=True)


def test_plain_load_attends_bidirectionally_from_the_config_alone(stacked, tmp_path):
    out = export_sentence_transformers(stacked, tmp_path / "st")
    auto_model = SentenceTransformer(str(out))[0].auto_model
    assert json.loads((out / "config.json").read_text())["is_causal"] is False
    check_bidirectional(auto_model)
    # Nothing but the saved config makes it so: the attention modules still carry is_causal=True.
    assert all(m.is_causal for m in auto_model.modules() if isinstance(getattr(m, "is_causal", None), bool))
    # Control: without the config flag the same directory is causal, and its vectors differ.
    config = json.loads((out / "config.json").read_text())
    del config["is_causal"]
    (out / "config.json").write_text(json.dumps(config))
    causal = SentenceTransformer(str(out))
    with pytest.raises(BidirectionalError, match="still attends causally"):
        check_bidirectional(causal[0].auto_model)
    assert not np.allclose(causal.encode(SINGLE), stacked.encode(SINGLE), atol=1e-3)
    with pytest.raises(BidirectionalError):
        verify_export(stacked, out)


def test_every_supported_architecture_exports(architecture, architectures, tmp_path, build_base):
    attention = "sdpa" if architectures[architecture] else "eager"
    encoder = Encoder.from_pretrained(build_base(tmp_path / "base", architecture), attn_implementation=attention)
    out = export_sentence_transformers(encoder, tmp_path / "st")
    _assert_same_vectors(SentenceTransformer(str(out)), encoder)


def test_last_token_pooling_exports_when_nothing_follows_the_text(tmp_path, build_base):
    encoder = Encoder.from_pretrained(build_base(tmp_path / "base"), pooling="last")
    out = export_sentence_transformers(encoder, tmp_path / "st")
    model = SentenceTransformer(str(out))
    assert [type(m).__name__ for m in model] == ["Transformer", "Pooling"]
    _assert_same_vectors(model, encoder)


def test_verify_catches_a_directory_that_differs(stacked, tmp_path):
    out = export_sentence_transformers(stacked, tmp_path / "st", verify=False)
    config_path = out / "2_Pooling" / "config.json"
    config = json.loads(config_path.read_text())
    config["pooling_mode"] = "max"
    config_path.write_text(json.dumps(config))
    with pytest.raises(ExportError, match=r"does not reproduce bivec's vectors \(3 text\(s\): relative difference [0-9.e+]+ > 1e-04\)"):
        verify_export(stacked, out)


def test_what_cannot_be_exported_is_refused(tmp_path, build_base):
    base = build_base(tmp_path / "base")
    cases = [
        (Encoder.from_pretrained(base, pooling="eos"), "'eos' pooling has no exact sentence-transformers equivalent"),
        (Encoder.from_pretrained(base, pooling="weighted_mean"), "'weighted_mean' pooling has no exact"),
        (Encoder.from_pretrained(base, pooling="first"), "'first' pooling has no exact"),
        (Encoder.from_pretrained(base, chat_template=True), r"wraps every input in the chat template \(chat_template=True\)"),
        (Encoder.from_pretrained(base, max_length=2048), "max_length=2048 exceeds the model's 1024 positions"),
    ]
    for i, (encoder, message) in enumerate(cases):
        with pytest.raises(ExportError, match=message):
            export_sentence_transformers(encoder, tmp_path / f"out{i}")
        assert not (tmp_path / f"out{i}").exists()  # refused before anything is written
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file").write_text("x")
    with pytest.raises(ExportError, match="output directory '.*full' is not empty"):
        export_sentence_transformers(Encoder.from_pretrained(base), tmp_path / "full")


def test_cli_convert(stacked, tmp_path, build_base):
    root = tmp_path / "ckpt"
    base = build_base(root / "base")
    mntp = build_mntp(base, root / "mntp", base_name=str(base))
    simcse = build_adapter(base, root / "simcse", seed=2)
    out = tmp_path / "st"
    result = CliRunner().invoke(app, ["convert", "sentence-transformers", str(mntp), str(out), "--adapter", str(simcse)])
    assert result.exit_code == 0, result.output
    assert f"wrote a sentence-transformers model (mean pooling, 32 dims) to {out}; reloaded with sentence-transformers: " \
           "bidirectional, same vectors" in result.output
    _assert_same_vectors(SentenceTransformer(str(out)), Encoder.from_pretrained(mntp, adapters=[simcse]))


def test_cli_convert_bad_input(tmp_path, build_base):
    base = build_base(tmp_path / "base")
    result = CliRunner().invoke(app, ["convert", "sentence-transformers", str(tmp_path / "missing"), str(tmp_path / "a")])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = CliRunner().invoke(app, ["convert", "sentence-transformers", str(base), str(tmp_path / "b"), "--pooling", "eos"])
    assert result.exit_code == 2 and "'eos' pooling has no exact sentence-transformers equivalent" in result.output
    result = CliRunner().invoke(app, ["convert", "sentence-transformers", "--help"])
    assert result.exit_code == 0 and "Example: bivec convert sentence-transformers" in result.output


def _base_without_special_tokens(build_base, root, chat_template=False):
    """A tiny base whose tokenizer adds no BOS around a text (as SmolLM2's adds none)."""
    return drop_added_tokens(build_base(root / "base", chat_template=chat_template))


def _prompted_base(build_base, root, chat_template, special_tokens=True):
    base = (build_base(root / "base", chat_template=chat_template) if special_tokens
            else _base_without_special_tokens(build_base, root, chat_template))
    (base / "bivec_config.json").write_text(json.dumps({"prompts": {"query": "retrieve similar sentence :",
                                                                    "document": ""}}))
    return base


def test_causal_and_weighted_mean_encoders_export(tmp_path, build_base):
    # bivec's shipped default is causal with weighted mean pooling, over a tokenizer that adds no token.
    base = _base_without_special_tokens(build_base, tmp_path)
    encoder = Encoder.from_pretrained(base, bidirectional=False, pooling="weighted_mean")
    out = tmp_path / "st"
    result = CliRunner().invoke(app, ["convert", "sentence-transformers", str(base), str(out), "--causal",
                                      "--pooling", "weighted_mean"])
    assert result.exit_code == 0, result.output
    assert "(weighted_mean pooling, 32 dims)" in result.output
    assert "sentence-transformers: causal, same" in result.output
    model = SentenceTransformer(str(out))
    assert [type(m).__name__ for m in model] == ["Transformer", "Pooling"] and model[-1].pooling_mode == "weightedmean"
    assert json.loads((out / "config.json").read_text()).get("is_causal") is not False
    _assert_same_vectors(model, encoder)
    # Causal with mean pooling, where the tokenizer adds a BOS that WordWeights leaves out.
    causal = Encoder.from_pretrained(build_base(tmp_path / "bos"), bidirectional=False)
    _assert_same_vectors(SentenceTransformer(str(export_sentence_transformers(causal, tmp_path / "st-bos"))), causal)
    # Weighted mean counts positions from a prompt's first token there: prompts stay out, saying why.
    prompted = Encoder.from_pretrained(_prompted_base(build_base, tmp_path / "prompted", chat_template=False,
                                                      special_tokens=False), pooling="weighted_mean")
    from bivec.export.sentence_transformers import prompt_export_problem

    assert "sentence-transformers' weighted mean" in prompt_export_problem(prompted)
    assert not SentenceTransformer(str(export_sentence_transformers(prompted, tmp_path / "st-p"))).prompts.get("query")


def test_prompts_survive_the_export_as_prefixes_left_out_of_pooling(tmp_path, build_base):
    encoder = Encoder.from_pretrained(_prompted_base(build_base, tmp_path, chat_template=False, special_tokens=False))
    assert encoder.tokenize(["a dog"])[0].input_ids == encoder.tokenizer("a dog", add_special_tokens=False)["input_ids"]
    out = export_sentence_transformers(encoder, tmp_path / "st")
    model = SentenceTransformer(str(out))
    assert model.prompts["query"] == "retrieve similar sentence : " and model[-1].include_prompt is False
    for texts in (BATCH, SINGLE):
        np.testing.assert_allclose(model.encode(texts, prompt_name="query", batch_size=len(texts)),
                                   encoder.encode(texts, prompt_name="query"), atol=1e-5)
        np.testing.assert_allclose(model.encode(texts, batch_size=len(texts)), encoder.encode(texts), atol=1e-5)


def test_a_chat_template_keeps_prompts_out_of_the_export_and_says_why(tmp_path, build_base):
    base = _prompted_base(build_base, tmp_path, chat_template=True)
    result = CliRunner().invoke(app, ["convert", "sentence-transformers", str(base), str(tmp_path / "st")])
    assert result.exit_code == 0, result.output
    assert "note: prompts not exported: bivec wraps an instructed input in the tokenizer's chat template" in result.output
    assert not SentenceTransformer(str(tmp_path / "st")).prompts.get("query")
    from bivec.export.sentence_transformers import prompt_export_problem

    with_bos = Encoder.from_pretrained(_prompted_base(build_base, tmp_path / "bos", chat_template=False))
    assert "the tokenizer adds special tokens around each text" in prompt_export_problem(with_bos)
