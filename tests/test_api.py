"""The public API on a network of the user's own: a custom run folder, resumed to the very result of an
uninterrupted run; the same network trained module-parallel by 2 gloo processes; what it refuses; and that
every name it gathers exists."""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import replace
from functools import partial

import pytest
import torch
from conftest import finish, fork_ranks, snapshot
from torch import nn
from torch.utils.data import DataLoader, Dataset

from greedy_infomax import api as gim
from greedy_infomax.cli import main
from greedy_infomax.errors import GimError


def _modules() -> nn.ModuleList:
    torch.manual_seed(0)
    network = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 4, 3, stride=2, padding=1),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(4, 6, 3, stride=2, padding=1),
            relu2=nn.ReLU(),
        )
    )
    infonce = partial(gim.InfoNCE2d, prediction_steps=2, num_negatives=4)
    return gim.isolate(gim.split(network, after=["relu1"]), infonce, sample=torch.zeros(1, 1, 28, 28))


IMAGES = gim.read_fashion_mnist(None, "test").first(32)
"""32 Fashion-MNIST images: 4 shuffled batches of 8 per epoch."""


def _loader() -> gim.BatchLoader:
    transform = gim.ImageTransform.for_data(28, True, True, IMAGES.spec)
    return gim.BatchLoader(IMAGES, 8, transform, torch.device("cpu"), seed=0)


OPTIONS = gim.TrainConfig(lr=1e-2, epochs=2, device="cpu", checkpoint_every=3, log_every=2)


def test_a_custom_run_resumed_equals_the_uninterrupted_run(tmp_path):
    straight = snapshot(gim.train(_modules(), _loader(), gim.RunFolder.create(tmp_path, "straight"), OPTIONS))
    run = gim.RunFolder.create(tmp_path, "stopped")
    gim.train(_modules(), _loader(), run, replace(OPTIONS, max_steps=6))
    resumed = snapshot(gim.train(_modules(), _loader(), gim.RunFolder.open(run.path), OPTIONS, resume=True))
    assert all(torch.equal(resumed[name], straight[name]) for name in straight)
    assert [row["step"] for row in run.metrics()] == [2, 4, 6, 8]
    assert json.loads((run.path / "meta.json").read_text())["kind"] == "custom"


class Garments(Dataset):
    """The 32 images as a user writes a Dataset: float images in [0, 1], flipped at random in __getitem__ (with
    torch's global generator) when `flip`, and their labels."""

    def __init__(self, flip: bool) -> None:
        self.flip = flip

    def __len__(self) -> int:
        return len(IMAGES)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = torch.from_numpy(IMAGES.images[index].copy()).float() / 255  # (1, 28, 28)
        return (image.flip(-1) if self.flip and torch.rand(()) < 0.5 else image), int(IMAGES.labels[index])


def _seeded_loader() -> DataLoader:
    return DataLoader(
        Garments(flip=True), batch_size=8, shuffle=True, num_workers=2, generator=torch.Generator().manual_seed(0)
    )


@pytest.mark.parametrize("data", [Garments(flip=True), "dataloader"], ids=["dataset", "dataloader"])
def test_a_user_dataset_or_seeded_dataloader_resumed_mid_epoch_equals_the_uninterrupted_run(tmp_path, data):
    """Step 6 is batch 2 of epoch 1 (4 batches an epoch); the Dataset is read by 2 worker processes either way."""

    def fresh():
        return _seeded_loader() if data == "dataloader" else data

    straight = snapshot(
        gim.train(_modules(), fresh(), gim.RunFolder.create(tmp_path, "straight"), OPTIONS, batch_size=8)
    )
    run = gim.RunFolder.create(tmp_path, "stopped")
    gim.train(_modules(), fresh(), run, replace(OPTIONS, max_steps=6), batch_size=8)
    resumed = snapshot(gim.train(_modules(), fresh(), gim.RunFolder.open(run.path), OPTIONS, resume=True, batch_size=8))
    assert all(torch.equal(resumed[name], straight[name]) for name in straight)
    assert not all(torch.equal(tensor, snapshot(_modules())[name]) for name, tensor in straight.items())


def test_probing_through_a_user_dataset_or_dataloader_equals_probing_through_the_librarys_loader():
    """Garments' images are the BatchLoader's under a transform that only scales to [0, 1]."""
    modules = _modules()
    options = gim.ProbeConfig(epochs=3, knn_k=3, batch_size=16)
    through_datasets = gim.probe_modules(modules, Garments(flip=False), Garments(flip=False), options, 10)
    loaders = [DataLoader(Garments(flip=False), batch_size=5) for _ in range(2)]
    scaled = gim.ImageTransform(crop=28, flip=False, grayscale=True, mean=(0.0,), std=(1.0,))
    ours = [gim.BatchLoader(IMAGES, 16, scaled, torch.device("cpu")) for _ in range(2)]
    assert [row["module"] for row in through_datasets] == [1, 2]
    assert through_datasets == gim.probe_modules(modules, *loaders, options, 10)
    assert through_datasets == gim.probe_modules(modules, *ours, options, 10)
    features = gim.embed(modules, Garments(flip=False), module=2, batch_size=7)
    assert features["features"].shape == (32, 6) and features["labels"].tolist() == IMAGES.labels.tolist()


def _train_on_a_rank(parent) -> int:
    """What a user's script does on each rank under torchrun: rank 0 alone creates the run folder."""
    run = gim.RunFolder.create(parent, "parallel") if gim.is_first_rank() else None
    gim.train(_modules(), _loader(), run, OPTIONS)
    return 0


def test_a_custom_network_trained_module_parallel_equals_the_local_run(tmp_path, one_thread):
    """2 processes, one module each, on loopback: the same checkpoints and losses as one process, bit for bit."""
    local = gim.RunFolder.create(tmp_path, "local")
    straight = snapshot(gim.train(_modules(), _loader(), local, OPTIONS))
    ranks = fork_ranks(2, tmp_path, _train_on_a_rank, tmp_path)
    assert finish(ranks) == [0, 0], [rank.output for rank in ranks]
    run = gim.RunFolder.open(tmp_path / "parallel")
    parallel = _modules()
    assert run.load_checkpoint(parallel) == {"step": 8, "epoch": 2, "batch": 0, "steps_per_module": None}
    assert all(torch.equal(tensor, straight[name]) for name, tensor in parallel.state_dict().items())
    losses = [{key: value for key, value in row.items() if key.startswith("loss/")} for row in run.metrics()]
    assert losses == [{key: value for key, value in row.items() if key.startswith("loss/")} for row in local.metrics()]


def test_under_torchrun_rank_0_needs_the_run_folder(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(GimError, match="rank 0 writes the run folder"):
        gim.train(_modules(), _loader(), None, OPTIONS)


def test_a_custom_run_cannot_be_probed_from_the_command_line_and_says_why(tmp_path, capsys):
    run = gim.RunFolder.create(tmp_path, "custom")
    gim.train(_modules(), _loader(), run, replace(OPTIONS, max_steps=1))
    assert main(["probe", str(run.path)]) == 2
    assert "network built in Python" in capsys.readouterr().err
    with pytest.raises(GimError, match="already holds a run"):
        gim.RunFolder.create(tmp_path, "custom")


def test_training_a_module_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(GimError, match="train_module: must be at most 2, got 3"):
        gim.train(_modules(), _loader(), gim.RunFolder.create(tmp_path, "r"), gim.TrainConfig(train_module=3))


def test_every_name_of_the_api_exists():
    assert all(hasattr(gim, name) for name in gim.__all__)
