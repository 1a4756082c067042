"""Word-level linear probes (CoNLL-2003 chunking, NER, POS) on a frozen encoder.

Each sentence's words are joined by single spaces and tokenised once; the tokens of a word are
found from the tokenizer's character offsets. A word is represented by its first, last or mean
sub-token state of the last layer. With ``retroactive="next_token"`` every position is read one
token earlier, as MNTP-trained models predict token *i* at position *i-1*; a BOS (or EOS) token is
put in front of sentences whose first word would otherwise have no earlier position. A linear
softmax classifier is trained on the train file's features and scored on the test file:
accuracy for POS, span F1 (seqeval, CoNLL rules) for chunking and NER. Word features are cached
on disk, keyed by the model's weights and settings and the file's content, so the three probes
of one model encode each file once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bivec.encoder import DEFAULT_BATCH_SIZE, length_limit
from bivec.precision import weights_digest
from bivec.textio import atomic_write

TASK_COLUMNS = {"pos": 1, "chunking": 2, "ner": 3}
WORD_POOLING = ("first", "last", "mean")
RETROACTIVE = ("none", "next_token")
_FEATURE_FORMAT = "v1"


@dataclass(frozen=True)
class ConllSentence:
    """One sentence: its words, the three tag columns (POS, chunk, NER) and each word's file line."""

    words: tuple[str, ...]
    tags: tuple[tuple[str, str, str], ...]
    lines: tuple[int, ...]


@dataclass(frozen=True)
class ProbeConfig:
    """How a probe reads words and trains its classifier.

    Example:
        >>> ProbeConfig(task="ner", word_pooling="first", retroactive="next_token").task
        'ner'
    """

    task: str = "pos"
    word_pooling: str = "first"
    retroactive: str = "none"
    max_iter: int = 100
    l2: float = 1e-4
    batch_size: int = DEFAULT_BATCH_SIZE
    allow_unseen_tags: bool = False
    train_sentences: int | None = None
    test_sentences: int | None = None

    def __post_init__(self) -> None:
        for name, value, valid in (("task", self.task, tuple(TASK_COLUMNS)), ("word_pooling", self.word_pooling, WORD_POOLING),
                                   ("retroactive", self.retroactive, RETROACTIVE)):
            if value not in valid:
                raise ValueError(f"{name} must be one of {', '.join(valid)}, got {value!r}")
        subsets = (self.train_sentences, self.test_sentences)
        if self.max_iter < 1 or self.l2 < 0 or self.batch_size < 1 or any(n is not None and n < 1 for n in subsets):
            raise ValueError("max_iter, batch_size, train_sentences and test_sentences must be positive and l2 non-negative")


@dataclass(frozen=True)
class ProbeResult:
    """Scores x100 on the test file; ``f1``/``precision``/``recall`` are span scores (None for POS)."""

    task: str
    accuracy: float
    f1: float | None
    precision: float | None
    recall: float | None
    train_words: int
    test_words: int
    labels: int

    @property
    def main_metric(self) -> str:
        return "accuracy" if self.task == "pos" else "f1"


