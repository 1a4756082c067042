import pickle

import numpy as np
import pytest
import torch

import bivec.encoder as encoder_module
from bivec import BidirectionalError, Encoder
from bivec.encoder import DEFAULT_BATCH_SIZE, InputTooLongError, plan_batches

TEXTS = [
    "a man plays a guitar .",
    "someone is playing music",
    "the stock market fell sharply today",
    "a dog runs",
    "the cat sits on the mat",
    "a woman eats food in the park",
]


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return Encoder.from_pretrained(tiny_model_dir)


def test_shape_dtype_and_order(encoder):
    vectors = encoder.encode(TEXTS, batch_size=4)
    assert vectors.shape == (len(TEXTS), 32) and vectors.dtype == np.float32
    one_by_one = np.concatenate([encoder.encode(t) for t in TEXTS])
    np.testing.assert_allclose(vectors, one_by_one, atol=1e-5, rtol=1e-4)


def test_batching_does_not_change_results(encoder):
    reference = encoder.encode(TEXTS, batch_size=64)
    for kwargs in ({"batch_size": 1}, {"batch_size": 3}, {"max_batch_tokens": 8}):
        np.testing.assert_allclose(encoder.encode(TEXTS, **kwargs), reference, atol=1e-5, rtol=1e-4)


def test_default_passes_hold_up_to_default_batch_size_texts(encoder, monkeypatch):
    sizes = []
    real = encoder.collate
    monkeypatch.setattr(encoder, "collate", lambda items: sizes.append(len(items)) or real(items))
    encoder.encode(["a dog runs"] * (2 * DEFAULT_BATCH_SIZE + 1))
    assert max(sizes) == DEFAULT_BATCH_SIZE and sum(sizes) == 2 * DEFAULT_BATCH_SIZE + 1


def test_left_and_right_padding_agree(tiny_model_dir):
    left = Encoder.from_pretrained(tiny_model_dir)
    left.padding_side = "left"
    right = Encoder.from_pretrained(tiny_model_dir)
    np.testing.assert_allclose(left.encode(TEXTS), right.encode(TEXTS), atol=1e-5, rtol=1e-4)


def test_batches_sorted_by_length_under_token_budget():
    lengths = [3, 9, 5, 9, 1, 4]
    batches = plan_batches(lengths, batch_size=8, max_batch_tokens=18)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert all(len(b) * max(lengths[i] for i in b) <= 18 for b in batches)
    assert [lengths[b[0]] for b in batches] == sorted((lengths[b[0]] for b in batches), reverse=True)


def test_batches_are_cut_where_padding_costs_most():
    # Greedy runs of 4 would pad a 2-token text to 100 tokens; a third, small batch costs less.
    lengths = [100, 2, 100, 2, 100, 2, 2, 2]
    batches = plan_batches(lengths, batch_size=4, max_batch_tokens=1000)
    assert [[lengths[i] for i in b] for b in batches] == [[100, 100, 100], [2, 2, 2, 2], [2]]
    # A text longer than the budget still gets a batch of its own; nothing is dropped.
    batches = plan_batches([30, 3, 3], batch_size=8, max_batch_tokens=10)
    assert batches[0] == [0] and sorted(i for b in batches for i in b) == [0, 1, 2]


def test_instruction_is_seen_but_not_pooled(encoder):
    (item,) = encoder.tokenize([["retrieve similar sentence :", "a dog runs"]])
    tokens = encoder.tokenizer.convert_ids_to_tokens(item.input_ids)
    pooled = [t for t, m in zip(tokens, item.pooling_mask) if m]
    assert pooled == ["a", "dog", "runs"]
    # With an instruction the text is wrapped in the chat template's user turn.
    assert tokens[0] == "<|user|>" and tokens[-1] == "<|end|>"
    plain = encoder.encode("a dog runs")
    instructed = encoder.encode([["retrieve similar sentence :", "a dog runs"]])
    assert not np.allclose(plain, instructed)  # bidirectional: the text attends to the instruction


