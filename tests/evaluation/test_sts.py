import numpy as np
import pytest

from bivec.evaluation import evaluate_sts, read_sts_file
from bivec.evaluation.sts import evaluate_pairs, read_sts_dataset


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


def test_evaluate_pairs_puts_the_instruction_on_both_sides():
    seen = []

    class Recorder(FakeEncoder):
        def encode(self, sentences, batch_size=32, normalize=False):
            seen.extend(sentences)
            return super().encode(sentences, batch_size, normalize)

    result = evaluate_pairs(Recorder(np.array([0.1, 0.5, 0.9])), [1.0, 2.0, 3.0], ["a", "b", "c"], ["d", "e", "f"],
                            name="x", instruction="Find similar text:")
    assert seen == [["Find similar text:", s] for s in "abcdef"] and result.spearman == pytest.approx(100)


def test_read_sts_dataset_from_disk_and_local_file(tmp_path):
    import datasets

    data = datasets.Dataset.from_dict({"s1": ["a", "b"], "s2": ["c", "d"], "gold": [1, 4.5]})
    datasets.DatasetDict({"test": data}).save_to_disk(tmp_path / "saved")
    assert read_sts_dataset(tmp_path / "saved", sentence1="s1", sentence2="s2", score="gold") == ([1.0, 4.5], ["a", "b"], ["c", "d"])
    (tmp_path / "pairs.csv").write_text("sentence1,sentence2,score\nx,y,2\nu,v,3\n", encoding="utf-8")
    assert read_sts_dataset(str(tmp_path / "pairs.csv"), split="train") == ([2.0, 3.0], ["x", "u"], ["y", "v"])


@pytest.mark.parametrize("columns,message", [
    ({"sentence1": ["a"], "sentence2": ["b"], "score": ["high"]}, r"row 0: score 'high' is not a number"),
    ({"sentence1": ["a", " "], "sentence2": ["b", "c"], "score": [1, 2]}, r"row 1: empty or non-text sentence"),
    ({"sentence1": ["a"], "sentence2": ["b"]}, r"has no column 'score' \(columns: sentence1, sentence2\)"),
])
def test_read_sts_dataset_bad_rows(tmp_path, columns, message):
    import datasets

    datasets.Dataset.from_dict(columns).save_to_disk(tmp_path / "d")
    with pytest.raises(ValueError, match=message):
        read_sts_dataset(tmp_path / "d")


def test_read_sts_dataset_missing_split_empty_split_and_unreachable_hub(tmp_path):
    import datasets

    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match=r"dataset file '.*empty\.jsonl' is empty"):
        read_sts_dataset(tmp_path / "empty.jsonl")
    with pytest.raises(ValueError, match=r"unsupported type '\.xml'"):
        (tmp_path / "a.xml").write_text("<a/>", encoding="utf-8")
        read_sts_dataset(tmp_path / "a.xml")

    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"a": [1]})}).save_to_disk(tmp_path / "d")
    with pytest.raises(ValueError, match="has no split 'test' \\(it has train\\)"):
        read_sts_dataset(tmp_path / "d")
    with pytest.raises(FileNotFoundError, match="dataset 'someone/not-cached-sts' \\(split 'test'\\) cannot be loaded"):
        read_sts_dataset("someone/not-cached-sts")


def test_evaluate_pairs_bad_lengths():
    with pytest.raises(ValueError, match=r"x: need as many scores as sentence pairs, at least one \(got 2 scores, 1 first"):
        evaluate_pairs(FakeEncoder(np.array([1.0])), [1.0, 2.0], ["a"], ["b"], name="x")
    with pytest.raises(ValueError, match="at least one"):
        evaluate_pairs(FakeEncoder(np.array([])), [], [], [], name="x")
