"""Read corpus rows (id, text, optional instruction) from JSONL, Parquet and CSV/TSV files,
keeping every bad row with its file and line so that nothing is dropped silently."""

from __future__ import annotations

import csv
import glob
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".csv": "csv", ".tsv": "tsv"}
_MISSING = object()


class CorpusError(ValueError):
    """Bad corpus input or output location; the message names the argument, file and line."""


@dataclass(frozen=True)
class Columns:
    """Which fields hold the id, the text and (optionally) a per-row instruction."""

    text: str = "text"
    id: str = "id"
    instruction: str | None = None


@dataclass(frozen=True)
class BadRow:
    """A row that is not embedded, where it is (``unit`` is "line" or "row") and why."""

    file: str
    number: int
    unit: str
    id: str | None
    reason: str

    def __str__(self) -> str:
        who = f" (id {self.id!r})" if self.id is not None else ""
        return f"{self.file} {self.unit} {self.number}{who}: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, self.unit: self.number, "id": self.id, "reason": self.reason}


@dataclass
class Corpus:
    """The good rows of all input files, column-wise, with where each came from."""

    files: list[str]
    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    instructions: list[str] = field(default_factory=list)
    origins: list[tuple[int, int, str]] = field(default_factory=list)  # (file index, number, unit)
    input_rows: int = 0

    def bad_row(self, index: int, reason: str) -> BadRow:
        """A BadRow for good row ``index`` that failed later (e.g. too many tokens)."""
        file, number, unit = self.origins[index]
        return BadRow(self.files[file], number, unit, self.ids[index], reason)


def find_input_files(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """The corpus files named by ``source``: a file, a directory (its supported files, not
    recursive), a glob pattern, or a list of these; sorted, so that runs are deterministic.

    Example:
        >>> find_input_files("corpus/*.jsonl")  # doctest: +SKIP
        [PosixPath('corpus/part-0.jsonl'), PosixPath('corpus/part-1.jsonl')]
    """
    sources = [source] if isinstance(source, (str, Path)) else list(source)
    if not sources:
        raise CorpusError("input: no path given")
    files: list[Path] = []
    for item in sources:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FORMATS)
            if not found:
                raise CorpusError(f"input directory {str(item)!r} has no {', '.join(FORMATS)} file")
        elif path.is_file():
            found = [path]
        else:
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
            found = [p for p in matches if p.is_file() and p.suffix.lower() in FORMATS]
            if not found:
                what = "matches no supported file" if glob.has_magic(str(item)) else "does not exist"
                raise CorpusError(f"input {str(item)!r} {what}")
        for p in found:
            if p.suffix.lower() not in FORMATS:
                raise CorpusError(f"input file {str(p)!r}: unsupported format {p.suffix!r}; use {', '.join(FORMATS)}")
        files.extend(found)
    return sorted(dict.fromkeys(files))


def _records(path: Path, columns: Columns) -> Iterator[tuple[int, dict | str]]:
    """(line or row number, record) per row; a record is a dict, or a string saying why the
    row could not be parsed."""
    kind = FORMATS[path.suffix.lower()]
    if kind == "jsonl":
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield number, f"invalid JSON ({exc.msg} at column {exc.colno})"
                    continue
                yield number, record if isinstance(record, dict) else f"expected a JSON object, got {type(record).__name__}"
    elif kind == "parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        wanted = [c for c in (columns.id, columns.text, columns.instruction) if c]
        _check_columns(path, parquet.schema_arrow.names, columns)
        number = 0
        for batch in parquet.iter_batches(columns=wanted, batch_size=65536):
            for record in batch.to_pylist():
                number += 1
                yield number, record
    else:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t" if kind == "tsv" else ",")
            _check_columns(path, reader.fieldnames or [], columns)
            for record in reader:
                if None in record or None in record.values():
                    yield reader.line_num, f"has a different number of fields than the header ({len(reader.fieldnames)})"
                else:
                    yield reader.line_num, record


def _check_columns(path: Path, names: Sequence[str], columns: Columns) -> None:
    for option, name in (("--id-column", columns.id), ("--text-column", columns.text), ("--instruction-column", columns.instruction)):
        if name and name not in names:
            raise CorpusError(f"{path}: no column {name!r} (columns: {', '.join(names) or 'none'}); choose one with {option}")


def _validate(record: dict, columns: Columns) -> tuple[str | None, str, str, str | None]:
    """(id, text, instruction, reason); reason is None for a good row."""
    raw_id = record.get(columns.id)
    if raw_id is None or raw_id == "":
        row_id, problem = None, "missing id"
    elif isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        row_id, problem = None, f"id is {type(raw_id).__name__}, expected a string or an integer"
    else:
        row_id, problem = str(raw_id), None
    text = record.get(columns.text, _MISSING)
    instruction = record.get(columns.instruction) if columns.instruction else None
    if problem:
        pass
    elif text is _MISSING:
        problem = f"no {columns.text!r} field"
    elif not isinstance(text, str):
        problem = f"text is {type(text).__name__ if text is not None else 'null'}, expected a string"
    elif not text.strip():
        problem = "empty text"
    elif instruction is not None and not isinstance(instruction, str):
        problem = f"instruction is {type(instruction).__name__}, expected a string"
    return row_id, text if isinstance(text, str) else "", instruction or "", problem


def read_corpus(files: Sequence[Path], columns: Columns = Columns()) -> tuple[Corpus, list[BadRow]]:
    """Read every row of ``files``: good rows into a Corpus, the others (missing or duplicate
    id, empty or non-string text, unparsable line) into BadRows naming file and line.

    Example:
        >>> corpus, bad = read_corpus(find_input_files("corpus/"), Columns(text="body"))  # doctest: +SKIP
    """
    corpus = Corpus(files=[str(p) for p in files])
    bad: list[BadRow] = []
    first_seen: dict[str, str] = {}
    for file_index, path in enumerate(files):
        unit = "row" if FORMATS[path.suffix.lower()] == "parquet" else "line"
        try:
            for number, record in _records(path, columns):
                corpus.input_rows += 1
                if isinstance(record, str):
                    bad.append(BadRow(str(path), number, unit, None, record))
                    continue
                row_id, text, instruction, problem = _validate(record, columns)
                where = f"{path} {unit} {number}"
                if problem is None and row_id in first_seen:
                    problem = f"duplicate id (first at {first_seen[row_id]})"
                if problem is not None:
                    bad.append(BadRow(str(path), number, unit, row_id, problem))
                    continue
                first_seen[row_id] = where
                corpus.ids.append(row_id)
                corpus.texts.append(text)
                corpus.instructions.append(instruction)
                corpus.origins.append((file_index, number, unit))
        except CorpusError:
            raise
        except UnicodeDecodeError as exc:
            raise CorpusError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except (OSError, ValueError, csv.Error) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise CorpusError(f"{path}: cannot be read ({exc})") from None
    return corpus, bad
