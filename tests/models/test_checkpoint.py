import json
import shutil

import numpy as np
import pytest
from checkpoint_layouts import add_to_hub_cache, build_adapter, build_mntp, manual_encoder
from huggingface_hub import constants
from transformers import AutoModelForCausalLM

from bivec import Encoder, LLM2Vec
from bivec.models.checkpoint import EncoderSettings, read_settings, resolve_checkpoint, weights_fingerprint

TEXTS = ["a man plays a guitar", ["retrieve similar sentence :", "a dog runs in the park"], "the cat sits"]

# Published LLM2Vec names, the base model each MNTP adapter names, and its architecture.
PUBLISHED = {
    "McGill-NLP/LLM2Vec-Mistral-7B-Instruct-v2-mntp": ("mistralai/Mistral-7B-Instruct-v0.2", "mistral", True),
    "McGill-NLP/LLM2Vec-Llama-2-7b-chat-hf-mntp": ("meta-llama/Llama-2-7b-chat-hf", "llama", True),
    "McGill-NLP/LLM2Vec-Sheared-LLaMA-mntp": ("princeton-nlp/Sheared-LLaMA-1.3B", "llama", False),
    "McGill-NLP/LLM2Vec-Meta-Llama-3-8B-Instruct-mntp": ("meta-llama/Meta-Llama-3-8B-Instruct", "llama", True),
}


@pytest.fixture(scope="module")
def layout(tmp_path_factory, build_base):
    """base/ (weights), mntp/ (config + tokenizer + adapter naming base/), simcse/ and supervised/."""
    root = tmp_path_factory.mktemp("layout")
    base = build_base(root / "base")
    mntp = build_mntp(base, root / "mntp", base_name=str(base), seed=1)
    simcse = build_adapter(base, root / "simcse", seed=2, base_name=str(mntp))
    supervised = build_adapter(base, root / "supervised", seed=3, base_name=str(mntp))
    return {"base": base, "mntp": mntp, "simcse": simcse, "supervised": supervised}


def test_mntp_layout_equals_manual_merge(layout):
    base, mntp = layout["base"], layout["mntp"]
    for second in ("simcse", "supervised"):
        expected = manual_encoder(base, [mntp, layout[second]], mntp).encode(TEXTS)
        loaded = Encoder.from_pretrained(mntp, adapters=[layout[second]]).encode(TEXTS)
        np.testing.assert_allclose(loaded, expected, atol=1e-5)
        drop_in = LLM2Vec.from_pretrained(mntp, layout[second]).encode(TEXTS, show_progress_bar=False).numpy()
        np.testing.assert_allclose(drop_in, expected, atol=1e-5)
    # The MNTP adapter alone, and the base with it passed explicitly, are the same model.
    mntp_only = Encoder.from_pretrained(mntp).encode(TEXTS)
    np.testing.assert_allclose(Encoder.from_pretrained(base, adapters=[mntp]).encode(TEXTS), mntp_only, atol=1e-6)
    np.testing.assert_allclose(mntp_only, manual_encoder(base, [mntp], mntp).encode(TEXTS), atol=1e-5)
    assert not np.allclose(mntp_only, Encoder.from_pretrained(base).encode(TEXTS), atol=1e-3)


def test_adapter_order_is_respected(tmp_path, build_base):
    # Plain LoRA merges add up (order only changes rounding); full module copies
    # (modules_to_save) replace each other, so the last adapter's copy must win.
    base = build_base(tmp_path / "base")
    first = build_adapter(base, tmp_path / "first", seed=4, modules_to_save=["norm"])
    second = build_adapter(base, tmp_path / "second", seed=5, modules_to_save=["norm"])
    forward = Encoder.from_pretrained(base, adapters=[first, second])
    backward = Encoder.from_pretrained(base, adapters=[second, first])
    np.testing.assert_allclose(forward.encode(TEXTS), manual_encoder(base, [first, second], base).encode(TEXTS), atol=1e-5)
    np.testing.assert_allclose(backward.encode(TEXTS), manual_encoder(base, [second, first], base).encode(TEXTS), atol=1e-5)
    assert not np.allclose(forward.encode(TEXTS), backward.encode(TEXTS), atol=1e-3)
    np.testing.assert_allclose(forward.model.norm.weight.detach().numpy(), _saved_norm(second), atol=0)


