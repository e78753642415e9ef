"""What the contrastive objectives (InfoNCE, CLAPP) share: negative sampling (indices of rows, never copies of
whole tensors), the split of a batch into negative groups, the pool of data-parallel replicas, the precision of the
scores, and the window of a long sequence that gives contexts and positives."""

from __future__ import annotations

import torch
import torch.distributed as dist


def sample_negatives(num_queries: int, num_negatives: int, pool_size: int, device: torch.device) -> torch.Tensor:
    """Indices (num_queries, num_negatives) drawn uniformly with replacement from range(pool_size).

    Only these indices are materialised; the caller gathers the matching rows, so memory grows with
    queries x negatives x channels, never with a repeated copy of the pool.
    """
    return torch.randint(pool_size, (num_queries, num_negatives), device=device)


def sample_permuted_negatives(rows: int, num_negatives: int, pool_size: int, device: torch.device) -> torch.Tensor:
    """Indices (rows, num_negatives) into range(pool_size): column n is the last `rows` entries of its own random
    permutation of the pool, so no index repeats within a column (the original audio code's sampling_method 1,
    which shuffles the whole pool once per negative and reads only the rows it needs: we keep only those rows)."""
    if rows > pool_size:
        raise ValueError(f"cannot take {rows} rows of a permutation of {pool_size}")
    columns = [torch.randperm(pool_size, device=device)[pool_size - rows :] for _ in range(num_negatives)]
    return torch.stack(columns, dim=1)


def at_least_fp32(logits: torch.Tensor) -> torch.Tensor:
    """Scores go into the softmax in fp32 at least: bf16 ones (autocast) are widened, fp64 ones (gradient checks,
    the cross-check with the original code) keep their precision."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def positive_first(logits: torch.Tensor) -> torch.Tensor:
    """(Q,) 1 where a query's positive (column 0 of its (Q, 1 + N) scores) scores highest among its candidates, else
    0: what the original code's InfoNCE accuracy counts (argmax == 0, so a tie goes to the positive)."""
    return (logits.argmax(dim=1) == 0).to(logits.dtype)


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


def split_groups(z: torch.Tensor, groups: int, group: dist.ProcessGroup | None) -> tuple[torch.Tensor, ...]:
    """The batch cut into `groups` consecutive equal parts, each its own negative pool: what nn.DataParallel did
    in the original code, each GPU scoring its slice of the batch against negatives from that slice only."""
    if z.shape[0] % groups:
        raise ValueError(
            f"objective.negative_groups: a batch of {z.shape[0]} does not split into {groups} equal groups"
        )
    if groups > 1 and group is not None:
        raise ValueError(
            "objective.negative_groups: with a negative pool shared across replicas "
            "(distributed.negatives global) the batch cannot also be split into groups"
        )
    return z.chunk(groups)


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
