"""Bidirectional attention for Hugging Face decoder models, without copying modeling code.

Current transformers builds attention masks in ``transformers.masking_utils``; when a config
says ``is_causal=False`` those builders return a padding-only (bidirectional) mask for every
layer type, sliding-window layers included. That alone is not enough: when a batch has no
padding the mask is skipped and SDPA / flash attention fall back to each attention module's own
``is_causal`` flag. So the switch sets both, and :func:`check_bidirectional` proves the result on
the loaded model instead of trusting a list of names.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

# Architectures whose switch is proven by bivec's own test suite on tiny random configs. A
# *config* can only be switched for these, because a config alone cannot be checked; a loaded
# model of any architecture is accepted when it passes `check_bidirectional`.
VERIFIED_MODEL_TYPES = frozenset(
    {"llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "phi3", "olmo2", "granite"}
)


class BidirectionalError(ValueError):
    """A model or config that bivec cannot prove to attend bidirectionally."""


def _switch_config(config: PretrainedConfig, bidirectional: bool) -> None:
    for cfg in {id(c): c for c in (config, config.get_text_config())}.values():
        cfg.is_causal = not bidirectional
        # Gemma-style models read this flag when building masks and attention modules.
        if hasattr(cfg, "use_bidirectional_attention"):
            cfg.use_bidirectional_attention = bidirectional


def make_bidirectional(
    model_or_config: PreTrainedModel | PretrainedConfig, *, check: bool = True
) -> PreTrainedModel | PretrainedConfig:
    """Switch a loaded model (or a config before loading) to bidirectional attention, in place.

    A model is then checked with :func:`check_bidirectional`; an architecture that fails the
    check raises :class:`BidirectionalError` and is put back to causal attention. A config is
    accepted only for the architectures in ``VERIFIED_MODEL_TYPES``; a model built from it must
    still go through this function, which also switches the attention modules.

    Example:
        >>> from transformers import AutoModel
        >>> model = make_bidirectional(AutoModel.from_pretrained("path/to/llama"))  # doctest: +SKIP
    """
    if isinstance(model_or_config, PretrainedConfig):
        model_type = model_or_config.get_text_config().model_type
        if model_type not in VERIFIED_MODEL_TYPES:
            raise BidirectionalError(
                f"model_type {model_type!r} is not among the architectures verified for a config switch "
                f"({', '.join(sorted(VERIFIED_MODEL_TYPES))}); load the model and pass it to "
                "make_bidirectional instead, which checks it on the real weights"
            )
        _switch_config(model_or_config, True)
        return model_or_config
    if not isinstance(model_or_config, nn.Module) or not hasattr(model_or_config, "config"):
        raise TypeError(
            f"make_bidirectional expects a transformers model or config, got {type(model_or_config).__name__}"
        )
    set_attention_mode(model_or_config, bidirectional=True)
    if check:
        try:
            check_bidirectional(model_or_config)
        except BidirectionalError:
            set_attention_mode(model_or_config, bidirectional=False)
            raise
    return model_or_config


def set_attention_mode(model: nn.Module, *, bidirectional: bool) -> None:
    """Set the config and every attention module of ``model`` to causal or bidirectional."""
    _switch_config(model.config, bidirectional)
    for module in model.modules():
        if isinstance(getattr(module, "is_causal", None), bool):
            module.is_causal = not bidirectional
        sub_config = getattr(module, "config", None)
        if isinstance(sub_config, PretrainedConfig) and sub_config is not model.config:
            _switch_config(sub_config, bidirectional)


def is_bidirectional(model: nn.Module) -> bool:
    """Whether ``model`` was switched to bidirectional attention (flags only; no forward pass)."""
    return getattr(model.config.get_text_config(), "is_causal", True) is False


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, so left padding does not shift them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def last_hidden_state(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The final hidden states of a base, causal-LM or peft-wrapped model, with positions that
    ignore padding and, for bidirectional sliding-window layers, a symmetric window (see
    :func:`sliding_window_masks`). The LM head is skipped: embeddings never need logits. Encoding
    and every training stage run their forward passes through this function."""
    return _decoder_forward(model, input_ids, attention_mask).last_hidden_state