def _saved_norm(adapter_dir):
    from safetensors.numpy import load_file

    tensors = load_file(adapter_dir / "adapter_model.safetensors")
    return tensors["base_model.model.norm.weight"]


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_names_load_from_the_local_hub_cache(name, tmp_path, monkeypatch, build_base):
    base_name, model_type, has_template = PUBLISHED[name]
    build = tmp_path / "build"
    base = build_base(build / "base", model_type, chat_template=has_template)
    mntp = build_mntp(base, build / "mntp", base_name=base_name,
                      llm2vec_config={"pooling_mode": "mean", "max_length": 64, "doc_max_length": 40, "skip_instruction": True})
    stages = {suffix: build_adapter(base, build / suffix, seed=seed, base_name=name)
              for seed, suffix in ((2, "unsup-simcse"), (3, "supervised"))}
    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    add_to_hub_cache(cache, base_name, base)
    add_to_hub_cache(cache, name, mntp)
    for suffix, stage in stages.items():
        add_to_hub_cache(cache, f"{name}-{suffix}", stage)
        encoder = Encoder.from_pretrained(name, adapters=[f"{name}-{suffix}"])
        assert encoder.max_length == 64 and encoder.pooling == "mean"
        expected = manual_encoder(base, [mntp, stage], mntp, max_length=64).encode(TEXTS)
        np.testing.assert_allclose(encoder.encode(TEXTS), expected, atol=1e-5)
        drop_in = LLM2Vec.from_pretrained(name, f"{name}-{suffix}").encode(TEXTS, show_progress_bar=False)
        np.testing.assert_allclose(drop_in.numpy(), expected, atol=1e-5)
    # Instructed inputs follow the tokenizer's own chat template (Sheared-LLaMA has none).
    ids = encoder.tokenize([["find", "a dog"]])[0].input_ids
    user = encoder.tokenizer.convert_tokens_to_ids("<|user|>")
    assert (ids[0] == user) is has_template


def test_missing_adapter_files_are_named(layout, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"adapter '.*empty' has no adapter_config.json"):
        Encoder.from_pretrained(layout["base"], adapters=[empty])
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "adapter_config.json").write_text((layout["simcse"] / "adapter_config.json").read_text())
    with pytest.raises(FileNotFoundError, match="has adapter_config.json but no adapter weights"):
        Encoder.from_pretrained(layout["base"], adapters=[no_weights])
    with pytest.raises(FileNotFoundError, match="adapter 'nobody/no-such-adapter' does not exist"):
        Encoder.from_pretrained(layout["base"], adapters=["nobody/no-such-adapter"])
    with pytest.raises(TypeError, match="adapters must be a list"):
        Encoder.from_pretrained(layout["base"], adapters=str(layout["simcse"]))


def test_base_named_by_an_adapter_must_be_local(layout, tmp_path):
    mntp = build_mntp(layout["base"], tmp_path / "mntp", base_name="nobody/not-downloaded")
    with pytest.raises(FileNotFoundError, match=r"names base model 'nobody/not-downloaded' \(base_model_name_or_path\), "
                                                "which is neither a local directory nor in the local Hugging Face cache"):
        Encoder.from_pretrained(mntp)
    # The way out the message offers: load the base and pass the MNTP directory as an adapter.
    np.testing.assert_allclose(Encoder.from_pretrained(layout["base"], adapters=[mntp]).encode(TEXTS),
                               Encoder.from_pretrained(layout["mntp"]).encode(TEXTS), atol=1e-6)


