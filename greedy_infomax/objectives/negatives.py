"""Negative sampling shared by the InfoNCE objectives: indices of rows, never copies of whole tensors."""
from __future__ import annotations

import torch


def sample_negatives(num_queries: int, num_negatives: int, pool_size: int, device: torch.device) -> torch.Tensor:
    """Indices (num_queries, num_negatives) drawn uniformly with replacement from range(pool_size).

    Only these indices are materialised; the caller gathers the matching rows, so memory grows with
    queries x negatives x channels, never with a repeated copy of the pool.
    """
    return torch.randint(pool_size, (num_queries, num_negatives), device=device)
