from typer.testing import CliRunner

from bivec.cli import app
from bivec.corpus import read_embeddings

runner = CliRunner()


def test_embed_corpus_command(tiny_model_dir, tmp_path, make_sentences, write_jsonl):
    rows = [{"doc": f"d{i}", "body": t} for i, t in enumerate(make_sentences(300))] + [{"doc": "x", "body": ""}]
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    args = ["embed-corpus", str(path), str(tmp_path / "out"), "-m", str(tiny_model_dir), "--text-column", "body",
            "--id-column", "doc", "--shard-size", "100", "--on-error", "skip", "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"300 rows in 3 shards -> {tmp_path / 'out'}; 300 rows embedded in " in result.output
    assert f"1 bad rows listed in {tmp_path / 'out/errors.jsonl'}" in result.output
    ids, vectors = read_embeddings(tmp_path / "out")
    assert ids == [f"d{i}" for i in range(300)] and vectors.shape == (300, 32)
    again = runner.invoke(app, args)
    assert "(3 finished before, kept)" in again.output and "; 0 rows embedded in " in again.output


def test_embed_corpus_bad_input(tiny_model_dir, tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "a dog"}, {"id": "a", "text": "a cat"}])
    base = [str(path), str(tmp_path / "out"), "-m", str(tiny_model_dir)]
    result = runner.invoke(app, ["embed-corpus", *base])
    assert result.exit_code == 2
    assert f"Error: 1 bad rows (listed in {tmp_path / 'out/errors.jsonl'}):\n  {path} line 2 (id 'a'): duplicate id" in result.output
    result = runner.invoke(app, ["embed-corpus", str(tmp_path / "missing.jsonl"), str(tmp_path / "o")])
    assert result.exit_code == 2 and "Error: input '" in result.output and "missing.jsonl' does not exist" in result.output
    result = runner.invoke(app, ["embed-corpus", *base, "--on-error", "warn"])
    assert result.exit_code == 2 and "--on-error must be 'skip' or 'fail', got 'warn'" in result.output
    result = runner.invoke(app, ["embed-corpus", *base, "--engine", "dask"])
    assert result.exit_code == 2 and "--engine must be 'local' or 'ray', got 'dask'" in result.output
    result = runner.invoke(app, ["embed-corpus", *base, "--text-column", "body"])
    assert result.exit_code == 2 and "no 'body' field" in result.output
    result = runner.invoke(app, ["embed-corpus", *base, "--on-error", "skip", "--no-progress"])
    assert result.exit_code == 0 and "1 rows in 1 shards" in result.output and "1 bad rows listed in" in result.output


def test_embed_corpus_help_has_an_example():
    result = runner.invoke(app, ["embed-corpus", "--help"])
    assert result.exit_code == 0 and "Example: bivec embed-corpus" in result.output


def test_embed_corpus_reports_a_failed_compile(tiny_model_dir, tmp_path, monkeypatch, write_jsonl):
    def fail(self):
        raise RuntimeError("torch.compile could not build this model on cpu (OSError: no C++ compiler)")

    monkeypatch.setattr("bivec.encoder.Encoder.compile", fail)
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "a dog"}])
    result = runner.invoke(app, ["embed-corpus", str(path), str(tmp_path / "out"), "-m", str(tiny_model_dir), "--compile"])
    assert result.exit_code == 2 and "no C++ compiler" in result.output