def test_ambiguous_and_empty_directories_are_refused(layout, tmp_path, build_base):
    both = build_base(tmp_path / "both")
    build_adapter(both, both, seed=6)
    with pytest.raises(ValueError, match="holds both full weights and a LoRA adapter"):
        Encoder.from_pretrained(both)
    config_only = tmp_path / "config_only"
    config_only.mkdir()
    (config_only / "config.json").write_text((layout["base"] / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="has neither weights .* nor a LoRA adapter"):
        Encoder.from_pretrained(config_only)


def test_an_adapter_for_another_model_class_is_refused(layout, tmp_path):
    from peft import LoraConfig, get_peft_model

    causal = get_peft_model(AutoModelForCausalLM.from_pretrained(layout["base"]),
                            LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False))
    causal.save_pretrained(tmp_path / "causal")
    with pytest.raises(ValueError, match="does not fit the LlamaModel: 4 adapter weights are missing .* and 4 saved weights match no layer"):
        Encoder.from_pretrained(layout["base"], adapters=[tmp_path / "causal"])


def test_settings_come_from_the_checkpoint_and_arguments_win(layout, tmp_path):
    stage = build_adapter(layout["base"], tmp_path / "stage", seed=7)
    (stage / "llm2vec_config.json").write_text(json.dumps({"pooling_mode": "eos_token", "max_length": 48}))
    checkpoint = resolve_checkpoint(layout["mntp"], [stage])
    assert checkpoint.settings == EncoderSettings("eos", 48)
    assert checkpoint.base == layout["base"] and checkpoint.tokenizer == layout["mntp"]
    assert checkpoint.adapters == (layout["mntp"], stage)
    (stage / "bivec_config.json").write_text('{"pooling": "weighted_mean"}')
    assert read_settings(stage) == EncoderSettings("weighted_mean", 48)
    encoder = Encoder.from_pretrained(layout["mntp"], adapters=[stage])
    assert (encoder.pooling, encoder.max_length) == ("weighted_mean", 48)
    encoder = Encoder.from_pretrained(layout["mntp"], adapters=[stage], pooling="mean", max_length=16)
    assert (encoder.pooling, encoder.max_length) == ("mean", 16)
    assert LLM2Vec.from_pretrained(layout["mntp"], stage).pooling_mode == "weighted_mean"


def test_echo_comes_from_the_checkpoint_and_the_flag_wins(layout, tmp_path):
    from typer.testing import CliRunner

    from bivec.cli import app

    stage = build_adapter(layout["base"], tmp_path / "stage", seed=9)
    (stage / "bivec_config.json").write_text('{"echo": true}')
    assert read_settings(stage) == EncoderSettings(echo=True)
    assert Encoder.from_pretrained(layout["base"], adapters=[stage]).echo
    assert not Encoder.from_pretrained(layout["base"], adapters=[stage], echo=False).echo
    assert not Encoder.from_pretrained(layout["base"]).echo
    args = ["encode", "a dog runs", "-m", str(layout["base"]), "--adapter", str(stage), "-o"]
    for flags, echo in (([], True), (["--no-echo"], False)):
        result = CliRunner().invoke(app, [*args, str(tmp_path / "v.npy"), *flags])
        assert result.exit_code == 0, result.output
        expected = Encoder.from_pretrained(layout["base"], adapters=[stage], echo=echo).encode(["a dog runs"])
        np.testing.assert_allclose(np.load(tmp_path / "v.npy"), expected, atol=1e-6)
    result = CliRunner().invoke(app, ["info", str(layout["base"]), "--adapter", str(stage), "--dtype", "float32"])
    assert result.exit_code == 0 and "yes (each text read twice, the second copy pooled)" in result.output


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("llm2vec_config.json", '{"pooling_mode": "mean",\n "max_length": }', r"llm2vec_config.json line 2: not valid JSON"),
        ("llm2vec_config.json", '{"pooling_mode": "max"}', r"llm2vec_config.json: pooling_mode: unknown pooling mode 'max'"),
        ("llm2vec_config.json", '{"skip_instruction": false}', r"skip_instruction=False is not supported"),
        ("bivec_config.json", '{"max_length": 0}', r"bivec_config.json: max_length must be a positive integer, got 0"),
        ("bivec_config.json", '{"pooling": "mean", "colour": 1}', r"bivec_config.json: unknown keys colour"),
        ("bivec_config.json", "[1]", r"bivec_config.json: expected a JSON object, got list"),
        ("bivec_config.json", '{"echo": "yes"}', r"bivec_config.json: echo must be true or false, got 'yes'"),
    ],
)
def test_bad_settings_files_are_named(tmp_path, layout, name, content, message):
    stage = build_adapter(layout["base"], tmp_path / "stage", seed=8)
    (stage / name).write_text(content)
    with pytest.raises(ValueError, match=message):
        Encoder.from_pretrained(layout["base"], adapters=[stage])


