"""Texts in (txt / jsonl / csv / tsv files or stdin), and atomic writes of any output."""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

INPUT_FORMATS = ("txt", "jsonl", "csv", "tsv")


def input_format(path: str | Path, format: str | None = None) -> str:
    """The format of an input: ``format`` when given, else from the suffix (stdin, ``-``: txt)."""
    if format is not None:
        if format not in INPUT_FORMATS:
            raise ValueError(f"unknown input format {format!r}; use one of {', '.join(INPUT_FORMATS)}")
        return format
    if str(path) == "-":
        return "txt"
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in INPUT_FORMATS:
        raise ValueError(f"{path}: cannot tell the format from the suffix; name the file .txt, .jsonl, .csv or .tsv, "
                         "or give the format")
    return suffix


def read_texts(path: str | Path, *, format: str | None = None, field: str = "text") -> list[str]:
    """Texts from a file or stdin (``-``): one per line (txt), ``field`` of each JSON line (jsonl),
    or column ``field`` (csv / tsv). Blank lines and empty texts are errors naming the line.

    Example:
        >>> read_texts("queries.jsonl", field="question")  # doctest: +SKIP
        ['what is a llama?', ...]
    """
    fmt = input_format(path, format)
    if str(path) == "-":
        text = decode_utf8(sys.stdin.buffer.read(), "stdin")
        return parse_texts(text.splitlines(keepends=True), fmt, field=field, source="stdin")
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return parse_texts(read_text_file(path).splitlines(keepends=True), fmt, field=field, source=str(path))


def decode_utf8(data: bytes, source: str) -> str:
    """``data`` decoded as UTF-8; a ValueError naming ``source`` and the line where it is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"{source} line {line}: not valid UTF-8 (byte 0x{data[exc.start]:02x}); "
                         "save the file as UTF-8") from None


def read_text_file(path: str | Path) -> str:
    """The whole of a UTF-8 text file; bad bytes are a ValueError naming the file and line."""
    return decode_utf8(Path(path).read_bytes(), str(path))


def parse_texts(lines: Iterable[str], format: str, *, field: str = "text", source: str = "input") -> list[str]:
    """Texts from ``lines`` in ``format`` (see :func:`read_texts`); ``source`` names them in errors."""
    if format in ("csv", "tsv"):
        return _read_table(lines, "," if format == "csv" else "\t", field, source)
    texts = []
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r\n")
        if format == "jsonl" and line.strip():
            line = _json_field(line, field, f"{source} line {number}")
        if not line.strip():
            raise ValueError(f"{source} line {number}: empty text")
        texts.append(line)
    if not texts:
        raise ValueError(f"{source}: no texts")
    return texts


def json_object(text: str, where: str) -> dict:
    """Parse JSON that must hold an object: one JSONL line (``where`` is file:line) or a whole
    file (``where`` is its path; errors add the line)."""
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        at = f" line {exc.lineno}" if "\n" in text.strip() else ""
        raise ValueError(f"{where}{at}: not valid JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    return row


def _json_field(line: str, field: str, where: str) -> str:
    row = json_object(line, where)
    if field not in row:
        raise ValueError(f"{where}: no field {field!r} (fields: {', '.join(row) or 'none'})")
    if not isinstance(row[field], str):
        raise ValueError(f"{where}: field {field!r} is {type(row[field]).__name__}, expected a string")
    return row[field]


def _read_table(lines: Iterable[str], delimiter: str, column: str, source: str) -> list[str]:
    reader = csv.DictReader(lines, delimiter=delimiter)
    if reader.fieldnames is None:
        raise ValueError(f"{source}: no header row")
    if column not in reader.fieldnames:
        raise ValueError(f"{source}: no column {column!r} (columns: {', '.join(reader.fieldnames)})")
    texts = []
    for row in reader:
        text = row[column]
        if text is None or not text.strip():
            raise ValueError(f"{source} line {reader.line_num}: empty text in column {column!r}")
        texts.append(text)
    if not texts:
        raise ValueError(f"{source}: no texts")
    return texts


def check_writable_dir(folder: str | Path, what: str) -> None:
    """Raise a ValueError naming ``what`` unless ``folder`` is an existing folder this process can
    write into: checked before expensive work, so that its result is not lost to a late error."""
    folder = Path(folder) if str(folder) else Path(".")
    if not folder.is_dir():
        raise ValueError(f"{what}: the folder {str(folder)!r} does not exist" if not folder.exists()
                         else f"{what}: {str(folder)!r} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{what}: the folder {str(folder)!r} is not writable")


def atomic_write(path: str | Path, write) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place: a reader
    (or a resumed run) sees the whole file or none of it. The file gets the usual permissions
    (``0o666`` less the umask), not the temporary file's private ``0o600``."""
    path = Path(path)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
