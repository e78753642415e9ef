"""InfoNCE over a grid of patch vectors, predicting rows below from rows above (paper, Sec. 3 and App. A.1)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from greedy_infomax.objectives.negatives import (
    at_least_fp32,
    pool_copies,
    positive_first,
    sample_negatives,
    shared_pool,
    split_groups,
)


class InfoNCE2d(nn.Module):
    """L = -mean_g mean_k mean_{b,t,x} log softmax([c_t^T W_k z_{t+s+k}, c_t^T W_k z'_1, ..., c_t^T W_k z'_N])[0]

    For every context vector c at row t (column x) and step k = 1..K, the target is the vector s + k rows
    below in the same column (s = skip_steps rows are skipped because overlapping patches share pixels).
    The N negatives z' of step k are drawn uniformly, with replacement, from that step's targets only: rows
    s + k and below, every column, every image of the query's group (at k = K on the paper's 7x7 grid, the bottom
    row alone), as the original code does; they are scored through the same bias-free 1x1 map W_k. The batch is
    cut into `negative_groups` consecutive groups g, each its own pool, and the loss is the mean over the groups:
    the original's nn.DataParallel step, one group per GPU. Within a group the loss is averaged over each step's
    positions, then over the steps. Without an autoregressor c = z (Greedy InfoMax); end-to-end CPC passes an
    autoregressor whose output is c.

    Each forward leaves in `metrics["accuracy"]` the share of queries whose positive scored highest among their
    candidates, averaged as the loss is (the original code's InfoNCE accuracy; chance is 1 / (N + 1)).

    Args:
        channels: C of the grid z (B, C, H, W).
        context_channels: channels of c; defaults to C.
        negative_groups: G, which must divide the batch.
    """

    negatives_group: torch.distributed.ProcessGroup | None = None
    """Data-parallel replicas whose batches join the negative pool: set by the module-parallel engine under
    `distributed.negatives global`, which only objectives declaring this attribute accept."""

    def __init__(
        self,
        channels: int,
        prediction_steps: int = 5,
        skip_steps: int = 1,
        num_negatives: int = 16,
        context_channels: int | None = None,
        autoregressor: nn.Module | None = None,
        negative_groups: int = 1,
    ) -> None:
        super().__init__()
        self.prediction_steps = prediction_steps
        self.skip_steps = skip_steps
        self.num_negatives = num_negatives
        self.negative_groups = negative_groups
        self.autoregressor = autoregressor
        # All K maps W_k as one bias-free 1x1 convolution with K * C_context outputs.
        self.predictors = nn.Conv2d(channels, prediction_steps * (context_channels or channels), 1, bias=False)
        self._pair_cache: dict[tuple[int, torch.device], tuple[torch.Tensor, ...]] = {}
        self.metrics: dict[str, torch.Tensor] = {}

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Args: z (B, C, H, W) grid of patch vectors; labels are unused (self-supervised)."""
        c = z if self.autoregressor is None else self.autoregressor(z)
        groups = zip(split_groups(z, self.negative_groups, self.negatives_group), c.chunk(self.negative_groups))
        results = [self.loss_and_accuracy(z_g, c_g, self.sample(z_g)) for z_g, c_g in groups]
        loss, accuracy = (torch.stack(values).mean() for values in zip(*results))
        self.metrics = {"accuracy": accuracy.detach()}
        return loss

    def sample(self, z: torch.Tensor) -> torch.Tensor:
        """Negative indices (Q, N) for one group's grid z (B, C, H, W), one row per query in the order of `loss`,
        each step's rows drawn from range(size of that step's pool)."""
        B, _, H, W = z.shape
        images = B * pool_copies(self.negatives_group)
        return torch.cat(
            [
                sample_negatives(B * rows * W, self.num_negatives, images * rows * W, z.device)
                for rows in self._target_rows(H)
            ]
        )

    def loss(self, z: torch.Tensor, c: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """The loss of one group for given negative indices (Q, N): see `loss_and_accuracy`."""
        return self.loss_and_accuracy(z, c, negatives)[0]

    def loss_and_accuracy(
        self, z: torch.Tensor, c: torch.Tensor, negatives: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss of one group for given negative indices (Q, N), and the share of its queries whose positive
        scored highest, weighted alike.

        Queries are ordered by step k, context row t, image b, column x. Step k's pool holds its target rows
        s + k .. H - 1: entry n = b * R * W + (row - s - k) * W + x for R = H - s - k rows and every image b of the
        group (of all R replicas' groups with `negatives_group`, replica i's images after those of replicas < i).
        """
        B, _, H, W = z.shape
        K = self.prediction_steps
        step, context_row, target_row, rows_per_step = self._pairs(H, z.device)  # (P,) each: every valid (k, t)
        wz = self.predictors(z).unflatten(1, (K, -1))  # (B, K, Cc, H, W)
        wz = wz.permute(1, 0, 3, 4, 2)  # (K, B, H, W, Cc)
        queries = c.permute(2, 0, 3, 1)[context_row]  # (P, B, W, Cc)
        positives = wz[step, :, target_row]  # (P, B, W, Cc)
        pool = shared_pool(wz.reshape(K, B * H * W, -1), 1, self.negatives_group)  # (K, R*B*H*W, Cc)
        step_of_query = step[:, None, None].expand(-1, B, W).reshape(-1)  # (Q,)
        negative_vectors = pool[step_of_query[:, None], self._grid_index(negatives, step_of_query, H, W)]  # (Q, N, Cc)
        queries = queries.reshape(-1, queries.shape[-1])  # (Q, Cc)
        positive_scores = (queries * positives.reshape(queries.shape)).sum(-1, keepdim=True)  # (Q, 1)
        negative_scores = torch.bmm(negative_vectors, queries[:, :, None]).squeeze(-1)  # (Q, N)
        logits = at_least_fp32(torch.cat([positive_scores, negative_scores], dim=1))
        per_query = -F.log_softmax(logits, dim=1)[:, 0]  # (Q,)
        # Mean over each step's positions, then over steps: steps further ahead have fewer rows.
        weights = (1.0 / (K * rows_per_step.to(per_query.dtype) * B * W))[step_of_query]
        return (per_query * weights).sum(), (positive_first(logits.detach()) * weights).sum()

    def _grid_index(self, negatives: torch.Tensor, step_of_query: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """Step-pool entries (Q, N) as entries b * H * W + row * W + x of the whole grid."""
        first_row = self.skip_steps + 1 + step_of_query[:, None]  # (Q, 1): s + k
        per_image = (H - first_row) * W
        image, within = negatives.div(per_image, rounding_mode="floor"), negatives.remainder(per_image)
        return image * H * W + first_row * W + within

    def _target_rows(self, rows: int) -> list[int]:
        """R = H - s - k target rows of each step k that has any."""
        return [rows - self.skip_steps - k for k in range(1, self.prediction_steps + 1) if rows - self.skip_steps > k]

    def _pairs(self, rows: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Step index, context row and target row of every valid (k, t) pair, k-major, and the number of pairs
        of each step (float). Built once per grid height and device, from Python lists: no host-device copy per
        call, and nothing whose shape depends on tensor data, which torch.compile could not trace."""
        key = (rows, device)
        if key not in self._pair_cache:
            offsets = [k + 1 + self.skip_steps for k in range(self.prediction_steps)]  # rows from context to target
            pairs = [(k, t, t + offset) for k, offset in enumerate(offsets) for t in range(rows - offset)]
            rows_per_step = [max(rows - offset, 0) for offset in offsets]
            step, context_row, target_row = torch.tensor(pairs, device=device).unbind(1)
            self._pair_cache[key] = (
                step,
                context_row,
                target_row,
                torch.tensor(rows_per_step, dtype=torch.float, device=device),
            )
        return self._pair_cache[key]
