"""Barlow Twins on a module's pooled, projected output (Zbontar et al. 2021, Sec. 2, Eq. 1-2), one per module, as
blockwise self-supervised learning trains each block of a ResNet (Siddiqui et al. 2024)."""

from __future__ import annotations

import torch
from torch import nn

from greedy_infomax.objectives.projector import Projector


class BarlowTwins(nn.Module):
    """L = sum_i (1 - C_ii)^2 + lambda * sum_i sum_{j != i} C_ij^2,  C_ij = mean_b a_{b,i} b_{b,j}

    where a and b are the two views' projections, each dimension standardised over the batch (mean 0, variance 1),
    so C is the D x D cross-correlation matrix of the views. Its diagonal is pulled to 1 (each dimension agrees
    across views: invariance) and its off-diagonal to 0 (dimensions carry different information: no collapse to a
    few features). The standardisation divides by sqrt(variance + 1e-5), as a BatchNorm without affine does, so a
    dimension that is constant over the batch gives C_ij = 0 rather than NaN (a NaN loss would skip the update).
    The default lambda = 5e-3 is the paper's.

    Args:
        channels: C of the module's output z (2B, C, *positions).
        off_diagonal_weight: lambda.
        hidden_dim: width of the hidden layer of the module's own projector.
        projection_dim: D, the width of its projections; None: 512 (the paper's is 8192, for a 2048-wide
            ResNet-50; a module here is far narrower).
    """

    views = 2  # rows b and B + b of a batch are two augmented views of image b (data/views.py)
    eps = 1e-5

    def __init__(
        self, channels: int, off_diagonal_weight: float = 5e-3, hidden_dim: int = 512, projection_dim: int | None = None
    ) -> None:
        super().__init__()
        self.off_diagonal_weight = off_diagonal_weight
        self.projector = Projector(channels, hidden_dim, projection_dim or 512)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Args: z (2B, C, *positions), rows [0, B) view 1 and [B, 2B) view 2; labels are unused."""
        return self.loss(*self.projector(z))

    def loss(self, p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
        """The loss of the projections p1, p2 (B, D) of the two views."""
        a, b = self._standardise(p1), self._standardise(p2)  # (B, D) each
        c = a.T @ b / p1.shape[0]  # (D, D)
        diagonal = c.diagonal()
        on = (1 - diagonal).pow(2).sum()
        off = c.pow(2).sum() - diagonal.pow(2).sum()
        return on + self.off_diagonal_weight * off

    def _standardise(self, p: torch.Tensor) -> torch.Tensor:
        variance, mean = torch.var_mean(p, dim=0, correction=0)
        return (p - mean) / torch.sqrt(variance + self.eps)
