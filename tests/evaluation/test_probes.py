"""Linear and kNN probes on synthetic features, the frozen-encoder fingerprint, and the probe protocol of a run."""
from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace

import pytest
import torch

from greedy_infomax.tasks.vision import load_split
from greedy_infomax.evaluation import protocol
from greedy_infomax.evaluation.probes import knn_probe, linear_probe
from greedy_infomax.workflows import probe_run
from greedy_infomax.reporting.run_folder import RunFolder


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
    results = [linear_probe(noisy, train_y, noisy, train_y, 4, epochs=2, lr=0.01, batch_size=8, seed=7)
               for _ in range(2)]
    assert results[0] == results[1]


def test_knn_with_one_neighbour_on_its_own_training_set_is_perfect():
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 16, generator=generator), torch.randint(10, (200,), generator=generator)
    assert knn_probe(x, y, x, y, 10, k=1, chunk=64) == 1.0


def test_knn_classifies_clusters():
    train_x, train_y = _clusters(20, 3, 6, seed=0)
    test_x, test_y = _clusters(10, 3, 6, seed=1)
    assert knn_probe(train_x, train_y, test_x, test_y, 3, k=5) == 1.0


def _checkpoint_digest(run: RunFolder) -> str:
    digest = hashlib.sha256()
    for path in sorted(run.latest_checkpoint().iterdir()):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_probe_run_reports_every_module_of_trained_and_random_encoders(probe_smoke_run):
    saved = _checkpoint_digest(probe_smoke_run)
    results = probe_run(probe_smoke_run)
    assert (results["step"], results["train_images"], results["test_images"]) == (2, 64, 64)
    assert results["method"] == "GIM (3 modules)"
    for encoder in ("trained", "random"):
        assert [row["module"] for row in results[encoder]] == [1, 2, 3]
        assert [row["features"] for row in results[encoder]] == [4, 8, 8]         # C of each module, pool 1
        assert all({"linear", "knn"} <= row.keys() for row in results[encoder])
    assert results["baseline"]["name"] == "raw pixels" and results["baseline"]["features"] == 28 * 28
    assert _checkpoint_digest(probe_smoke_run) == saved


def test_every_probe_fits_on_the_training_split_and_scores_on_the_test_split(monkeypatch, probe_smoke_run):
    """Recorded at the linear probe: labels in the stored order of each split, and the random-init encoder's
    features are not the trained encoder's."""
    fitted = []

    def record(train_x, train_y, test_x, test_y, *args, **kwargs):
        fitted.append((train_x, train_y, test_y))
        return 0.5

    monkeypatch.setattr(protocol, "linear_probe", record)
    config = probe_smoke_run.config
    probe_run(probe_smoke_run, replace(config, probe=replace(config.probe, knn_k=0)))
    train_labels, test_labels = (torch.from_numpy(load_split(config.data, role).labels)
                                 for role in ("probe_train", "probe_test"))
    assert not torch.equal(train_labels, test_labels)
    assert len(fitted) == 3 + 3 + 1, "3 trained modules, 3 random-init ones, raw pixels"
    for _, train_y, test_y in fitted:
        assert torch.equal(train_y, train_labels) and torch.equal(test_y, test_labels)
    for trained, random in zip(fitted[:3], fitted[3:6]):
        assert trained[0].shape == random[0].shape and not torch.allclose(trained[0], random[0])


def test_probe_run_fails_if_feature_extraction_touches_the_encoder(monkeypatch, probe_smoke_run):
    extract = protocol.extract_features

    def tampering(modules, *args, **kwargs):
        with torch.no_grad():
            next(modules.parameters()).add_(1.0)
        return extract(modules, *args, **kwargs)

    monkeypatch.setattr(protocol, "extract_features", tampering)
    with pytest.raises(RuntimeError, match="changed the trained encoder"):
        probe_run(probe_smoke_run)


def test_augmented_views_add_flipped_and_cropped_copies_of_the_training_images(monkeypatch, probe_smoke_run):
    """The smoke preset crops 28 of 28 pixels, so its views are the images, some mirrored, in a seeded order."""
    fitted = []

    def record(train_x, train_y, *args, **kwargs):
        fitted.append((train_x, train_y))
        return 0.5

    monkeypatch.setattr(protocol, "linear_probe", record)
    config = probe_smoke_run.config
    options = replace(config.probe, augmented_views=2, random_init=False, raw_pixels=False, knn_k=0)
    results = probe_run(probe_smoke_run, replace(config, probe=options))
    assert results["features"].endswith("fitted on centre crops and 2 augmented views of each image")
    features, labels = fitted[0]                                   # module 1
    assert features.shape[0] == labels.shape[0] == 3 * 64
    centre, *views = features.split(64)
    for view, view_labels in zip(views, labels.split(64)[1:]):
        assert sorted(view_labels.tolist()) == sorted(labels[:64].tolist()), "every image once per view"
        same = (view[:, None] - centre[None]).abs().amax(-1).amin(1) < 1e-6     # row found among the centre crops
        assert 0 < same.sum() < 64, "some images mirrored, some not"
    assert not torch.equal(views[0], views[1]), "each view draws anew"


def test_a_module_whose_weights_diverged_is_named_instead_of_probed_at_chance(probe_smoke_run, tmp_path):
    """A run with on_nonfinite skip can end with huge weights whose features overflow: say so, not "10%"."""
    from greedy_infomax.errors import GimError
    run = RunFolder.open(shutil.copytree(probe_smoke_run.path, tmp_path / "run"))
    state = torch.load(run.latest_checkpoint() / "module-3.pt")
    state["state_dict"] = {name: torch.full_like(value, 1e30) for name, value in state["state_dict"].items()}
    torch.save(state, run.latest_checkpoint() / "module-3.pt")
    with pytest.raises(GimError, match="module 3 gives non-finite features"):
        probe_run(run)


def test_a_probe_that_recuts_the_encoder_says_so_in_its_method(probe_smoke_run):
    config = probe_smoke_run.config
    options = replace(config.probe, stages_per_module=(1, 2), random_init=False, raw_pixels=False, knn_k=0)
    results = probe_run(probe_smoke_run, replace(config, probe=options))
    assert results["method"] == "GIM (3 modules), probed as modules of [1, 2] stages"
    assert [row["module"] for row in results["trained"]] == [1, 2]
