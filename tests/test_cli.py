import numpy as np
from typer.testing import CliRunner

from bivec.cli import app

runner = CliRunner()


def test_encode_prints_similarities(tiny_model_dir):
    result = runner.invoke(app, ["encode", "a man plays a guitar", "someone is playing music", "-m", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    assert "2 texts -> 32-dim vectors (mean pooling, bidirectional)" in result.output
    assert "cosine similarity:" in result.output


def test_encode_saves_npy_equal_to_the_library(tiny_model_dir, tmp_path):
    from bivec import Encoder

    out = tmp_path / "v.npy"
    result = runner.invoke(app, ["encode", "a dog runs", "--instruction", "find", "-m", str(tiny_model_dir), "-o", str(out), "--normalize"])
    assert result.exit_code == 0, result.output
    expected = Encoder.from_pretrained(tiny_model_dir).encode([["find", "a dog runs"]], normalize=True)
    np.testing.assert_allclose(np.load(out), expected, atol=1e-6)


def test_encode_bad_input(tiny_model_dir, tmp_path):
    result = runner.invoke(app, ["encode", "a dog", "-m", str(tiny_model_dir), "--pooling", "max"])
    assert result.exit_code == 2 and "unknown pooling mode 'max'" in result.output
    result = runner.invoke(app, ["encode", "a dog", "-m", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(app, ["encode", " ", "-m", str(tiny_model_dir)])
    assert result.exit_code == 2 and "inputs[0] has an empty text" in result.output
    result = runner.invoke(app, ["encode", "a dog", "-m", str(tiny_model_dir), "-o", str(tmp_path / "v.csv")])
    assert result.exit_code == 2 and "only .npy is supported" in result.output


def test_info(tiny_model_dir):
    result = runner.invoke(app, ["info", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    assert "LlamaModel (llama)" in result.output and "bidirectional: yes" in result.output
    assert "embedding dim: 32" in result.output


def test_help_has_examples():
    for command in ("encode", "info"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Example: bivec " + command in result.output
