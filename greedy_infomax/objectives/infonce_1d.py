"""InfoNCE over a sequence of frame vectors, predicting K frames ahead (CPC, van den Oord et al. 2018, Sec. 2;
GIM paper, Sec. 3, audio setup in Sec. 4.2)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from greedy_infomax.objectives.negatives import context_window, pool_copies, sample_negatives, shared_pool


class InfoNCE1d(nn.Module):
    """L = -mean_k mean_{b,t} log softmax([(W_k c_t)^T z_{t+k}, (W_k c_t)^T z'_1, ..., (W_k c_t)^T z'_N])[0]

    For every context vector c_t of sequence b and step k = 1..K the positive is z_{t+k} of the same sequence;
    the N negatives z' are drawn uniformly, with replacement, from all T time steps of all B sequences (so a
    negative is occasionally the positive itself, with probability 1 / (B*T), as in the original). Each
    context step (b, t) draws its own N negatives and scores all K of its predictions against them, as
    facebookresearch/CPC_audio does: only these indices are sampled and only those rows gathered, a
    (B*(L-1), N, C) tensor for a window of L steps, K times smaller than independent negatives for every
    (k, t, b) would need. The prediction W_k c_t comes from one bias-free Linear(Cc, K*C) split per step.
    The loss is averaged over the (L - k) * B positions of each step first, then over the K steps, so every
    step weighs the same although steps further ahead have fewer positions (the original's averaging).

    Without a context c = z (Greedy InfoMax's conv modules); a module ending in an autoregressor (the GRU of
    GIM's last audio module, or of end-to-end CPC) passes the autoregressor's output as c. With `subsample`,
    sequences longer than `subsample_window` steps take their contexts and positives from one random window of
    that length (the same for the whole batch), while negatives still come from every time step: the original
    did this for the long sequences of audio modules 1-4.

    Args:
        channels: C of the sequence z (B, C, T).
        context_channels: Cc of the context c (B, Cc, T); defaults to C.
    """

    negatives_group: torch.distributed.ProcessGroup | None = None
    """Data-parallel replicas whose batches join the negative pool: set by the module-parallel engine under
    `distributed.negatives global`, which only objectives declaring this attribute accept."""

    def __init__(self, channels: int, prediction_steps: int = 12, num_negatives: int = 10,
                 context_channels: int | None = None, subsample: bool = False, subsample_window: int = 128) -> None:
        super().__init__()
        self.prediction_steps = prediction_steps
        self.num_negatives = num_negatives
        self.subsample = subsample
        self.subsample_window = subsample_window
        # All K maps W_k as one bias-free linear map with K * C outputs; W_k = rows k*C .. (k+1)*C - 1.
        self.predictors = nn.Linear(context_channels or channels, prediction_steps * channels, bias=False)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None,
                context: torch.Tensor | None = None) -> torch.Tensor:
        """Args: z (B, C, T) sequence of frame vectors; labels are unused (self-supervised); context c
        (B, Cc, T), default z."""
        c = z if context is None else context                                       # (B, Cc, T)
        start, length = self.window(z.shape[2])
        contexts = self.num_contexts(z.shape[0], length)
        pool = z.shape[0] * z.shape[2] * pool_copies(self.negatives_group)
        negatives = sample_negatives(contexts, self.num_negatives, pool, z.device)
        return self.loss(z, c, negatives, start, length)

    def window(self, steps: int) -> tuple[int | torch.Tensor, int]:
        """(start, length) of the steps that give contexts and positives: a random window when subsampling."""
        return context_window(steps, self.subsample_window if self.subsample else None)

    def num_contexts(self, batch: int, length: int) -> int:
        """Rows of the negative index tensor: one per context step with a target, (length - 1) per sequence."""
        self._check_length(length)
        return batch * (length - 1)

    def loss(self, z: torch.Tensor, c: torch.Tensor, negatives: torch.Tensor, start: int | torch.Tensor = 0,
             length: int | None = None) -> torch.Tensor:
        """The loss for given negative indices (B*(length-1), N) into the pool of all B*T steps (entry b*T + t;
        R*B*T with the R replicas of `negatives_group`, replica i's entries from i*B*T on).

        Contexts and positives come from steps start .. start + length - 1 (default: all; a tensor start needs the
        length); row b * (length - 1) + (t - start) of `negatives` holds the negatives of context step t of
        sequence b.
        """
        B, C, T = z.shape
        K = self.prediction_steps
        length = T - start if length is None else length
        self._check_length(length)
        L = length - 1                                                          # context steps with a target
        z_rows = z.transpose(1, 2)                                              # (B, T, C)
        context_step = start + torch.arange(L, device=z.device)                 # (L,)
        predictions = self.predictors(c.transpose(1, 2)[:, context_step])       # (B, L, K*C): W_k c_t
        predictions = predictions.reshape(B * L, K, C)                          # (B*L, K, C)
        target_step, weights = self._targets(start, length, z.device)           # (L, K) each
        positives = z_rows[:, target_step].reshape(B * L, K, C)                 # (B*L, K, C): z_{t+k}
        pool = shared_pool(z_rows.reshape(B * T, C), 0, self.negatives_group)  # (R*B*T, C)
        negative_vectors = pool[negatives]                                      # (B*L, N, C)
        positive_scores = (predictions * positives).sum(-1, keepdim=True)       # (B*L, K, 1)
        negative_scores = torch.bmm(predictions, negative_vectors.transpose(1, 2))   # (B*L, K, N)
        logits = torch.cat([positive_scores, negative_scores], dim=2).float()
        per_query = -F.log_softmax(logits, dim=2)[:, :, 0].reshape(B, L, K)     # (B, L, K)
        return (per_query * weights).sum() / (B * K)

    def _targets(self, start: int | torch.Tensor, length: int,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Target step t + k of every (context t, step k) in the window, and its weight in the mean over
        step k's positions: 1 / (length - k) inside the window, 0 past its end (clamped there)."""
        steps = torch.arange(1, self.prediction_steps + 1, device=device)                  # (K,): k
        offsets = torch.arange(length - 1, device=device)[:, None] + steps                  # (L, K): t - start + k
        weights = (offsets < length) / (length - steps)                                     # (L, K)
        return start + offsets.clamp(max=length - 1), weights

    def _check_length(self, length: int) -> None:
        if length <= self.prediction_steps:
            raise ValueError(f"InfoNCE1d needs more steps than prediction_steps={self.prediction_steps} "
                             f"(every step k needs a target), got sequences of {length} steps")
