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
                                 "--steps", "3", "--batch-size", "2", "--max-length", "8", "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    assert "mntp: 3 steps" in result.output
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
