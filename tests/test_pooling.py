import pytest
import torch

from bivec.pooling import POOLING_MODES, check_pooling_mode, pool

H = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)
# Row 0: right padding, instruction at position 0, text at 1..3. Row 1: left padding, text at 2..4.
MASK = torch.tensor([[0, 1, 1, 1, 0], [0, 0, 1, 1, 1]])


def loop_pool(hidden, mask, mode):
    out = []
    for h, m in zip(hidden, mask):
        tokens = h[m.bool()]
        if mode == "mean":
            out.append(tokens.mean(0))
        elif mode == "weighted_mean":
            w = torch.arange(1, len(tokens) + 1, dtype=h.dtype)
            out.append((w[:, None] * tokens).sum(0) / w.sum())
        elif mode in ("eos", "last"):
            out.append(tokens[-1])
        else:
            out.append(tokens[0])
    return torch.stack(out)


@pytest.mark.parametrize("mode", POOLING_MODES)
def test_matches_a_per_row_loop(mode):
    torch.testing.assert_close(pool(H, MASK, mode), loop_pool(H, MASK, mode))


@pytest.mark.parametrize("mode", POOLING_MODES)
def test_left_and_right_padding_agree(mode):
    right = torch.tensor([[0, 1, 1, 1, 0]])
    left = torch.tensor([[0, 0, 1, 1, 1]])
    h_right = H[:1]
    h_left = torch.roll(h_right, 1, dims=1)  # the same tokens shifted one place right
    torch.testing.assert_close(pool(h_right, right, mode), pool(h_left, left, mode))


def test_weighted_mean_weights_by_position_within_text():
    h = torch.tensor([[[9.0], [1.0], [2.0], [4.0]]])  # position 0 is an instruction token
    assert pool(h, torch.tensor([[0, 1, 1, 1]]), "weighted_mean").item() == pytest.approx((1 + 4 + 12) / 6)


def test_instruction_tokens_are_excluded():
    h = torch.tensor([[[100.0], [1.0], [3.0]]])
    assert pool(h, torch.tensor([[0, 1, 1]]), "mean").item() == 2.0
    assert pool(h, torch.tensor([[0, 1, 1]]), "first").item() == 1.0


def test_reference_aliases():
    assert check_pooling_mode("eos_token") == "eos"
    assert check_pooling_mode("bos_token") == "bos"


def test_unknown_mode():
    with pytest.raises(ValueError, match="unknown pooling mode 'max'; choose one of mean, weighted_mean"):
        pool(H, MASK, "max")


def test_shape_mismatch_and_empty_rows():
    with pytest.raises(ValueError, match="does not match hidden states"):
        pool(H, MASK[:, :4])
    with pytest.raises(ValueError, match="selects no token"):
        pool(H, torch.tensor([[0, 1, 0, 0, 0], [0, 0, 0, 0, 0]]))
