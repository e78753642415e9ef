"""The probe protocol on tiny hand-made modules and loaders: every module probed on its own features of the
training and test splits (plus augmented views), features extracted once per split for both probes, the options
passed through, and a failure when extraction changes the encoder."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from conftest import TensorBatches, tiny_sequence_modules

from greedy_infomax.evaluation import protocol
from greedy_infomax.evaluation.features import module_features
from greedy_infomax.evaluation.protocol import probe_features, probe_modules


@dataclass(frozen=True)
class Options:
    """Any object with a probe config's fields will do."""

    pool: int = 2
    epochs: int = 3
    lr: float = 0.05
    batch_size: int = 4
    knn_k: int = 3
    augmented_views: int = 0
    feature_dtype: str = "float32"


def splits() -> tuple[TensorBatches, TensorBatches]:
    generator = torch.Generator().manual_seed(0)
    train = TensorBatches(torch.randn(7, 2, 8, generator=generator), torch.tensor([0, 1, 2, 0, 1, 2, 0]), 3)
    test = TensorBatches(torch.randn(5, 2, 8, generator=generator), torch.tensor([2, 2, 1, 0, 1]), 2)
    return train, test


@pytest.fixture
def fitted(monkeypatch) -> list[dict]:
    """Every call of the linear and kNN probes, by name and arguments; each returns the number of its call."""
    calls = []

    def recorder(name):
        def record(*args, **kwargs):
            calls.append({"probe": name, "args": args, "kwargs": kwargs})
            return len(calls) / 100

        return record

    monkeypatch.setattr(protocol, "linear_probe", recorder("linear"))
    monkeypatch.setattr(protocol, "knn_probe", recorder("knn"))
    return calls


def test_each_module_is_fitted_on_its_training_features_and_scored_on_its_test_features(fitted):
    modules = tiny_sequence_modules()
    train, test = splits()
    rows = probe_modules(modules, train, test, Options(), num_classes=3, seed=5)
    train_features, test_features = (module_features(modules, split.inputs, pool=2) for split in (train, test))
    assert [row["module"] for row in rows] == [1, 2]
    assert [row["features"] for row in rows] == [4 * 2, 5 * 2], "C x pool cells of each module"
    assert [call["probe"] for call in fitted] == ["linear", "knn"] * 2
    for index, row in enumerate(rows):
        linear, knn = fitted[2 * index : 2 * index + 2]
        assert (row["linear"], row["knn"]) == (0.01 * (2 * index + 1), 0.01 * (2 * index + 2))
        for call in (linear, knn):
            train_x, train_y, test_x, test_y, classes = call["args"][:5]
            torch.testing.assert_close(train_x, train_features[index])
            torch.testing.assert_close(test_x, test_features[index])
            assert torch.equal(train_y, train.labels) and torch.equal(test_y, test.labels) and classes == 3


def test_features_reach_the_probes_in_the_stored_dtype(fitted):
    modules = tiny_sequence_modules()
    probe_modules(modules, *splits(), Options(knn_k=0, feature_dtype="bfloat16"), num_classes=3)
    train_features, test_features = (module_features(modules, split.inputs, pool=2) for split in splits())
    for call, train_x, test_x in zip(fitted, train_features, test_features, strict=True):
        assert call["args"][0].dtype == call["args"][2].dtype == torch.bfloat16
        assert torch.equal(call["args"][0], train_x.bfloat16()) and torch.equal(call["args"][2], test_x.bfloat16())


def test_the_probes_get_the_options_and_seed(fitted):
    options = Options(epochs=7, lr=0.3, batch_size=9, knn_k=4)
    features, labels = torch.randn(6, 3), torch.tensor([0, 1, 0, 1, 0, 1])
    probe_features((features, labels), (features, labels), options, num_classes=2, seed=11)
    linear, knn = fitted
    assert linear["args"][4:] == (2, 7, 0.3, 9) and linear["kwargs"] == {"seed": 11}
    assert knn["args"][4:] == (2, 4)


def test_features_are_extracted_once_per_split_and_augmented_view(monkeypatch, fitted):
    """With 2 views, the training features are the training split's, then epochs 0 and 1 of the augmented
    loader's, labels alike; the test split is extracted once."""
    extracted = []
    extract = protocol.extract_features

    def counting(modules, loader, pool, description, epoch=0, into=None):
        extracted.append((description, epoch))
        return extract(modules, loader, pool, description, epoch, into)

    monkeypatch.setattr(protocol, "extract_features", counting)
    modules = tiny_sequence_modules()
    train, test = splits()
    augmented = TensorBatches(train.inputs, train.labels, 2)
    probe_modules(modules, train, test, Options(augmented_views=2, knn_k=0), 3, name="trained", augmented=augmented)
    assert extracted == [("trained: train", 0), ("trained: view 1", 0), ("trained: view 2", 1), ("trained: test", 0)]
    assert augmented.epochs == [0, 1]
    for index, call in enumerate(fitted):
        train_x, train_y = call["args"][:2]
        views = [module_features(modules, train.inputs + epoch, pool=2)[index] for epoch in (0, 1)]
        expected = torch.cat([module_features(modules, train.inputs, pool=2)[index], *views])
        torch.testing.assert_close(train_x, expected)
        assert torch.equal(train_y, train.labels.repeat(3))


def test_augmented_views_without_their_loader_are_refused_before_any_work(fitted):
    train, test = splits()
    with pytest.raises(ValueError, match="probe.augmented_views needs the augmented loader"):
        probe_modules(tiny_sequence_modules(), train, test, Options(augmented_views=1), 3)
    assert train.epochs == [] and fitted == []


def test_without_neighbours_only_the_linear_probe_runs(fitted):
    train, test = splits()
    rows = probe_modules(tiny_sequence_modules(), train, test, Options(knn_k=0), 3)
    assert all("knn" not in row for row in rows)
    assert [call["probe"] for call in fitted] == ["linear", "linear"]


def test_an_extraction_that_changes_the_encoder_fails_naming_it(monkeypatch):
    extract = protocol.extract_features

    def tampering(modules, *args, **kwargs):
        with torch.no_grad():
            modules[0].block.bias.add_(1.0)
        return extract(modules, *args, **kwargs)

    monkeypatch.setattr(protocol, "extract_features", tampering)
    train, test = splits()
    with pytest.raises(RuntimeError, match="probing changed the random init encoder's parameters"):
        probe_modules(tiny_sequence_modules(), train, test, Options(), 3, name="random init")


def test_separable_features_are_classified_perfectly_by_both_probes():
    """Three tight clusters around 5 * e_k: an analytic case for the real probes."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat(8)
    features = 5 * torch.eye(4)[labels] + 0.1 * torch.randn(len(labels), 4, generator=generator)
    options = Options(epochs=10, lr=0.1, batch_size=8)
    result = probe_features((features, labels), (features.flip(0), labels.flip(0)), options, 3, seed=0)
    assert result == {"features": 4, "linear": 1.0, "knn": 1.0}
    assert "knn" not in probe_features((features, labels), (features, labels), options, 3, seed=0, knn=False)
