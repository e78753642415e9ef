"""InfoNCE2d against a slow loop reference on the same negatives (loss and accuracy), plus analytic cases, the
per-step negative pool and negative groups."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import negatives_avoiding
from torch import nn

from greedy_infomax.objectives import infonce_2d
from greedy_infomax.objectives.infonce_2d import InfoNCE2d


def reference(
    z: torch.Tensor, c: torch.Tensor, weight: torch.Tensor, steps: int, skip: int, negatives: torch.Tensor
) -> tuple[torch.Tensor, float]:
    """(loss, accuracy): loops over k, t, b, x in the documented query order; negative n of step k (rows
    s + k .. H - 1 are its targets, R of them) = b * R * W + (row - s - k) * W + col. A query is right when no
    negative scores above its positive; both are averaged over each step's queries, then over the steps.

    weight: the predictors' (K * Cc, C, 1, 1) 1x1 conv weight, W_k = weight[k * Cc:(k + 1) * Cc].
    """
    z, c, weight = z.double(), c.double(), weight.double()
    B, C, H, W = z.shape
    W_k = weight[:, :, 0, 0].reshape(steps, c.shape[1], C)
    query, step_means, step_accuracies = 0, [], []
    for k in range(steps):
        offset = k + 1 + skip
        terms, right = [], []
        for t in range(H - offset):
            for b in range(B):
                for x in range(W):
                    context = c[b, :, t, x]
                    scores = [context @ (W_k[k] @ z[b, :, t + offset, x])]
                    for n in negatives[query].tolist():
                        nb, rest = divmod(n, (H - offset) * W)
                        row, col = divmod(rest, W)
                        scores.append(context @ (W_k[k] @ z[nb, :, offset + row, col]))
                    scores = torch.stack(scores)
                    terms.append(torch.logsumexp(scores, 0) - scores[0])
                    right.append(all(score <= scores[0] for score in scores[1:]))
                    query += 1
        step_means.append(torch.stack(terms).mean())
        step_accuracies.append(sum(right) / len(right))
    assert query == len(negatives), "the index tensor has one row per query"
    return torch.stack(step_means).mean(), sum(step_accuracies) / len(step_accuracies)


def step_pools(B: int, H: int, W: int, steps: int, skip: int) -> list[tuple[int, int]]:
    """(queries, pool size) of every step k that has targets: B * R * W each, R = H - s - k target rows."""
    return [(B * (H - k - skip) * W,) * 2 for k in range(1, steps + 1) if H - k - skip > 0]


def num_queries(B: int, H: int, W: int, steps: int, skip: int) -> int:
    return sum(queries for queries, _ in step_pools(B, H, W, steps, skip))


def sample_in_step_pools(
    B: int, H: int, W: int, steps: int, skip: int, N: int, generator: torch.Generator
) -> torch.Tensor:
    return torch.cat(
        [torch.randint(pool, (queries, N), generator=generator) for queries, pool in step_pools(B, H, W, steps, skip)]
    )


def without_own_positives(negatives: torch.Tensor, B: int, H: int, W: int, steps: int, skip: int) -> torch.Tensor:
    """The negatives with every entry equal to its query's positive (b * R * W + t * W + x of step k's pool) moved
    to the next entry of the pool."""
    positives, pools = [], []
    for k in range(1, steps + 1):
        R = H - skip - k
        positives += [b * R * W + t * W + x for t in range(max(R, 0)) for b in range(B) for x in range(W)]
        pools += [B * R * W] * (max(R, 0) * B * W)
    positives, pools = torch.tensor(positives)[:, None], torch.tensor(pools)[:, None]
    return torch.where(negatives == positives, (negatives + 1) % pools, negatives)


SHAPES = [
    # B, C, H, W, K, skip, N, context channels (None: c = z, the autoregressor-free GIM case)
    (2, 3, 5, 4, 2, 1, 3, None),
    (3, 4, 7, 7, 5, 1, 16, None),  # the paper's 7x7 grid, K = 5
    (2, 3, 6, 2, 3, 0, 2, None),
    (1, 2, 4, 3, 1, 2, 5, None),
    (2, 3, 6, 3, 2, 1, 4, 5),  # a separate context c with its own width (CPC with an autoregressor)
]


@pytest.mark.parametrize("B, C, H, W, K, skip, N, Cc", SHAPES)
def test_matches_loop_reference(B, C, H, W, K, skip, N, Cc):
    generator = torch.Generator().manual_seed(H * 100 + K)
    objective = InfoNCE2d(C, prediction_steps=K, skip_steps=skip, num_negatives=N, context_channels=Cc)
    z = torch.randn(B, C, H, W, generator=generator)  # (B, C, H, W)
    c = z if Cc is None else torch.randn(B, Cc, H, W, generator=generator)  # (B, Cc, H, W)
    negatives = sample_in_step_pools(B, H, W, K, skip, N, generator)
    loss = objective.loss(z, c, negatives)
    expected, _ = reference(z, c, objective.predictors.weight.detach(), K, skip, negatives)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5, rel=1e-5)
    # A negative drawn at the positive's own entry ties with it, and fp32 rounding decides that tie: not those.
    negatives = without_own_positives(negatives, B, H, W, K, skip)
    accuracy = objective.loss_and_accuracy(z, c, negatives)[1]
    _, expected_accuracy = reference(z, c, objective.predictors.weight.detach(), K, skip, negatives)
    assert accuracy.item() == pytest.approx(expected_accuracy, rel=1e-6)


@pytest.mark.parametrize("B, C, H, W, K, skip, N, Cc", SHAPES)
def test_forward_samples_each_steps_queries_from_its_own_pool(record_negatives, B, C, H, W, K, skip, N, Cc):
    sampled = record_negatives(infonce_2d)
    autoregressor = None if Cc is None else nn.Conv2d(C, Cc, 1)
    objective = InfoNCE2d(C, K, skip, N, context_channels=Cc, autoregressor=autoregressor)
    z = torch.randn(B, C, H, W)
    torch.manual_seed(0)
    loss = objective(z)
    assert [(len(indices), pool) for indices, pool in sampled] == step_pools(B, H, W, K, skip)
    assert all(indices.shape[1] == N for indices, _ in sampled)
    c = z if autoregressor is None else autoregressor(z)
    indices = torch.cat([indices for indices, _ in sampled])
    expected, accuracy = objective.loss_and_accuracy(z, c, indices)
    assert torch.equal(loss, expected), "forward = loss on the indices it sampled"
    assert objective.metrics == {"accuracy": accuracy} and not accuracy.requires_grad


@pytest.mark.parametrize("k", [1, 2, 3])
def test_step_k_draws_negatives_from_its_target_rows_only(k):
    """Only W_k is non-zero and z is non-zero only above row s + k, step k's first target row: positives and
    negatives from the target rows all score 0, so the loss is log(N + 1) exactly. One negative from the rows above
    (a pool of the whole grid would draw hundreds here) would score c^T W_k z' != 0."""
    B, C, H, W, K, skip, N = 4, 3, 7, 5, 3, 1, 8
    objective = InfoNCE2d(C, K, skip, N)
    with torch.no_grad():
        objective.predictors.weight.zero_()
        objective.predictors.weight[(k - 1) * C : k * C, :, 0, 0] = torch.eye(C)
    z = torch.randn(B, C, H, W) * 5
    z[:, :, skip + k :] = 0
    torch.manual_seed(0)
    assert objective(z).item() == pytest.approx(math.log(N + 1), rel=1e-6)


