"""SimCLR's NT-Xent against a loop over rows, and analytic cases."""

from __future__ import annotations

import math

import pytest
import torch

from greedy_infomax.objectives.simclr import SimCLR


def reference_loss(p1: torch.Tensor, p2: torch.Tensor, temperature: float) -> torch.Tensor:
    """For each of the 2B rows: -log of its partner's share among the exp(cos / tau) of every other row."""
    p = torch.cat([p1, p2]).double()
    rows, B = len(p), len(p1)

    def score(i: int, k: int) -> torch.Tensor:
        return p[i] @ p[k] / (p[i].norm() * p[k].norm()) / temperature

    terms = []
    for i in range(rows):
        partner = (i + B) % rows
        others = torch.stack([score(i, k) for k in range(rows) if k != i])
        terms.append(torch.logsumexp(others, 0) - score(i, partner))
    return torch.stack(terms).mean()


@pytest.mark.parametrize("B, D, temperature", [(2, 3, 0.5), (5, 4, 0.1), (8, 16, 1.0)])
def test_matches_loop_reference(B, D, temperature):
    generator = torch.Generator().manual_seed(B * 10 + D)
    p1, p2 = torch.randn(B, D, generator=generator), torch.randn(B, D, generator=generator)
    loss = SimCLR(3, temperature=temperature).loss(p1, p2)
    assert loss.item() == pytest.approx(reference_loss(p1, p2, temperature).item(), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("temperature", [0.1, 0.5, 2.0])
def test_identical_orthonormal_views_give_log_one_plus_negatives_times_exp_minus_one_over_tau(temperature):
    """Partners score cos = 1, every other row cos = 0: L = log(1 + (2B - 2) exp(-1 / tau))."""
    B = 4
    p = torch.eye(B) * 3.0  # lengths do not matter, only directions
    expected = math.log1p((2 * B - 2) * math.exp(-1 / temperature))
    # fp32 cross-entropy of a logit near 1 / tau is exact to about 2**-23 / tau in absolute terms.
    assert SimCLR(3, temperature=temperature).loss(p, p).item() == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_rejects_a_temperature_that_is_not_positive():
    with pytest.raises(ValueError, match="temperature"):
        SimCLR(3, temperature=0.0)
