"""InfoNCE over a grid of patch vectors, predicting rows below from rows above (paper, Sec. 3 and App. A.1)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from greedy_infomax.objectives.negatives import pool_copies, sample_negatives, shared_pool


class InfoNCE2d(nn.Module):
    """L = -mean_k mean_{b,t,x} log softmax([c_t^T W_k z_{t+s+k}, c_t^T W_k z'_1, ..., c_t^T W_k z'_N])[0]

    For every context vector c at row t (column x) and step k = 1..K, the target is the vector s + k rows
    below in the same column (s = skip_steps rows are skipped because overlapping patches share pixels);
    negatives z' are N vectors drawn uniformly from all positions of all images in the batch, scored through
    the same bias-free 1x1 map W_k. Without an autoregressor c = z (Greedy InfoMax); end-to-end CPC passes
    an autoregressor whose output is c.

    Args:
        channels: C of the grid z (B, C, H, W).
        context_channels: channels of c; defaults to C.
    """

    negatives_group: torch.distributed.ProcessGroup | None = None
    """Data-parallel replicas whose batches join the negative pool: set by the module-parallel engine under
    `distributed.negatives global`, which only objectives declaring this attribute accept."""

    def __init__(self, channels: int, prediction_steps: int = 5, skip_steps: int = 1, num_negatives: int = 16,
                 context_channels: int | None = None, autoregressor: nn.Module | None = None) -> None:
        super().__init__()
        self.prediction_steps = prediction_steps
        self.skip_steps = skip_steps
        self.num_negatives = num_negatives
        self.autoregressor = autoregressor
        # All K maps W_k as one bias-free 1x1 convolution with K * C_context outputs.
        self.predictors = nn.Conv2d(channels, prediction_steps * (context_channels or channels), 1, bias=False)
        self._pair_cache: dict[tuple[int, torch.device], tuple[torch.Tensor, ...]] = {}

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Args: z (B, C, H, W) grid of patch vectors; labels are unused (self-supervised)."""
        c = z if self.autoregressor is None else self.autoregressor(z)
        pairs = self._pairs(z.shape[2], z.device)
        queries = pairs[0].numel() * z.shape[0] * z.shape[3]
        pool = z.shape[0] * z.shape[2] * z.shape[3] * pool_copies(self.negatives_group)
        negatives = sample_negatives(queries, self.num_negatives, pool, z.device)
        return self.loss(z, c, negatives)

    def loss(self, z: torch.Tensor, c: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """The loss for given negative indices (Q, N) into each step's pool of B*H*W positions (R*B*H*W with
        the R replicas of `negatives_group`)."""
        B, _, H, W = z.shape
        K = self.prediction_steps
        step, context_row, target_row, rows_per_step = self._pairs(H, z.device)  # (P,) each: every valid (k, t)
        wz = self.predictors(z).unflatten(1, (K, -1))                          # (B, K, Cc, H, W)
        wz = wz.permute(1, 0, 3, 4, 2)                                         # (K, B, H, W, Cc)
        queries = c.permute(2, 0, 3, 1)[context_row]                           # (P, B, W, Cc)
        positives = wz[step, :, target_row]                                    # (P, B, W, Cc)
        pool = shared_pool(wz.reshape(K, B * H * W, -1), 1, self.negatives_group)  # (K, R*B*H*W, Cc)
        step_of_query = step[:, None, None].expand(-1, B, W).reshape(-1)       # (Q,)
        negative_vectors = pool[step_of_query[:, None], negatives]             # (Q, N, Cc)
        queries = queries.reshape(-1, queries.shape[-1])                       # (Q, Cc)
        positive_scores = (queries * positives.reshape(queries.shape)).sum(-1, keepdim=True)  # (Q, 1)
        negative_scores = torch.bmm(negative_vectors, queries[:, :, None]).squeeze(-1)       # (Q, N)
        logits = torch.cat([positive_scores, negative_scores], dim=1).float()
        per_query = -F.log_softmax(logits, dim=1)[:, 0]                        # (Q,)
        # Mean over each step's positions, then over steps: steps further ahead have fewer rows.
        weights = (1.0 / (K * rows_per_step * B * W))[step_of_query]
        return (per_query * weights).sum()

    def _pairs(self, rows: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Step index, context row and target row of every valid (k, t) pair, k-major, and the number of pairs
        of each step (float). Built once per grid height and device, from Python lists: no host-device copy per
        call, and nothing whose shape depends on tensor data, which torch.compile could not trace."""
        key = (rows, device)
        if key not in self._pair_cache:
            offsets = [k + 1 + self.skip_steps for k in range(self.prediction_steps)]   # rows from context to target
            pairs = [(k, t, t + offset) for k, offset in enumerate(offsets) for t in range(rows - offset)]
            rows_per_step = [max(rows - offset, 0) for offset in offsets]
            step, context_row, target_row = torch.tensor(pairs, device=device).unbind(1)
            self._pair_cache[key] = (step, context_row, target_row,
                                     torch.tensor(rows_per_step, dtype=torch.float, device=device))
        return self._pair_cache[key]
