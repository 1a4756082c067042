import pytest
import torch
from transformers import AttentionInterface, AutoModel, GPT2Config
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from bivec.attention import (
    BidirectionalError,
    check_bidirectional,
    is_bidirectional,
    last_hidden_state,
    make_bidirectional,
    set_attention_mode,
)

IDS = torch.tensor([[7, 9, 14, 20, 33, 41, 12, 8]])


def states(model, ids, mask=None):
    with torch.no_grad():
        return last_hidden_state(model, ids, torch.ones_like(ids) if mask is None else mask)


def changed_last(ids):
    out = ids.clone()
    out[:, -1] = 50
    return out


def test_later_token_changes_earlier_state_only_when_bidirectional(arch_and_impl, make_tiny_model):
    arch, impl = arch_and_impl
    model = make_tiny_model(arch, impl)
    before, after = states(model, IDS), states(model, changed_last(IDS))
    torch.testing.assert_close(before[:, :-1], after[:, :-1])  # causal: the past cannot see the future
    make_bidirectional(model)
    before, after = states(model, IDS), states(model, changed_last(IDS))
    assert (before[0, 0] - after[0, 0]).abs().max() > 1e-3


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_never_changes_real_tokens(arch_and_impl, side, make_tiny_model):
    arch, impl = arch_and_impl
    model = make_bidirectional(make_tiny_model(arch, impl))
    short = IDS[:, :5]
    pad = torch.zeros(1, 3, dtype=torch.long)
    ids = torch.cat([IDS, torch.cat([pad, short], 1) if side == "left" else torch.cat([short, pad], 1)])
    mask = (torch.arange(8) >= 3) if side == "left" else (torch.arange(8) < 5)
    mask = torch.stack([torch.ones(8, dtype=torch.bool), mask]).long()
    batch = states(model, ids, mask)
    torch.testing.assert_close(batch[0], states(model, IDS)[0], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(batch[1][mask[1].bool()], states(model, short)[0], atol=2e-5, rtol=1e-4)


def test_eager_and_sdpa_agree(sdpa_architecture, make_tiny_model):
    eager = make_bidirectional(make_tiny_model(sdpa_architecture, "eager"))
    sdpa = make_bidirectional(make_tiny_model(sdpa_architecture, "sdpa"))
    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3])
    ids = IDS.repeat(2, 1)
    torch.testing.assert_close(states(eager, ids, mask), states(sdpa, ids, mask), atol=1e-5, rtol=1e-4)


def _seen_by(model, position: int, length: int = 9) -> list[int]:
    """The positions whose token changes ``position``'s final state (one layer: its attention window)."""
    ids = torch.randint(10, 100, (1, length), generator=torch.Generator().manual_seed(0))
    base = states(model, ids)
    seen = []
    for k in range(length):
        changed = ids.clone()
        changed[0, k] = (changed[0, k] + 7) % 90 + 10
        if (states(model, changed)[0, position] - base[0, position]).abs().max() > 1e-6:
            seen.append(k)
    return seen


@pytest.mark.parametrize("arch,impl,overrides", [
    ("mistral", "eager", {}), ("mistral", "sdpa", {}), ("gemma2", "eager", {"layer_types": ["sliding_attention"]}),
])
def test_sliding_window_becomes_symmetric_with_the_models_own_width(arch, impl, overrides, make_tiny_model):
    model = make_tiny_model(arch, impl, sliding_window=3, num_hidden_layers=1, **overrides)
    # Causal: the token itself and the 2 before it (a width of 3). Bidirectional: 2 on each side,
    # not transformers' 3 on each side.
    assert _seen_by(model, 4) == [2, 3, 4]
    make_bidirectional(model)
    assert _seen_by(model, 4) == [2, 3, 4, 5, 6]
    padded = torch.cat([torch.zeros(1, 2, dtype=torch.long), IDS], 1)
    mask = torch.cat([torch.zeros(1, 2, dtype=torch.long), torch.ones_like(IDS)], 1)
    torch.testing.assert_close(states(model, padded, mask)[0, 2:], states(model, IDS)[0], atol=1e-5, rtol=1e-4)


def test_full_layers_beside_sliding_ones_see_everything(make_tiny_model):
    model = make_bidirectional(make_tiny_model("gemma2", "eager", sliding_window=3, num_hidden_layers=2,
                                               layer_types=["full_attention", "sliding_attention"]))
    assert _seen_by(model, 4) == list(range(9))


def test_switch_back_to_causal(make_tiny_model):
    model = make_bidirectional(make_tiny_model("llama", "sdpa"))
    assert is_bidirectional(model)
    set_attention_mode(model, bidirectional=False)
    assert not is_bidirectional(model)
    torch.testing.assert_close(states(model, IDS)[:, :-1], states(model, changed_last(IDS))[:, :-1])


def test_config_switch_before_loading(make_tiny_config):
    config = make_bidirectional(make_tiny_config("qwen3"))
    assert config.is_causal is False
    torch.manual_seed(0)
    model = make_bidirectional(AutoModel.from_config(config))
    check_bidirectional(model)


def test_unlisted_architecture_is_accepted_when_it_passes_the_check():
    from transformers import GPT2Model

    torch.manual_seed(0)
    model = make_bidirectional(GPT2Model(GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=128)).eval())
    assert (states(model, IDS)[0, 0] - states(model, changed_last(IDS))[0, 0]).abs().max() > 1e-3


def test_config_of_unverified_architecture_is_refused():
    with pytest.raises(BidirectionalError, match="model_type 'gpt2' is not among the architectures verified"):
        make_bidirectional(GPT2Config(n_layer=1, n_embd=16, n_head=2))


def _always_causal(module, query, key, value, attention_mask, **kwargs):
    # An attention kernel that ignores the mask and the module flag, like a model that
    # hard-codes its causal mask.
    return sdpa_attention_forward(module, query, key, value, None, is_causal=True, **{k: v for k, v in kwargs.items() if k != "is_causal"})


def test_model_that_stays_causal_is_refused_and_restored(make_tiny_model):
    AttentionInterface.register("bivec_test_always_causal", _always_causal)
    model = make_tiny_model("llama", "bivec_test_always_causal")
    with pytest.raises(BidirectionalError, match="still attends causally"):
        make_bidirectional(model)
    assert not is_bidirectional(model)
    assert all(m.is_causal for m in model.modules() if hasattr(m, "is_causal"))


def test_rejects_what_is_not_a_model():
    with pytest.raises(TypeError, match="expects a transformers model or config, got str"):
        make_bidirectional("llama")
