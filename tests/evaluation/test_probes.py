"""Linear and kNN probes on synthetic features: separable clusters, chance on random labels, standardisation with
the training statistics, determinism for a seed, the blockwise kNN against a whole-matrix reference, and features
stored in bfloat16 probed as their float32 values."""

from __future__ import annotations

import torch

from greedy_infomax.evaluation import probes
from greedy_infomax.evaluation.probes import column_mean_std, knn_probe, linear_probe


def _clusters(per_class: int, classes: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian blobs (std 0.3) around 5 * e_k: linearly separable with a wide margin."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(per_class)
    features = 5 * torch.eye(dim)[labels] + 0.3 * torch.randn(len(labels), dim, generator=generator)
    return features, labels


def test_linear_probe_separates_separable_features():
    train_x, train_y = _clusters(20, 3, 6, seed=0)
    test_x, test_y = _clusters(10, 3, 6, seed=1)
    assert linear_probe(train_x, train_y, test_x, test_y, 3, epochs=30, lr=0.05, batch_size=16) == 1.0


def test_linear_probe_is_at_chance_on_random_labels():
    generator = torch.Generator().manual_seed(0)
    train_x, test_x = torch.randn(300, 20, generator=generator), torch.randn(2000, 20, generator=generator)
    train_y, test_y = torch.randint(10, (300,), generator=generator), torch.randint(10, (2000,), generator=generator)
    accuracy = linear_probe(train_x, train_y, test_x, test_y, 10, epochs=20, lr=0.01, batch_size=64)
    assert 0.06 < accuracy < 0.14


def test_linear_probe_standardises_both_splits_with_the_training_statistics():
    """Standardised with its own statistics, a test split of one class around 11 would straddle the boundary."""
    train_x = torch.tensor([[0.0], [1.0], [9.0], [10.0]]).repeat(8, 1)
    train_y = torch.tensor([0, 0, 1, 1]).repeat(8)
    test_x, test_y = torch.tensor([[10.0], [12.0]]), torch.tensor([1, 1])
    assert linear_probe(train_x, train_y, test_x, test_y, 2, epochs=50, lr=0.1, batch_size=8) == 1.0


def test_linear_probe_is_deterministic_for_a_seed():
    train_x, train_y = _clusters(20, 4, 5, seed=2)
    noisy = train_x + 3 * torch.randn(train_x.shape, generator=torch.Generator().manual_seed(3))
    results = [
        linear_probe(noisy, train_y, noisy, train_y, 4, epochs=2, lr=0.01, batch_size=8, seed=7) for _ in range(2)
    ]
    assert results[0] == results[1]


def test_knn_with_one_neighbour_on_its_own_training_set_is_perfect():
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 16, generator=generator), torch.randint(10, (200,), generator=generator)
    assert knn_probe(x, y, x, y, 10, k=1, chunk=64) == 1.0


def test_knn_classifies_clusters():
    train_x, train_y = _clusters(20, 3, 6, seed=0)
    test_x, test_y = _clusters(10, 3, 6, seed=1)
    assert knn_probe(train_x, train_y, test_x, test_y, 3, k=5) == 1.0


def _knn_reference(train_x, train_y, test_x, num_classes, k, temperature=0.07) -> torch.Tensor:
    """The kNN's votes from the whole cosine-similarity matrix at once, in float64."""
    similarity = (
        torch.nn.functional.normalize(test_x.double(), dim=1) @ torch.nn.functional.normalize(train_x.double(), dim=1).T
    )
    top, neighbour = similarity.topk(k, dim=1)
    one_hot = torch.nn.functional.one_hot(train_y[neighbour], num_classes).double()
    return (one_hot * (top / temperature).exp()[..., None]).sum(1)


def test_blockwise_knn_matches_the_whole_matrix_reference(monkeypatch):
    """Training rows in blocks of 7 and test rows in chunks of 5 (neither divides its split), each block's best
    merged into a running best: the same votes as one similarity matrix, so the same predictions."""
    monkeypatch.setattr(probes, "ROWS", 7)
    generator = torch.Generator().manual_seed(4)
    train_x, test_x = torch.randn(60, 9, generator=generator), torch.randn(23, 9, generator=generator)
    train_y = torch.randint(4, (60,), generator=generator)
    predicted = _knn_reference(train_x, train_y, test_x, 4, k=10).argmax(1)
    for k in (1, 10):
        want = _knn_reference(train_x, train_y, test_x, 4, k).argmax(1)
        assert knn_probe(train_x, train_y, test_x, want, 4, k=k, chunk=5) == 1.0
    assert knn_probe(train_x, train_y, test_x, predicted, 4, k=100, chunk=5) == knn_probe(
        train_x, train_y, test_x, predicted, 4, k=60, chunk=5
    ), "k beyond the training rows is every row"


def test_column_statistics_come_in_blocks_without_a_float32_copy(monkeypatch):
    monkeypatch.setattr(probes, "ROWS", 6)
    x = 3 * torch.randn(40, 5, generator=torch.Generator().manual_seed(0)) + 7
    mean, std = column_mean_std(x)
    torch.testing.assert_close(mean, x.mean(0))
    torch.testing.assert_close(std, x.std(0))
    stored = x.bfloat16()
    mean, std = column_mean_std(stored)
    torch.testing.assert_close(mean, stored.float().mean(0))
    torch.testing.assert_close(std, stored.float().std(0))


def test_features_stored_in_bfloat16_are_probed_as_their_float32_values():
    train_x, train_y = _clusters(20, 4, 5, seed=2)
    noisy = (train_x + 3 * torch.randn(train_x.shape, generator=torch.Generator().manual_seed(3))).bfloat16()
    test_x = noisy.flip(0)
    for probe in (
        lambda x, t: linear_probe(x, train_y, t, train_y.flip(0), 4, epochs=2, lr=0.01, batch_size=8, seed=7),
        lambda x, t: knn_probe(x, train_y, t, train_y.flip(0), 4, k=3, chunk=16),
    ):
        assert probe(noisy, test_x) == probe(noisy.float(), test_x.float())
