import json
import socket

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from bivec.cli import app

runner = CliRunner()


def test_encode_prints_similarities(tiny_model_dir):
    result = runner.invoke(app, ["encode", "a man plays a guitar", "someone is playing music", "-m", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    assert "2 texts -> 32-dim vectors (mean pooling, bidirectional)" in result.output
    assert "cosine similarity:" in result.output
    result = runner.invoke(app, ["encode", "a man plays a guitar", "-m", str(tiny_model_dir), "--causal", "--echo"])
    assert result.exit_code == 0 and "1 texts -> 32-dim vectors (mean pooling, causal, echo)" in result.output


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
    assert result.exit_code == 2 and "--output" in result.output and "unsupported format; use .npy, .parquet, .jsonl" in result.output


def test_run_goes_on_after_a_command_that_succeeds_and_exits_after_one_that_fails(tiny_model_dir, tmp_path, capfd):
    from bivec.cli import run

    out = tmp_path / "v.npy"
    assert run(["encode", "a dog runs", "-m", str(tiny_model_dir), "-o", str(out)]) is None
    assert np.load(out).shape == (1, 32)
    with pytest.raises(SystemExit) as exit_:
        run(["encode", "a dog", "-m", str(tiny_model_dir), "--pooling", "max"])
    assert exit_.value.code == 2 and "unknown pooling mode 'max'" in capfd.readouterr().err


def test_info(tiny_model_dir):
    result = runner.invoke(app, ["info", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    assert "LlamaModel (llama)" in result.output and "bidirectional: yes" in result.output
    assert "embedding dim: 32" in result.output


def test_help_has_examples():
    for command in ("encode", "info", "serve"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Example: bivec " + command in result.output


def test_encode_reads_files_and_stdin_and_writes_each_format(tiny_model_dir, tmp_path):
    from bivec import Encoder

    texts = ["a dog runs in the park", "a cat sits on the mat", "the market fell"]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "q": t}) + "\n" for i, t in enumerate(texts)))
    expected = Encoder.from_pretrained(tiny_model_dir).encode([["find", t] for t in texts], dimensions=8)
    out = tmp_path / "v.parquet"
    result = runner.invoke(app, ["encode", "-i", str(source), "--field", "q", "--instruction", "find",
                                 "--dimensions", "8", "-m", str(tiny_model_dir), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "saved 3 x 8 float32 vectors" in result.output
    table = pq.read_table(out)
    assert table.column("text").to_pylist() == texts
    np.testing.assert_allclose(np.array(table.column("embedding").to_pylist()), expected, atol=1e-6)

    out = tmp_path / "v.jsonl"
    result = runner.invoke(app, ["encode", "--instruction", "find", "--dimensions", "8", "-m", str(tiny_model_dir),
                                 "-o", str(out)], input="\n".join(texts) + "\n")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == texts
    np.testing.assert_allclose([r["embedding"] for r in rows], expected, atol=1e-6)


def test_encode_bad_sources(tiny_model_dir, tmp_path):
    many = tmp_path / "many.txt"
    many.write_text("a dog\n" * 17)
    blank = tmp_path / "blank.txt"
    blank.write_text("a dog\n\na cat\n")
    cases = [
        (["a dog", "-i", str(many)], "give texts as arguments or --input FILE, not both"),
        (["a dog", "--field", "q"], "--field and --input-format apply to --input or stdin"),
        (["-i", str(many)], "17 texts: give --output FILE (.npy, .parquet or .jsonl) to save more than 16"),
        (["-i", str(blank)], "blank.txt line 2: empty text"),
        (["-i", str(tmp_path / "none.txt")], "none.txt: no such file"),
        (["-i", str(many), "--input-format", "xml"], "unknown input format 'xml'"),
        ([], "stdin: no texts"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["encode", *args, "-m", str(tiny_model_dir)])
        assert result.exit_code == 2 and message in result.output, (args, result.output)


def test_serve_bad_options(tiny_model_dir):
    result = runner.invoke(app, ["serve", str(tiny_model_dir), "--max-batch-size", "0"])
    assert result.exit_code == 2 and "max_batch_size must be positive, got 0" in result.output
    result = runner.invoke(app, ["serve", str(tiny_model_dir), "--threads", "0"])
    assert result.exit_code == 2 and "--threads must be positive, got 0" in result.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", str(tiny_model_dir), "--port", str(port)])
    assert result.exit_code == 2 and f"--host 127.0.0.1 --port {port}: cannot listen there" in result.output


def test_encode_rejects_an_unknown_dtype(tiny_model_dir):
    result = runner.invoke(app, ["encode", "a dog", "-m", str(tiny_model_dir), "--dtype", "float64"])
    assert result.exit_code == 2 and "unknown dtype 'float64'; choose one of" in result.output


def test_info_prints_the_auto_dtype_verdict(tiny_model_dir):
    result = runner.invoke(app, ["info", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    assert "dtype (auto): float32 (no faster dtype runs natively here)" in result.output


def test_encode_compile_saves_the_same_vectors_and_reports_a_failed_compile(tiny_model_dir, tmp_path, monkeypatch):
    eager, compiled = tmp_path / "eager.npy", tmp_path / "compiled.npy"
    texts = ["a dog runs", "the cat sits on the mat", "a"]
    assert runner.invoke(app, ["encode", *texts, "-m", str(tiny_model_dir), "-o", str(eager)]).exit_code == 0
    result = runner.invoke(app, ["encode", *texts, "-m", str(tiny_model_dir), "-o", str(compiled), "--compile"])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(compiled), np.load(eager), rtol=1e-4, atol=1e-5)

    def fail(self):
        raise RuntimeError("torch.compile could not build this model on cpu (OSError: no C++ compiler)")

    monkeypatch.setattr("bivec.encoder.Encoder.compile", fail)
    result = runner.invoke(app, ["encode", "a dog", "-m", str(tiny_model_dir), "--compile"])
    assert result.exit_code == 2 and "no C++ compiler" in result.output