@pytest.mark.parametrize("Cc", [None, 5])
def test_negative_groups_are_the_mean_of_the_groups_as_separate_batches(Cc):
    """G groups = the original's nn.DataParallel over G GPUs: each chunk of the batch a separate batch (its own
    draws, in order), the losses averaged."""
    B, C, H, W, G = 6, 4, 6, 3, 3
    autoregressor = None if Cc is None else nn.Conv2d(C, Cc, 1)
    grouped = InfoNCE2d(C, 2, 1, 4, context_channels=Cc, autoregressor=autoregressor, negative_groups=G)
    single = InfoNCE2d(C, 2, 1, 4, context_channels=Cc, autoregressor=autoregressor)
    single.load_state_dict(grouped.state_dict())
    z = torch.randn(B, C, H, W)
    torch.manual_seed(0)
    loss = grouped(z)
    torch.manual_seed(0)
    expected, accuracies = zip(*[(single(chunk), single.metrics["accuracy"]) for chunk in z.chunk(G)])
    assert torch.equal(loss, torch.stack(expected).mean())
    assert torch.equal(grouped.metrics["accuracy"], torch.stack(accuracies).mean())


def test_a_batch_that_does_not_split_into_the_groups_names_the_option():
    with pytest.raises(ValueError, match="objective.negative_groups"):
        InfoNCE2d(3, 2, 1, 4, negative_groups=4)(torch.randn(6, 3, 6, 3))


