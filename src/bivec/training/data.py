"""Training data readers: plain text for MNTP, sentences for SimCSE, rows for supervised
contrastive training. Bad input raises a ValueError naming the file and line (or dataset row)."""

from __future__ import annotations

import csv
import difflib
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from bivec.textio import json_object, read_text_file

DataSource = Union[str, Path, Any]  # a file, a directory of .txt files, or a `datasets.Dataset`


@dataclass(frozen=True)
class ContrastiveRow:
    """One supervised example: a query (with an optional instruction), its positive and hard negatives."""

    query: str
    positive: str
    negatives: tuple[str, ...] = ()
    instruction: str = ""
    where: str = ""


def _text_files(source: str | Path) -> list[Path]:
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise ValueError(f"data directory {str(source)!r} holds no .txt file")
        return files
    if not path.is_file():
        raise FileNotFoundError(f"data file {str(source)!r} does not exist")
    return [path]


def _dataset_rows(dataset: Any) -> Iterable[tuple[str, dict]]:
    if not hasattr(dataset, "column_names") or not hasattr(dataset, "__iter__"):
        raise TypeError(f"expected a path or a datasets.Dataset, got {type(dataset).__name__}")
    for i, row in enumerate(dataset):
        yield f"dataset row {i}", row


def read_documents(sources: Sequence[DataSource]) -> list[str]:
    """Paragraphs for MNTP: every non-blank line of each text file (blank lines separate
    paragraphs, as in WikiText), or the ``text`` column of a dataset.

    Example:
        >>> read_documents(["../shared/data/text/wikitext2_valid.txt"])[:1]  # doctest: +SKIP
        [' = Homarus gammarus = \\n']
    """
    if not sources:
        raise ValueError("no training data given")
    documents: list[str] = []
    for source in sources:
        if isinstance(source, (str, Path)):
            for path in _text_files(source):
                found = [line for line in read_text_file(path).splitlines(keepends=True) if line.strip()]
                if not found:
                    raise ValueError(f"{path}: the file holds no text")
                documents.extend(found)
        else:
            documents.extend(_dataset_texts(source))
    return documents


def _dataset_texts(source) -> Iterator[str]:
    for where, row in _dataset_rows(source):
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{where}: missing or empty 'text' field")
        yield text


def read_sentences(sources: Sequence[DataSource]) -> list[str]:
    """Sentences for SimCSE, one per line (an empty line is an error), or a dataset's ``text`` column."""
    if not sources:
        raise ValueError("no training data given")
    sentences: list[str] = []
    for source in sources:
        if isinstance(source, (str, Path)):
            for path in _text_files(source):
                start = len(sentences)
                for number, line in enumerate(read_text_file(path).splitlines(), 1):
                    if not line.strip():
                        raise ValueError(f"{path}:{number}: empty line; put one sentence on every line")
                    sentences.append(line)
                if len(sentences) == start:
                    raise ValueError(f"{path}: the file is empty")
        else:
            sentences.extend(_dataset_texts(source))
    return sentences


_FIELDS = ("query", "positive", "negatives", "instruction")


# WikiText's tokenised files escape in-word hyphens, commas and points as " @-@ ", " @,@ ", " @.@ ".
_WIKITEXT_ESCAPE = re.compile(r" @(.)@ ")
# ... and put spaces around punctuation and clitics, which untokenised text (STS, queries) has not.
_DETOKENIZE = [(re.compile(r" ([.,;:!?%)\]]|'s|n't|'re|'ve|'d|'ll|'m)(?=\s|$)"), r"\1"), (re.compile(r"([(\[$]) "), r"\1")]
_SENTENCE_END = re.compile(r"(?<=[.!?]) (?=[A-Z0-9\"'(])")


def split_sentences(documents: Sequence[str], *, min_words: int = 6, max_words: int = 40) -> list[str]:
    """Distinct sentences of ``min_words`` to ``max_words`` words from paragraphs, for SimCSE when
    only running text is given (the paper's SimCSE data is Wikipedia sentences). Headings
    (``= Title =`` lines) are skipped, WikiText's ``@-@`` escapes undone and its tokenised
    punctuation joined again.

    Example:
        >>> split_sentences(["The cat ( a tabby ) sat on the mat , all day . Then it left the house ."])
        ['The cat (a tabby) sat on the mat, all day.', 'Then it left the house.']
    """
    seen: dict[str, None] = {}
    for paragraph in documents:
        text = _WIKITEXT_ESCAPE.sub(r"\1", paragraph.strip())
        if not text or text.startswith("="):
            continue
        for sentence in _SENTENCE_END.split(text):
            if min_words <= len(sentence.split()) <= max_words:
                for pattern, replacement in _DETOKENIZE:
                    sentence = pattern.sub(replacement, sentence)
                seen.setdefault(sentence.strip())
    return list(seen)


def _row(fields: dict, where: str, instruction: str) -> ContrastiveRow:
    for key in fields:
        if key not in _FIELDS:
            close = difflib.get_close_matches(str(key), _FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{where}: unknown field {key!r}{hint}; the fields are {', '.join(_FIELDS)}")
    for key in ("query", "positive"):
        value = fields.get(key)
        if value is None:
            raise ValueError(f"{where}: missing field {key!r}")
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}: field {key!r} must be a non-empty string, got {value!r}")
    negatives = fields.get("negatives", [])
    if isinstance(negatives, str):
        negatives = [negatives]
    if not isinstance(negatives, list) or any(not isinstance(n, str) or not n.strip() for n in negatives):
        raise ValueError(f"{where}: 'negatives' must be a list of non-empty strings, got {negatives!r}")
    row_instruction = fields.get("instruction") or instruction
    if not isinstance(row_instruction, str):
        raise ValueError(f"{where}: 'instruction' must be a string, got {row_instruction!r}")
    return ContrastiveRow(fields["query"], fields["positive"], tuple(negatives), row_instruction.strip(), where)


def _file_rows(path: Path) -> Iterable[tuple[str, dict]]:
    text = read_text_file(path)
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames:
            return
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row:
                raise ValueError(f"{where}: more values than the header has columns")
            negatives = [v for k, v in row.items() if k.startswith("negative") and v]
            yield where, {**{k: v for k, v in row.items() if not k.startswith("negative")}, "negatives": negatives}
        return
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{path}:{number}"
        if not line.strip():
            raise ValueError(f"{where}: empty line")
        yield where, json_object(line, where)


def read_contrastive(sources: Sequence[DataSource], *, instruction: str = "") -> list[ContrastiveRow]:
    """(query, positive, negatives) rows from JSONL (``{"query", "positive", "negatives",
    "instruction"?}``), CSV (columns query, positive, negative*, instruction?) or datasets.
    ``instruction`` applies to rows that carry none.

    Example:
        >>> rows = read_contrastive(["../shared/data/nli/sick_train_triplets.jsonl"],
        ...                         instruction="Retrieve semantically similar text.")  # doctest: +SKIP
    """
    if not sources:
        raise ValueError("no training data given")
    rows: list[ContrastiveRow] = []
    for source in sources:
        if isinstance(source, (str, Path)):
            path = Path(source).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"data file {str(source)!r} does not exist")
            found = [_row(fields, where, instruction) for where, fields in _file_rows(path)]
            if not found:
                raise ValueError(f"{path}: the file holds no rows")
            rows.extend(found)
        else:
            rows.extend(_row(dict(fields), where, instruction) for where, fields in _dataset_rows(source))
    return rows
