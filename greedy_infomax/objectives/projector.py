"""The head every two-view objective scores through: pool a module's output, split the two views, project."""

from __future__ import annotations

import torch
from torch import nn

from greedy_infomax.errors import GimError


class Projector(nn.Module):
    """p = W_2 relu(BN(W_1 mean_p z)) + b_2, returned as (view 1, view 2) = (rows [0, B), rows [B, 2B)).

    A module trained with a two-view objective receives 2B rows: rows b and B + b are two augmentations of image b.
    Its output z is averaged over its positions (grid cells, time steps; none for (2B, C) vectors) and passed
    through this module's own small MLP, as SimCLR, Barlow Twins and VICReg each put a projector between the
    encoder and the loss, and as blockwise training gives every block its own (Siddiqui et al. 2024, Sec. 3). The
    hidden layer is batch-normalised over all 2B rows, as in those papers' projectors (so the layer before it has no
    bias, which the normalisation would subtract again); the encoder itself stays free of BatchNorm. The projections
    are returned in float32, so a bf16 module still computes its loss in full precision.

    Args:
        channels: C of the module's output z (2B, C, *positions).
        hidden_dim: width of the hidden layer.
        projection_dim: D, the width of each projection.
    """

    def __init__(self, channels: int, hidden_dim: int, projection_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, projection_dim),
        )

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: z (2B, C, *positions), view 1 in rows [0, B), view 2 in rows [B, 2B). Returns two (B, D)."""
        if z.shape[0] % 2 or z.shape[0] < 4:
            raise GimError(
                f"a two-view objective needs a batch of 2B rows, B >= 2 images in two views each "
                f"(rows [0, B) view 1, [B, 2B) view 2), got {z.shape[0]} rows"
            )
        pooled = z.flatten(2).mean(2) if z.ndim > 2 else z  # (2B, C)
        return self.mlp(pooled).float().chunk(2)  # (B, D) each
