"""int8 linear layers, the float32 layers kept ahead of them, and SmoothQuant's migration."""

from __future__ import annotations

import pytest
import torch

from bivec import int8


def test_int8_linear_is_close_to_the_float_layer_it_replaces():
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 48)
    quantized = int8.Int8Linear.from_linear(layer)
    x = torch.randn(3, 5, 64)
    x[0, 0] *= 100  # a token with massive values does not spoil the others' scales
    out, exact = quantized(x), layer(x)
    assert out.shape == (3, 5, 48) and out.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(out, exact, dim=-1).min() > 0.999
    assert quantized.weight_t.dtype == torch.int8 and quantized.weight_t.shape == (64, 48)


def test_int8_linear_maps_a_zero_token_to_its_bias():
    layer = torch.nn.Linear(16, 8)
    out = int8.Int8Linear.from_linear(layer)(torch.zeros(2, 16))
    assert torch.isfinite(out).all() and torch.allclose(out, layer.bias.detach().expand(2, -1))


def _tiny(make_tiny_model, model_type: str = "llama") -> torch.nn.Module:
    return make_tiny_model(model_type, "sdpa").eval()


def test_quantize_int8_keeps_the_leading_layers_in_float32(make_tiny_model):
    model = int8.quantize_int8(_tiny(make_tiny_model), float_layers=1)
    kinds = [{type(m) for m in layer.modules() if isinstance(m, (torch.nn.Linear, int8.Int8Linear))}
             for layer in int8.decoder_layers(model)]
    assert kinds == [{torch.nn.Linear}, {int8.Int8Linear}]


def test_parameter_count_includes_the_int8_weights(make_tiny_model):
    model = _tiny(make_tiny_model)
    before = int8.parameter_count(model)
    assert before == sum(p.numel() for p in model.parameters())
    assert int8.parameter_count(int8.quantize_int8(model)) == before


def test_quantize_int8_refuses_a_float_layer_count_out_of_range(make_tiny_model):
    with pytest.raises(ValueError, match="float_layers must be between 0 and 2, got 3"):
        int8.quantize_int8(_tiny(make_tiny_model), float_layers=3)


def test_a_model_without_decoder_layers_is_refused_by_name():
    with pytest.raises(ValueError, match="int8 needs a decoder with a `layers` list; Sequential has none"):
        int8.Int8Plan(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_smoothing_is_exact_in_float32_where_the_architecture_allows_it(make_tiny_model, architecture):
    model = make_tiny_model(architecture, "eager").eval()
    # Gemma's norms scale by 1 + weight, Phi-3 fuses its projections: those are quantised unsmoothed.
    assert int8.smoothable(model) == (architecture in {"llama", "mistral", "qwen2", "qwen3"})
    if not int8.smoothable(model):
        return
    ids = torch.randint(5, 90, (2, 7))
    with torch.no_grad():
        before = model(input_ids=ids).last_hidden_state
    maxima = int8.activation_maxima(model, lambda: model(input_ids=ids))
    assert set(maxima[0]) == {"self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"}
    norm = model.layers[0].input_layernorm.weight.detach().clone()
    int8.smooth(model, maxima)
    with torch.no_grad():
        after = model(input_ids=ids).last_hidden_state
    assert not torch.equal(norm, model.layers[0].input_layernorm.weight)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)


def test_every_architecture_quantises_and_stays_close(make_tiny_model, architecture):
    model = make_tiny_model(architecture, "eager").eval()
    ids = torch.randint(5, 90, (2, 7))
    with torch.no_grad():
        exact = model(input_ids=ids).last_hidden_state
        out = int8.quantize_int8(model)(input_ids=ids).last_hidden_state
    assert not any(isinstance(m, torch.nn.Linear) for layer in int8.decoder_layers(model) for m in layer.modules())
    assert torch.nn.functional.cosine_similarity(out, exact, dim=-1).min() > 0.98
