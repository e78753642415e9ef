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
from torch import nn

from conftest import finish, fork_ranks, snapshot
from greedy_infomax import api as gim
from greedy_infomax.cli import main
from greedy_infomax.errors import GimError


def _modules() -> nn.ModuleList:
    torch.manual_seed(0)
    network = nn.Sequential(OrderedDict(conv1=nn.Conv2d(1, 4, 3, stride=2, padding=1), relu1=nn.ReLU(),
                                        conv2=nn.Conv2d(4, 6, 3, stride=2, padding=1), relu2=nn.ReLU()))
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
