import json

import datasets
import pytest

from bivec.training.data import read_contrastive, read_documents, read_sentences


def test_documents_skip_blank_separators_and_read_directories(tmp_path):
    (tmp_path / "a.txt").write_text(" = Title = \n \nfirst paragraph\n\nsecond paragraph\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("third\n")
    assert [d.strip() for d in read_documents([tmp_path])] == ["= Title =", "first paragraph", "second paragraph", "third"]


def test_empty_inputs_are_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text(" \n\n")
    with pytest.raises(ValueError, match=f"{empty}: the file holds no text"):
        read_documents([empty])
    with pytest.raises(ValueError, match=f"{empty}:1: empty line"):
        read_sentences([empty])
    (tmp_path / "zero.txt").write_text("")
    with pytest.raises(ValueError, match="zero.txt: the file is empty"):
        read_sentences([tmp_path / "zero.txt"])
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match="holds no .txt file"):
        read_documents([tmp_path / "none"])
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_sentences([tmp_path / "missing.txt"])
    with pytest.raises(ValueError, match="no training data given"):
        read_contrastive([])


def test_empty_sentence_line_names_file_and_line(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("one sentence\n\nanother\n")
    with pytest.raises(ValueError, match=f"{path}:2: empty line"):
        read_sentences([path])


def _jsonl(tmp_path, rows):
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_contrastive_rows_and_instructions(tmp_path):
    path = _jsonl(tmp_path, [{"query": "q1", "positive": "p1", "negatives": ["n1"]},
                             {"query": "q2", "positive": "p2", "instruction": "own"}])
    rows = read_contrastive([path], instruction="default")
    assert [(r.query, r.positive, r.negatives, r.instruction) for r in rows] == [
        ("q1", "p1", ("n1",), "default"), ("q2", "p2", (), "own")]
    assert rows[1].where == f"{path}:2"


@pytest.mark.parametrize("row, message", [
    ({"query": "q"}, "missing field 'positive'"),
    ({"positive": "p"}, "missing field 'query'"),
    ({"query": "q", "positive": ""}, "field 'positive' must be a non-empty string, got ''"),
    ({"query": "q", "positive": None}, "missing field 'positive'"),
    ({"query": "q", "positive": "p", "negatives": ["", "x"]}, "'negatives' must be a list of non-empty strings"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
    ("", "empty line"),
])
def test_bad_contrastive_rows_name_file_and_line(tmp_path, row, message):
    path = _jsonl(tmp_path, [{"query": "q", "positive": "p"}, row])
    with pytest.raises(ValueError, match=f"{path}:2: .*{message}".replace("[", r"\[").replace("(", r"\(")):
        read_contrastive([path])


def test_csv_rows(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("query,positive,negative_1,negative_2\nq1,p1,n1,\nq2,,n2,n3\n")
    with pytest.raises(ValueError, match=f"{path}:3: field 'positive' must be a non-empty string"):
        read_contrastive([path])
    path.write_text("query,positive,negative_1,negative_2\nq1,p1,n1,\nq2,p2,n2,n3\n")
    assert [r.negatives for r in read_contrastive([path])] == [("n1",), ("n2", "n3")]


def test_dataset_rows_name_the_row():
    data = datasets.Dataset.from_list([{"text": "fine"}, {"text": " "}])
    with pytest.raises(ValueError, match="dataset row 1: missing or empty 'text' field"):
        read_sentences([data])
    rows = datasets.Dataset.from_list([{"query": "q", "positive": "p", "negatives": []}])
    assert read_contrastive([rows])[0].positive == "p"
