"""Sampling shared by the contrastive objectives (InfoNCE, CLAPP): negatives as indices of rows, never copies of
whole tensors, and the window of a long sequence that gives contexts and positives."""
from __future__ import annotations

import torch
import torch.distributed as dist


def sample_negatives(num_queries: int, num_negatives: int, pool_size: int, device: torch.device) -> torch.Tensor:
    """Indices (num_queries, num_negatives) drawn uniformly with replacement from range(pool_size).

    Only these indices are materialised; the caller gathers the matching rows, so memory grows with
    queries x negatives x channels, never with a repeated copy of the pool.
    """
    return torch.randint(pool_size, (num_queries, num_negatives), device=device)


def context_window(steps: int, window: int | None) -> tuple[int | torch.Tensor, int]:
    """(start, length) of the steps of a sequence that give contexts and positives: all `steps`, or with a `window`
    one random window of that many steps of a longer sequence (the same for the whole batch), whose start stays a
    (host) tensor: as a Python int it would break a compiled graph and recompile it per value."""
    if window is None or steps <= window:
        return 0, steps
    return torch.randint(steps - window + 1, ()), window


def pool_copies(group: dist.ProcessGroup | None) -> int:
    """How many batches make up the negative pool: 1, or every data-parallel replica's with a `group`."""
    return 1 if group is None else dist.get_world_size(group)


def shared_pool(rows: torch.Tensor, dim: int, group: dist.ProcessGroup | None) -> torch.Tensor:
    """The rows negatives are gathered from: this batch's, or with a `group` every replica's concatenated along
    `dim`, in the group's rank order. Gradients flow back to each replica's own rows (see _GatherRows), so each
    replica's encoder also learns from how its rows served as negatives elsewhere."""
    return rows if group is None else _GatherRows.apply(rows, dim, group)


class _GatherRows(torch.autograd.Function):
    """all_gather whose backward hands each replica the sum over replicas of the gradient for its own slice.
    (torch.distributed.nn's all_gather emulates that on gloo with scatters that misplace subgroup ranks.)"""

    @staticmethod
    def forward(ctx, rows: torch.Tensor, dim: int, group: dist.ProcessGroup) -> torch.Tensor:
        ctx.dim, ctx.group = dim, group
        parts = [torch.empty_like(rows) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, rows.contiguous(), group=group)
        return torch.cat(parts, dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)  # every replica's gradient for every slice; ours is one of them
        ours = grad.chunk(dist.get_world_size(ctx.group), ctx.dim)[dist.get_rank(ctx.group)]
        return ours, None, None
