from dataclasses import replace

import pytest
import torch

from bivec.training.mntp import MNTPModel, make_blocks, mask_tokens, mntp_loss, resolve_mask_token


def test_mntp_loss_predicts_token_i_from_position_i_minus_1():
    logits = torch.full((1, 4, 6), -20.0)
    logits[0, 0, 3] = 20.0  # position 0 predicts token 3 (the label at position 1)
    logits[0, 1, 5] = 20.0  # position 1 predicts token 5 (the label at position 2)
    labels = torch.tensor([[-100, 3, 5, -100]])
    assert float(mntp_loss(logits, labels)) < 1e-6
    unshifted = torch.full((1, 4, 6), -20.0)
    unshifted[0, 1, 3] = 20.0
    unshifted[0, 2, 5] = 20.0
    assert float(mntp_loss(unshifted, labels)) > 10
    by_hand = torch.nn.functional.cross_entropy(unshifted[0, :2], torch.tensor([3, 5]))
    assert torch.allclose(mntp_loss(unshifted, labels), by_hand)


def test_mntp_model_matches_full_logits_loss(make_tiny_lm):
    lm = make_tiny_lm()
    batch = mask_tokens([[5, 6, 7, 8, 9, 10], [11, 12, 13]], mask_id=4, pad_id=0, vocab_size=128, ratio=0.5,
                        generator=torch.Generator().manual_seed(0))
    assert (batch["labels"] != -100).any()
    full = lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.allclose(MNTPModel(lm)(**batch), mntp_loss(full, batch["labels"]), atol=1e-5)


def test_mask_tokens_masks_only_real_non_special_tokens():
    blocks = [list(range(10, 60)), list(range(10, 30))]
    batch = mask_tokens(blocks, mask_id=4, pad_id=0, vocab_size=128, ratio=0.5, special_ids=frozenset({20}),
                        generator=torch.Generator().manual_seed(1))
    labels, inputs = batch["labels"], batch["input_ids"]
    masked = labels != -100
    assert not masked[1, 20:].any(), "padding is never masked"
    assert not masked[:, 0].any(), "position 0 has no previous position to predict it"
    assert not (labels == 20).any(), "special tokens are never masked"
    assert (inputs[masked] == 4).float().mean() > 0.5
    assert torch.equal(inputs[~masked], torch.tensor(blocks[0] + blocks[1] + [0] * 30)[~masked.flatten()])


def test_resolve_mask_token_choices(make_tiny_tokenizer):
    tokenizer = make_tiny_tokenizer()
    assert resolve_mask_token(tokenizer, "man") == tokenizer.convert_tokens_to_ids("man")
    new = resolve_mask_token(tokenizer, "new")
    assert tokenizer.mask_token_id == new and resolve_mask_token(tokenizer, "auto") == new


def test_no_usable_mask_token_is_a_clear_error(make_tiny_tokenizer):
    with pytest.raises(ValueError, match=r"mask token '_' is not a single token.*--mask-token new"):
        resolve_mask_token(make_tiny_tokenizer(), "auto")
    with pytest.raises(ValueError, match="is the padding token"):
        resolve_mask_token(make_tiny_tokenizer(), "[PAD]")


def test_make_blocks_packs_or_truncates(make_tiny_tokenizer):
    tokenizer = make_tiny_tokenizer()
    docs = ["a man plays a guitar .", "the dog runs in the park ."]
    packed = make_blocks(tokenizer, docs, 4)
    assert all(len(b) == 4 for b in packed) and len(packed) == 3  # 6 + 1 + 7 + 1 tokens
    assert make_blocks(tokenizer, docs, 4, pack=False) == [b[:4] for b in tokenizer(docs, add_special_tokens=False)["input_ids"]]
    with pytest.raises(ValueError, match="fewer than one block of max_length=100"):
        make_blocks(tokenizer, docs, 100)


def test_mntp_trains_only_the_lora_even_with_an_untied_lm_head(tiny_lm_dir):
    from transformers import AutoTokenizer

    from bivec.training import MNTPConfig
    from bivec.training.stages import mntp_model

    config = MNTPConfig(data=["unused.txt"], output_dir="unused")
    decoder, model = mntp_model(replace(config, model=tiny_lm_dir), AutoTokenizer.from_pretrained(tiny_lm_dir))
    assert not model.lm.config.tie_word_embeddings
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
