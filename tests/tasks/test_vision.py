"""The vision task: end-to-end CPC and re-cut encoders with and without the PixelCNN, its budgets' probe, and its
probe protocol on a trained smoke run: every module of the trained and a random encoder next to raw pixels, each
probe fitted on the training split and scored on the test split, augmented views, a frozen encoder, diverged
weights named, and a probe that re-cuts the encoder; the other local-learning objectives by name, two views per
image for the two-view ones, and their options validated."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from greedy_infomax.cli import main
from greedy_infomax.data.loader import BatchLoader, epoch_order
from greedy_infomax.data.spec import ImageArray, ImageSpec
from greedy_infomax.data.transforms import ImageTransform
from greedy_infomax.data.views import TwoViewTransform
from greedy_infomax.errors import GimError
from greedy_infomax.evaluation import protocol
from greedy_infomax.models.pixelcnn import PixelCNN
from greedy_infomax.objectives import BarlowTwins, CLAPP2d, SimCLR, VICReg
from greedy_infomax.reporting.run_folder import RunFolder
from greedy_infomax.tasks import PRESETS, vision
from greedy_infomax.tasks.vision import OBJECTIVES, TASK, ObjectiveConfig, load_split
from greedy_infomax.workflows import probe_run

CPU = torch.device("cpu")


def test_end_to_end_cpc_is_one_module_whose_infonce_predicts_from_a_pixelcnn():
    config = TASK.end_to_end_cpc(PRESETS["smoke"])
    assert (config.model.stages_per_module, config.model.autoregressor) == ((3,), "pixelcnn")
    [module] = TASK.build_modules(config, 1)
    assert isinstance(module.objective.autoregressor, PixelCNN)
    assert module.autoregressor is None, "the module's output stays the encoder's"


def test_a_re_cut_encoder_leaves_out_the_pixelcnn_no_feature_passes_through():
    cut = TASK.cut_at(TASK.end_to_end_cpc(PRESETS["smoke"]), (1, 2))
    assert (cut.model.stages_per_module, cut.model.autoregressor) == ((1, 2), "none")


def test_the_pixelcnn_is_refused_for_an_objective_other_than_infonce():
    config = TASK.end_to_end_cpc(PRESETS["smoke"])
    config = replace(config, objective=replace(config.objective, name="supervised"))
    with pytest.raises(GimError, match="the PixelCNN is the context network of InfoNCE"):
        TASK.build_modules(config, 1)


@pytest.mark.parametrize("budget", ["smoke", "cpu", "paper"])
def test_every_budget_probes_as_the_paper_does(budget):
    """One linear probe on each module's C features (the grid pooled to one cell), no kNN."""
    config = TASK.budget_config(budget)
    assert (config.probe.pool, config.probe.knn_k) == (1, 0)
    assert replace(config, probe=PRESETS[TASK.budgets[budget]].probe) == PRESETS[TASK.budgets[budget]]


def test_the_quick_budget_is_the_cpu_budget_on_the_first_images():
    quick, cpu = TASK.budget_config("quick"), TASK.budget_config("cpu")
    assert quick.data.limit == vision.QUICK_IMAGES < 60_000
    assert replace(quick, data=cpu.data) == cpu


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
        assert [row["features"] for row in results[encoder]] == [4, 8, 8]  # C of each module, pool 1
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
    train_labels, test_labels = (
        torch.from_numpy(load_split(config.data, role).labels) for role in ("probe_train", "probe_test")
    )
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
    features, labels = fitted[0]  # module 1
    assert features.shape[0] == labels.shape[0] == 3 * 64
    centre, *views = features.split(64)
    for view, view_labels in zip(views, labels.split(64)[1:]):
        assert sorted(view_labels.tolist()) == sorted(labels[:64].tolist()), "every image once per view"
        same = (view[:, None] - centre[None]).abs().amax(-1).amin(1) < 1e-6  # row found among the centre crops
        assert 0 < same.sum() < 64, "some images mirrored, some not"
    assert not torch.equal(views[0], views[1]), "each view draws anew"