def read_conll(path: str | Path) -> list[ConllSentence]:
    """Read the 4-column CoNLL-2003 format (``word POS chunk NER``, blank line between sentences).

    ``-DOCSTART-`` lines are document markers, not words, and are skipped. A line with another
    number of columns raises a ValueError naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CoNLL file {str(path)!r} does not exist")
    sentences: list[ConllSentence] = []
    words: list[str] = []
    tags: list[tuple[str, str, str]] = []
    lines: list[int] = []

    def close() -> None:
        if words:
            sentences.append(ConllSentence(tuple(words), tuple(tags), tuple(lines)))
            for part in (words, tags, lines):
                part.clear()

    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            fields = line.split()
            if not fields:
                close()
                continue
            if len(fields) != 4:
                raise ValueError(f"{path}:{number}: expected 4 space-separated columns (word POS chunk NER), got {len(fields)}")
            if fields[0] == "-DOCSTART-":
                close()
                continue
            words.append(fields[0])
            tags.append((fields[1], fields[2], fields[3]))
            lines.append(number)
    close()
    if not sentences:
        raise ValueError(f"{path}: no sentences")
    return sentences


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _align(encoder, sentence: ConllSentence, shift: bool, where: str) -> tuple[list[int], list[list[int]]]:
    """Token ids of the space-joined sentence and, per word, the positions to read."""
    text = " ".join(sentence.words)
    encoded = encoder.tokenizer(text, return_offsets_mapping=True)
    ids, offsets = list(encoded["input_ids"]), encoded["offset_mapping"]
    spans, start = [], 0
    for word in sentence.words:
        spans.append((start, start + len(word)))
        start += len(word) + 1
    positions: list[list[int]] = [[] for _ in spans]
    word = 0
    for token, (a, b) in enumerate(offsets):
        if b <= a:
            continue  # special tokens carry empty offsets
        while word < len(spans) and spans[word][1] <= a:
            word += 1
        # A token that overlaps two words (no whitespace pre-tokeniser) belongs to the first.
        if word < len(spans) and a < spans[word][1] and b > spans[word][0]:
            positions[word].append(token)
    for i, found in enumerate(positions):
        if not found:
            raise ValueError(f"{where}:{sentence.lines[i]}: word {sentence.words[i]!r} has no token of its own")
    if shift:
        if positions[0][0] == 0:
            prefix = encoder.tokenizer.bos_token_id
            prefix = encoder.tokenizer.eos_token_id if prefix is None else prefix
            if prefix is None:
                raise ValueError("retroactive='next_token' needs a BOS or EOS token to put before the first word")
            ids = [prefix] + ids
            positions = [[p + 1 for p in found] for found in positions]
        positions = [[p - 1 for p in found] for found in positions]
    if len(ids) > encoder.max_length:
        raise ValueError(f"{where}:{sentence.lines[0]}: sentence has {len(ids)} tokens, more than {length_limit(encoder.max_length, False)}")
    return ids, positions


def word_features(
    encoder, sentences: Sequence[ConllSentence], *, word_pooling: str = "first", retroactive: str = "none",
    batch_size: int = DEFAULT_BATCH_SIZE, where: str = "<sentences>", chunk: int = 256,
) -> np.ndarray:
    """(n_words, dim) float32 features of every word of ``sentences``, in order."""
    from tqdm.auto import tqdm

    from bivec.encoder import Tokenized

    aligned = [_align(encoder, s, retroactive == "next_token", where) for s in sentences]
    reduce = {"first": lambda h, p: h[p[0]], "last": lambda h, p: h[p[-1]], "mean": lambda h, p: h[p].mean(0)}[word_pooling]
    rows: list[np.ndarray] = []
    with tqdm(total=len(aligned), desc=f"features {Path(where).name}", unit="sent", disable=None) as bar:
        for begin in range(0, len(aligned), chunk):
            part = aligned[begin: begin + chunk]
            states = encoder.token_states([Tokenized(ids, [1] * len(ids)) for ids, _ in part],
                                          batch_size=batch_size, show_progress=False)
            for hidden, (_, positions) in zip(states, part):
                rows.extend(reduce(hidden, p) for p in positions)
            bar.update(len(part))
    return np.stack(rows).astype(np.float32)


def cached_word_features(
    encoder, path: str | Path, sentences: Sequence[ConllSentence], *, word_pooling: str, retroactive: str,
    batch_size: int = DEFAULT_BATCH_SIZE, cache_dir: str | Path | None = None,
) -> np.ndarray:
    """:func:`word_features` of a file, stored under ``cache_dir`` (default: bivec's cache
    directory) and reused when the model, settings, file content and number of sentences (a
    prefix of the file) are the same."""
    from bivec.runtime import cache_dir as default_cache

    path = Path(path)
    key = json.dumps([_FEATURE_FORMAT, weights_digest(encoder), word_pooling, retroactive, _file_hash(path),
                      len(sentences)])
    folder = Path(cache_dir) if cache_dir is not None else default_cache() / "word-features"
    target = folder / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npy"
    if target.is_file():
        features = np.load(target)
        if features.shape[0] == sum(len(s.words) for s in sentences):
            return features
    features = word_features(encoder, sentences, word_pooling=word_pooling, retroactive=retroactive,
                             batch_size=batch_size, where=str(path))
    folder.mkdir(parents=True, exist_ok=True)
    # Written whole or not at all, so an interrupted run never leaves a truncated file that is trusted later.
    def write(tmp: str) -> None:
        with open(tmp, "wb") as out:
            np.save(out, features)

    atomic_write(target, write)
    return features


class LinearProbe:
    """Multinomial logistic regression on standardised features, fitted with full-batch L-BFGS.

    Example:
        >>> x = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([0, 0, 1, 1])
        >>> LinearProbe(2).fit(x, y).predict(x).tolist()
        [0, 0, 1, 1]
    """

    def __init__(self, n_classes: int, *, l2: float = 1e-4, max_iter: int = 100, seed: int = 0) -> None:
        self.n_classes, self.l2, self.max_iter, self.seed = n_classes, l2, max_iter, seed

    def fit(self, features: np.ndarray, labels: np.ndarray) -> "LinearProbe":
        x = torch.from_numpy(np.asarray(features, dtype=np.float32))
        y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] == 0:
            raise ValueError(f"features must be (n, dim) and labels (n,) with n > 0, got {tuple(x.shape)} and {tuple(y.shape)}")
        if y.min() < 0 or y.max() >= self.n_classes:
            raise ValueError(f"labels must lie in [0, {self.n_classes}), got {int(y.min())}..{int(y.max())}")
        self.mean = x.mean(0)
        self.std = x.std(0).clamp(min=1e-6)
        x = (x - self.mean) / self.std
        torch.manual_seed(self.seed)
        self.layer = torch.nn.Linear(x.shape[1], self.n_classes)
        optimizer = torch.optim.LBFGS(self.layer.parameters(), max_iter=self.max_iter, history_size=20,
                                      line_search_fn="strong_wolfe")

        def loss() -> torch.Tensor:
            optimizer.zero_grad()
            value = torch.nn.functional.cross_entropy(self.layer(x), y) + self.l2 * self.layer.weight.square().sum()
            value.backward()
            return value

        optimizer.step(loss)
        return self

    @torch.no_grad()
    def predict(self, features: np.ndarray) -> np.ndarray:
        x = (torch.from_numpy(np.asarray(features, dtype=np.float32)) - self.mean) / self.std
        return self.layer(x).argmax(-1).numpy()


def _labels(sentences: Sequence[ConllSentence], task: str) -> list[list[str]]:
    column = TASK_COLUMNS[task] - 1
    return [[t[column] for t in s.tags] for s in sentences]


def evaluate_word_task(
    encoder, train: str | Path, test: str | Path, config: ProbeConfig = ProbeConfig(), *,
    cache_dir: str | Path | None = None,
) -> ProbeResult:
    """Train a linear probe for ``config.task`` on ``train`` and score it on ``test``.

    Example:
        >>> evaluate_word_task(encoder, "conll2003/train.txt", "conll2003/valid.txt",
        ...                    ProbeConfig(task="ner")).f1  # doctest: +SKIP
    """
    train_sents, test_sents = read_conll(train)[: config.train_sentences], read_conll(test)[: config.test_sentences]
    train_tags, test_tags = _labels(train_sents, config.task), _labels(test_sents, config.task)
    names = sorted({t for sent in train_tags for t in sent})
    index = {t: i for i, t in enumerate(names)}
    if not config.allow_unseen_tags:
        for sentence, tags in zip(test_sents, test_tags):
            for line, tag in zip(sentence.lines, tags):
                if tag not in index:
                    used = f" (first {config.train_sentences} sentences)" if config.train_sentences else ""
                    raise ValueError(f"{test}:{line}: {config.task} tag {tag!r} does not occur in the training file "
                                     f"{train}{used}; allow unseen tags to score such words as errors")
    settings = dict(word_pooling=config.word_pooling, retroactive=config.retroactive,
                    batch_size=config.batch_size, cache_dir=cache_dir)
    x_train = cached_word_features(encoder, train, train_sents, **settings)
    x_test = cached_word_features(encoder, test, test_sents, **settings)
    y_train = np.array([index[t] for sent in train_tags for t in sent])
    probe = LinearProbe(len(names), l2=config.l2, max_iter=config.max_iter).fit(x_train, y_train)
    flat = probe.predict(x_test)
    predicted, at = [], 0
    for tags in test_tags:
        predicted.append([names[i] for i in flat[at: at + len(tags)]])
        at += len(tags)
    gold = [t for sent in test_tags for t in sent]
    accuracy = 100 * float(np.mean([g == p for g, p in zip(gold, (t for sent in predicted for t in sent))]))
    f1 = precision = recall = None
    if config.task != "pos":
        from seqeval.metrics import f1_score, precision_score, recall_score

        f1, precision, recall = (100 * float(m(test_tags, predicted)) for m in (f1_score, precision_score, recall_score))
    return ProbeResult(config.task, accuracy, f1, precision, recall, len(y_train), len(gold), len(names))
