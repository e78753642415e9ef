"""InfoNCE1d against a slow loop reference on the same negatives (loss and accuracy; whole sequences and fixed
windows), plus
analytic cases, the sampled table of negatives and which rows each step reads, negative groups and the
subsampling window."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import negatives_avoiding

from greedy_infomax.models.audio import GRUStage
from greedy_infomax.objectives import infonce_1d
from greedy_infomax.objectives.infonce_1d import InfoNCE1d
from greedy_infomax.objectives.negatives import sample_permuted_negatives


def reference(
    z: torch.Tensor, c: torch.Tensor, weight: torch.Tensor, steps: int, negatives: torch.Tensor, start: int, length: int
) -> tuple[torch.Tensor, float]:
    """(loss, accuracy): loops over k, b, t; context (b, t) of step k uses negatives row
    B * (k - 1) + b * (length - k) + t - start, entry n = b' * T + t'. A query is right when no negative scores
    above its positive; both are averaged over each step's queries, then over the steps.

    weight: the predictors' (K * C, Cc) linear weight, W_k = weight[k * C:(k + 1) * C].
    """
    z, c, weight = z.double(), c.double(), weight.double()
    B, C, T = z.shape
    W_k = weight.reshape(steps, C, c.shape[1])
    assert negatives.shape[0] == B * (length - 1), "the index tensor has the rows of step 1's queries"
    step_means, step_accuracies = [], []
    for k in range(1, steps + 1):
        terms, right = [], []
        for b in range(B):
            for t in range(start, start + length - k):
                prediction = W_k[k - 1] @ c[b, :, t]
                scores = [prediction @ z[b, :, t + k]]
                for n in negatives[B * (k - 1) + b * (length - k) + t - start].tolist():
                    nb, nt = divmod(n, T)
                    scores.append(prediction @ z[nb, :, nt])
                scores = torch.stack(scores)
                terms.append(torch.logsumexp(scores, 0) - scores[0])
                right.append(all(score <= scores[0] for score in scores[1:]))
        step_means.append(torch.stack(terms).mean())
        step_accuracies.append(sum(right) / len(right))
    return torch.stack(step_means).mean(), sum(step_accuracies) / len(step_accuracies)


def without_own_positives(negatives: torch.Tensor, B: int, T: int, steps: int, start: int, length: int) -> torch.Tensor:
    """The table with every entry equal to the positive of a query that reads its row (at step k, row
    B * (k - 1) + b * (length - k) + t - start: b * T + t + k) moved on to an entry that is none of them."""
    negatives = negatives.clone()
    for row in range(len(negatives)):
        own = set()
        for k in range(1, steps + 1):
            if B * (k - 1) <= row < B * (k - 1) + B * (length - k):
                b, t = divmod(row - B * (k - 1), length - k)
                own.add(b * T + start + t + k)
        for n in range(negatives.shape[1]):
            while int(negatives[row, n]) in own:
                negatives[row, n] = (negatives[row, n] + 1) % (B * T)
    return negatives


def num_contexts(B: int, length: int) -> int:
    return B * (length - 1)


SHAPES = [
    # B, C, T, K, N, context channels (None: c = z, the GIM case), window start, window length (None: all)
    (2, 3, 9, 3, 4, None, 0, None),
    (3, 4, 16, 12, 10, None, 0, None),  # the paper's K = 12 and N = 10
    (1, 2, 5, 1, 2, None, 0, None),
    (2, 3, 12, 2, 3, 5, 0, None),  # a separate context with its own width (CPC: the GRU's output)
    (2, 3, 20, 3, 4, None, 0, 8),  # subsampled: a window at the start ...
    (2, 3, 20, 3, 4, None, 7, 8),  # ... in the middle
    (3, 2, 20, 4, 5, 3, 12, 8),  # ... at the very end, with a separate context
]


@pytest.mark.parametrize("B, C, T, K, N, Cc, start, length", SHAPES)
def test_matches_loop_reference(B, C, T, K, N, Cc, start, length):
    generator = torch.Generator().manual_seed(T * 100 + K + start)
    objective = InfoNCE1d(C, prediction_steps=K, num_negatives=N, context_channels=Cc)
    window = T - start if length is None else length
    z = torch.randn(B, C, T, generator=generator)  # (B, C, T)
    c = z if Cc is None else torch.randn(B, Cc, T, generator=generator)  # (B, Cc, T)
    negatives = torch.randint(B * T, (num_contexts(B, window), N), generator=generator)
    loss = objective.loss(z, c, negatives, start, length)
    expected, _ = reference(z, c, objective.predictors.weight.detach(), K, negatives, start, window)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5, rel=1e-5)
    # A negative drawn at the positive's own entry ties with it, and fp32 rounding decides that tie: not those.
    negatives = without_own_positives(negatives, B, T, K, start, window)
    accuracy = objective.loss_and_accuracy(z, c, negatives, start, length)[1]
    _, expected_accuracy = reference(z, c, objective.predictors.weight.detach(), K, negatives, start, window)
    assert accuracy.item() == pytest.approx(expected_accuracy, rel=1e-6)


@pytest.mark.parametrize(
    "B, C, T, K, N, Cc, subsample, window",
    [
        (2, 3, 9, 3, 4, None, False, 128),
        (3, 4, 20, 12, 10, 6, False, 128),
        (2, 3, 40, 3, 4, None, True, 8),  # subsampled: queries from 8 steps, negatives from all 2 * 40
        (2, 3, 8, 3, 4, None, True, 8),  # not longer than the window: no subsampling
    ],
)
def test_forward_samples_one_row_of_negatives_per_context_step(record_negatives, B, C, T, K, N, Cc, subsample, window):
    sampled = record_negatives(infonce_1d)
    objective = InfoNCE1d(C, K, N, context_channels=Cc, subsample=subsample, subsample_window=window)
    z = torch.randn(B, C, T)
    c = z if Cc is None else torch.randn(B, Cc, T)
    torch.manual_seed(0)
    start, length = objective.window(T)
    torch.manual_seed(0)
    loss = objective(z, context=None if Cc is None else c)
    ((indices, pool_size),) = sampled
    assert length == (window if subsample and T > window else T)
    assert indices.shape == (num_contexts(B, length), N)
    assert pool_size == B * T, "negatives come from every step of every sequence, also when subsampling"
    assert all(len(set(column.tolist())) == len(column) for column in indices.T), "each column part of a permutation"
    expected, accuracy = objective.loss_and_accuracy(z, c, indices, start, length)
    assert torch.equal(loss, expected), "forward = loss on what it sampled"
    assert objective.metrics == {"accuracy": accuracy} and not accuracy.requires_grad


def test_window_start_is_uniform_over_every_valid_offset():
    objective = InfoNCE1d(2, prediction_steps=2, subsample=True, subsample_window=6)
    torch.manual_seed(0)
    windows = {(int(start), length) for start, length in (objective.window(9) for _ in range(300))}
    assert windows == {(start, 6) for start in range(4)}, "offsets 0 .. T - window, both ends included"
    assert objective.window(6) == (0, 6) and objective.window(4) == (0, 4)


@pytest.mark.parametrize("N, subsample", [(1, False), (10, False), (10, True)])
def test_zero_sequence_gives_log_of_candidates(N, subsample):
    objective = InfoNCE1d(3, prediction_steps=4, num_negatives=N, subsample=subsample, subsample_window=8)
    loss = objective(torch.zeros(2, 3, 20))
    assert loss.item() == pytest.approx(math.log(N + 1), rel=1e-6)


def test_negatives_equal_to_the_positive_give_log_of_candidates():
    """With K = 1 and every negative the positive's own step, all N + 1 scores tie, whatever z and W_1 are.

    This pins the index semantics: row b * (length - 1) + t - start holds context (b, t), whose positive is
    pool entry b * T + t + 1.
    """
    B, C, T, N, start, length = 2, 3, 15, 5, 4, 9
    objective = InfoNCE1d(C, prediction_steps=1, num_negatives=N)
    z = torch.randn(B, C, T) * 3
    own = [b * T + t + 1 for b in range(B) for t in range(start, start + length - 1)]
    negatives = torch.tensor(own)[:, None].expand(-1, N)
    assert objective.loss(z, z, negatives, start, length).item() == pytest.approx(math.log(N + 1), rel=1e-5)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_step_k_reads_the_last_rows_of_the_table(k):
    """Only W_k is non-zero, and the table row that the documented formula gives context (b, t) at step k holds its
    positive N times: all N + 1 scores tie, so the loss is log(N + 1), whatever z is. Rows that other steps read
    hold other steps, whose W_j = 0 scores everything 0."""
    B, C, T, K, N = 3, 4, 11, 4, 5
    objective = InfoNCE1d(C, prediction_steps=K, num_negatives=N)
    with torch.no_grad():
        objective.predictors.weight.zero_()
        objective.predictors.weight[(k - 1) * C : k * C] = torch.eye(C)
    table = torch.randint(B * T, (B * (T - 1), N))
    for b in range(B):
        for t in range(T - k):
            table[B * (k - 1) + b * (T - k) + t] = b * T + t + k
    z = torch.randn(B, C, T) * 3
    assert objective.loss(z, z, table).item() == pytest.approx(math.log(N + 1), rel=1e-5)


def test_permuted_negatives_are_the_last_rows_of_uniform_permutations():
    """Every column: distinct entries; over many draws each pool entry equally likely in every row."""
    counts = torch.zeros(3, 6)
    for _ in range(3000):
        table = sample_permuted_negatives(3, 2, 6, torch.device("cpu"))  # (3, 2)
        assert all(len(set(column.tolist())) == 3 for column in table.T)
        counts += torch.nn.functional.one_hot(table[:, 0], 6).float()
    assert torch.allclose(counts / 3000, torch.full((3, 6), 1 / 6), atol=0.03)
    with pytest.raises(ValueError):
        sample_permuted_negatives(7, 2, 6, torch.device("cpu"))


@pytest.mark.parametrize("Cc, subsample", [(None, False), (5, True)])
def test_negative_groups_are_the_mean_of_the_groups_as_separate_batches(Cc, subsample):
    """G groups = the original's nn.DataParallel over G GPUs: each chunk a separate batch with its own window and
    table, drawn in order, the losses averaged."""
    B, C, T, G = 6, 4, 30, 3
    grouped = InfoNCE1d(C, 3, 4, context_channels=Cc, subsample=subsample, subsample_window=10, negative_groups=G)
    single = InfoNCE1d(C, 3, 4, context_channels=Cc, subsample=subsample, subsample_window=10)
    single.load_state_dict(grouped.state_dict())
    z = torch.randn(B, C, T)
    c = None if Cc is None else torch.randn(B, Cc, T)
    torch.manual_seed(0)
    loss = grouped(z, context=c)
    torch.manual_seed(0)
    contexts = [None] * G if c is None else c.chunk(G)
    expected, accuracies = zip(
        *[(single(part, context=context), single.metrics["accuracy"]) for part, context in zip(z.chunk(G), contexts)]
    )
    assert torch.equal(loss, torch.stack(expected).mean())
    assert torch.equal(grouped.metrics["accuracy"], torch.stack(accuracies).mean())


@pytest.mark.parametrize("alpha", [0.0, 2.0, 10.0, 30.0])
def test_dominant_positive_gives_log_one_plus_n_exp_minus_alpha(alpha):
    """z one-hot per step, W_1 = alpha * I, c_t = one-hot of its target: positive scores alpha, negatives 0."""
    B, T, N = 2, 5, 6
    C = B * T
    objective = InfoNCE1d(C, prediction_steps=1, num_negatives=N)
    with torch.no_grad():
        objective.predictors.weight.copy_(alpha * torch.eye(C))
    z = torch.eye(C).reshape(B, T, C).transpose(1, 2)  # (B, C, T)
    c = torch.zeros_like(z)
    targets = []
    for b in range(B):
        for t in range(T - 1):
            c[b, b * T + t + 1, t] = 1.0
            targets.append(b * T + t + 1)
    negatives = negatives_avoiding(targets, C, N)
    expected = math.log1p(N * math.exp(-alpha))
    loss, accuracy = objective.loss_and_accuracy(z, c, negatives)
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=2e-6)
    assert accuracy.item() == pytest.approx(1.0)
    assert objective.loss_and_accuracy(z, -c, negatives)[1].item() == pytest.approx(float(alpha == 0)), (
        "a positive scoring -alpha against negatives at 0 is never first (but for the tie at alpha 0)"
    )


@pytest.mark.parametrize("with_context", [False, True])
def test_gradients_reach_z_predictors_and_context(with_context):
    autoregressor = GRUStage(4, 6)
    objective = InfoNCE1d(4, 3, 4, context_channels=6 if with_context else None, subsample=True, subsample_window=8)
    z = torch.randn(3, 4, 12, requires_grad=True)
    objective(z, context=autoregressor(z) if with_context else None).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    for name, parameter in [*objective.named_parameters(), *(autoregressor.named_parameters() if with_context else [])]:
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_sequence_not_longer_than_the_steps_names_prediction_steps():
    objective = InfoNCE1d(3, prediction_steps=4)
    with pytest.raises(ValueError, match="prediction_steps=4"):
        objective(torch.randn(2, 3, 4))


def test_a_compiled_subsampling_objective_is_one_graph_whatever_window_it_draws():
    """A Python-int window start broke the graph under train.compile and recompiled it for every new start."""
    from torch._dynamo.utils import counters

    from greedy_infomax.placement import compile_in_place

    objective = InfoNCE1d(3, prediction_steps=2, num_negatives=4, subsample=True, subsample_window=6)
    compile_in_place(objective)
    z = torch.randn(2, 3, 20, requires_grad=True)
    counters.clear()
    starts = set()
    for seed in range(4):
        torch.manual_seed(seed)
        starts.add(int(objective.window(20)[0]))  # the window the forward below draws first
        torch.manual_seed(seed)
        objective(z).backward()
    assert len(starts) > 1
    assert counters["stats"]["unique_graphs"] == 1 and counters["frames"]["total"] == 1, dict(counters["frames"])


def test_fp64_inputs_are_scored_in_fp64():
    """Gradient checks and the cross-check with the original code run in fp64: no score may drop to fp32."""
    B, C, T, K, N = 2, 3, 12, 3, 4
    generator = torch.Generator().manual_seed(0)
    objective = InfoNCE1d(C, prediction_steps=K, num_negatives=N).double()
    z = torch.randn(B, C, T, generator=generator, dtype=torch.float64) * 10
    negatives = torch.randint(B * T, (num_contexts(B, T), N), generator=generator)
    loss = objective.loss(z, z, negatives)
    assert loss.dtype == torch.float64
    expected, _ = reference(z, z, objective.predictors.weight.detach(), K, negatives, 0, T)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
