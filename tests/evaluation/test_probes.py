import numpy as np
import pytest
import torch

from bivec import Encoder
from bivec.attention import last_hidden_state, make_bidirectional
from bivec.evaluation.probes import (
    ConllSentence,
    LinearProbe,
    ProbeConfig,
    _align,
    cached_word_features,
    evaluate_word_task,
    read_conll,
    word_features,
)


@pytest.fixture(scope="module")
def encoder(make_tiny_model, make_tiny_tokenizer):
    return Encoder(make_bidirectional(make_tiny_model("llama", "sdpa")), make_tiny_tokenizer())


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# Tags are a function of the word, so a linear probe on any injective word representation can be perfect.
TAGS = {"man": ("NN", "B-NP", "B-PER"), "dog": ("NN", "B-NP", "O"), "plays": ("VB", "B-VP", "O"),
        "runs": ("VB", "B-VP", "O"), "guitar": ("NN", "B-NP", "B-MISC"), "park": ("NN", "B-NP", "B-LOC"),
        "in": ("IN", "B-PP", "O"), "the": ("DT", "B-NP", "O")}


def synthetic(sentences):
    blocks = ["-DOCSTART- -X- -X- O\n"]
    for words in sentences:
        blocks.append("".join(f"{w} {' '.join(TAGS[w])}\n" for w in words))
    return "\n".join(blocks)


def test_read_conll_skips_docstart_and_keeps_lines(tmp_path):
    path = write(tmp_path / "c.txt", synthetic([["man", "plays"], ["dog", "runs"]]))
    sentences = read_conll(path)
    assert [s.words for s in sentences] == [("man", "plays"), ("dog", "runs")]
    assert sentences[1].lines == (6, 7) and sentences[0].tags[0] == ("NN", "B-NP", "B-PER")


@pytest.mark.parametrize("text,message", [
    ("man NN B-NP\n", r"c\.txt:1: expected 4 space-separated columns \(word POS chunk NER\), got 3"),
    ("man NN B-NP O\n\ndog NN B-NP O extra\n", r"c\.txt:3: expected 4 .* got 5"),
    ("", r"c\.txt: no sentences"),
    ("-DOCSTART- -X- -X- O\n\n", r"c\.txt: no sentences"),
])
def test_read_conll_bad_files(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        read_conll(write(tmp_path / "c.txt", text))


def test_read_conll_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_conll(tmp_path / "nope.txt")


def test_probe_config_rejects_bad_values():
    with pytest.raises(ValueError, match="task must be one of pos, chunking, ner, got 'srl'"):
        ProbeConfig(task="srl")
    with pytest.raises(ValueError, match="word_pooling must be one of first, last, mean"):
        ProbeConfig(word_pooling="max")
    with pytest.raises(ValueError, match="retroactive must be one of none, next_token"):
        ProbeConfig(retroactive="previous")
    with pytest.raises(ValueError, match="train_sentences and test_sentences must be positive"):
        ProbeConfig(train_sentences=0)
    with pytest.raises(ValueError, match="train_sentences and test_sentences must be positive"):
        ProbeConfig(test_sentences=-1)


def test_alignment_follows_offsets(encoder):
    # The tiny tokenizer splits "dog." into "dog" and "."; it puts <s> first.
    sentence = ConllSentence(("the", "dog.", "runs"), (("DT", "O", "O"),) * 3, (1, 2, 3))
    ids, positions = _align(encoder, sentence, False, "f")
    assert encoder.tokenizer.convert_ids_to_tokens(ids) == ["<s>", "the", "dog", ".", "runs"]
    assert positions == [[1], [2, 3], [4]]
    ids_shifted, shifted = _align(encoder, sentence, True, "f")
    assert ids_shifted == ids and shifted == [[0], [1, 2], [3]]


def test_next_token_prepends_bos_when_the_tokenizer_adds_none(encoder, make_tiny_tokenizer):
    plain = Encoder(encoder.model, make_tiny_tokenizer())
    plain.tokenizer._tokenizer.post_processor = None
    sentence = ConllSentence(("the", "dog"), (("DT", "O", "O"),) * 2, (1, 2))
    ids, positions = _align(plain, sentence, True, "f")
    assert plain.tokenizer.convert_ids_to_tokens(ids) == ["<s>", "the", "dog"] and positions == [[0], [1]]


def test_word_features_pick_first_last_and_mean(encoder):
    sentence = ConllSentence(("the", "dog.", "runs"), (("DT", "O", "O"),) * 3, (1, 2, 3))
    ids, _ = _align(encoder, sentence, False, "f")
    hidden = last_hidden_state(encoder.model, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))[0].detach().numpy()
    first = word_features(encoder, [sentence], word_pooling="first")
    np.testing.assert_allclose(first, hidden[[1, 2, 4]], atol=1e-5)
    np.testing.assert_allclose(word_features(encoder, [sentence], word_pooling="last"), hidden[[1, 3, 4]], atol=1e-5)
    np.testing.assert_allclose(word_features(encoder, [sentence], word_pooling="mean")[1], hidden[2:4].mean(0), atol=1e-5)
    np.testing.assert_allclose(word_features(encoder, [sentence], retroactive="next_token"), hidden[[0, 1, 3]], atol=1e-5)


