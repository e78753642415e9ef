"""Barlow Twins against a loop over dimensions and samples, and analytic cases."""

from __future__ import annotations

import pytest
import torch

from greedy_infomax.objectives.barlow_twins import BarlowTwins


def reference_loss(p1: torch.Tensor, p2: torch.Tensor, off_diagonal_weight: float, eps: float) -> torch.Tensor:
    """C_ij = mean_b a_bi b_bj of the standardised views; (1 - C_ii)^2 summed plus lambda * C_ij^2 off the diagonal."""
    p1, p2 = p1.double(), p2.double()
    B, D = p1.shape

    def standardised(p: torch.Tensor, j: int) -> list[torch.Tensor]:
        mean = sum(p[b, j] for b in range(B)) / B
        variance = sum((p[b, j] - mean) ** 2 for b in range(B)) / B
        return [(p[b, j] - mean) / torch.sqrt(variance + eps) for b in range(B)]

    a = [standardised(p1, i) for i in range(D)]
    c = [standardised(p2, j) for j in range(D)]
    loss = torch.zeros((), dtype=torch.float64)
    for i in range(D):
        for j in range(D):
            correlation = sum(a[i][b] * c[j][b] for b in range(B)) / B
            loss = loss + ((1 - correlation) ** 2 if i == j else off_diagonal_weight * correlation**2)
    return loss


@pytest.mark.parametrize("B, D, weight", [(3, 2, 5e-3), (6, 5, 0.1), (16, 8, 1.0)])
def test_matches_loop_reference(B, D, weight):
    generator = torch.Generator().manual_seed(B * 10 + D)
    p1, p2 = torch.randn(B, D, generator=generator), torch.randn(B, D, generator=generator) * 2 + 1
    objective = BarlowTwins(3, off_diagonal_weight=weight)
    expected = reference_loss(p1, p2, weight, objective.eps)
    assert objective.loss(p1, p2).item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)


# Columns with mean 0, variance 1 and no correlation with each other: the correlation of these views is I.
DECORRELATED = torch.tensor([[1.0, 1, 1], [-1, 1, -1], [1, -1, -1], [-1, -1, 1]])


@pytest.mark.parametrize("scale, shift", [(1.0, 0.0), (5.0, -3.0)])
def test_identical_decorrelated_views_give_zero(scale, shift):
    """C = I whatever the scale and offset of each view (up to eps)."""
    loss = BarlowTwins(3, off_diagonal_weight=1.0).loss(DECORRELATED * scale + shift, DECORRELATED)
    assert loss.item() == pytest.approx(0.0, abs=1e-8)


def test_opposite_views_give_four_per_dimension():
    """C = -I: every diagonal term is (1 - (-1))^2 = 4, the off-diagonal none."""
    loss = BarlowTwins(3, off_diagonal_weight=1.0).loss(DECORRELATED, -DECORRELATED)
    assert loss.item() == pytest.approx(4.0 * 3, rel=1e-4)


def test_a_constant_dimension_counts_as_uncorrelated_not_nan():
    p = DECORRELATED.clone()
    p[:, 2] = 7.0
    loss = BarlowTwins(3, off_diagonal_weight=1.0).loss(p, p)
    assert loss.item() == pytest.approx(1.0, abs=1e-4), "C_22 = 0: its diagonal term is 1, the rest as before"