def test_pooling_mask_follows_token_boundaries_not_characters(encoder):
    # The instruction ends mid-"word" of no separator: the text still starts at its own token.
    (item,) = encoder.tokenize([["find", "the cat"]])
    tokens = encoder.tokenizer.convert_ids_to_tokens(item.input_ids)
    assert [t for t, m in zip(tokens, item.pooling_mask) if m] == ["the", "cat"]


def test_chat_template_modes(tiny_model_dir):
    never = Encoder.from_pretrained(tiny_model_dir, chat_template=False)
    (item,) = never.tokenize([["find", "the cat"]])
    assert never.tokenizer.convert_ids_to_tokens(item.input_ids) == ["<s>", "find", "the", "cat"]
    always = Encoder.from_pretrained(tiny_model_dir, chat_template=True)
    (item,) = always.tokenize(["the cat"])
    assert always.tokenizer.convert_ids_to_tokens(item.input_ids) == ["<|user|>", "the", "cat", "<|end|>"]


def test_eos_pooling_appends_and_pools_the_eos_token(tiny_model_dir):
    encoder = Encoder.from_pretrained(tiny_model_dir, pooling="eos")
    (item,) = encoder.tokenize(["the cat"])
    tokens = encoder.tokenizer.convert_ids_to_tokens(item.input_ids)
    assert tokens == ["<s>", "the", "cat", "</s>"] and item.pooling_mask == [0, 1, 1, 1]


def test_normalize(encoder):
    np.testing.assert_allclose(np.linalg.norm(encoder.encode(TEXTS, normalize=True), axis=1), 1.0, rtol=1e-5)


def test_dimensions_truncate_before_normalizing(encoder):
    full = encoder.encode(TEXTS)
    short = encoder.encode(TEXTS, dimensions=8, normalize=True)
    expected = full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True)
    np.testing.assert_allclose(short, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="dimensions must be between 1 and 32, got 33"):
        encoder.encode(TEXTS, dimensions=33)


def test_truncation_and_raise(tiny_model_dir):
    encoder = Encoder.from_pretrained(tiny_model_dir, max_length=4)
    cut, whole = encoder.tokenize(["a man plays a guitar .", "a dog"])
    assert len(cut.input_ids) == 4 and cut.truncated and not whole.truncated
    with pytest.raises(InputTooLongError, match=r"inputs\[1\] has 7 tokens, more than max_length=4") as raised:
        encoder.encode(["a dog", "a man plays a guitar ."], truncate=False)
    # Callers word it for their own inputs from its parts; it survives a trip between processes.
    assert (raised.value.index, raised.value.reason) == (1, "has 7 tokens, more than max_length=4 tokens")
    copy = pickle.loads(pickle.dumps(raised.value))
    assert (type(copy), str(copy), copy.index) == (InputTooLongError, str(raised.value), 1)
    with pytest.raises(ValueError, match=r"inputs\[0\] keeps no text token within max_length=4"):
        encoder.encode([["represent the sentence for retrieve", "a dog"]])


def test_echo_reads_the_text_twice_and_pools_the_second_copy(tiny_model_dir):
    echo = Encoder.from_pretrained(tiny_model_dir, echo=True, chat_template=False, bidirectional=False)
    (item,) = echo.tokenize(["the cat sits"])
    tokens = echo.tokenizer.convert_ids_to_tokens(item.input_ids)
    assert tokens == ["<s>", "the", "cat", "sits", "the", "cat", "sits"]
    assert item.pooling_mask == [0, 0, 0, 0, 1, 1, 1]
    # The same as the text given as its own (unpooled) instruction, in any batch.
    plain = Encoder.from_pretrained(tiny_model_dir, chat_template=False, bidirectional=False)
    np.testing.assert_allclose(echo.encode(TEXTS, batch_size=4), plain.encode([[t, t] for t in TEXTS]), atol=1e-5)
    np.testing.assert_allclose(echo.encode(TEXTS[:1]), echo.encode(TEXTS)[:1], atol=1e-5)
    # Under causal attention the first copy's tokens never see the second, so echo changes the vectors.
    assert not np.allclose(echo.encode(TEXTS), plain.encode(TEXTS))
    # An instruction comes first and stays unpooled.
    (item,) = echo.tokenize([["find", "the cat"]])
    tokens = echo.tokenizer.convert_ids_to_tokens(item.input_ids)
    assert tokens == ["<s>", "find", "the", "cat", "the", "cat"] and item.pooling_mask == [0, 0, 0, 0, 1, 1]