def test_cli_encode_with_adapters(layout, tmp_path):
    from typer.testing import CliRunner

    from bivec.cli import app

    out = tmp_path / "v.npy"
    result = CliRunner().invoke(app, ["encode", "a dog runs", "-m", str(layout["mntp"]), "--adapter", str(layout["simcse"]), "-o", str(out)])
    assert result.exit_code == 0, result.output
    expected = Encoder.from_pretrained(layout["mntp"], adapters=[layout["simcse"]]).encode(["a dog runs"])
    np.testing.assert_allclose(np.load(out), expected, atol=1e-6)
    result = CliRunner().invoke(app, ["encode", "a dog", "-m", str(layout["base"]), "--adapter", str(tmp_path / "none")])
    assert result.exit_code == 2 and "adapter '" in result.output and "does not exist" in result.output


def test_weights_fingerprint_tells_other_weights_and_matches_a_copy(tmp_path, build_base):
    base = build_base(tmp_path / "base")
    adapter = build_adapter(base, tmp_path / "adapter", seed=1)
    fingerprint = weights_fingerprint(resolve_checkpoint(base, [adapter]))
    assert list(fingerprint) == ["base: model.safetensors", "adapter 1: adapter_model.safetensors"]
    # A copy elsewhere (new paths, new modification times) is the same weights.
    shutil.copytree(base, tmp_path / "copy")
    assert weights_fingerprint(resolve_checkpoint(tmp_path / "copy", [adapter])) == fingerprint
    build_base(base, seed=1)
    retrained = weights_fingerprint(resolve_checkpoint(base, [adapter]))
    assert retrained["base: model.safetensors"] != fingerprint["base: model.safetensors"]
    build_adapter(base, adapter, seed=2)
    other = weights_fingerprint(resolve_checkpoint(base, [adapter]))
    assert other["adapter 1: adapter_model.safetensors"] != retrained["adapter 1: adapter_model.safetensors"]


def test_a_large_base_file_is_fingerprinted_by_slices(tmp_path, build_base):
    base = build_base(tmp_path / "base")
    weights = base / "model.safetensors"
    data = bytearray(np.random.default_rng(0).bytes(4 << 20))
    weights.write_bytes(data)
    first = weights_fingerprint(resolve_checkpoint(base))["base: model.safetensors"]
    assert first.startswith("sha256 of 16 slices ")
    # A byte in the ninth slice changes it; the file's length is part of it too.
    data[8 * ((4 << 20) - (1 << 16)) // 15 + 100] ^= 1
    weights.write_bytes(data)
    assert weights_fingerprint(resolve_checkpoint(base))["base: model.safetensors"] != first
    weights.write_bytes(data + b"\0")
    assert weights_fingerprint(resolve_checkpoint(base))["base: model.safetensors"] != first
