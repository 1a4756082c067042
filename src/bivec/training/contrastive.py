"""Contrastive training pieces: InfoNCE with in-batch and hard negatives, gathering across
processes with gradients, and GradCache-style chunking of large batches."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext

import torch
import torch.distributed as dist
from torch import nn

from bivec.attention import last_hidden_state
from bivec.pooling import pool


def info_nce(queries: torch.Tensor, documents: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """Cross-entropy over ``scale * cos(query_i, document_j)``; query i's positive is document i
    and every other document (other positives, hard negatives) is a negative.

    Example:
        >>> q = torch.eye(2); d = torch.eye(2)
        >>> round(float(info_nce(q, d, scale=1.0)), 4)  # -log(e / (e + 1))
        0.3133
    """
    if documents.shape[0] < queries.shape[0]:
        raise ValueError(f"{documents.shape[0]} documents for {queries.shape[0]} queries; each query needs its positive")
    scores = nn.functional.normalize(queries.float(), dim=-1) @ nn.functional.normalize(documents.float(), dim=-1).T
    labels = torch.arange(queries.shape[0], device=queries.device)
    return nn.functional.cross_entropy(scale * scores, labels)


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every process in rank order (the first dimension may differ
    between processes); the local part keeps its gradient. Without torch.distributed this
    returns ``tensor``."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    sizes = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([tensor.shape[0]], device=tensor.device))
    width = int(max(s.item() for s in sizes))
    padded = torch.zeros((width, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.shape[0]] = tensor.detach()
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    parts = [part[: int(size.item())] for part, size in zip(parts, sizes)]
    parts[dist.get_rank()] = tensor
    return torch.cat(parts)


class Embedder(nn.Module):
    """Pooled last-layer states of a (peft-wrapped) decoder: the module distributed wrappers see."""

    def __init__(self, decoder: nn.Module, pooling: str = "mean") -> None:
        super().__init__()
        self.decoder = decoder
        self.pooling = pooling

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pooling_mask: torch.Tensor) -> torch.Tensor:
        return pool(last_hidden_state(self.decoder, input_ids, attention_mask), pooling_mask, self.pooling)


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def contrastive_step(
    embed: Callable[[Batch], torch.Tensor],
    queries: Sequence[Batch],
    documents: Sequence[Batch],
    *,
    scale: float,
    loss_weight: float = 1.0,
    no_sync: Callable[[], object] = nullcontext,
) -> float:
    """One forward/backward of InfoNCE over chunked inputs, GradCache-style; returns the loss.

    ``queries`` and ``documents`` are lists of chunks (ids, attention mask, pooling mask);
    documents are the positives, in query order (as many as queries), then hard negatives. Embeddings are first
    computed without a graph, the loss's gradient with respect to them is cached, then each chunk
    is re-run with its own random state (so dropout matches) and back-propagated with the cached
    gradient: memory is that of one chunk, gradients equal those of the whole batch. Embeddings
    are gathered across processes; ``loss_weight`` scales the backward pass (the number of
    processes, so that averaging gradients across them gives the full batch's gradient).
    """
    chunks = [*queries, *documents]
    if len(queries) == 1 and len(documents) <= 2:
        # Everything fits in one pass per side: caching would only add a forward pass.
        reps = [embed(chunk) for chunk in chunks]
        n = reps[0].shape[0]
        positives = gather_with_grad(reps[1][:n])
        negatives = gather_with_grad(torch.cat([reps[1][n:], *reps[2:]]))
        loss = info_nce(gather_with_grad(reps[0]), torch.cat([positives, negatives]), scale)
        (loss * loss_weight).backward()
        return float(loss.detach())
    states, cached = [], []
    with torch.no_grad():
        for chunk in chunks:
            states.append(torch.get_rng_state())
            cached.append(embed(chunk))
    n = sum(c.shape[0] for c in cached[: len(queries)])
    reps = torch.cat(cached).detach().requires_grad_()
    # Positives and negatives are gathered apart so that query i's positive stays document i.
    documents_all = torch.cat([gather_with_grad(reps[n : 2 * n]), gather_with_grad(reps[2 * n :])])
    loss = info_nce(gather_with_grad(reps[:n]), documents_all, scale)
    (loss * loss_weight).backward()
    grads = reps.grad.split([c.shape[0] for c in cached])
    after = torch.get_rng_state()
    for i, (chunk, state, grad) in enumerate(zip(chunks, states, grads)):
        torch.set_rng_state(state)
        with no_sync() if i < len(chunks) - 1 else nullcontext():
            embed(chunk).backward(grad.to(cached[i].dtype))
    torch.set_rng_state(after)
    return float(loss.detach())
