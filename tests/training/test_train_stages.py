import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from bivec import Encoder, LLM2Vec
from bivec.training import MNTPConfig, SimCSEConfig, SupervisedConfig, train_mntp, train_simcse, train_supervised
from training.helpers import text_file, tiny_lm_dir  # noqa: F401  (fixtures)

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
    assert settings["pooling_mode"] == "mean" and settings["bivec"]["adapters"] == [str(mntp_dir)]
    texts = ["a man plays a guitar .", "the dog runs in the park ."]
    base = Encoder.from_pretrained(tiny_lm_dir).encode(texts)
    mntp = LLM2Vec.from_pretrained(tiny_lm_dir, mntp_dir).encode(texts, convert_to_numpy=True)
    merged = Encoder.from_pretrained(mntp_dir / "merged").encode(texts)
    both = LLM2Vec.from_pretrained(tiny_lm_dir, mntp_dir, extra_model_name_or_path=simcse_dir).encode(
        texts, convert_to_numpy=True)
    np.testing.assert_allclose(mntp, merged, atol=1e-5)
    assert np.abs(mntp - base).max() > 1e-3 and np.abs(both - mntp).max() > 1e-3


def test_supervised_runs_chunked_with_instructions(tmp_path, tiny_lm_dir):
    log = train_supervised(SupervisedConfig(data=[TRIPLETS], model=tiny_lm_dir, output_dir=tmp_path, steps=2,
                                            batch_size=8, chunk_size=3, warmup_steps=0, instruction="find text :",
                                            progress=False, precision="fp32"))
    assert len(log["history"]) == 2 and all(np.isfinite(h["loss"]) for h in log["history"])
    assert (tmp_path / "adapter_model.safetensors").is_file()


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
    from bivec.training.loop import bf16_supported

    log = train_mntp(_config("mntp", tiny_lm_dir, text_file, tmp_path / "bf16", precision="bf16", steps=2))
    assert log["mixed_precision"] == "bf16" and all(np.isfinite(h["loss"]) for h in log["history"])
    auto = train_mntp(_config("mntp", tiny_lm_dir, text_file, tmp_path / "auto", precision="auto", steps=1))
    assert auto["mixed_precision"] == ("bf16" if bf16_supported() else "no")
