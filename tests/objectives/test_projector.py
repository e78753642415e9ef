"""The two-view projector against a loop over rows and features: pool the positions, a linear layer, batch
normalisation over all 2B rows, ReLU, a linear layer; then rows [0, B) are view 1 and [B, 2B) view 2."""

from __future__ import annotations

import pytest
import torch

from greedy_infomax.errors import GimError
from greedy_infomax.objectives.projector import Projector


def reference_projection(z: torch.Tensor, projector: Projector) -> torch.Tensor:
    """(2B, D) projections, row by row and feature by feature, in float64."""
    first, norm, _, second = projector.mlp
    rows = z.shape[0]
    pooled = [z[r].double().reshape(z.shape[1], -1).mean(1) for r in range(rows)]
    hidden = [first.weight.double() @ v for v in pooled]
    normalised = torch.zeros(rows, len(hidden[0]), dtype=torch.float64)
    for j in range(normalised.shape[1]):
        column = [hidden[r][j] for r in range(rows)]
        mean = sum(column) / rows
        variance = sum((x - mean) ** 2 for x in column) / rows  # BatchNorm normalises with 1/N
        for r in range(rows):
            x = (column[r] - mean) / torch.sqrt(variance + norm.eps)
            normalised[r, j] = norm.weight[j].double() * x + norm.bias[j].double()
    return torch.stack([second.weight.double() @ h.clamp(min=0) + second.bias.double() for h in normalised])


@pytest.mark.parametrize("shape", [(4, 3), (6, 5, 7), (8, 4, 3, 3)])
def test_matches_loop_reference(shape):
    torch.manual_seed(0)
    projector = Projector(shape[1], hidden_dim=6, projection_dim=5)
    with torch.no_grad():  # non-trivial affine parameters, so the reference checks them
        projector.mlp[1].weight.uniform_(0.5, 2.0)
        projector.mlp[1].bias.uniform_(-1.0, 1.0)
    z = torch.randn(shape)
    view1, view2 = projector(z)
    expected = reference_projection(z, projector)
    B = shape[0] // 2
    assert view1.shape == view2.shape == (B, 5) and view1.dtype == torch.float32
    torch.testing.assert_close(view1.double(), expected[:B], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(view2.double(), expected[B:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rows", [3, 2])
def test_a_batch_that_is_not_two_views_of_at_least_two_images_names_the_convention(rows):
    with pytest.raises(GimError, match=rf"2B rows.*got {rows} rows"):
        Projector(3, 4, 2)(torch.randn(rows, 3, 2, 2))
