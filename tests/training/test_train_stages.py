import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from bivec import Encoder, LLM2Vec
from bivec.encoder import Tokenized
from bivec.models import load_tokenizer
from bivec.training import MNTPConfig, SimCSEConfig, SupervisedConfig, train_mntp, train_simcse, train_supervised
from bivec.training.contrastive import Embedder
from bivec.training.loop import make_accelerator, train_loop
from bivec.training.mntp import resolve_mask_token
from bivec.training.stages import contrastive_model, contrastive_step_fn, mntp_model, mntp_step_fn

TRIPLETS = "/work/shared/data/nli/sick_train_triplets.jsonl"


class Killed(Exception):
    pass


def _config(stage, model, data, out, **overrides):
    common = dict(data=[data], model=model, output_dir=out, steps=6, batch_size=4, save_steps=2, progress=False,
                  precision="fp32")
    common.update({k: overrides.pop(k) for k in list(overrides) if k in common})
    if stage == "mntp":
        return MNTPConfig(**common, max_length=8, **overrides)
    return SimCSEConfig(**common, **overrides)


def _kill_at(step):
    def hook(done, loss):
        if done == step:
            raise Killed

    return hook


@pytest.mark.parametrize("stage", ["mntp", "simcse"])
def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(tmp_path, tiny_lm_dir, text_file, stage):
    train = train_mntp if stage == "mntp" else train_simcse
    full = train(_config(stage, tiny_lm_dir, text_file, tmp_path / "full"))
    with pytest.raises(Killed):
        train(_config(stage, tiny_lm_dir, text_file, tmp_path / "killed"), on_step=_kill_at(3))
    assert not (tmp_path / "killed" / "adapter_model.safetensors").exists()
    resumed = train(_config(stage, tiny_lm_dir, text_file, tmp_path / "killed", resume=True))
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in full["history"]]
    a = load_file(tmp_path / "full" / "adapter_model.safetensors")
    b = load_file(tmp_path / "killed" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(k.endswith("lora_B.weight") and a[k].abs().max() > 0 for k in a), "training changed the adapter"


def test_outputs_load_in_llm2vec_layout(tmp_path, tiny_lm_dir, text_file):
    mntp_dir, simcse_dir = tmp_path / "mntp", tmp_path / "simcse"
    train_mntp(_config("mntp", tiny_lm_dir, text_file, mntp_dir, merge=True, learning_rate=1e-2))
    train_simcse(_config("simcse", tiny_lm_dir, text_file, simcse_dir, adapters=[mntp_dir], learning_rate=1e-2))
    for out in (mntp_dir, simcse_dir):
        assert {"adapter_config.json", "adapter_model.safetensors", "config.json", "tokenizer.json",
                "llm2vec_config.json", "training_log.json", "training_curve.png"} <= {p.name for p in out.iterdir()}
    settings = json.loads((simcse_dir / "llm2vec_config.json").read_text())
    assert settings == {"pooling_mode": "mean", "max_length": 256, "skip_instruction": True}  # the model's positions
    assert json.loads((simcse_dir / "training_args.json").read_text())["adapters"] == [str(mntp_dir)]
    assert json.loads((simcse_dir / "bivec_config.json").read_text()) == {
        "pooling": "mean", "max_length": 256, "bidirectional": True, "echo": False, "base": str(tiny_lm_dir),
        "adapters": ["../mntp", "."]}
    assert json.loads((mntp_dir / "bivec_config.json").read_text())["mask_token"] == "[MASK]"
    texts = ["a man plays a guitar .", "the dog runs in the park ."]
    base = Encoder.from_pretrained(tiny_lm_dir).encode(texts)
    mntp = LLM2Vec.from_pretrained(tiny_lm_dir, mntp_dir).encode(texts, convert_to_numpy=True)
    merged = Encoder.from_pretrained(mntp_dir / "merged").encode(texts)
    both = LLM2Vec.from_pretrained(tiny_lm_dir, mntp_dir, extra_model_name_or_path=simcse_dir).encode(
        texts, convert_to_numpy=True)
    np.testing.assert_allclose(mntp, merged, atol=1e-5)
    assert np.abs(mntp - base).max() > 1e-3 and np.abs(both - mntp).max() > 1e-3
    # A stage's folder loads its whole stack on its own: the SimCSE folder keeps the MNTP adapter under it.
    np.testing.assert_allclose(Encoder.from_pretrained(simcse_dir).encode(texts), both, atol=1e-5)
    np.testing.assert_allclose(Encoder.from_pretrained(mntp_dir).encode(texts), mntp, atol=1e-5)


def test_supervised_runs_chunked_with_instructions(tmp_path, tiny_lm_dir):
    log = train_supervised(SupervisedConfig(data=[TRIPLETS], model=tiny_lm_dir, output_dir=tmp_path, steps=2,
                                            batch_size=8, chunk_size=3, warmup_steps=0, instruction="find text :",
                                            progress=False, precision="fp32"))
    assert len(log["history"]) == 2 and all(np.isfinite(h["loss"]) for h in log["history"])
    assert (tmp_path / "adapter_model.safetensors").is_file()


def test_contrastive_training_says_how_many_rows_it_cuts(tmp_path, tiny_lm_dir, text_file, tiny_sentences, capsys):
    settings = dict(data=[text_file], model=tiny_lm_dir, steps=1, batch_size=4, precision="fp32", progress=False)
    train_simcse(SimCSEConfig(**settings, output_dir=tmp_path / "whole", max_length=64, echo=True))
    assert "training rows" not in capsys.readouterr().err
    train_simcse(SimCSEConfig(**settings, output_dir=tmp_path / "cut", max_length=14, echo=True))
    # BOS and two copies of at most 6 tokens fit in 14: the sentences of more than 6 tokens are cut.
    tokenizer = load_tokenizer(tiny_lm_dir)
    longer = sum(len(tokenizer(s, add_special_tokens=False)["input_ids"]) > 6 for s in tiny_sentences)
    assert 0 < longer < len(tiny_sentences)
    assert (f"simcse: {longer} of {len(tiny_sentences)} training rows with a text longer than max_length=14 tokens "
            "(echo reads each text twice), cut to fit; a larger max_length keeps them whole") in capsys.readouterr().err


def test_stage_errors(tmp_path, tiny_model_dir, tiny_lm_dir, text_file):
    with pytest.raises(ValueError, match="mask token '_' is not a single token"):
        train_mntp(_config("mntp", tiny_model_dir, text_file, tmp_path))
    with pytest.raises(ValueError, match="SimCSE needs dropout"):
        train_simcse(_config("simcse", tiny_lm_dir, text_file, tmp_path, dropout=0.0, lora_dropout=0.0))
    with pytest.raises(ValueError, match="batch_size must be positive, got 0"):
        train_simcse(_config("simcse", tiny_lm_dir, text_file, tmp_path, batch_size=0))
    one = tmp_path / "one.txt"
    one.write_text("a single sentence .\n")
    with pytest.raises(ValueError, match="holds 1 example"):
        train_simcse(_config("simcse", tiny_lm_dir, one, tmp_path))
    with pytest.raises(FileNotFoundError, match="deepspeed_config 'nope.json' does not exist"):
        train_simcse(_config("simcse", tiny_lm_dir, text_file, tmp_path, deepspeed_config="nope.json"))


def test_bf16_autocast_on_cpu(tmp_path, tiny_lm_dir, text_file):
    from bivec.precision import bf16_supported

    log = train_mntp(_config("mntp", tiny_lm_dir, text_file, tmp_path / "bf16", precision="bf16", steps=2))
    assert log["mixed_precision"] == "bf16" and all(np.isfinite(h["loss"]) for h in log["history"])
    auto = train_mntp(_config("mntp", tiny_lm_dir, text_file, tmp_path / "auto", precision="auto", steps=1))
    assert auto["mixed_precision"] == ("bf16" if bf16_supported() else "no")


def _one_step_on_given_ids(stage, model_dir, out, checkpointing, ids):
    """Two ``train_loop`` steps through the stage's own model and step builders, on caller-given
    token ids (as benchmarks/train_throughput.py drives them)."""
    common = dict(model=model_dir, output_dir=out, steps=2, batch_size=len(ids), max_length=len(ids[0]),
                  precision="fp32", gradient_checkpointing=checkpointing, save_steps=0, progress=False)
    if stage == "mntp":
        config = MNTPConfig(**common)
        tokenizer = load_tokenizer(model_dir)
        accelerator = make_accelerator(config)
        _, module = mntp_model(config, tokenizer)
        mask_id = resolve_mask_token(tokenizer, config.mask_token)
        step_fn = mntp_step_fn(config, module, tokenizer, mask_id, accelerator, lambda step: ids)
    else:
        config = SimCSEConfig(**common)
        _, _, decoder, encoder = contrastive_model(config)
        accelerator = make_accelerator(config)
        items = [Tokenized(row, [1] * len(row)) for row in ids]
        module = Embedder(decoder, config.pooling)
        step_fn = contrastive_step_fn(config, encoder, accelerator, lambda step: (items, items, []))
    log = train_loop(config, module, step_fn, accelerator=accelerator, stage=stage)
    trained = {name: p.detach().clone() for name, p in module.named_parameters() if p.requires_grad}
    checkpointed = any(getattr(m, "gradient_checkpointing", False) for m in module.modules())
    return log, trained, checkpointed


@pytest.mark.parametrize("stage", ["mntp", "simcse"])
def test_stage_builders_train_on_given_batches_with_or_without_checkpointing(tmp_path, tiny_lm_dir, stage,
                                                                             specials, words):
    ids = torch.randint(len(specials), len(specials) + len(words), (4, 6), generator=torch.Generator().manual_seed(0))
    runs = {on: _one_step_on_given_ids(stage, tiny_lm_dir, tmp_path / str(on), on, ids.tolist())
            for on in (False, True)}
    views = 2 if stage == "simcse" else 1
    for on, (log, trained, checkpointed) in runs.items():
        assert checkpointed is on
        assert [h["tokens"] for h in log["history"]] == [views * 4 * 6, 2 * views * 4 * 6]
        assert all(np.isfinite(h["loss"]) for h in log["history"])
        # An untied output layer stays trainable in MNTP; the decoder itself trains only its LoRA.
        assert trained and all("lora_" in name for name in trained if "lm_head" not in name)
    (plain, plain_weights, _), (saving, saving_weights, _) = runs[False], runs[True]
    # Recomputing activations replays the same dropout, so training must not change. Two steps,
    # because AdamW's first step only sees the gradients' signs.
    assert [h["loss"] for h in saving["history"]] == pytest.approx([h["loss"] for h in plain["history"]], rel=1e-6)
    for name, value in plain_weights.items():
        assert torch.allclose(value, saving_weights[name], atol=1e-6), name


def test_mntp_with_a_new_mask_token_trains_and_loads(tmp_path, tiny_lm_dir, text_file):
    from bivec.training.mntp import NEW_MASK_TOKEN

    out = tmp_path / "mntp-new"
    log = train_mntp(_config("mntp", tiny_lm_dir, text_file, out, mask_token="new", learning_rate=1e-2))
    assert np.isfinite([h["loss"] for h in log["history"]]).all()
    tokenizer = load_tokenizer(out)
    assert tokenizer.mask_token == NEW_MASK_TOKEN
    encoder = Encoder.from_pretrained(tiny_lm_dir, adapters=[out], dtype="float32")
    plain = Encoder.from_pretrained(tiny_lm_dir, dtype="float32")
    texts = ["a dog runs in the park", f"a dog {NEW_MASK_TOKEN} in the park"]
    vectors = encoder.encode(texts)
    assert vectors.shape == (2, plain.dim) and np.isfinite(vectors).all()
    assert not np.allclose(vectors[0], plain.encode(texts[:1])[0]), "the adapter changed the model"


def test_contrastive_merge_writes_one_folder_with_every_adapter(tmp_path, tiny_lm_dir, text_file):
    mntp_dir, simcse_dir = tmp_path / "mntp", tmp_path / "simcse"
    train_mntp(_config("mntp", tiny_lm_dir, text_file, mntp_dir, learning_rate=1e-2))
    train_simcse(_config("simcse", tiny_lm_dir, text_file, simcse_dir, adapters=[mntp_dir], learning_rate=1e-2,
                         merge=True, echo=True))
    texts = ["a man plays a guitar .", "the dog runs in the park ."]
    stacked = Encoder.from_pretrained(simcse_dir).encode(texts)
    merged = Encoder.from_pretrained(simcse_dir / "merged")
    settings = json.loads((simcse_dir / "merged" / "bivec_config.json").read_text())
    assert settings["pooling"] == "mean" and settings["echo"] is True and merged.echo
    np.testing.assert_allclose(merged.encode(texts), stacked, atol=1e-5)
