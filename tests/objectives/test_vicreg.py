"""VICReg against a loop over dimensions and samples, and analytic cases."""

from __future__ import annotations

import math

import pytest
import torch

from greedy_infomax.objectives.vicreg import VICReg


def reference_loss(
    p1: torch.Tensor, p2: torch.Tensor, weights: tuple[float, float, float], eps: float, gamma: float
) -> torch.Tensor:
    """lambda * mean squared difference + mu * hinge on each dimension's std + nu * squared off-diagonal covariance."""
    p1, p2 = p1.double(), p2.double()
    B, D = p1.shape
    invariance = sum((p1[b, j] - p2[b, j]) ** 2 for b in range(B) for j in range(D)) / (B * D)

    def mean(p: torch.Tensor, j: int) -> torch.Tensor:
        return sum(p[b, j] for b in range(B)) / B

    def covariance(p: torch.Tensor, i: int, j: int) -> torch.Tensor:
        return sum((p[b, i] - mean(p, i)) * (p[b, j] - mean(p, j)) for b in range(B)) / (B - 1)

    variance = covariances = 0.0
    for p in (p1, p2):
        variance = variance + sum(max(0.0, gamma - math.sqrt(covariance(p, j, j) + eps)) for j in range(D)) / D
        covariances = covariances + sum(covariance(p, i, j) ** 2 for i in range(D) for j in range(D) if i != j) / D
    lam, mu, nu = weights
    return lam * invariance + mu * variance + nu * covariances


@pytest.mark.parametrize(
    "B, D, weights", [(3, 2, (25.0, 25.0, 1.0)), (6, 5, (1.0, 2.0, 3.0)), (12, 7, (25.0, 25.0, 1.0))]
)
@pytest.mark.parametrize("spread", [0.3, 2.0])  # below and above gamma = 1: the variance hinge off and on
def test_matches_loop_reference(B, D, weights, spread):
    generator = torch.Generator().manual_seed(B * 10 + D)
    p1 = torch.randn(B, D, generator=generator) * spread
    p2 = p1 + torch.randn(B, D, generator=generator) * 0.5
    objective = VICReg(3, *weights)
    expected = reference_loss(p1, p2, weights, objective.eps, objective.target_std)
    assert objective.loss(p1, p2).item() == pytest.approx(float(expected), rel=1e-5, abs=1e-6)


def test_collapsed_views_pay_the_full_variance_hinge_and_nothing_else():
    """Every row the same vector in both views: no invariance or covariance cost, and std = sqrt(eps) in every
    dimension of both views: L = mu * 2 * (1 - sqrt(1e-4))."""
    p = torch.randn(1, 6).expand(5, 6)
    assert VICReg(3).loss(p, p).item() == pytest.approx(25.0 * 2 * (1 - math.sqrt(1e-4)), rel=1e-6)


def test_identical_spread_decorrelated_views_give_zero():
    """Columns of mean 0, no covariance and std sqrt(4/3) > 1: every term vanishes."""
    p = torch.tensor([[1.0, 1, 1], [-1, 1, -1], [1, -1, -1], [-1, -1, 1]])
    assert VICReg(3).loss(p, p).item() == pytest.approx(0.0, abs=1e-7)