def test_echo_cuts_a_long_text_so_that_both_copies_fit(tiny_model_dir):
    echo = Encoder.from_pretrained(tiny_model_dir, echo=True, chat_template=False, max_length=8)
    (item,) = echo.tokenize(["a man plays a guitar in the park"])
    tokens = echo.tokenizer.convert_ids_to_tokens(item.input_ids)
    # BOS + 3 tokens twice fit in 8: the text's beginning, read twice, the second copy pooled.
    assert tokens == ["<s>", "a", "man", "plays", "a", "man", "plays"]
    assert item.pooling_mask == [0, 0, 0, 0, 1, 1, 1] and item.truncated
    # A text that fits once but not twice is cut too.
    assert echo.tokenize(["a man plays a guitar"])[0].truncated and not echo.tokenize(["a man"])[0].truncated
    with pytest.raises(ValueError, match=r"inputs\[0\] has 17 tokens, more than max_length=8 tokens "
                                         r"\(echo reads each text twice\)"):
        echo.encode(["a man plays a guitar in the park"], truncate=False)
    with pytest.raises(ValueError, match=r"inputs\[0\] keeps no text token within max_length=8"):
        echo.encode([["represent the sentence for retrieve and find", "a dog"]])


def test_token_ids_are_pooled_as_the_text_of_those_tokens(tiny_model_dir):
    for echo in (False, True):
        encoder = Encoder.from_pretrained(tiny_model_dir, echo=echo, chat_template=False, bidirectional=False,
                                          max_length=8)
        ids = encoder.tokenizer("a dog runs")["input_ids"]
        (item,) = encoder.tokenize_ids([ids])
        assert item == encoder.tokenize(["a dog runs"])[0] and not item.truncated
        assert encoder.tokenize_ids([encoder.tokenizer("a man plays a guitar in the park")["input_ids"]])[0].truncated
        # Too long: echo keeps the first half of the ids, as it keeps a text's beginning.
        long_ids = encoder.tokenizer("a man plays a guitar in the park")["input_ids"]
        np.testing.assert_allclose(encoder.encode_tokenized(encoder.tokenize_ids([long_ids])),
                                   encoder.encode(["a man plays a guitar in the park"]), atol=1e-5)
        echoed = r" \(echo reads each text twice\)" if echo else ""
        with pytest.raises(InputTooLongError, match=rf"inputs\[0\] has {17 if echo else 9} tokens, more than "
                                                    rf"max_length=8 tokens{echoed}"):
            encoder.tokenize_ids([long_ids], truncate=False)
    with pytest.raises(ValueError, match=r"inputs\[1\]: token id 128 is outside the vocabulary \(0 to 127\)"):
        encoder.tokenize_ids([ids, [5, 128]])
    # Ids that are all special tokens are pooled as they are rather than left with nothing to pool.
    (item,) = Encoder.from_pretrained(tiny_model_dir).tokenize_ids([[encoder.tokenizer.bos_token_id]])
    assert item.pooling_mask == [1]


def test_causal_mode_differs_from_bidirectional(tiny_model_dir, encoder):
    causal = Encoder.from_pretrained(tiny_model_dir, bidirectional=False)
    assert not np.allclose(causal.encode(TEXTS), encoder.encode(TEXTS))


def test_empty_list_gives_empty_array(encoder):
    out = encoder.encode([])
    assert out.shape == (0, 32) and out.dtype == np.float32


@pytest.mark.parametrize(
    "bad,message",
    [
        ([""], r"inputs\[0\] has an empty text"),
        (["ok", "   "], r"inputs\[1\] has an empty text"),
        ([None], r"inputs\[0\] is NoneType; expected a string or an \[instruction, text\] pair"),
        (["ok", 3], r"inputs\[1\] is int"),
        ([["only one"]], r"inputs\[0\] has 1 items; a pair must be \[instruction, text\]"),
        ([["a", "b", "c"]], r"inputs\[0\] has 3 items"),
        ([[1, "text"]], r"inputs\[0\]\[0\] \(instruction\) is int, expected str"),
        ([["instr", None]], r"inputs\[0\]\[1\] \(text\) is NoneType, expected str"),
        (None, "inputs must be a string or a list"),
        (42, "inputs must be a string or a list"),
    ],
)
def test_bad_inputs(encoder, bad, message):
    with pytest.raises(ValueError, match=message):
        encoder.encode(bad)


