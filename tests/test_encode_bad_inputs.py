"""``bivec encode``'s bad-input matrix: every case exits 2 with a message that names the problem,
and what can be checked before the model loads is (loading is made to fail loudly to prove it)."""

import pytest
from typer.testing import CliRunner

from bivec.cli import app

runner = CliRunner()


@pytest.mark.parametrize("args,message", [
    (["a", "-o", "{tmp}/missing/out.npy"], "--output {tmp}/missing/out.npy: the folder '{tmp}/missing' does not exist"),
    (["a", "-o", "{tmp}/file.txt/out.npy"], "--output {tmp}/file.txt/out.npy: '{tmp}/file.txt' is not a folder"),
    (["a", "-o", "{tmp}/missing/codes.npz", "--quantize", "int8"], "--output {tmp}/missing/codes.npz: the folder '{tmp}/missing' does not exist"),
    (["a", "-o", "{tmp}/v.csv"], "--output {tmp}/v.csv: unsupported format; use .npy, .parquet, .jsonl"),
    (["a", "--dimensions", "0"], "--dimensions must be positive, got 0"),
    (["a", "--max-length", "0"], "--max-length must be positive, got 0"),
    (["a", "--pooling", "max"], "--pooling: unknown pooling mode 'max'"),
    (["a", "--quantize", "int4"], "--quantize int4: choose one of int8, binary"),
    (["-i", "{tmp}/latin1.txt"], "{tmp}/latin1.txt line 2: not valid UTF-8 (byte 0xe9); save the file as UTF-8"),
    (["a", "-i", "{tmp}/latin1.txt"], "give texts as arguments or --input FILE, not both"),
])
def test_refused_before_the_model_loads(tmp_path, no_loading, args, message):
    (tmp_path / "file.txt").write_text("")
    (tmp_path / "latin1.txt").write_bytes(b"fine\ncaf\xe9\n")
    result = runner.invoke(app, ["encode", *[a.format(tmp=tmp_path) for a in args]])
    assert result.exit_code == 2, result.output
    assert f"Error: {message.format(tmp=tmp_path)}" in result.output


def test_stdin_that_is_not_utf8(no_loading):
    result = runner.invoke(app, ["encode"], input=b"a dog\n\xff\xfe runs\n")
    assert result.exit_code == 2
    assert "Error: stdin line 2: not valid UTF-8 (byte 0xff)" in result.output


def test_no_truncate_refuses_a_text_longer_than_max_length(tiny_model_dir):
    long_text = " ".join(["a dog runs in the park"] * 4)
    result = runner.invoke(app, ["encode", long_text, "-m", str(tiny_model_dir), "--max-length", "8", "--no-truncate"])
    assert result.exit_code == 2 and "inputs[0] has 25 tokens, more than max_length=8" in result.output
    result = runner.invoke(app, ["encode", long_text, "a dog", "-m", str(tiny_model_dir), "--max-length", "8"])
    assert result.exit_code == 0, result.output
    assert "note: 1 of 2 texts longer than max_length=8 tokens, cut to fit; --no-truncate refuses them" in (
        result.output)
    result = runner.invoke(app, ["encode", "a dog runs in", "-m", str(tiny_model_dir), "--max-length", "8", "--echo"])
    assert result.exit_code == 0 and "note: 1 of 1 texts longer than max_length=8 tokens (echo reads each text " \
        "twice), cut to fit" in result.output
    result = runner.invoke(app, ["encode", "a dog runs in", "-m", str(tiny_model_dir), "--max-length", "8", "--echo",
                                 "--no-truncate"])
    assert result.exit_code == 2 and "inputs[0] has 9 tokens, more than max_length=8 tokens (echo reads each text twice)" in (
        result.output)
    result = runner.invoke(app, ["encode", "a dog runs in", "-m", str(tiny_model_dir), "--max-length", "9", "--echo",
                                 "--no-truncate"])
    assert result.exit_code == 0, result.output


def test_dimensions_above_the_model_size(tiny_model_dir):
    result = runner.invoke(app, ["encode", "a dog", "-m", str(tiny_model_dir), "--dimensions", "33"])
    assert result.exit_code == 2 and "dimensions must be between 1 and 32, got 33" in result.output


def test_outputs_are_written_whole_with_ordinary_permissions(tiny_model_dir, tmp_path):
    import os

    for suffix in (".npy", ".parquet", ".jsonl"):
        out = tmp_path / f"v{suffix}"
        result = runner.invoke(app, ["encode", "a dog", "-m", str(tiny_model_dir), "-o", str(out)])
        assert result.exit_code == 0, result.output
        umask = os.umask(0)
        os.umask(umask)
        assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.jsonl", "v.npy", "v.parquet"]  # no temporary files left
