"""Masked next-token prediction: mask tokens, predict token i from the logits at position i-1."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bivec.attention import last_hidden_state

NEW_MASK_TOKEN = "<|bivec_mask|>"


def resolve_mask_token(tokenizer: PreTrainedTokenizerBase, choice: str = "auto") -> int:
    """The token id used for masking.

    ``auto``: the tokenizer's own mask token, else ``_`` (the LLM2Vec choice for Llama models);
    ``new``: add :data:`NEW_MASK_TOKEN` to the tokenizer (resize the model's embeddings after);
    anything else: that exact token, which must be a single existing token.

    Example:
        >>> resolve_mask_token(tokenizer, "_")  # doctest: +SKIP
        62
    """
    if choice == "new":
        tokenizer.add_special_tokens({"mask_token": NEW_MASK_TOKEN})
        return int(tokenizer.convert_tokens_to_ids(NEW_MASK_TOKEN))
    if choice == "auto":
        if tokenizer.mask_token_id is not None:
            return int(tokenizer.mask_token_id)
        choice = "_"
    ids = tokenizer.convert_tokens_to_ids([choice])
    unk = tokenizer.unk_token_id
    if not ids or ids[0] is None or (ids[0] == unk and choice != tokenizer.unk_token):
        encoded = tokenizer(choice, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1 or encoded[0] == unk:
            raise ValueError(
                f"mask token {choice!r} is not a single token of this tokenizer (it encodes to {encoded}); "
                "choose an existing token with --mask-token, or --mask-token new to add one"
            )
        ids = encoded
    if ids[0] == tokenizer.pad_token_id:
        raise ValueError(f"mask token {choice!r} is the padding token; choose another with --mask-token")
    return int(ids[0])


def make_blocks(
    tokenizer: PreTrainedTokenizerBase, documents: list[str], max_length: int, *, pack: bool = True
) -> list[list[int]]:
    """Token blocks of at most ``max_length``: documents joined by EOS and cut into full blocks
    (``pack``), or each document truncated on its own."""
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2 for MNTP, got {max_length}")
    encoded = tokenizer(documents, add_special_tokens=False)["input_ids"]
    if not pack:
        return [ids[:max_length] for ids in encoded if len(ids) >= 2]
    eos = tokenizer.eos_token_id
    stream = [t for ids in encoded for t in (*ids, *([eos] if eos is not None else []))]
    blocks = [stream[i : i + max_length] for i in range(0, len(stream) - max_length + 1, max_length)]
    if not blocks:
        raise ValueError(f"the data holds {len(stream)} tokens, fewer than one block of max_length={max_length}")
    return blocks


def mask_tokens(
    blocks: list[list[int]],
    *,
    mask_id: int,
    pad_id: int,
    vocab_size: int,
    ratio: float = 0.2,
    special_ids: frozenset[int] = frozenset(),
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Pad ``blocks`` (right) and mask a ``ratio`` of their real, non-special tokens, BERT-style:
    80% become ``mask_id``, 10% a random token, 10% stay. ``labels`` hold the original id at
    masked positions and -100 elsewhere."""
    if not 0 < ratio < 1:
        raise ValueError(f"mask ratio must be between 0 and 1, got {ratio}")
    width = max(len(b) for b in blocks)
    ids = torch.full((len(blocks), width), pad_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    for row, block in enumerate(blocks):
        ids[row, : len(block)] = torch.tensor(block)
        attention[row, : len(block)] = 1
    maskable = attention.bool() & ~torch.isin(ids, torch.tensor(sorted(special_ids), dtype=torch.long))
    # Position 0 has no previous position whose logits could predict it.
    maskable[:, 0] = False
    chosen = (torch.rand(ids.shape, generator=generator) < ratio) & maskable
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    draw = torch.rand(ids.shape, generator=generator)
    inputs = ids.clone()
    inputs[chosen & (draw < 0.8)] = mask_id
    randomised = chosen & (draw >= 0.8) & (draw < 0.9)
    inputs[randomised] = torch.randint(vocab_size, ids.shape, generator=generator)[randomised]
    return {"input_ids": inputs, "attention_mask": attention, "labels": labels}


def mntp_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the token at position i from the logits at position i-1.

    Example:
        >>> logits = torch.zeros(1, 3, 5); logits[0, 0, 4] = 10.0    # position 0 predicts 4
        >>> float(mntp_loss(logits, torch.tensor([[-100, 4, -100]]))) < 1e-3
        True
    """
    return nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100
    )


class MNTPModel(nn.Module):
    """A causal LM whose forward returns the MNTP loss; logits are computed only where a label
    needs them, since the vocabulary projection dominates the cost of small models."""

    def __init__(self, lm: PreTrainedModel) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        hidden = last_hidden_state(self.lm.get_decoder(), input_ids, attention_mask)
        targets = labels[:, 1:]
        keep = targets != -100
        if not keep.any():
            return hidden.sum() * 0.0
        logits = self.lm.get_output_embeddings()(hidden[:, :-1][keep])
        return nn.functional.cross_entropy(logits.float(), targets[keep])