def test_bad_arguments(tiny_model_dir, encoder, tmp_path, make_tiny_model, make_tiny_tokenizer):
    with pytest.raises(ValueError, match="unknown pooling mode 'max'"):
        Encoder.from_pretrained(tiny_model_dir, pooling="max")
    with pytest.raises(FileNotFoundError, match="model path '.*does-not-exist' does not exist"):
        Encoder.from_pretrained(tmp_path / "does-not-exist")
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        Encoder.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="unknown dtype 'int3'"):
        Encoder.from_pretrained(tiny_model_dir, dtype="int3")
    with pytest.raises(ValueError, match="batch_size and max_batch_tokens must be positive"):
        encoder.encode(TEXTS, batch_size=0)
    with pytest.raises(ValueError, match="chat_template=True but the tokenizer has no chat template"):
        Encoder(make_tiny_model(), make_tiny_tokenizer(chat_template=False), chat_template=True)


def test_architecture_that_cannot_be_bidirectional_is_refused(tiny_model_dir):
    from test_attention import _always_causal
    from transformers import AttentionInterface

    AttentionInterface.register("bivec_test_always_causal", _always_causal)
    with pytest.raises(BidirectionalError, match="still attends causally after the switch"):
        Encoder.from_pretrained(tiny_model_dir, attn_implementation="bivec_test_always_causal")
    causal = Encoder.from_pretrained(tiny_model_dir, attn_implementation="bivec_test_always_causal", bidirectional=False)
    assert causal.encode("a dog").shape == (1, 32)


def test_default_token_budget_suits_the_device(tiny_model_dir, monkeypatch):
    encoder = Encoder.from_pretrained(tiny_model_dir)
    seen = []
    monkeypatch.setattr(encoder_module, "plan_batches",
                        lambda lengths, size, budget, cost: seen.append(budget) or plan_batches(lengths, size, budget, cost))
    expected = encoder.encode(["a dog runs", "a cat sits on the mat"], max_batch_tokens=16384)
    np.testing.assert_allclose(encoder.encode(["a dog runs", "a cat sits on the mat"]), expected, rtol=1e-5, atol=1e-6)
    assert seen == [16384, 2048]


def test_compile_gives_the_same_embeddings_for_every_batch_shape(tiny_model_dir, encoder):
    texts = ["a man plays a guitar", "a dog", "the cat sits on the mat today", "someone is playing music", "a"]
    expected = encoder.encode(texts)
    compiled = Encoder.from_pretrained(tiny_model_dir, compile=True)
    assert isinstance(compiled.model.layers[0], torch._dynamo.eval_frame.OptimizedModule)
    assert compiled.compile() is compiled  # compiling twice is a no-op
    for batch_size in (1, 2, 5):
        np.testing.assert_allclose(compiled.encode(texts, batch_size=batch_size), expected, rtol=1e-4, atol=1e-5)


def test_compile_failure_is_a_clear_error_and_leaves_the_model_usable(tiny_model_dir, monkeypatch):
    encoder = Encoder.from_pretrained(tiny_model_dir)
    eager = encoder.model
    monkeypatch.setattr("accelerate.utils.compile_regions", lambda module, **kwargs: _Broken(module))
    with pytest.raises(RuntimeError, match=r"torch.compile could not build this model on cpu \(OSError: no C\+\+ compiler\)"):
        encoder.compile()
    assert encoder.model is eager
    assert encoder.encode(["a dog"]).shape == (1, 32)


class _Broken(torch.nn.Module):
    """Stands for a compiled model whose first call fails, as a missing compiler does."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.config = model.config

    def forward(self, *args, **kwargs):
        raise OSError("no C++ compiler")
