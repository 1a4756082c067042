"""int8 linear layers for CPU encoding: weights int8 per output channel, activations int8 per token.

Per-token activation scales are what keep int8 usable on decoder models: their hidden states hold a
few "massive" values on some tokens (delimiters, the first token), and one scale for a whole batch,
as ``torch.ao``'s dynamic quantisation and ONNX Runtime's use, rounds every other token of that
batch to a handful of levels (on the default encoder, 2% of the calibration texts stayed within
cosine 0.99 of float32 that way; 60% with per-token scales, all layers in int8). The product runs
on ``torch._int_mm`` (oneDNN/FBGEMM int8 GEMM, VNNI where the CPU has it). torchao's
``Int8DynamicActivationInt8WeightConfig`` is the same scheme, but its tensor-subclass dispatch
cost more than the int8 GEMM saved in eager mode here (1.1-1.45x float32 on the default model's
shapes against 2.2-3.4x for this module, AMD EPYC, 2 threads).

The first layers of a decoder are the least tolerant of rounding (they build the massive values
the last layers cancel), so :func:`quantize_int8` can keep a number of leading layers in float32;
:func:`bivec.precision.int8_float_layers` measures how many a model needs.

Example:
    >>> import torch
    >>> layer = torch.nn.Linear(64, 32)
    >>> int8 = Int8Linear.from_linear(layer)
    >>> x = torch.randn(5, 64)
    >>> bool(torch.nn.functional.cosine_similarity(int8(x), layer(x)).min() > 0.99)
    True
"""

from __future__ import annotations

import gc

import torch
from torch import nn


