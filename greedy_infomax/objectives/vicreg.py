"""VICReg on a module's pooled, projected output (Bardes, Ponce, LeCun 2022, Sec. 3), one per module."""

from __future__ import annotations

import torch
from torch import nn

from greedy_infomax.objectives.projector import Projector


class VICReg(nn.Module):
    """L = lambda * s(Z, Z') + mu * (v(Z) + v(Z')) + nu * (c(Z) + c(Z'))

      s(Z, Z') = 1/(B D) sum_b ||z_b - z'_b||^2                        invariance: the views agree
      v(Z)     = 1/D sum_j max(0, gamma - sqrt(Var_b(z_{b,j}) + eps))  variance: each dimension keeps spread
      c(Z)     = 1/D sum_{i != j} Cov(Z)_{ij}^2                         covariance: dimensions decorrelate

    with Z, Z' the two views' projections (B, D), Var and Cov over the batch with 1/(B - 1), gamma = 1 and
    eps = 1e-4 as in the paper. The invariance term is averaged over dimensions as well as samples (the paper's
    formula sums over dimensions): then all three terms are per-dimension means and the default weights
    lambda = mu = 25, nu = 1 (the paper's) keep their balance whatever the projection width D.

    Args:
        channels: C of the module's output z (2B, C, *positions).
        invariance_weight, variance_weight, covariance_weight: lambda, mu, nu.
        hidden_dim: width of the hidden layer of the module's own projector.
        projection_dim: D, the width of its projections; None: 512 (the paper's is 8192, for a 2048-wide
            ResNet-50; a module here is far narrower).
    """

    views = 2  # rows b and B + b of a batch are two augmented views of image b (data/views.py)
    target_std = 1.0  # gamma
    eps = 1e-4

    def __init__(
        self,
        channels: int,
        invariance_weight: float = 25.0,
        variance_weight: float = 25.0,
        covariance_weight: float = 1.0,
        hidden_dim: int = 512,
        projection_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.invariance_weight = invariance_weight
        self.variance_weight = variance_weight
        self.covariance_weight = covariance_weight
        self.projector = Projector(channels, hidden_dim, projection_dim or 512)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Args: z (2B, C, *positions), rows [0, B) view 1 and [B, 2B) view 2; labels are unused."""
        return self.loss(*self.projector(z))

    def loss(self, p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
        """The loss of the projections p1, p2 (B, D) of the two views."""
        invariance = (p1 - p2).pow(2).mean()
        variance = self._variance(p1) + self._variance(p2)
        covariance = self._covariance(p1) + self._covariance(p2)
        return (
            self.invariance_weight * invariance + self.variance_weight * variance + self.covariance_weight * covariance
        )

    def _variance(self, p: torch.Tensor) -> torch.Tensor:
        std = torch.sqrt(p.var(dim=0) + self.eps)  # (D,)
        return torch.relu(self.target_std - std).mean()

    def _covariance(self, p: torch.Tensor) -> torch.Tensor:
        B, D = p.shape
        centred = p - p.mean(dim=0)
        cov = centred.T @ centred / (B - 1)  # (D, D)
        return (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / D