def test_a_module_whose_weights_diverged_is_named_instead_of_probed_at_chance(probe_smoke_run, tmp_path):
    """A run with on_nonfinite skip can end with huge weights whose features overflow: say so, not "10%"."""
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


def test_the_paper_probes_loader_crops_every_image_anew_every_epoch():
    """10 images of 28x28 in batches of 4 with 20x20 crops: 3 batches an epoch, the last one of 2 images, and an
    image's crop in epoch 1 is not its crop in epoch 0."""
    spec = ImageSpec(1, 28, 28, 10, (0.5,), (0.25,), 0.5, 0.25)
    images = np.random.default_rng(0).integers(0, 256, (10, 1, 28, 28), dtype=np.uint8)
    array = ImageArray(images, np.arange(10), spec)
    config = replace(PRESETS["smoke"], data=replace(PRESETS["smoke"].data, crop=20))
    loader = vision._augmented(
        BatchLoader(array, 16, vision.eval_transform(config.data, spec), CPU), config, batch_size=4, keep_last=True
    )
    crops = []
    for epoch in range(2):
        batches = list(loader.epoch(epoch))
        assert [len(labels) for _, labels in batches] == [4, 4, 2]
        order = epoch_order(10, config.train.seed, epoch)
        rows = np.concatenate([np.sort(order[b * 4 : (b + 1) * 4]) for b in range(3)])  # image of each row
        assert sorted(rows.tolist()) == list(range(10)), "every image once"
        x = torch.cat([images for images, _ in batches])
        crops.append(x[np.argsort(rows)])  # (10, 1, 20, 20) by image
    differ = [not torch.equal(a, b) for a, b in zip(crops[0], crops[1], strict=True)]
    assert sum(differ) >= 8


def test_paper_protocol_fits_one_linear_classifier_per_module_on_fresh_flips(monkeypatch, probe_smoke_run):
    """Recorded at the encoder: each epoch feeds all 64 training images (the last batch of 16 kept), each as itself
    or its mirror, drawn anew each epoch; then the 64 test images once."""
    features = vision.module_features
    inputs: list[torch.Tensor] = []

    def recording(modules, x, pool):
        inputs.append(x.clone())
        return features(modules, x, pool)

    monkeypatch.setattr(vision, "module_features", recording)
    config = probe_smoke_run.config
    options = replace(config.probe, protocol="paper", epochs=2, batch_size=24, random_init=False, raw_pixels=False)
    results = probe_run(probe_smoke_run, replace(config, probe=options), device="cpu")
    assert (results["protocol"], results["probes"]) == ("paper", ["linear"])
    assert [row.keys() - {"module"} for row in results["trained"]] == [{"features", "linear"}] * 3
    assert [len(x) for x in inputs] == [24, 24, 16] * 2 + [32, 32]
    centre = torch.cat([x for x, _ in vision.eval_loader(config, "probe_train", CPU).epoch()])  # (64, 1, 28, 28)
    epochs = [torch.cat(inputs[:3]), torch.cat(inputs[3:6])]
    for x in epochs:
        as_is, mirrored = _found(x, centre), _found(x, centre.flip(3))
        assert (as_is | mirrored).all() and 0 < (~as_is).sum() < 64, "each image as itself or mirrored"
    assert not _found(epochs[1], epochs[0]).all(), "epoch 1 draws its flips anew"


