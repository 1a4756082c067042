import json

import pytest
from typer.testing import CliRunner

from bivec.cli import app

runner = CliRunner()
CONLL = "the DT B-NP O\nman NN I-NP B-PER\nplays VB B-VP O\n\nthe DT B-NP O\ndog NN I-NP O\nruns VB B-VP O\n"


def run(*args):
    return runner.invoke(app, ["eval", *map(str, args)])


@pytest.fixture
def files(tmp_path):
    sts = tmp_path / "pairs.tsv"
    sts.write_text("4.0\ta man plays a guitar\tsomeone is playing music\n0.5\tthe cat sits on the mat\tstock market fell\n"
                   "3.0\ta dog runs in the park\tthe dog runs\n", encoding="utf-8")
    conll = tmp_path / "c.txt"
    conll.write_text(CONLL, encoding="utf-8")
    return sts, conll


def test_sts_writes_json_and_markdown(tiny_model_dir, files, tmp_path):
    sts, _ = files
    out, md = tmp_path / "r" / "causal.json", tmp_path / "causal.md"
    result = run("sts", sts, "-m", tiny_model_dir, "--causal", "--name", "causal", "-o", out, "--markdown", md)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["kind"] == "sts" and data["model"] == "causal" and data["settings"]["causal"] is True
    assert data["scores"]["pairs"]["pairs"] == 3 and -100 <= data["average"] <= 100
    assert md.read_text().startswith("| sts | spearman | pearson | pairs | seconds |")
    assert "| pairs |" in result.output


def test_word_mteb_and_compare(tiny_model_dir, files, tmp_path):
    sts, conll = files
    word = run("word", "--task", "pos,ner", "--train", conll, "--test", conll, "-m", tiny_model_dir,
               "--cache-dir", tmp_path / "cache", "--name", "bi", "-o", tmp_path / "word.json")
    assert word.exit_code == 0, word.output
    scores = json.loads((tmp_path / "word.json").read_text())["scores"]
    assert scores["pos"]["score"] == scores["pos"]["accuracy"] == 100.0 and scores["ner"]["score"] == scores["ner"]["f1"]
    mteb = run("mteb", "--local-sts", sts, "-m", tiny_model_dir, "--name", "bi", "-o", tmp_path / "mteb.json")
    assert mteb.exit_code == 0, mteb.output
    assert "Localpairs" in json.loads((tmp_path / "mteb.json").read_text())["scores"]
    sts_run = run("sts", sts, "-m", tiny_model_dir, "--name", "bi", "-o", tmp_path / "sts.json")
    assert sts_run.exit_code == 0, sts_run.output
    compare = run("compare", tmp_path / "sts.json", tmp_path / "word.json", tmp_path / "mteb.json", "--plot", tmp_path / "c.png")
    assert compare.exit_code == 0, compare.output
    assert "| task | bi |" in compare.output and "| pos (score) | 100.00 |" in compare.output
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args,message", [
    (["sts"], "give at least one STS file or --dataset"),
    (["sts", "{bad}"], "bad.tsv:1: score 'x' is not a number"),
    (["sts", "{sts}", "--columns", "a,b"], "--columns 'a,b': expected three comma-separated names"),
    (["sts", "{sts}", "-m", "{tmp}/nope"], "does not exist"),
    (["sts", "{sts}", "--pooling", "max"], "unknown pooling mode 'max'"),
    (["sts", "--dataset", "someone/not-cached-sts"], "cannot be loaded"),
    (["word", "--task", "srl", "--train", "{conll}", "--test", "{conll}"], "task must be one of pos, chunking, ner"),
    (["word", "--task", "pos", "--train", "{bad}", "--test", "{conll}"], "bad.tsv:1: expected 4 space-separated columns"),
    (["word", "--task", "pos", "--train", "{conll}", "--test", "{empty}"], "empty.txt: no sentences"),
    (["word", "--task", "ner", "--train", "{conll}", "--test", "{unseen}", "-m", "{model}"], "unseen.txt:1: ner tag 'B-LOC' does not occur"),
    (["mteb"], "give --tasks and/or --local-sts"),
    (["mteb", "--tasks", "NoSuchTask"], "MTEB has no task named 'NoSuchTask'"),
    (["mteb", "--tasks", "STS12"], "cannot be reached"),
    (["mteb", "--local-sts", "{sts}", "--instructions", "{bad}"], "--instructions"),
    (["compare", "{bad}"], "bad.tsv:1: not valid JSON"),
    (["compare", "{tmp}/none.json"], "does not exist"),
])
def test_bad_input(tiny_model_dir, files, tmp_path, args, message):
    sts, conll = files
    (tmp_path / "bad.tsv").write_text("x\ta\tb\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "unseen.txt").write_text("Paris NNP B-NP B-LOC\n", encoding="utf-8")
    values = dict(sts=sts, conll=conll, bad=tmp_path / "bad.tsv", empty=tmp_path / "empty.txt", tmp=tmp_path,
                  unseen=tmp_path / "unseen.txt", model=tiny_model_dir)
    result = run(*[a.format(**values) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_help_has_examples():
    for command in ("sts", "mteb", "word", "compare"):
        result = run(command, "--help")
        assert result.exit_code == 0 and "Example: " in result.output and f"bivec eval {command}" in result.output


def test_eval_reports_a_failed_compile(tiny_model_dir, files, monkeypatch):
    def fail(self):
        raise RuntimeError("torch.compile could not build this model on cpu (OSError: no C++ compiler)")

    monkeypatch.setattr("bivec.encoder.Encoder.compile", fail)
    result = run("sts", files[0], "-m", tiny_model_dir, "--compile")
    assert result.exit_code == 2 and "no C++ compiler" in result.output
