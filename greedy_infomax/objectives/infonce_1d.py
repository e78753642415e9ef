"""InfoNCE over a sequence of frame vectors, predicting K frames ahead (CPC, van den Oord et al. 2018, Sec. 2;
GIM paper, Sec. 3, audio setup in Sec. 4.2)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from greedy_infomax.objectives.negatives import (
    at_least_fp32,
    context_window,
    pool_copies,
    positive_first,
    sample_permuted_negatives,
    shared_pool,
    split_groups,
)


class InfoNCE1d(nn.Module):
    """L = -mean_g mean_k mean_{b,t} log softmax([(W_k c_t)^T z_{t+k}, (W_k c_t)^T z'_1, ..., (W_k c_t)^T z'_N])[0]

    For every context vector c_t of sequence b and step k = 1..K the positive is z_{t+k} of the same sequence.
    Negatives follow the original code's default (`sampling_method 1`): one table of negatives per batch, whose
    column n is a random permutation of all T time steps of all B sequences (so a negative is occasionally the
    positive itself, with probability 1 / (B*T)), and step k reads its last B * (L - k) rows, one per query in
    (b, t) order, for a window of L steps. The K steps thus see shifted, not identical, sets: a table row serves
    context (b, t) at one step and another context at the next. Only the rows any step reads are sampled and
    gathered, a (B*(L-1), N, C) tensor, shared by all K steps. The prediction W_k c_t comes from one bias-free
    Linear(Cc, K*C) split per step. The loss is averaged over the (L - k) * B positions of each step first, then
    over the K steps, so every step weighs the same although steps further ahead have fewer positions.

    The batch is cut into `negative_groups` consecutive groups g, each its own table (and subsampling window), and
    the loss is the mean over the groups: the original's nn.DataParallel step, one group per GPU.

    Each forward leaves in `metrics["accuracy"]` the share of queries whose positive scored highest among their
    candidates, averaged as the loss is (the original code's InfoNCE accuracy; chance is 1 / (N + 1)).

    Without a context c = z (Greedy InfoMax's conv modules); a module ending in an autoregressor (the GRU of
    GIM's last audio module, or of end-to-end CPC) passes the autoregressor's output as c. With `subsample`,
    sequences longer than `subsample_window` steps take their contexts and positives from one random window of
    that length (the same for the whole group), while negatives still come from every time step: the original
    did this for the long sequences of audio modules 1-4.

    Args:
        channels: C of the sequence z (B, C, T).
        context_channels: Cc of the context c (B, Cc, T); defaults to C.
        negative_groups: G, which must divide the batch.
    """

    negatives_group: torch.distributed.ProcessGroup | None = None
    """Data-parallel replicas whose batches join the negative pool: set by the module-parallel engine under
    `distributed.negatives global`, which only objectives declaring this attribute accept."""

    def __init__(
        self,
        channels: int,
        prediction_steps: int = 12,
        num_negatives: int = 10,
        context_channels: int | None = None,
        subsample: bool = False,
        subsample_window: int = 128,
        negative_groups: int = 1,
    ) -> None:
        super().__init__()
        self.prediction_steps = prediction_steps
        self.num_negatives = num_negatives
        self.subsample = subsample
        self.subsample_window = subsample_window
        self.negative_groups = negative_groups
        # All K maps W_k as one bias-free linear map with K * C outputs; W_k = rows k*C .. (k+1)*C - 1.
        self.predictors = nn.Linear(context_channels or channels, prediction_steps * channels, bias=False)
        self.metrics: dict[str, torch.Tensor] = {}

    def forward(
        self, z: torch.Tensor, labels: torch.Tensor | None = None, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Args: z (B, C, T) sequence of frame vectors; labels are unused (self-supervised); context c
        (B, Cc, T), default z."""
        c = z if context is None else context  # (B, Cc, T)
        results = []
        for z_g, c_g in zip(split_groups(z, self.negative_groups, self.negatives_group), c.chunk(self.negative_groups)):
            start, length = self.window(z_g.shape[2])
            pool = z_g.shape[0] * z_g.shape[2] * pool_copies(self.negatives_group)
            negatives = sample_permuted_negatives(
                self.num_contexts(z_g.shape[0], length), self.num_negatives, pool, z_g.device
            )
            results.append(self.loss_and_accuracy(z_g, c_g, negatives, start, length))
        loss, accuracy = (torch.stack(values).mean() for values in zip(*results))
        self.metrics = {"accuracy": accuracy.detach()}
        return loss

    def window(self, steps: int) -> tuple[int | torch.Tensor, int]:
        """(start, length) of the steps that give contexts and positives: a random window when subsampling. Every
        start 0 .. T - window is drawn; the original's draw never gives the last (numpy's exclusive bound)."""
        return context_window(steps, self.subsample_window if self.subsample else None)

    def num_contexts(self, batch: int, length: int) -> int:
        """Rows of the negative index tensor: the B * (length - 1) that step 1, the step with most queries, reads."""
        self._check_length(length)
        return batch * (length - 1)

    def loss(
        self,
        z: torch.Tensor,
        c: torch.Tensor,
        negatives: torch.Tensor,
        start: int | torch.Tensor = 0,
        length: int | None = None,
    ) -> torch.Tensor:
        """The loss of one group for given negative indices: see `loss_and_accuracy`."""
        return self.loss_and_accuracy(z, c, negatives, start, length)[0]

    def loss_and_accuracy(
        self,
        z: torch.Tensor,
        c: torch.Tensor,
        negatives: torch.Tensor,
        start: int | torch.Tensor = 0,
        length: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss of one group for given negative indices (B*(length-1), N) into the pool of all B*T steps (entry
        b*T + t; R*B*T with the R replicas of `negatives_group`, replica i's entries from i*B*T on), and the share of
        its queries whose positive scored highest, averaged alike.

        Contexts and positives come from steps start .. start + length - 1 (default: all; a tensor start needs the
        length). Step k reads rows B*(k-1) onwards: row B*(k-1) + b*(length-k) + (t - start) holds the negatives of
        context step t of sequence b (the last rows of the original's table of B*T rows).
        """
        B, C, T = z.shape
        length = T - start if length is None else length
        self._check_length(length)
        steps = start + torch.arange(length, device=z.device)  # (L,): the window
        z_window = z.transpose(1, 2)[:, steps]  # (B, L, C)
        predictions = self.predictors(c.transpose(1, 2)[:, steps[:-1]])  # (B, L-1, K*C): W_k c_t
        pool = shared_pool(z.transpose(1, 2).reshape(B * T, C), 0, self.negatives_group)  # (R*B*T, C)
        negative_vectors = pool[negatives]  # (B*(L-1), N, C)
        rows = negative_vectors.shape[0]
        # Step k: W_k c_t for t < L - k, (B*(L-k), C), its queries reading table rows B*(k-1) .. B*(L-1) - 1. Split
        # first: a slice of the whole (B, L-1, K*C) tensor per step would get a gradient of its full size.
        step_predictions = [
            per_step[:, : length - k].reshape(-1, C) for k, per_step in enumerate(predictions.split(C, dim=2), start=1)
        ]
        # Every step's negatives scored in one product: row r of the table against the K predictions that read it
        # (zero for the steps that do not), (rows, N, C) x (rows, C, K). Scored step by step instead, each step's
        # slice of the table would get a gradient the size of the whole table in the backward pass.
        aligned = torch.stack([F.pad(p, (0, 0, rows - len(p), 0)) for p in step_predictions], dim=2)  # (rows, C, K)
        all_negative_scores = torch.bmm(negative_vectors, aligned)  # (rows, N, K)
        step_losses, step_accuracies = [], []
        for k, prediction in enumerate(step_predictions, start=1):
            positive = z_window[:, k:].reshape(-1, C)  # (B*(L-k), C)
            positive_scores = (prediction * positive).sum(-1, keepdim=True)  # (B*(L-k), 1)
            negative_scores = all_negative_scores[B * (k - 1) :, :, k - 1]  # (B*(L-k), N)
            logits = at_least_fp32(torch.cat([positive_scores, negative_scores], dim=1))
            step_losses.append(-F.log_softmax(logits, dim=1)[:, 0].mean())
            step_accuracies.append(positive_first(logits.detach()).mean())
        return torch.stack(step_losses).mean(), torch.stack(step_accuracies).mean()

    def _check_length(self, length: int) -> None:
        if length <= self.prediction_steps:
            raise ValueError(
                f"InfoNCE1d needs more steps than prediction_steps={self.prediction_steps} "
                f"(every step k needs a target), got sequences of {length} steps"
            )