def _found(x: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """(N,) whether each image of x equals one of pool."""
    return ((x[:, None] - pool[None]).flatten(2).abs().amax(2) < 1e-6).any(1)


def test_gim_probe_runs_the_paper_protocol(probe_smoke_run, tmp_path):
    run = shutil.copytree(probe_smoke_run.path, tmp_path / "run")
    assert main(["probe", str(run), "--probe.protocol", "paper", "--probe.epochs", "1", "--device", "cpu"]) == 0
    results = json.loads((run / "probe.json").read_text())
    assert results["protocol"] == "paper" and "paper's protocol" in results["features"]
    assert [row["module"] for row in results["random"]] == [1, 2, 3]
    assert results["baseline"]["name"] == "raw pixels" and results["baseline"]["features"] == 28 * 28


# -- the other local-learning objectives: CLAPP and the two-view ones ---------------------------------------------


def _with_objective(name: str, config=None, **options):
    config = config or PRESETS["smoke"]
    return replace(config, objective=replace(config.objective, name=name, **options))


@pytest.mark.parametrize(
    ("name", "cls"), [("clapp", CLAPP2d), ("simclr", SimCLR), ("barlow_twins", BarlowTwins), ("vicreg", VICReg)]
)
def test_each_objective_is_offered_by_name_and_built_for_every_module(name, cls):
    assert OBJECTIVES[name] is cls
    modules = TASK.build_modules(_with_objective(name), 1)
    assert [type(module.objective) for module in modules] == [cls] * 3


@pytest.mark.parametrize(
    ("name", "views"),
    [("infonce_2d", 1), ("clapp", 1), ("supervised", 1), ("simclr", 2), ("barlow_twins", 2), ("vicreg", 2)],
)
def test_a_two_view_objective_pretrains_on_two_views_of_each_image(name, views):
    config = _with_objective(name)
    loader, channels = TASK.pretrain_loader(config, torch.device("cpu"))
    images, labels = next(loader.epoch(0))
    B = config.data.batch_size
    assert images.shape == (views * B, channels, 28, 28) and labels.shape == (B,)
    assert isinstance(loader.transform, TwoViewTransform if views == 2 else ImageTransform)
    assert TASK.example_batch(config, 3, torch.device("cpu")).shape == (3 * views, 1, 28, 28)


def test_two_view_flips_follow_data_flip():
    config = _with_objective("simclr")
    config = replace(config, data=replace(config.data, flip=False))
    loader, _ = TASK.pretrain_loader(config, torch.device("cpu"))
    assert loader.transform.flip_probability == 0.0


def test_a_two_view_objective_is_validated_on_two_views_drawn_alike_every_epoch():
    config = _with_objective("vicreg")
    config = replace(config, train=replace(config.train, validation=0.25))
    loader = TASK.validation_loader(config, torch.device("cpu"))
    first, again = (next(loader.epoch(0))[0] for _ in range(2))
    assert first.shape[0] == 2 * config.data.batch_size and torch.equal(first, again)
    B = config.data.batch_size
    assert not torch.equal(first[:B], first[B:]), "two different views"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("temperature", 0.0, "objective.temperature: must be positive, got 0.0"),
        ("off_diagonal_weight", -1.0, "objective.off_diagonal_weight: must be >= 0, got -1.0"),
        ("variance_weight", -1.0, "objective.variance_weight: must be >= 0, got -1.0"),
        ("hidden_dim", 0, "objective.hidden_dim: must be positive, got 0"),
        ("projection_dim", 0, "objective.projection_dim: must be positive (or None: the objective's own), got 0"),
    ],
)
def test_a_bad_objective_option_is_a_one_line_error_naming_it(option, value, message):
    with pytest.raises(ValueError) as error:
        ObjectiveConfig(name="simclr", **{option: value})
    assert str(error.value) == message


@pytest.mark.parametrize(("projection_dim", "widths"), [(None, [128, 512, 512]), (16, [16, 16, 16])])
def test_projection_dim_none_gives_each_objective_its_own_width(projection_dim, widths):
    built = [
        TASK.build_modules(_with_objective(name, projection_dim=projection_dim, hidden_dim=8), 1)[0]
        for name in ("simclr", "barlow_twins", "vicreg")
    ]
    assert [module.objective.projector.mlp[-1].out_features for module in built] == widths
    assert all(module.objective.projector.mlp[0].out_features == 8 for module in built)


@pytest.mark.parametrize(("name", "refused"), [("infonce_2d", True), ("clapp", True), ("simclr", False)])
def test_prediction_steps_limit_the_grid_only_for_objectives_that_predict_rows(name, refused):
    smoke = PRESETS["smoke"]
    small = {"data": replace(smoke.data, crop=16), "objective": replace(smoke.objective, name=name)}  # a 3x3 grid
    if refused:
        with pytest.raises(ValueError, match="objective.prediction_steps: 2 steps after skipping 1 need more than"):
            replace(smoke, **small)
    else:
        assert replace(smoke, **small).model.grid(16) == 3
