"""InfoNCE2d against a slow loop reference on the same negatives, plus analytic cases."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import negatives_avoiding
from greedy_infomax.objectives import infonce_2d
from greedy_infomax.objectives.infonce_2d import InfoNCE2d


def reference_loss(z: torch.Tensor, c: torch.Tensor, weight: torch.Tensor, steps: int, skip: int,
                   negatives: torch.Tensor) -> torch.Tensor:
    """Loops over k, t, b, x in the documented query order; negative n = b * H * W + row * W + col.

    weight: the predictors' (K * Cc, C, 1, 1) 1x1 conv weight, W_k = weight[k * Cc:(k + 1) * Cc].
    """
    z, c, weight = z.double(), c.double(), weight.double()
    B, C, H, W = z.shape
    W_k = weight[:, :, 0, 0].reshape(steps, c.shape[1], C)
    query, step_means = 0, []
    for k in range(steps):
        offset = k + 1 + skip
        terms = []
        for t in range(H - offset):
            for b in range(B):
                for x in range(W):
                    context = c[b, :, t, x]
                    scores = [context @ (W_k[k] @ z[b, :, t + offset, x])]
                    for n in negatives[query].tolist():
                        nb, rest = divmod(n, H * W)
                        row, col = divmod(rest, W)
                        scores.append(context @ (W_k[k] @ z[nb, :, row, col]))
                    scores = torch.stack(scores)
                    terms.append(torch.logsumexp(scores, 0) - scores[0])
                    query += 1
        step_means.append(torch.stack(terms).mean())
    assert query == len(negatives), "the index tensor has one row per query"
    return torch.stack(step_means).mean()


def num_queries(B: int, H: int, W: int, steps: int, skip: int) -> int:
    return sum(max(H - (k + 1 + skip), 0) for k in range(steps)) * B * W


SHAPES = [
    # B, C, H, W, K, skip, N, context channels (None: c = z, the autoregressor-free GIM case)
    (2, 3, 5, 4, 2, 1, 3, None),
    (3, 4, 7, 7, 5, 1, 16, None),       # the paper's 7x7 grid, K = 5
    (2, 3, 6, 2, 3, 0, 2, None),
    (1, 2, 4, 3, 1, 2, 5, None),
    (2, 3, 6, 3, 2, 1, 4, 5),           # a separate context c with its own width (CPC with an autoregressor)
]


@pytest.mark.parametrize("B, C, H, W, K, skip, N, Cc", SHAPES)
def test_matches_loop_reference(B, C, H, W, K, skip, N, Cc):
    generator = torch.Generator().manual_seed(H * 100 + K)
    objective = InfoNCE2d(C, prediction_steps=K, skip_steps=skip, num_negatives=N, context_channels=Cc)
    z = torch.randn(B, C, H, W, generator=generator)                                    # (B, C, H, W)
    c = z if Cc is None else torch.randn(B, Cc, H, W, generator=generator)              # (B, Cc, H, W)
    negatives = torch.randint(B * H * W, (num_queries(B, H, W, K, skip), N), generator=generator)
    loss = objective.loss(z, c, negatives)
    expected = reference_loss(z, c, objective.predictors.weight.detach(), K, skip, negatives)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5, rel=1e-5)


@pytest.mark.parametrize("B, C, H, W, K, skip, N, Cc", SHAPES)
def test_forward_samples_one_row_of_negatives_per_query(record_negatives, B, C, H, W, K, skip, N, Cc):
    sampled = record_negatives(infonce_2d)
    autoregressor = None if Cc is None else nn.Conv2d(C, Cc, 1)
    objective = InfoNCE2d(C, K, skip, N, context_channels=Cc, autoregressor=autoregressor)
    z = torch.randn(B, C, H, W)
    torch.manual_seed(0)
    loss = objective(z)
    (indices, pool_size), = sampled
    assert indices.shape == (num_queries(B, H, W, K, skip), N)
    assert pool_size == B * H * W
    c = z if autoregressor is None else autoregressor(z)
    assert torch.equal(loss, objective.loss(z, c, indices)), "forward = loss on the indices it sampled"


@pytest.mark.parametrize("N", [1, 4, 16])
def test_zero_grid_gives_log_of_candidates(N):
    objective = InfoNCE2d(3, prediction_steps=3, skip_steps=1, num_negatives=N)
    loss = objective(torch.zeros(2, 3, 7, 5))
    assert loss.item() == pytest.approx(math.log(N + 1), rel=1e-6)


def test_negatives_equal_to_the_positive_give_log_of_candidates():
    """If every negative is the positive's own position, all N + 1 scores tie, whatever z and W_k are.

    This also pins the index semantics: the positive of query (k, t, b, x) is pool entry b*H*W + (t+s+k)*W + x.
    """
    B, C, H, W, K, skip, N = 2, 3, 6, 4, 3, 1, 5
    objective = InfoNCE2d(C, K, skip, N)
    z = torch.randn(B, C, H, W) * 3
    own = []
    for k in range(K):
        for t in range(H - (k + 1 + skip)):
            own += [b * H * W + (t + k + 1 + skip) * W + x for b in range(B) for x in range(W)]
    negatives = torch.tensor(own)[:, None].expand(-1, N)
    assert objective.loss(z, z, negatives).item() == pytest.approx(math.log(N + 1), rel=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 2.0, 10.0, 30.0])
def test_dominant_positive_gives_log_one_plus_n_exp_minus_alpha(alpha):
    """z one-hot per position, W_k = alpha * I, c = one-hot of the target: positive scores alpha, negatives 0."""
    B, H, W, skip, N = 2, 4, 3, 1, 6
    pool = B * H * W
    C = pool
    objective = InfoNCE2d(C, prediction_steps=1, skip_steps=skip, num_negatives=N)
    with torch.no_grad():
        objective.predictors.weight.copy_(alpha * torch.eye(C)[:, :, None, None])
    z = torch.eye(pool).reshape(B, H, W, C).permute(0, 3, 1, 2)                        # (B, C, H, W)
    c = torch.zeros_like(z)
    targets = []
    for t in range(H - 1 - skip):
        for b in range(B):
            for x in range(W):
                target = b * H * W + (t + 1 + skip) * W + x
                c[b, target, t, x] = 1.0
                targets.append(target)
    negatives = negatives_avoiding(targets, pool, N)
    expected = math.log1p(N * math.exp(-alpha))
    # fp32 log-softmax of a logit near alpha is exact to about alpha * 2**-23 in absolute terms.
    assert objective.loss(z, c, negatives).item() == pytest.approx(expected, rel=1e-5, abs=2e-6)


@pytest.mark.parametrize("with_autoregressor", [False, True])
def test_gradients_reach_z_predictors_and_autoregressor(with_autoregressor):
    autoregressor = nn.Conv2d(4, 6, 1) if with_autoregressor else None
    objective = InfoNCE2d(4, 2, 1, 4, context_channels=6 if with_autoregressor else None,
                          autoregressor=autoregressor)
    z = torch.randn(3, 4, 6, 5, requires_grad=True)
    objective(z).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    for name, parameter in objective.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
