"""``bivec train llm2vec``: the whole recipe into one folder that loads as it is."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from bivec import Encoder
from bivec.attention import is_bidirectional
from bivec.cli import app
from bivec.models.default import DEFAULT_BASE
from bivec.training.config import MNTPConfig, SimCSEConfig
from bivec.training.recipe import LLM2VecConfig, finished_stage, stage_settings, train_llm2vec
from bivec.training.state import latest_checkpoint

runner = CliRunner()
STAGES = ["--mntp", "steps=2", "--mntp", "batch_size=2", "--mntp", "max_length=8", "--mntp", "learning_rate=1e-2",
          "--simcse", "steps=2", "--simcse", "batch_size=4", "--simcse", "learning_rate=1e-2"]


@pytest.fixture
def corpus(tmp_path, tiny_sentences):
    text = tmp_path / "text.txt"
    text.write_text("\n".join(tiny_sentences + [f"{a} {b}" for a, b in zip(tiny_sentences, tiny_sentences[1:])]) + "\n")
    sts = tmp_path / "sts.tsv"
    sts.write_text("".join(f"{i % 5}\t{a}\t{b}\n" for i, (a, b) in enumerate(zip(tiny_sentences, tiny_sentences[1:]))))
    return text, sts


def test_recipe_trains_evaluates_and_writes_one_loadable_folder(tmp_path, tiny_lm_dir, corpus):
    text, sts = corpus
    out = tmp_path / "encoder"
    result = runner.invoke(app, ["train", "llm2vec", str(text), "-m", str(tiny_lm_dir), "-o", str(out), "--eval", str(sts),
                                 "--precision", "fp32", *STAGES])
    assert result.exit_code == 0, result.output
    assert "mntp: 2 steps" in result.output and "simcse: 2 steps" in result.output and "STS Spearman: sts " in result.output
    config = json.loads((out / "bivec_config.json").read_text())
    assert config == {"pooling": "mean", "max_length": 256, "bidirectional": True, "echo": False,
                      "base": str(tiny_lm_dir), "adapters": ["mntp", "simcse"]}
    results = json.loads((out / "results.json").read_text())
    assert list(results["stages"]) == ["mntp", "simcse"] and "sts" in results["scores"]["spearman"]
    card = (out / "README.md").read_text()
    assert "| mntp | 2 | 2 | 8 |" in card and "bivec train llm2vec" in card
    texts = ["a man plays a guitar .", "the dog runs in the park ."]
    explicit = Encoder.from_pretrained(tiny_lm_dir, adapters=[out / "mntp", out / "simcse"], dtype="float32")
    np.testing.assert_allclose(Encoder.from_pretrained(out, dtype="float32").encode(texts), explicit.encode(texts),
                               atol=1e-6)
    assert not np.allclose(explicit.encode(texts), Encoder.from_pretrained(tiny_lm_dir).encode(texts), atol=1e-3)

    again = runner.invoke(app, ["train", "llm2vec", str(text), "-m", str(tiny_lm_dir), "-o", str(out), "--precision",
                                "fp32", *STAGES])
    assert again.exit_code == 0, again.output
    assert "stage 1/2 mntp already finished, kept" in again.output
    assert "stage 2/2 simcse already finished, kept" in again.output
    # The rerun had no --eval: the scores of the same weights stay in results.json and the card.
    assert json.loads((out / "results.json").read_text())["scores"] == results["scores"]
    assert "STS Spearman x100" in (out / "README.md").read_text()
    (out / "results.json").write_text("{not json")
    broken = runner.invoke(app, ["train", "llm2vec", str(text), "-m", str(tiny_lm_dir), "-o", str(out), "--precision",
                                 "fp32", *STAGES])
    assert broken.exit_code == 2 and f"{out / 'results.json'}: not valid JSON" in broken.output
    (out / "results.json").write_text(json.dumps(results))
    changed = runner.invoke(app, ["train", "llm2vec", str(text), "-m", str(tiny_lm_dir), "-o", str(out), "--precision",
                                  "fp32", *STAGES[:-2], "--simcse", "learning_rate=0.5"])
    assert changed.exit_code == 2
    assert "simcse was trained with learning_rate=0.01, this run has learning_rate=0.5" in changed.output

    # A finished folder moved elsewhere (or copied to another machine) is still finished there.
    moved = tmp_path / "elsewhere" / "encoder"
    shutil.copytree(out, moved)
    shutil.rmtree(out)
    again = runner.invoke(app, ["train", "llm2vec", str(text), "-m", str(tiny_lm_dir), "-o", str(moved), "--precision",
                                "fp32", *STAGES])
    assert again.exit_code == 0, again.output
    assert "stage 1/2 mntp already finished, kept" in again.output
    assert "stage 2/2 simcse already finished, kept" in again.output
    assert not out.exists()
    moved_text = tmp_path / "text-elsewhere.txt"
    shutil.copy(text, moved_text)
    changed = runner.invoke(app, ["train", "llm2vec", str(moved_text), "-m", str(tiny_lm_dir), "-o", str(moved),
                                  "--precision", "fp32", *STAGES])
    assert changed.exit_code == 2 and f"mntp was trained with data=['{text}']" in changed.output


def test_recipe_reuses_a_stage_trained_on_its_own(tmp_path, tiny_lm_dir, corpus, monkeypatch):
    # `bivec train mntp` run from the data's folder records the relative path it was given; put
    # where the recipe looks for its MNTP stage, it is the same stage as the recipe's.
    text, _ = corpus
    monkeypatch.chdir(tmp_path)
    alone = runner.invoke(app, ["train", "mntp", text.name, "-m", str(tiny_lm_dir), "-o", "alone", "--precision",
                                "fp32", "--steps", "2", "--batch-size", "2", "--max-length", "8", "--lr", "1e-2"])
    assert alone.exit_code == 0, alone.output
    shutil.copytree(tmp_path / "alone", tmp_path / "encoder" / "mntp")
    recipe = ["train", "llm2vec", str(text), "-m", str(tiny_lm_dir), "-o", str(tmp_path / "encoder"), "--precision",
              "fp32"]
    reused = runner.invoke(app, [*recipe, *STAGES])
    assert reused.exit_code == 0, reused.output
    assert "stage 1/2 mntp already finished, kept" in reused.output and "simcse: 2 steps" in reused.output
    other = runner.invoke(app, [*recipe, "--mntp", "steps=3", *STAGES[2:]])
    assert other.exit_code == 2 and "mntp was trained with steps=2, this run has steps=3" in other.output

    # A stage trained without --model started from the default base: the same as naming it.
    args_file = tmp_path / "alone" / "training_args.json"
    args = json.loads(args_file.read_text())
    args_file.write_text(json.dumps({**args, "config": {**args["config"], "model": None}}))
    config = MNTPConfig(**{**args["config"], "output_dir": tmp_path / "alone", "model": DEFAULT_BASE})
    assert finished_stage(config)["steps"] == 2
    with pytest.raises(ValueError, match="trained with model=None, this run has model="):
        finished_stage(MNTPConfig(**{**args["config"], "output_dir": tmp_path / "alone"}))


def test_recipe_resumes_a_stage_that_did_not_finish(tmp_path, tiny_lm_dir, corpus):
    text, _ = corpus
    out = tmp_path / "encoder"
    settings = dict(data=[text], output_dir=out, model=tiny_lm_dir, precision="fp32", progress=False,
                    mntp_stage=stage_settings(MNTPConfig, ["steps=4", "batch_size=2", "max_length=8", "save_steps=2"], "-"),
                    simcse_stage=stage_settings(SimCSEConfig, ["steps=2", "batch_size=4"], "-"))
    train_llm2vec(LLM2VecConfig(**settings))
    finished = load_file(out / "simcse" / "adapter_model.safetensors")
    # As if killed after the MNTP checkpoint at step 2: the stage's final outputs are not there yet.
    for name in ("adapter_model.safetensors", "training_log.json"):
        (out / "mntp" / name).unlink()
    (out / "simcse" / "adapter_model.safetensors").unlink()
    assert latest_checkpoint(out / "mntp").name == "step-2"
    again = train_llm2vec(LLM2VecConfig(**settings))
    assert again["stages"]["mntp"]["steps"] == 4
    resumed = load_file(out / "simcse" / "adapter_model.safetensors")
    assert all(torch.equal(finished[k], resumed[k]) for k in finished)


def test_recipe_bad_inputs(tmp_path, tiny_lm_dir, corpus):
    text, sts = corpus
    cases = [
        (["--mntp", "stepz=2"], "--mntp 'stepz=2': expected KEY=VALUE with KEY one of steps,"),
        (["--simcse", "steps=two"], "--simcse 'steps=two': bad value for steps"),
        (["--eval", str(tmp_path / "missing.tsv")], "evaluation file '"),
        (["--sentences", str(text), "--triplets", str(text)], "give sentences (SimCSE) or triplets (supervised), not both"),
        (["--mntp", "steps=0"], "steps must be positive, got 0"),
        (["--no-mntp", "--mntp", "steps=2"], "mntp_stage (--mntp) settings given, but MNTP is skipped"),
        (["--triplets", str(text), "--simcse", "steps=2"], "simcse_stage (--simcse) settings given, but triplets"),
        (["--supervised", "steps=2"], "supervised_stage (--supervised) settings given, but supervised"),
    ]
    for extra, message in cases:
        result = runner.invoke(app, ["train", "llm2vec", str(text), "-m", str(tiny_lm_dir), "-o", str(tmp_path / "o"),
                                     *extra])
        assert result.exit_code == 2, (extra, result.output)
        assert message in result.output, (extra, result.output)
    taken = tmp_path / "taken"
    taken.write_text("")
    result = runner.invoke(app, ["train", "llm2vec", str(text), "-m", str(tiny_lm_dir), "-o", str(taken)])
    assert result.exit_code == 2 and "is a file; expected a folder" in result.output
    assert not (tmp_path / "o").exists()


def test_causal_recipe_is_encoded_causally(tmp_path, tiny_lm_dir, corpus):
    text, _ = corpus
    out = tmp_path / "causal"
    train_llm2vec(LLM2VecConfig(data=[text], output_dir=out, model=tiny_lm_dir, mntp=False, bidirectional=False,
                                precision="fp32", progress=False,
                                simcse_stage=stage_settings(SimCSEConfig, ["steps=1", "batch_size=4"], "-")))
    assert json.loads((out / "bivec_config.json").read_text())["adapters"] == ["simcse"]
    assert json.loads((out / "simcse" / "bivec_config.json").read_text())["bidirectional"] is False
    assert not is_bidirectional(Encoder.from_pretrained(out).model)
    assert is_bidirectional(Encoder.from_pretrained(out, bidirectional=True).model)


def test_a_stage_lora_rank_without_alpha_gets_twice_the_rank():
    assert stage_settings(MNTPConfig, ["lora_r=8"], "--mntp").lora_alpha == 16
    assert stage_settings(MNTPConfig, ["lora_r=8", "lora_alpha=4"], "--mntp").lora_alpha == 4
    assert stage_settings(SimCSEConfig, ["lora_alpha=4", "lora_r=8"], "--simcse").lora_alpha == 4
    default = stage_settings(SimCSEConfig, [], "--simcse")
    assert (default.lora_r, default.lora_alpha) == (16, 32)
