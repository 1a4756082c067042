"""Pooling token states into one vector per text, vectorised over the batch.

Every mode reads a *pooling mask*: 1 for the tokens of the text itself, 0 for padding,
instruction and chat-template tokens. Because positions come from the mask and not from the
row, left and right padding give the same result.
"""

from __future__ import annotations

import torch

POOLING_MODES: tuple[str, ...] = ("mean", "weighted_mean", "eos", "last", "bos", "first")
# The reference library's names, accepted so its configs load unchanged.
_ALIASES = {"eos_token": "eos", "last_token": "last", "bos_token": "bos", "first_token": "first"}


def check_pooling_mode(mode: str) -> str:
    """Return the canonical name of ``mode``, or raise a ValueError listing the valid ones."""
    canonical = _ALIASES.get(mode, mode)
    if canonical not in POOLING_MODES:
        raise ValueError(f"unknown pooling mode {mode!r}; choose one of {', '.join(POOLING_MODES)}")
    return canonical


def pool(hidden: torch.Tensor, pooling_mask: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """Pool ``hidden`` (batch, seq, dim) over ``pooling_mask`` (batch, seq) into (batch, dim).

    ``mean`` averages the masked tokens; ``weighted_mean`` gives the k-th masked token weight k;
    ``eos``/``last`` take the last masked token and ``bos``/``first`` the first one.

    Example:
        >>> h = torch.arange(6.0).view(1, 3, 2)
        >>> pool(h, torch.tensor([[0, 1, 1]]), "mean")
        tensor([[3., 4.]])
    """
    mode = check_pooling_mode(mode)
    if hidden.shape[:2] != pooling_mask.shape:
        raise ValueError(
            f"pooling_mask shape {tuple(pooling_mask.shape)} does not match hidden states {tuple(hidden.shape[:2])}"
        )
    mask = pooling_mask.to(hidden.dtype)
    if (mask.sum(-1) == 0).any():
        raise ValueError("pooling_mask selects no token for at least one row")
    if mode in ("mean", "weighted_mean"):
        weights = mask.cumsum(-1) * mask if mode == "weighted_mean" else mask
        weights = weights / weights.sum(-1, keepdim=True)
        return torch.einsum("bs,bsd->bd", weights, hidden)
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    selected = pooling_mask.bool()
    if mode in ("eos", "last"):
        index = torch.where(selected, positions, -1).amax(-1)
    else:
        index = torch.where(selected, positions, mask.shape[1]).amin(-1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]
