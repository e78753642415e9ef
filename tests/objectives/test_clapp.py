"""CLAPP's hinge objective on grids and sequences against slow loop references on the same negatives (and on a
window of a sequence), plus the sampled index tensor, analytic cases and gradients."""

from __future__ import annotations

import pytest
import torch

from greedy_infomax.models.audio import GRUStage
from greedy_infomax.objectives import clapp
from greedy_infomax.objectives.clapp import CLAPP1d, CLAPP2d


def hinge_terms(score_positive: torch.Tensor, score_negative: torch.Tensor) -> torch.Tensor:
    return (1 - score_positive).clamp(min=0) + (1 + score_negative).clamp(min=0)


def reference_2d(z: torch.Tensor, weight: torch.Tensor, steps: int, skip: int, negatives: torch.Tensor) -> torch.Tensor:
    """Loops over k, b, t, x in the documented query order; negative n = b * H * W + row * W + col.

    weight: the predictors' (K * C, C, 1, 1) weight, W_k = weight[k * C:(k + 1) * C]."""
    z, weight = z.double(), weight.double()
    B, C, H, W = z.shape
    W_k = weight[:, :, 0, 0].reshape(steps, C, C)
    query, step_means = 0, []
    for k in range(steps):
        offset = k + 1 + skip
        terms = []
        for b in range(B):
            for t in range(H - offset):
                for x in range(W):
                    nb, rest = divmod(int(negatives[query]), H * W)
                    row, col = divmod(rest, W)
                    context = z[b, :, t, x]
                    terms.append(
                        hinge_terms(
                            context @ (W_k[k] @ z[b, :, t + offset, x]), context @ (W_k[k] @ z[nb, :, row, col])
                        )
                    )
                    query += 1
        step_means.append(torch.stack(terms).mean())
    assert query == len(negatives), "one negative per query"
    return torch.stack(step_means).mean()


def reference_1d(
    z: torch.Tensor,
    c: torch.Tensor,
    weight: torch.Tensor,
    steps: int,
    negatives: torch.Tensor,
    start: int = 0,
    length: int | None = None,
) -> torch.Tensor:
    """Loops over k, b, t in the documented query order, contexts and positives from steps start .. start +
    length - 1 (default: all); negative n = b * T + t, from any step.

    weight: the predictors' (K * C, Cc) weight, W_k = weight[(k - 1) * C:k * C]."""
    z, c, weight = z.double(), c.double(), weight.double()
    B, C, T = z.shape
    length = T - start if length is None else length
    query, step_means = 0, []
    for k in range(1, steps + 1):
        W_k = weight[(k - 1) * C : k * C]
        terms = []
        for b in range(B):
            for t in range(start, start + length - k):
                nb, nt = divmod(int(negatives[query]), T)
                prediction = W_k @ c[b, :, t]
                terms.append(hinge_terms(prediction @ z[b, :, t + k], prediction @ z[nb, :, nt]))
                query += 1
        step_means.append(torch.stack(terms).mean())
    assert query == len(negatives), "one negative per query"
    return torch.stack(step_means).mean()


GRIDS = [(2, 3, 5, 4, 2, 1), (3, 4, 7, 7, 5, 1), (2, 3, 6, 2, 3, 0), (1, 2, 4, 3, 1, 2)]  # B, C, H, W, K, skip


@pytest.mark.parametrize("B, C, H, W, K, skip", GRIDS)
@pytest.mark.parametrize("scale", [0.3, 3.0])  # scores mostly inside and mostly outside the margin
def test_2d_matches_loop_reference(B, C, H, W, K, skip, scale):
    generator = torch.Generator().manual_seed(H * 100 + K)
    objective = CLAPP2d(C, prediction_steps=K, skip_steps=skip)
    z = torch.randn(B, C, H, W, generator=generator) * scale
    negatives = torch.randint(B * H * W, (objective.num_queries(B, H, W),), generator=generator)
    expected = reference_2d(z, objective.predictors.weight.detach(), K, skip, negatives)
    assert objective.loss(z, negatives).item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)


SEQUENCES = [(2, 3, 9, 3, None), (3, 4, 16, 12, None), (1, 2, 5, 1, None), (2, 3, 12, 2, 5)]  # B, C, T, K, Cc


@pytest.mark.parametrize("B, C, T, K, Cc", SEQUENCES)
@pytest.mark.parametrize("scale", [0.3, 3.0])
def test_1d_matches_loop_reference(B, C, T, K, Cc, scale):
    generator = torch.Generator().manual_seed(T * 100 + K)
    objective = CLAPP1d(C, prediction_steps=K, context_channels=Cc)
    z = torch.randn(B, C, T, generator=generator) * scale
    c = z if Cc is None else torch.randn(B, Cc, T, generator=generator) * scale
    negatives = torch.randint(B * T, (objective.num_queries(B, T),), generator=generator)
    expected = reference_1d(z, c, objective.predictors.weight.detach(), K, negatives)
    assert objective.loss(z, c, negatives).item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("start, length", [(0, 6), (3, 6), (7, 5)])
