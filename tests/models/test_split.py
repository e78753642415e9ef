"""split() and isolate() on small networks of the kind a user brings: cut points, sizes inferred from a sample,
one objective per module, and the refusals that keep modules isolated."""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import pytest
import torch
from torch import nn

from greedy_infomax.config import TrainConfig
from greedy_infomax.models.split import isolate, split
from greedy_infomax.objectives import InfoNCE1d, InfoNCE2d, Supervised
from greedy_infomax.placement import configure


def _network() -> nn.Sequential:
    """A small CNN with named layers and BatchNorm, the kind of network a user brings."""
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 4, 3, padding=1),
            norm1=nn.BatchNorm2d(4),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(4, 6, 3, stride=2, padding=1),
            relu2=nn.ReLU(),
            conv3=nn.Conv2d(6, 5, 3, padding=1),
        )
    )


def test_split_cuts_after_named_children_and_renumbers_the_blocks():
    network = _network()
    blocks = split(network, after=["relu1", "relu2"])
    assert [len(block) for block in blocks] == [3, 2, 1]
    assert blocks[1][0] is network.conv2 and blocks[2][0] is network.conv3, "the user's layers, not copies"
    assert [name for name, _ in blocks[1].named_children()] == ["0", "1"]
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(blocks[2](blocks[1](blocks[0](x))), network(x))


def test_cutting_after_the_last_child_leaves_an_identity_block():
    blocks = split(nn.Sequential(nn.ReLU(), nn.Tanh()), after=["1"])
    assert len(blocks) == 2 and len(blocks[1]) == 0


@pytest.mark.parametrize(
    "after, message",
    [(["relu9"], "conv1, norm1, relu1"), (["relu2", "relu1"], "order"), (["relu1", "relu1"], "distinct")],
)
def test_bad_cut_points_are_refused(after, message):
    with pytest.raises(ValueError, match=message):
        split(_network(), after=after)


def test_isolate_sizes_each_objective_from_the_sample_without_touching_batch_statistics():
    network = _network()
    running_mean = network.norm1.running_mean.clone()
    objectives = [
        partial(InfoNCE2d, prediction_steps=1, num_negatives=2),
        partial(Supervised, num_classes=3),
        partial(InfoNCE2d, prediction_steps=1, num_negatives=2),
    ]
    modules = isolate(split(network, after=["relu1", "relu2"]), objectives, sample=torch.zeros(1, 1, 8, 8))
    assert [module.objective.predictors.in_channels for module in modules[::2]] == [4, 5]
    assert modules[1].objective.classifier.in_features == 6
    assert torch.equal(network.norm1.running_mean, running_mean) and network.norm1.num_batches_tracked == 0
    assert all(module.training for module in modules.modules())


def test_the_autoregressor_ends_the_last_module_and_sizes_its_context():
    convs = nn.Sequential(nn.Conv1d(1, 4, 4, stride=2), nn.ReLU(), nn.Conv1d(4, 6, 3))
    gru = nn.Sequential(nn.Conv1d(6, 3, 1))  # any (B, C, T) -> (B, C', T) context network
    modules = isolate(
        split(convs, after=["1"]), partial(InfoNCE1d, prediction_steps=2), torch.zeros(1, 1, 40), autoregressor=gru
    )
    assert modules[0].autoregressor is None and modules[1].autoregressor is gru
    assert modules[1].objective.predictors.in_features == 3, "predicts from the context (Cc = 3)"
    assert modules[1].objective.predictors.out_features == 2 * 6, "the block's output (C = 6), K = 2 steps ahead"
    h, loss = modules[1].loss(torch.randn(2, 4, 19))
    assert h.shape == (2, 3, 17) and torch.isfinite(loss)


def test_one_objective_instance_cannot_serve_two_modules():
    blocks = split(_network(), after=["relu1"])
    with pytest.raises(ValueError, match="share its parameters"):
        isolate(blocks, InfoNCE2d(4), torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="3 objectives for 2 blocks"):
        isolate(blocks, [InfoNCE2d] * 3, torch.zeros(1, 1, 8, 8))


def test_a_sample_the_network_cannot_take_names_the_module_and_the_shape():
    with pytest.raises(ValueError, match=r"module 1 fails on its input of shape \(1, 3, 8, 8\)"):
        isolate(split(_network(), after=["relu1"]), InfoNCE2d, torch.zeros(1, 3, 8, 8))


def test_overlap_borrows_the_next_blocks_first_stages_and_sizes_the_objective_after_them():
    """Module 1 scores conv2's output (6 channels) rather than its own block's (4); module 2 lends conv2 and
    keeps it; the last module borrows nothing."""
    blocks = split(_network(), after=["relu1", "relu2"])
    modules = isolate(blocks, partial(InfoNCE2d, prediction_steps=1, skip_steps=0), torch.zeros(1, 1, 8, 8), overlap=1)
    assert modules[0].lookahead == (blocks[1][0],) and modules[1].lent == (blocks[1][0],)
    assert modules[0].objective.predictors.in_channels == 6
    assert modules[2].lookahead == () and modules[1].lookahead == (blocks[2][0],)
    assert not any(name.startswith("0.lookahead") for name in modules.state_dict())


def test_overlap_refuses_a_next_block_with_fewer_stages_than_it_lends():
    blocks = split(_network(), after=["relu1", "relu2"])  # block 3 holds one stage
    with pytest.raises(ValueError, match="overlap 2: block 3 must be an nn.Sequential of at least 2 stages"):
        isolate(blocks, partial(InfoNCE2d, prediction_steps=1, skip_steps=0), torch.zeros(1, 1, 8, 8), overlap=2)


@pytest.mark.parametrize("options", [{"curriculum": "sequential"}, {"train_module": 2}])
def test_overlapping_modules_built_in_python_refuse_training_that_leaves_a_lender_idle(options):
    """A config refuses these before building; modules from isolate(overlap=1) meet them only when placed."""
    blocks = split(_network(), after=["relu1", "relu2"])
    modules = isolate(blocks, partial(InfoNCE2d, prediction_steps=1, skip_steps=0), torch.zeros(1, 1, 8, 8), overlap=1)
    with pytest.raises(ValueError, match=r"isolate\(overlap=N\): the next module takes the step"):
        configure(modules, TrainConfig(**options), torch.device("cpu"))
    configure(modules, TrainConfig(), torch.device("cpu"))  # every module on every batch: accepted
