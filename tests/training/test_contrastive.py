import math

import pytest
import torch

from bivec.encoder import Encoder
from bivec.training.contrastive import Embedder, contrastive_step, gather_with_grad, info_nce


def test_info_nce_equals_hand_computation():
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    d = torch.tensor([[1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])  # two positives, one hard negative
    cos = [[1 / math.sqrt(2), 0.0, -1.0], [1 / math.sqrt(2), 1.0, 0.0]]
    by_hand = 0.0
    for i, row in enumerate(cos):
        logits = [20 * c for c in row]
        by_hand += -logits[i] + math.log(sum(math.exp(x) for x in logits))
    assert float(info_nce(q, d, scale=20.0)) == pytest.approx(by_hand / 2, rel=1e-5)


def test_info_nce_needs_a_positive_per_query():
    with pytest.raises(ValueError, match="1 documents for 2 queries"):
        info_nce(torch.ones(2, 3), torch.ones(1, 3))


def test_gather_without_distributed_is_identity():
    x = torch.ones(2, 3, requires_grad=True)
    assert gather_with_grad(x) is x


@pytest.fixture
def make_contrastive_setup(make_tiny_model, make_tiny_tokenizer):
    """``make_contrastive_setup(dropout=0.0)``: a tiny model, its encoder, 4 tokenized queries and 5 documents."""

    def build(dropout: float = 0.0):
        model = make_tiny_model("llama", "sdpa", attention_dropout=dropout)
        encoder = Encoder(model, make_tiny_tokenizer(), max_length=32)
        texts = ["a man plays a guitar .", "someone is playing music .", "the dog runs in the park .",
                 "a cat sits on the mat .", "the stock market fell sharply today .", "the child eats food ."]
        queries = encoder.tokenize([["retrieve similar text :", t] for t in texts[:4]])
        docs = encoder.tokenize(texts[1:5] + texts[5:])  # 4 positives, 1 hard negative
        return model, encoder, queries, docs

    return build


def _grads(model, encoder, queries, docs, chunk):
    model.zero_grad()
    embedder = Embedder(model).train()
    chunks = lambda items: [encoder.collate(items[i : i + chunk]) for i in range(0, len(items), chunk)]  # noqa: E731
    loss = contrastive_step(lambda b: embedder(*b), chunks(queries), chunks(docs[:4]) + chunks(docs[4:]), scale=20.0)
    return loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_chunked_gradients_equal_unchunked(make_contrastive_setup):
    model, encoder, queries, docs = make_contrastive_setup()
    loss_full, full = _grads(model, encoder, queries, docs, chunk=8)
    loss_chunked, chunked = _grads(model, encoder, queries, docs, chunk=1)
    assert loss_full == pytest.approx(loss_chunked, rel=1e-5)
    assert full.keys() == chunked.keys() and len(full) > 10
    for name in full:
        assert torch.allclose(full[name], chunked[name], atol=1e-6, rtol=1e-4), name


def test_chunked_gradients_replay_each_chunks_dropout(make_contrastive_setup):
    # SimCSE's positives differ from their queries only by dropout, so the backward pass of each
    # chunk must see the dropout masks its cached embedding was computed with.
    model, encoder, queries, docs = make_contrastive_setup(dropout=0.3)
    torch.manual_seed(0)
    loss_chunked, chunked = _grads(model, encoder, queries, docs, chunk=1)
    model.zero_grad()
    embedder = Embedder(model).train()
    torch.manual_seed(0)
    reps = [embedder(*encoder.collate([item])) for item in (*queries, *docs)]
    loss = info_nce(torch.cat(reps[: len(queries)]), torch.cat(reps[len(queries) :]))
    loss.backward()
    assert float(loss.detach()) == pytest.approx(loss_chunked, rel=1e-5)
    assert len(chunked) > 10
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, chunked[name], atol=1e-6, rtol=1e-4), name


def test_unchunked_step_equals_plain_backward(make_contrastive_setup):
    model, encoder, queries, docs = make_contrastive_setup()
    loss_step, grads = _grads(model, encoder, queries, docs, chunk=8)
    model.zero_grad()
    embedder = Embedder(model).train()
    loss = info_nce(embedder(*encoder.collate(queries)), embedder(*encoder.collate(docs)))
    loss.backward()
    assert float(loss.detach()) == pytest.approx(loss_step, rel=1e-6)
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, grads[name], atol=1e-6, rtol=1e-4), name


def test_simcse_views_differ_under_dropout_only(make_contrastive_setup):
    for dropout, same in ((0.3, False), (0.0, True)):
        model, encoder, queries, _ = make_contrastive_setup(dropout)
        embedder = Embedder(model).train()
        batch = encoder.collate(queries)
        with torch.no_grad():
            first, second = embedder(*batch), embedder(*batch)
        assert torch.equal(first, second) is same