def test_token_states_do_not_depend_on_batching(encoder):
    items = encoder.tokenize(["the dog runs in the park", "a man"])
    together = encoder.token_states(items, batch_size=2)
    alone = [encoder.token_states([item])[0] for item in items]
    for a, b, item in zip(together, alone, items):
        assert a.shape == (len(item.input_ids), 32)
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_sentence_longer_than_max_length_names_the_line(encoder):
    short = Encoder(encoder.model, encoder.tokenizer, max_length=3)
    sentence = ConllSentence(("the", "dog", "runs"), (("DT", "O", "O"),) * 3, (7, 8, 9))
    with pytest.raises(ValueError, match=r"f:7: sentence has 4 tokens, more than max_length=3"):
        word_features(short, [sentence], where="f")


def test_linear_probe_separates_classes():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 16)) * 5
    labels = rng.integers(0, 4, 300)
    features = centers[labels] + rng.normal(size=(300, 16))
    assert (LinearProbe(4).fit(features, labels).predict(features) == labels).mean() == 1.0


def test_linear_probe_bad_inputs():
    with pytest.raises(ValueError, match=r"features must be \(n, dim\) and labels \(n,\) with n > 0, got \(3, 2\) and \(2,\)"):
        LinearProbe(2).fit(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\), got 0..5"):
        LinearProbe(2).fit(np.zeros((2, 2)), np.array([0, 5]))


def test_token_states_bad_batch_size(encoder):
    with pytest.raises(ValueError, match="batch_size and max_batch_tokens must be positive, got 0"):
        encoder.token_states(encoder.tokenize(["a man"]), batch_size=0)


@pytest.mark.parametrize("task", ["pos", "chunking", "ner"])
def test_probe_on_a_synthetic_tagging_task_is_perfect(encoder, tmp_path, task):
    train = write(tmp_path / "train.txt", synthetic([["the", "man", "plays", "the", "guitar"], ["the", "dog", "runs", "in", "the", "park"],
                                                      ["the", "dog", "plays", "in", "the", "park"], ["the", "man", "runs"]]))
    test = write(tmp_path / "test.txt", synthetic([["the", "man", "runs", "in", "the", "park"], ["the", "dog", "plays"]]))
    result = evaluate_word_task(encoder, train, test, ProbeConfig(task=task, word_pooling="first"), cache_dir=tmp_path / "cache")
    assert result.accuracy == 100.0 and result.test_words == 9 and result.train_words == 20
    prefix = evaluate_word_task(encoder, train, test, ProbeConfig(task=task, train_sentences=2, test_sentences=1),
                                cache_dir=tmp_path / "cache")
    assert prefix.train_words == 11 and prefix.test_words == 6
    if task == "pos":
        assert result.f1 is None and result.main_metric == "accuracy"
    else:
        assert result.f1 == 100.0 and result.main_metric == "f1"


def test_features_are_cached_per_model_settings_and_file(encoder, tmp_path, monkeypatch, make_tiny_model):
    path = write(tmp_path / "c.txt", synthetic([["the", "man", "runs"]]))
    sentences = read_conll(path)
    first = cached_word_features(encoder, path, sentences, word_pooling="first", retroactive="none", cache_dir=tmp_path)
    calls = []
    original = Encoder.token_states
    monkeypatch.setattr(Encoder, "token_states", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    again = cached_word_features(encoder, path, sentences, word_pooling="first", retroactive="none", cache_dir=tmp_path)
    assert calls == [] and np.array_equal(first, again)
    cached_word_features(encoder, path, sentences, word_pooling="mean", retroactive="none", cache_dir=tmp_path)
    assert calls == [1]
    causal = Encoder(make_tiny_model("llama", "sdpa"), encoder.tokenizer)  # same weights, causal attention
    cached_word_features(causal, path, sentences, word_pooling="first", retroactive="none", cache_dir=tmp_path)
    assert calls == [1, 1]
    write(path, synthetic([["the", "dog", "runs"]]))
    cached_word_features(encoder, path, read_conll(path), word_pooling="first", retroactive="none", cache_dir=tmp_path)
    assert calls == [1, 1, 1]


def test_unseen_test_tags_fail_or_count_as_errors(encoder, tmp_path):
    train = write(tmp_path / "train.txt", synthetic([["the", "man", "runs"]]))
    test = write(tmp_path / "test.txt", synthetic([["the", "guitar"]]))
    with pytest.raises(ValueError, match=r"test\.txt:4: ner tag 'B-MISC' does not occur in the training file"):
        evaluate_word_task(encoder, train, test, ProbeConfig(task="ner"), cache_dir=tmp_path)
    result = evaluate_word_task(encoder, train, test, ProbeConfig(task="ner", allow_unseen_tags=True), cache_dir=tmp_path)
    assert result.accuracy == 50.0 and result.recall == 0.0