def hidden_states(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Every layer's states (the embeddings first), through the same forward as :func:`last_hidden_state`."""
    return _decoder_forward(model, input_ids, attention_mask, output_hidden_states=True).hidden_states


def _decoder_forward(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs):
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    decoder = getattr(model, "base_model", model)
    return decoder(
        input_ids=input_ids,
        attention_mask=sliding_window_masks(decoder, input_ids, attention_mask),
        position_ids=position_ids_from_mask(attention_mask),
        use_cache=False,
        **kwargs,
    )


def sliding_window_masks(decoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """The attention mask to hand ``decoder``: the 2D padding mask as it is, except for a
    bidirectional model with sliding-window layers. There, transformers' bidirectional window lets a
    token see ``sliding_window`` tokens on each side, one more behind it than the causal rule it was
    trained with (``sliding_window - 1`` behind, itself included in the width); bivec builds the
    symmetric window of the model's own width instead, ``|i - j| < sliding_window``, with
    transformers' mask builders. Models with both layer types get one mask per type."""
    config = decoder.config.get_text_config()
    window = getattr(config, "sliding_window", None)
    if not isinstance(window, int) or window < 1 or not is_bidirectional(decoder):
        return attention_mask
    from transformers.masking_utils import create_bidirectional_mask

    def within(batch_idx, head_idx, q_idx, kv_idx):
        return (q_idx - kv_idx).abs() < window

    # Only the shape, dtype and device of the embeddings matter to the mask builders.
    dtype = next(decoder.parameters()).dtype
    embeds = torch.empty((*input_ids.shape, 0), dtype=dtype, device=input_ids.device)
    sliding = create_bidirectional_mask(config, embeds, attention_mask, and_mask_function=within)
    if "full_attention" in (getattr(config, "layer_types", None) or ()):
        return {"full_attention": create_bidirectional_mask(config, embeds, attention_mask),
                "sliding_attention": sliding}
    return sliding


def _probe_ids(model: nn.Module, length: int) -> torch.Tensor:
    vocab = model.get_input_embeddings().num_embeddings
    generator = torch.Generator().manual_seed(0)
    return torch.randint(min(4, vocab - 1), vocab, (1, length), generator=generator)


@torch.inference_mode()
def check_bidirectional(model: nn.Module, *, length: int = 6) -> None:
    """Prove on ``model`` itself that attention is bidirectional and blind to padding.

    Raises :class:`BidirectionalError` when changing the last token leaves the first token's
    final hidden state unchanged, or when left or right padding changes a real token's state.
    """
    device = next(model.parameters()).device
    # Sliding-window layers only see a few neighbours: probe within the smallest window.
    window = getattr(model.config.get_text_config(), "sliding_window", None)
    if isinstance(window, int) and window > 1:
        length = min(length, window)
    was_training = model.training
    model.eval()
    try:
        ids = _probe_ids(model, length).to(device)
        changed = ids.clone()
        changed[0, -1] = ids[0, -2] if ids[0, -2] != ids[0, -1] else (ids[0, -1] + 1) % model.get_input_embeddings().num_embeddings
        full = torch.ones_like(ids)
        base = last_hidden_state(model, ids, full).float()
        other = last_hidden_state(model, changed, full).float()
        scale = base.abs().max().clamp(min=1e-6)
        tol = 1e-4 if base.dtype == torch.float32 and next(model.parameters()).dtype == torch.float32 else 3e-2
        name = type(model).__name__
        if (base[0, 0] - other[0, 0]).abs().max() <= 1e-5 * scale:
            raise BidirectionalError(
                f"{name} ({model.config.model_type}) still attends causally after the switch: changing the last "
                "token did not change the first token's hidden state"
            )
        pad = torch.zeros(1, 2, dtype=ids.dtype, device=device)
        for side, padded, mask in (
            ("right", torch.cat([ids, pad], 1), torch.cat([full, torch.zeros_like(pad)], 1)),
            ("left", torch.cat([pad, ids], 1), torch.cat([torch.zeros_like(pad), full], 1)),
        ):
            hidden = last_hidden_state(model, padded, mask).float()[mask.bool()].view_as(base)
            if (hidden - base).abs().max() > tol * scale:
                raise BidirectionalError(
                    f"{name} ({model.config.model_type}): {side} padding changes real tokens' hidden states in "
                    "bidirectional mode, so its attention mask cannot be trusted"
                )
    finally:
        model.train(was_training)
