
import pytest

from bivec.textio import input_format, parse_texts, read_texts


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