def test_1d_window_matches_loop_reference(start, length):
    """Contexts and positives from the window only, negatives from all 2 x 12 steps."""
    generator = torch.Generator().manual_seed(start)
    objective = CLAPP1d(3, prediction_steps=2)
    z = torch.randn(2, 3, 12, generator=generator)
    negatives = torch.randint(2 * 12, (objective.num_queries(2, length),), generator=generator)
    expected = reference_1d(z, z, objective.predictors.weight.detach(), 2, negatives, start, length)
    loss = objective.loss(z, z, negatives, torch.tensor(start), length)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)


def test_subsample_scores_one_random_window_of_a_longer_sequence(record_negatives):
    sampled = record_negatives(clapp)
    objective = CLAPP1d(3, prediction_steps=2, subsample=True, subsample_window=6)
    z = torch.randn(2, 3, 20)
    torch.manual_seed(0)
    loss = objective(z)
    [(indices, pool)] = sampled
    assert indices.shape == (2 * (5 + 4), 1) and pool == 2 * 20, "queries from the window, negatives from all"
    torch.manual_seed(0)
    start = torch.randint(20 - 6 + 1, ())
    assert torch.equal(loss, objective.loss(z, z, indices[:, 0], start, 6))
    assert CLAPP1d(3, 2, subsample=True, subsample_window=6)(torch.zeros(2, 3, 5)).item() == pytest.approx(2.0)


def test_forward_draws_one_negative_per_query_from_every_position(record_negatives):
    sampled = record_negatives(clapp)
    grid, sequence = CLAPP2d(3, prediction_steps=2, skip_steps=1), CLAPP1d(3, prediction_steps=3)
    z2, z1 = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 9)
    loss2, loss1 = grid(z2), sequence(z1)
    (indices2, pool2), (indices1, pool1) = sampled  # rows below a context: 5 - 2 and 5 - 3; steps 9 - k
    assert indices2.shape == (2 * (3 + 2) * 4, 1) and pool2 == 2 * 5 * 4
    assert indices1.shape == (2 * (8 + 7 + 6), 1) and pool1 == 2 * 9
    assert torch.equal(loss2, grid.loss(z2, indices2[:, 0]))
    assert torch.equal(loss1, sequence.loss(z1, z1, indices1[:, 0]))


def test_zero_output_pays_the_margin_of_both_scores():
    assert CLAPP2d(3, 2, 1)(torch.zeros(2, 3, 6, 5)).item() == pytest.approx(2.0)
    assert CLAPP1d(3, 4)(torch.zeros(2, 3, 10)).item() == pytest.approx(2.0)


@pytest.mark.parametrize("alpha, expected", [(0.0, 2.0), (0.5, 1.5), (1.0, 1.0), (4.0, 1.0)])
def test_positive_score_alpha_and_negative_zero_give_one_plus_the_positive_hinge(alpha, expected):
    """z one-hot per step, W_1 = alpha * I, c_t the one-hot of its target: u+ = alpha, u- = 0 for any other step."""
    B, T = 2, 5
    C = B * T
    objective = CLAPP1d(C, prediction_steps=1)
    with torch.no_grad():
        objective.predictors.weight.copy_(alpha * torch.eye(C))
    z = torch.eye(C).reshape(B, T, C).transpose(1, 2)  # (B, C, T)
    c = torch.zeros_like(z)
    targets = []
    for b in range(B):
        for t in range(T - 1):
            c[b, b * T + t + 1, t] = 1.0
            targets.append(b * T + t + 1)
    negatives = torch.tensor([(target + 1) % C for target in targets])  # never the target
    assert objective.loss(z, c, negatives).item() == pytest.approx(expected)


def test_gradients_reach_the_output_the_predictors_and_the_context():
    grid = CLAPP2d(4, 2, 1)
    z = torch.randn(3, 4, 6, 5, requires_grad=True)
    grid(z).backward()
    assert z.grad.abs().sum() > 0 and grid.predictors.weight.grad.abs().sum() > 0
    autoregressor = GRUStage(4, 6)
    sequence = CLAPP1d(4, 3, context_channels=6)
    z = torch.randn(3, 4, 12, requires_grad=True)
    sequence(z, context=autoregressor(z)).backward()
    assert z.grad.abs().sum() > 0 and sequence.predictors.weight.grad.abs().sum() > 0
    for name, parameter in autoregressor.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_too_few_rows_or_steps_name_the_option():
    with pytest.raises(ValueError, match="prediction_steps \\+ skip_steps = 4"):
        CLAPP2d(3, prediction_steps=3, skip_steps=1)(torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="prediction_steps=4"):
        CLAPP1d(3, prediction_steps=4)(torch.randn(2, 3, 4))