class Int8Linear(nn.Module):
    """A linear layer with symmetric int8 weights (one scale per output channel) whose input is
    quantised symmetrically per token at run time; the int32 product is rescaled to float32."""

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.register_buffer("weight_t", weight)  # (in, out) int8, the layout torch._int_mm takes
        self.register_buffer("scale", scale)  # (out,) float32
        self.register_buffer("bias", bias)
        self.in_features, self.out_features = weight.shape

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
        quantized = torch.round(weight / scale[:, None]).to(torch.int8).t().contiguous()
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        return cls(quantized, scale, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        # A zero row gets scale 1: its codes are zeros, as is its product.
        token_scale = rows.abs().amax(dim=1, keepdim=True).div_(127)
        token_scale.masked_fill_(token_scale == 0, 1.0)
        codes = torch.round(rows / token_scale).to(torch.int8)
        out = torch._int_mm(codes, self.weight_t).float().mul_(token_scale * self.scale)
        if self.bias is not None:
            out += self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def parameter_count(model: nn.Module) -> int:
    """The model's parameters, counting the weights and biases that int8 layers keep as buffers."""
    int8 = [m for m in model.modules() if isinstance(m, Int8Linear)]
    return sum(p.numel() for p in model.parameters()) + sum(
        m.weight_t.numel() + (0 if m.bias is None else m.bias.numel()) for m in int8)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's list of decoder layers (``layers`` of a transformers base model)."""
    layers = getattr(getattr(model, "base_model", model), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"int8 needs a decoder with a `layers` list; {type(model).__name__} has none")
    return layers


class Int8Plan:
    """Every decoder layer's linear layers in float32 and in int8, so that the number of leading
    layers kept in float32 can be changed without reloading: :meth:`use` sets it, :meth:`keep`
    sets it for good and drops the copies no longer used.

    Example:
        >>> plan = Int8Plan(model)  # doctest: +SKIP
        >>> plan.keep(float_layers=10)  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.slots: list[list[tuple[nn.Module, str, nn.Linear, Int8Linear]]] = []
        for layer in decoder_layers(model):
            slots = []
            for name, module in list(layer.named_modules()):
                if isinstance(module, nn.Linear):
                    parent, _, child = name.rpartition(".")
                    slots.append((layer.get_submodule(parent), child, module, Int8Linear.from_linear(module)))
            self.slots.append(slots)
        self.float_layers = len(self.slots)

    def use(self, float_layers: int) -> None:
        if not 0 <= float_layers <= len(self.slots):
            raise ValueError(f"float_layers must be between 0 and {len(self.slots)}, got {float_layers}")
        for i, slots in enumerate(self.slots):
            for parent, child, linear, int8 in slots:
                setattr(parent, child, linear if i < float_layers else int8)
        self.float_layers = float_layers

    def keep(self, float_layers: int) -> None:
        self.use(float_layers)
        self.slots = []
        # The float weights left are views of the memory-mapped checkpoint, which reference cycles
        # from loading also hold: while mapped, the file pages read for quantising stay resident.
        for parameter in self.model.parameters():
            parameter.data = parameter.data.clone()
        gc.collect()


def quantize_int8(model: nn.Module, float_layers: int = 0) -> nn.Module:
    """Replace the linear layers of every decoder layer after the first ``float_layers`` by
    :class:`Int8Linear`, in place (embeddings and norms stay float32); CPU only."""
    Int8Plan(model).keep(float_layers)
    return model


_LLAMA_STYLE = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm")


def smoothable(model: nn.Module) -> bool:
    """Whether :func:`smooth` knows the model's layers: Llama-style projections after RMSNorms that
    scale by their weight (Gemma's scale by ``1 + weight``)."""
    config = model.config.get_text_config()
    if "gemma" in str(config.model_type) or getattr(config, "num_key_value_heads", None) is None:
        return False
    return all(_has(layer, name) for layer in decoder_layers(model) for name in _LLAMA_STYLE)


def _has(module: nn.Module, name: str) -> bool:
    try:
        module.get_submodule(name)
    except AttributeError:
        return False
    return True


def activation_maxima(model: nn.Module, run) -> list[dict[str, torch.Tensor]]:
    """Per decoder layer, the largest ``|x|`` per input channel of q_proj, o_proj, gate_proj and
    down_proj while ``run()`` runs the model."""
    maxima: list[dict[str, torch.Tensor]] = [{} for _ in decoder_layers(model)]
    hooks = []

    def record(store: dict, name: str):
        def hook(module, inputs):
            x = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0).float()
            store[name] = torch.maximum(store[name], x) if name in store else x
        return hook

    for store, layer in zip(maxima, decoder_layers(model)):
        for name in ("self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"):
            hooks.append(layer.get_submodule(name).register_forward_pre_hook(record(store, name)))
    try:
        with torch.no_grad():
            run()
    finally:
        for hook in hooks:
            hook.remove()
    return maxima


def smooth(model: nn.Module, maxima: list[dict[str, torch.Tensor]], alpha: float = 0.5) -> None:
    """SmoothQuant's scale migration, in place and exact in float32: per input channel of a linear
    layer, ``s = max|x|^alpha / max|w|^(1 - alpha)``; the input is divided by ``s`` where it is
    made (the RMSNorm's weight before q/k/v and gate/up, up_proj's rows before down_proj, v_proj's
    rows per key/value head before o_proj) and the weight columns multiplied by it, so that int8
    activations lose less to their outlier channels."""
    config = model.config.get_text_config()
    heads, kv = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads

    def scale(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (x.clamp(min=1e-5) ** alpha / w.clamp(min=1e-5) ** (1 - alpha)).clamp(min=1e-5)

    with torch.no_grad():
        for layer, seen in zip(decoder_layers(model), maxima):
            attn, mlp = layer.self_attn, layer.mlp
            for norm, targets, x in ((layer.input_layernorm, (attn.q_proj, attn.k_proj, attn.v_proj), seen["self_attn.q_proj"]),
                                     (layer.post_attention_layernorm, (mlp.gate_proj, mlp.up_proj), seen["mlp.gate_proj"])):
                s = scale(x, torch.cat([m.weight.abs() for m in targets]).amax(0))
                norm.weight.div_(s)
                for m in targets:
                    m.weight.mul_(s)
            s = scale(seen["mlp.down_proj"], mlp.down_proj.weight.abs().amax(0))
            _scale_rows(mlp.up_proj, 1 / s)
            mlp.down_proj.weight.mul_(s)
            # o_proj's input is the attention output, linear in v: one scale per v channel, shared
            # by the query heads of its group.
            s = scale(_per_kv(seen["self_attn.o_proj"], kv, head_dim),
                      _per_kv(attn.o_proj.weight.abs().amax(0), kv, head_dim)).reshape(-1)
            _scale_rows(attn.v_proj, 1 / s)
            attn.o_proj.weight.mul_(s.view(kv, 1, head_dim).expand(-1, heads // kv, -1).reshape(-1))


def _per_kv(channels: torch.Tensor, kv: int, head_dim: int) -> torch.Tensor:
    return channels.view(kv, -1, head_dim).amax(1)


def _scale_rows(linear: nn.Linear, factor: torch.Tensor) -> None:
    linear.weight.mul_(factor[:, None])
    if linear.bias is not None:
        linear.bias.mul_(factor)
