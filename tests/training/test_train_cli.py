import json

from typer.testing import CliRunner

from bivec.cli import app

runner = CliRunner()


def test_help_has_examples():
    for stage in ("mntp", "simcse", "supervised"):
        result = runner.invoke(app, ["train", stage, "--help"])
        assert result.exit_code == 0 and f"Example: bivec train {stage}" in result.output


def test_train_mntp_and_simcse(tmp_path, tiny_lm_dir, text_file):
    mntp = tmp_path / "mntp"
    result = runner.invoke(app, ["train", "mntp", str(text_file), "-m", str(tiny_lm_dir), "-o", str(mntp),
                                 "--steps", "3", "--batch-size", "2", "--max-length", "8", "--precision", "fp32",
                                 "--lora-r", "4"])
    assert result.exit_code == 0, result.output
    assert "mntp: 3 steps" in result.output
    lora = json.loads((mntp / "adapter_config.json").read_text())
    assert (lora["r"], lora["lora_alpha"]) == (4, 8)
    log = json.loads((mntp / "training_log.json").read_text())
    assert [h["step"] for h in log["history"]] == [1, 2, 3] and log["batch_size"] == 2
    result = runner.invoke(app, ["train", "simcse", str(text_file), "-m", str(tiny_lm_dir), "--adapter", str(mntp),
                                 "-o", str(tmp_path / "simcse"), "--steps", "2", "--batch-size", "4", "--lr", "1e-3"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "simcse" / "training_log.json").read_text())["history"][0]["lr"] == 1e-3


def test_bad_inputs_exit_2_with_the_file_and_line(tmp_path, tiny_lm_dir):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"query": "a man plays", "positive": "music"}\n{"query": "a dog", "positive": ""}\n')
    result = runner.invoke(app, ["train", "supervised", str(rows), "-m", str(tiny_lm_dir), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert f"Error: {rows}:2: field 'positive' must be a non-empty string" in result.output
    result = runner.invoke(app, ["train", "mntp", str(tmp_path / "missing.txt"), "-m", str(tiny_lm_dir)])
    assert result.exit_code == 2 and "missing.txt' does not exist" in result.output
    result = runner.invoke(app, ["train", "simcse", str(rows), "-m", str(tiny_lm_dir), "--precision", "fp64"])
    assert result.exit_code == 2 and "precision must be auto, bf16 or fp32" in result.output


def test_every_stage_setting_states_its_help():
    import dataclasses

    from bivec.training.config import MNTPConfig, SimCSEConfig, SupervisedConfig, setting_help

    for cls in (MNTPConfig, SimCSEConfig, SupervisedConfig):
        assert all(setting_help(cls, f.name).strip() for f in dataclasses.fields(cls))


def test_each_stage_help_gives_that_stage_defaults_and_the_config_help():
    from bivec.training.config import TrainConfig, setting_help

    rates = {"mntp": "learning_rate=5e-05", "simcse": "learning_rate=3e-05", "supervised": "learning_rate=0.0002"}
    for stage, rate in rates.items():
        result = runner.invoke(app, ["train", stage, "--help"], env={"COLUMNS": "1000"})
        assert result.exit_code == 0 and rate in result.output, stage
        assert setting_help(TrainConfig, "save_steps") in result.output, stage
    recipe = runner.invoke(app, ["train", "llm2vec", "--help"], env={"COLUMNS": "1000"}).output
    assert all(rate in recipe for rate in rates.values()) and "dropout=0.3" in recipe


def test_contrastive_pooling_and_echo_flags_are_what_the_output_encodes_with(tmp_path, tiny_lm_dir, text_file):
    from bivec import Encoder

    out = tmp_path / "simcse"
    result = runner.invoke(app, ["train", "simcse", str(text_file), "-m", str(tiny_lm_dir), "-o", str(out), "--steps", "1",
                                 "--batch-size", "4", "--pooling", "weighted_mean", "--echo", "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    encoder = Encoder.from_pretrained(out)
    assert (encoder.pooling, encoder.echo) == ("weighted_mean", True)


def test_an_unknown_pooling_is_refused_before_training(tmp_path, tiny_lm_dir, text_file):
    result = runner.invoke(app, ["train", "simcse", str(text_file), "-m", str(tiny_lm_dir), "-o", str(tmp_path / "o"),
                                 "--pooling", "max"])
    assert result.exit_code == 2
    assert "pooling: unknown pooling mode 'max'; choose one of mean, weighted_mean" in result.output
    assert not (tmp_path / "o").exists()
