import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from bivec.textio import check_output_path, input_format, parse_texts, read_texts, write_vectors


def test_read_each_format(tmp_path):
    (tmp_path / "a.txt").write_text("first text\r\nsecond, with comma\n")
    (tmp_path / "a.jsonl").write_text('{"q": "first text", "id": 1}\n{"q": "second"}\n')
    (tmp_path / "a.csv").write_text('id,q\n1,"first, quoted"\n2,"multi\nline"\n')
    (tmp_path / "a.tsv").write_text("q\tid\nfirst\t1\n")
    assert read_texts(tmp_path / "a.txt") == ["first text", "second, with comma"]
    assert read_texts(tmp_path / "a.jsonl", field="q") == ["first text", "second"]
    assert read_texts(tmp_path / "a.csv", field="q") == ["first, quoted", "multi\nline"]
    assert read_texts(tmp_path / "a.tsv", field="q") == ["first"]
    assert parse_texts(['{"text": "x"}'], "jsonl") == ["x"]


@pytest.mark.parametrize(("name", "content", "kwargs", "message"), [
    ("a.txt", "one\n\nthree\n", {}, "a.txt line 2: empty text"),
    ("a.txt", "", {}, "a.txt: no texts"),
    ("a.jsonl", '{"text": "ok"}\n{"text": \n', {}, "a.jsonl line 2: not valid JSON"),
    ("a.jsonl", '{"q": "ok"}\n', {}, r"a.jsonl line 1: no field 'text' \(fields: q\)"),
    ("a.jsonl", '{"text": 3}\n', {}, "a.jsonl line 1: field 'text' is int, expected a string"),
    ("a.jsonl", '["text"]\n', {}, "a.jsonl line 1: expected a JSON object, got list"),
    ("a.csv", "id,q\n1,x\n", {}, r"a.csv: no column 'text' \(columns: id, q\)"),
    ("a.csv", "text\nx\n\"\"\n", {}, "a.csv line 3: empty text in column 'text'"),
    ("a.csv", "", {}, "a.csv: no header row"),
    ("a.md", "x\n", {}, "a.md: cannot tell the format from the suffix"),
    ("a.txt", "x\n", {"format": "xml"}, "unknown input format 'xml'"),
])
def test_bad_inputs_name_the_file_and_line(tmp_path, name, content, kwargs, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=message):
        read_texts(tmp_path / name, **kwargs)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt: no such file"):
        read_texts(tmp_path / "nope.txt")
    assert input_format("-") == "txt"


def test_write_each_format(tmp_path):
    texts, vectors = ["a", "b"], np.arange(6, dtype=np.float32).reshape(2, 3)
    for suffix in (".npy", ".parquet", ".jsonl"):
        write_vectors(tmp_path / f"v{suffix}", texts, vectors)
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), vectors)
    table = pq.read_table(tmp_path / "v.parquet")
    assert table.column("text").to_pylist() == texts
    np.testing.assert_array_equal(np.array(table.column("embedding").to_pylist()), vectors)
    rows = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert rows == [{"text": "a", "embedding": [0.0, 1.0, 2.0]}, {"text": "b", "embedding": [3.0, 4.0, 5.0]}]


def test_bad_outputs(tmp_path):
    with pytest.raises(ValueError, match=r"--output v.csv: unsupported format; use .npy, .parquet, .jsonl"):
        check_output_path("v.csv")
    with pytest.raises(ValueError, match="2 texts but 1 vectors"):
        write_vectors(tmp_path / "v.npy", ["a", "b"], np.zeros((1, 3), dtype=np.float32))
