import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bivec.corpus import Columns, CorpusError, find_input_files, read_corpus


def reasons(bad):
    return [(b.number, b.id, b.reason) for b in bad]


def test_find_input_files_file_directory_glob_and_list(tmp_path, write_jsonl):
    a = write_jsonl(tmp_path / "b.jsonl", [])
    b = write_jsonl(tmp_path / "a.jsonl", [])
    (tmp_path / "notes.txt").write_text("x")
    assert find_input_files(a) == [a]
    assert find_input_files(tmp_path) == [b, a]
    assert find_input_files(str(tmp_path / "*.jsonl")) == [b, a]
    assert find_input_files([a, b, a]) == [b, a]


def test_find_input_files_errors(tmp_path):
    with pytest.raises(CorpusError, match="input '.*nope.jsonl' does not exist"):
        find_input_files(tmp_path / "nope.jsonl")
    with pytest.raises(CorpusError, match=r"input '.*\*.parquet' matches no supported file"):
        find_input_files(str(tmp_path / "*.parquet"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(CorpusError, match="notes.txt'.*unsupported format '.txt'"):
        find_input_files(tmp_path / "notes.txt")
    with pytest.raises(CorpusError, match="input directory .* has no .jsonl"):
        find_input_files(tmp_path)
    with pytest.raises(CorpusError, match="no path given"):
        find_input_files([])


def test_jsonl_bad_rows_are_reported_with_line_and_reason(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(
        '{"id": "a", "text": "a dog runs"}\n'
        "\n"
        '{"id": "b", "text": ""}\n'
        '{"id": "c", "text": 7}\n'
        '{"id": "a", "text": "a cat sits"}\n'
        '{"text": "no id here"}\n'
        '{"id": 5, "text": "int ids are fine"}\n'
        "not json\n"
        "[1, 2]\n"
        '{"id": "d", "body": "wrong field"}\n'
        '{"id": true, "text": "bool id"}\n'
        '{"id": "e", "text": null}\n'
        '{"id": "f", "text": "a man", "inst": ["x"]}\n'
        '{"id": "g", "text": "a man", "inst": "find"}\n',
        encoding="utf-8",
    )
    corpus, bad = read_corpus([path], Columns(instruction="inst"))
    assert corpus.ids == ["a", "5", "g"]
    assert corpus.instructions == ["", "", "find"]
    assert corpus.input_rows == 13
    assert reasons(bad) == [
        (3, "b", "empty text"),
        (4, "c", "text is int, expected a string"),
        (5, "a", f"duplicate id (first at {path} line 1)"),
        (6, None, "missing id"),
        (8, None, "invalid JSON (Expecting value at column 1)"),
        (9, None, "expected a JSON object, got list"),
        (10, "d", "no 'text' field"),
        (11, None, "id is bool, expected a string or an integer"),
        (12, "e", "text is null, expected a string"),
        (13, "f", "instruction is list, expected a string"),
    ]
    assert str(bad[0]) == f"{path} line 3 (id 'b'): empty text"
    assert bad[0].to_json() == {"file": str(path), "line": 3, "id": "b", "reason": "empty text"}


def test_csv_and_tsv_line_numbers_and_columns(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('doc,body\n1,a dog runs\n2,"a cat,\nsits"\n3,\n4,a man,extra\n', encoding="utf-8")
    corpus, bad = read_corpus([path], Columns(text="body", id="doc"))
    assert corpus.ids == ["1", "2"] and corpus.texts[1] == "a cat,\nsits"
    assert reasons(bad) == [(5, "3", "empty text"), (6, None, "has a different number of fields than the header (2)")]
    tsv = tmp_path / "c.tsv"
    tsv.write_text("id\ttext\nx\ta dog\n", encoding="utf-8")
    assert read_corpus([tsv])[0].texts == ["a dog"]
    with pytest.raises(CorpusError, match=r"c.csv: no column 'id' \(columns: doc, body\); choose one with --id-column"):
        read_corpus([path])


def test_parquet_rows_and_missing_column(tmp_path):
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": [10, 11, None], "text": ["a dog", None, "a cat"]}), path)
    corpus, bad = read_corpus([path])
    assert corpus.ids == ["10"] and corpus.origins == [(0, 1, "row")]
    assert [str(b) for b in bad] == [f"{path} row 2 (id '11'): text is null, expected a string", f"{path} row 3: missing id"]
    with pytest.raises(CorpusError, match=r"c.parquet: no column 'body' \(columns: id, text\); choose one with --text-column"):
        read_corpus([path], Columns(text="body"))


def test_unreadable_files_name_the_file(tmp_path):
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not a parquet file")
    with pytest.raises(CorpusError, match="broken.parquet: cannot be read"):
        read_corpus([broken])
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"id": "a", "text": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(CorpusError, match="latin.jsonl: not UTF-8 text"):
        read_corpus([latin])


def test_duplicates_across_files_name_the_first_file(tmp_path, write_jsonl):
    first = write_jsonl(tmp_path / "1.jsonl", [{"id": "x", "text": "a dog"}])
    second = write_jsonl(tmp_path / "2.jsonl", [{"id": "y", "text": "a cat"}, {"id": "x", "text": "a man"}])
    corpus, bad = read_corpus([first, second])
    assert corpus.ids == ["x", "y"]
    assert str(bad[0]) == f"{second} line 2 (id 'x'): duplicate id (first at {first} line 1)"
