"""``bivec eval``'s bad-input matrix: degenerate or malformed data and unwritable outputs are
refused before the model loads, and every result file is valid JSON."""

import json
import math

import pytest
from typer.testing import CliRunner

from bivec.cli import app
from bivec.evaluation.report import EvalResult

runner = CliRunner()


@pytest.mark.parametrize("content,extra,message", [
    (b"2\ta dog\ta cat\n2\ta man\ta woman\n", [], "pairs.tsv: every gold score is 2; a correlation needs scores that differ"),
    (b"2\ta dog\ta cat\n", [], "pairs.tsv: 1 sentence pair; a correlation needs at least 2"),
    (b"", [], "pairs.tsv: no sentence pairs"),
    (b"1\ta dog\ta cat\n2\tcaf\xe9\ta cat\n", [], "pairs.tsv line 2: not valid UTF-8 (byte 0xe9)"),
    (b"1\ta dog\ta cat\n2\ta man\ta woman\n", ["-o", "{tmp}"], "--output {tmp}: is a folder; give a file name"),
    (b"1\ta dog\ta cat\n2\ta man\ta woman\n", ["--max-length", "0"], "--max-length must be positive, got 0"),
])
def test_sts_refuses_before_the_model_loads(tmp_path, no_loading, content, extra, message):
    (tmp_path / "pairs.tsv").write_bytes(content)
    result = runner.invoke(app, ["eval", "sts", str(tmp_path / "pairs.tsv"), *[a.format(tmp=tmp_path) for a in extra]])
    assert result.exit_code == 2, result.output
    assert message.format(tmp=tmp_path) in result.output


def test_an_undefined_score_is_null_in_valid_json(tmp_path):
    path = EvalResult("sts", "constant", "spearman", {"a": {"spearman": math.nan, "pearson": 1.0}}).save(tmp_path / "r.json")
    text = path.read_text()
    assert "NaN" not in text
    data = json.loads(text)
    assert data["scores"]["a"]["spearman"] is None and data["average"] is None