@pytest.mark.parametrize("N", [1, 4, 16])
def test_zero_grid_gives_log_of_candidates(N):
    objective = InfoNCE2d(3, prediction_steps=3, skip_steps=1, num_negatives=N)
    loss = objective(torch.zeros(2, 3, 7, 5))
    assert loss.item() == pytest.approx(math.log(N + 1), rel=1e-6)


def test_negatives_equal_to_the_positive_give_log_of_candidates():
    """If every negative is the positive's own position, all N + 1 scores tie, whatever z and W_k are.

    This also pins the index semantics: the positive of query (k, t, b, x) is entry b*R*W + t*W + x of step k's
    pool of R = H - s - k target rows (row t + s + k is the pool's row t).
    """
    B, C, H, W, K, skip, N = 2, 3, 6, 4, 3, 1, 5
    objective = InfoNCE2d(C, K, skip, N)
    z = torch.randn(B, C, H, W) * 3
    own = []
    for k in range(1, K + 1):
        R = H - skip - k
        for t in range(R):
            own += [b * R * W + t * W + x for b in range(B) for x in range(W)]
    negatives = torch.tensor(own)[:, None].expand(-1, N)
    loss, accuracy = objective.loss_and_accuracy(z, z, negatives)
    assert loss.item() == pytest.approx(math.log(N + 1), rel=1e-5)
    assert accuracy.item() == pytest.approx(1.0), "a tie goes to the positive, as the original's argmax"


@pytest.mark.parametrize("alpha", [0.0, 2.0, 10.0, 30.0])
def test_dominant_positive_gives_log_one_plus_n_exp_minus_alpha(alpha):
    """z one-hot per position, W_k = alpha * I, c = one-hot of the target: positive scores alpha, negatives 0."""
    B, H, W, skip, N = 2, 4, 3, 1, 6
    C = B * H * W
    R = H - 1 - skip  # target rows of the one step
    objective = InfoNCE2d(C, prediction_steps=1, skip_steps=skip, num_negatives=N)
    with torch.no_grad():
        objective.predictors.weight.copy_(alpha * torch.eye(C)[:, :, None, None])
    z = torch.eye(C).reshape(B, H, W, C).permute(0, 3, 1, 2)  # (B, C, H, W)
    c = torch.zeros_like(z)
    targets = []
    for t in range(R):
        for b in range(B):
            for x in range(W):
                c[b, b * H * W + (t + 1 + skip) * W + x, t, x] = 1.0
                targets.append(b * R * W + t * W + x)
    negatives = negatives_avoiding(targets, B * R * W, N)
    expected = math.log1p(N * math.exp(-alpha))
    # fp32 log-softmax of a logit near alpha is exact to about alpha * 2**-23 in absolute terms.
    loss, accuracy = objective.loss_and_accuracy(z, c, negatives)
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=2e-6)
    assert accuracy.item() == pytest.approx(1.0)
    assert objective.loss_and_accuracy(z, -c, negatives)[1].item() == pytest.approx(float(alpha == 0)), (
        "a positive scoring -alpha against negatives at 0 is never first (but for the tie at alpha 0)"
    )


@pytest.mark.parametrize("with_autoregressor", [False, True])
def test_gradients_reach_z_predictors_and_autoregressor(with_autoregressor):
    autoregressor = nn.Conv2d(4, 6, 1) if with_autoregressor else None
    objective = InfoNCE2d(4, 2, 1, 4, context_channels=6 if with_autoregressor else None, autoregressor=autoregressor)
    z = torch.randn(3, 4, 6, 5, requires_grad=True)
    objective(z).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    for name, parameter in objective.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_fp64_inputs_are_scored_in_fp64():
    """Gradient checks and the cross-check with the original code run in fp64: no score may drop to fp32."""
    B, C, H, W, K, skip, N = 2, 3, 6, 4, 3, 1, 5
    generator = torch.Generator().manual_seed(0)
    objective = InfoNCE2d(C, K, skip, N).double()
    z = torch.randn(B, C, H, W, generator=generator, dtype=torch.float64) * 10
    negatives = sample_in_step_pools(B, H, W, K, skip, N, generator)
    loss = objective.loss(z, z, negatives)
    assert loss.dtype == torch.float64
    expected, _ = reference(z, z, objective.predictors.weight.detach(), K, skip, negatives)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
