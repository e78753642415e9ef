"""CLAPP: contrastive, local and predictive plasticity (Illing, Ventura, Bellec, Gerstner, NeurIPS 2021).

CPC's prediction of the future from a context, scored by a hinge instead of a softmax: each context sees one
positive (the true future) and one negative (a position drawn from the batch), and each score only has to clear a
margin of 1. The loss of a context therefore depends on two scores, not on a softmax over all candidates, which is
what makes the paper's learning rule local in time and space. With one negative the cost per context is that of
InfoNCE with N = 1.
"""

from __future__ import annotations

import torch
from torch import nn

from greedy_infomax.objectives.negatives import context_window, sample_negatives


def hinge(context: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """mean_q max(0, 1 - u_q^+) + max(0, 1 + u_q^-) for the scores u = context . target of (Q, C) rows, in float32."""
    positive_score = (context * positive).sum(-1).float()  # (Q,)
    negative_score = (context * negative).sum(-1).float()  # (Q,)
    return (torch.relu(1 - positive_score) + torch.relu(1 + negative_score)).mean()


class CLAPP2d(nn.Module):
    """L = mean_k mean_{b,t,x} max(0, 1 - z_{t,x}^T W_k z_{t+s+k,x}) + max(0, 1 + z_{t,x}^T W_k z')

    on a grid of patch vectors z (B, C, H, W), with the geometry of InfoNCE2d: the context at row t (column x)
    predicts the vector s + k rows below in its column for k = 1..K, s = skip_steps rows skipped because
    overlapping patches share pixels. The negative z' is one vector per (k, b, t, x), drawn uniformly with
    replacement from all B*H*W positions of the batch and scored through the same bias-free 1x1 map W_k. The context
    is the module's own output (layer-local, as in the paper); steps further ahead have fewer rows, and each step
    is averaged over its own positions before the mean over steps. The paper's vision experiments use GIM's patch
    grid; the defaults are InfoNCE2d's, so a comparison with it changes only the loss.

    Args:
        channels: C of the grid z (B, C, H, W).
    """

    def __init__(self, channels: int, prediction_steps: int = 5, skip_steps: int = 1) -> None:
        super().__init__()
        self.prediction_steps = prediction_steps
        self.skip_steps = skip_steps
        self.predictors = nn.Conv2d(channels, prediction_steps * channels, 1, bias=False)  # all K maps W_k

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Args: z (B, C, H, W) grid of patch vectors; labels are unused (self-supervised)."""
        B, _, H, W = z.shape
        negatives = sample_negatives(self.num_queries(B, H, W), 1, B * H * W, z.device)
        return self.loss(z, negatives[:, 0])

    def num_queries(self, batch: int, rows: int, columns: int) -> int:
        """Contexts over all steps: step k has (rows - s - k) rows of contexts with a target."""
        if rows <= self.prediction_steps + self.skip_steps:
            raise ValueError(
                f"CLAPP2d needs a grid of more than prediction_steps + skip_steps = "
                f"{self.prediction_steps + self.skip_steps} rows (every step k needs a target), "
                f"got {rows}"
            )
        return sum(rows - self._offset(k) for k in range(self.prediction_steps)) * batch * columns

    def loss(self, z: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """The loss for given negative indices (Q,), one per context: step k's block of B * (H - s - k) * W entries
        in (b, t, x) order, after those of the steps before it; entry b*H*W + row*W + col is that position."""
        B, C, H, W = z.shape
        K = self.prediction_steps
        wz = self.predictors(z).unflatten(1, (K, C))  # (B, K, C, H, W)
        pool = wz.permute(1, 0, 3, 4, 2).reshape(K, B * H * W, C)  # (K, BHW, C)
        predicted = wz.unbind(1)  # K x (B, C, H, W): W_k z
        queries = [B * (H - self._offset(k)) * W for k in range(K)]  # Q_k
        step = torch.cat([torch.full((count,), k, device=z.device) for k, count in enumerate(queries)])  # (Q,)
        # One gather (and one unbind) for every step: the backward writes each gradient once, not once per step.
        negative_rows = pool[step, negatives].split(queries)  # K x (Q_k, C)
        losses = []
        for k in range(K):
            offset = self._offset(k)
            context = z[:, :, : H - offset].permute(0, 2, 3, 1).reshape(-1, C)  # (Q_k, C)
            positive = predicted[k][:, :, offset:].permute(0, 2, 3, 1).reshape(-1, C)  # (Q_k, C)
            losses.append(hinge(context, positive, negative_rows[k]))
        return torch.stack(losses).mean()

    def _offset(self, k: int) -> int:
        """Rows from a context to its step-k target (k counted from 0)."""
        return k + 1 + self.skip_steps


class CLAPP1d(nn.Module):
    """L = mean_k mean_{b,t} max(0, 1 - (W_k c_t)^T z_{t+k}) + max(0, 1 + (W_k c_t)^T z')

    on a sequence of frame vectors z (B, C, T), with the geometry of InfoNCE1d: the context c_t of sequence b
    predicts z_{t+k} of the same sequence for k = 1..K through a bias-free linear map W_k, and the negative z' is
    one frame per (k, b, t), drawn uniformly with replacement from all B*T steps of the batch. Without a context
    c = z (a layer-local module); a module ending in an autoregressor passes its output as c. Each step is
    averaged over its own positions, then over steps. With `subsample`, as InfoNCE1d: sequences longer than
    `subsample_window` steps take their contexts and positives from one random window of that length (the same
    for the whole batch), while negatives still come from every step. The defaults of K and of the window are
    InfoNCE1d's, so a comparison with it changes only the loss.

    Args:
        channels: C of the sequence z (B, C, T).
        context_channels: Cc of the context c (B, Cc, T); defaults to C.
    """

    def __init__(
        self,
        channels: int,
        prediction_steps: int = 12,
        context_channels: int | None = None,
        subsample: bool = False,
        subsample_window: int = 128,
    ) -> None:
        super().__init__()
        self.prediction_steps = prediction_steps
        self.subsample = subsample
        self.subsample_window = subsample_window
        self.predictors = nn.Linear(context_channels or channels, prediction_steps * channels, bias=False)

    def forward(
        self, z: torch.Tensor, labels: torch.Tensor | None = None, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Args: z (B, C, T); labels are unused (self-supervised); context c (B, Cc, T), default z."""
        B, _, T = z.shape
        start, length = context_window(T, self.subsample_window if self.subsample else None)
        negatives = sample_negatives(self.num_queries(B, length), 1, B * T, z.device)
        return self.loss(z, z if context is None else context, negatives[:, 0], start, length)

    def num_queries(self, batch: int, steps: int) -> int:
        """Contexts over all steps: step k has (steps - k) contexts with a target per sequence."""
        if steps <= self.prediction_steps:
            raise ValueError(
                f"CLAPP1d needs more steps than prediction_steps={self.prediction_steps} "
                f"(every step k needs a target), got sequences of {steps} steps"
            )
        return sum(steps - k for k in range(1, self.prediction_steps + 1)) * batch

    def loss(
        self,
        z: torch.Tensor,
        c: torch.Tensor,
        negatives: torch.Tensor,
        start: int | torch.Tensor = 0,
        length: int | None = None,
    ) -> torch.Tensor:
        """The loss for given negative indices (Q,), one per context: step k's block of B * (L - k) entries in (b, t)
        order, after those of the steps before it, for the L = `length` steps from `start` (default: all; a tensor
        start needs the length) that give contexts and positives; entry b*T + t is step t of sequence b."""
        B, C, T = z.shape
        length = T - start if length is None else length
        pool = z.transpose(1, 2).reshape(B * T, C)  # (BT, C)
        steps = start + torch.arange(length, device=z.device)  # (L,)
        z_rows = z.transpose(1, 2)[:, steps]  # (B, L, C)
        predictions = self.predictors(c.transpose(1, 2)[:, steps]).unflatten(2, (-1, C)).unbind(2)  # K x (B, L, C)
        # One gather (and one unbind) for every step: the backward writes each gradient once, not once per step.
        negative_rows = pool[negatives].split([B * (length - k) for k in range(1, self.prediction_steps + 1)])
        losses = []
        for k in range(1, self.prediction_steps + 1):
            prediction = predictions[k - 1][:, : length - k].reshape(-1, C)  # (Q_k, C)
            positive = z_rows[:, k:].reshape(-1, C)  # (Q_k, C)
            losses.append(hinge(prediction, positive, negative_rows[k - 1]))
        return torch.stack(losses).mean()
