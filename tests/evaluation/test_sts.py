import numpy as np
import pytest

from bivec.evaluation import evaluate_sts, read_sts_file


class FakeEncoder:
    """Maps each sentence to a fixed unit vector so the cosine of a pair is known exactly."""

    def __init__(self, cosines):
        self.cosines = cosines

    def encode(self, sentences, batch_size=32, normalize=False):
        n = len(sentences) // 2
        angles = np.arccos(np.clip(self.cosines, -1, 1))
        first = np.tile([1.0, 0.0], (n, 1))
        second = np.stack([np.cos(angles), np.sin(angles)], 1)
        return np.concatenate([first, second]).astype(np.float32)


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_perfect_and_reversed_predictors(tmp_path):
    gold = [0.0, 1.5, 2.0, 3.8, 5.0]
    path = write(tmp_path / "s.tsv", [f"{g}\ta{i}\tb{i}" for i, g in enumerate(gold)])
    perfect = evaluate_sts(FakeEncoder(np.array(gold) / 5), path)
    assert perfect.spearman == pytest.approx(100) and perfect.pearson == pytest.approx(100)
    assert evaluate_sts(FakeEncoder(-np.array(gold) / 5), path).spearman == pytest.approx(-100)
    assert perfect.pairs == 5 and perfect.name == "s"


@pytest.mark.parametrize(
    "lines,message",
    [
        (["1.0\ta\tb", "2.0\tonly two"], r"s\.tsv:2: expected 3 tab-separated columns"),
        (["high\ta\tb"], r"s\.tsv:1: score 'high' is not a number"),
        (["nan\ta\tb"], r"s\.tsv:1: score 'nan' is not finite"),
        (["1\t \tb"], r"s\.tsv:1: empty sentence"),
        ([], r"s\.tsv: no sentence pairs"),
    ],
)
def test_malformed_files(tmp_path, lines, message):
    with pytest.raises(ValueError, match=message):
        read_sts_file(write(tmp_path / "s.tsv", lines))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_sts_file(tmp_path / "nope.tsv")
