"""train.online_probe: a linear classifier per module learns beside pre-training, logs its accuracy per module, is
checkpointed and resumed with the run, and never changes the encoder."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import snapshot, write_stl10
from torch import nn

from greedy_infomax.engines import local
from greedy_infomax.errors import GimError
from greedy_infomax.evaluation.online_probe import OnlineProbes
from greedy_infomax.reporting.run_folder import RunFolder
from greedy_infomax.tasks import PRESETS, task_of
from greedy_infomax.workflows import pretrain

ACCURACIES = {f"online_accuracy/module{k}" for k in (1, 2, 3)}


def smoke(max_steps: int, **train_options):
    """The smoke preset on 48 labelled Fashion-MNIST images, 6 batches of 8 per epoch."""
    config = PRESETS["smoke"]
    return replace(
        config,
        data=replace(config.data, limit=48, batch_size=8),
        train=replace(config.train, epochs=3, max_steps=max_steps, checkpoint_every=4, log_every=2, **train_options),
    )


def test_the_probes_leave_the_encoder_exactly_as_training_without_them(tmp_path):
    config = smoke(8)
    without = snapshot(pretrain(config, RunFolder.create(tmp_path, "without", config)))
    probed_config = smoke(8, online_probe=True)
    probed = RunFolder.create(tmp_path, "probed", probed_config)
    with_probes = snapshot(pretrain(probed_config, probed))
    assert without.keys() == with_probes.keys()
    for name, tensor in without.items():
        assert torch.equal(tensor, with_probes[name]), name
    rows = probed.metrics()
    assert [row["step"] for row in rows] == [2, 4, 6, 8]
    for row in rows:
        assert ACCURACIES <= set(row), row
        assert all(0.0 <= row[name] <= 1.0 for name in ACCURACIES)


def test_a_resumed_run_continues_its_probes_where_the_checkpoint_left_them(tmp_path):
    straight = RunFolder.create(tmp_path, "straight", smoke(12, online_probe=True))
    pretrain(smoke(12, online_probe=True), straight)
    interrupted = RunFolder.create(tmp_path, "interrupted", smoke(8, online_probe=True))
    pretrain(smoke(8, online_probe=True), interrupted)
    pretrain(smoke(12, online_probe=True), interrupted, resume=True)
    logged = {row["step"]: row for row in interrupted.metrics()}
    for row in straight.metrics():
        if row["step"] > 8:
            assert {name: row[name] for name in ACCURACIES} == {name: logged[row["step"]][name] for name in ACCURACIES}


def test_the_probes_learn_a_separable_problem():
    """Module outputs whose pooled mean says the class: the accuracy of the predictions made before each update
    climbs from chance to nearly all right."""
    torch.manual_seed(0)
    modules = nn.ModuleList([local_module() for _ in range(2)])
    probes = OnlineProbes(num_classes=10, lr=0.05)
    windows = []
    for step in range(60):
        labels = torch.randint(0, 10, (32,))
        features = nn.functional.one_hot(labels, 10).float()[:, :, None] + 0.3 * torch.randn(32, 10, 5)
        probes.observe(modules, range(2), [features, features], probes.batch(step, labels))
        if step in (0, 49, 59):  # the first batch alone; the last ten
            windows.append(probes.values())
    first, _, last = windows
    assert all(value < 0.5 for value in first.values()), first
    assert all(value > 0.95 for value in last.values()), last


def local_module() -> nn.Module:
    module = nn.Module()
    module.readout = nn.Identity()
    return module


def test_the_probes_read_the_first_view_and_the_first_of_several_labels():
    probes = OnlineProbes(num_classes=3)
    modules = nn.ModuleList([local_module()])
    two_views = torch.randn(2 * 6, 5, 4)
    probes.observe(modules, range(1), [two_views], probes.batch(0, (torch.arange(6) % 3, torch.zeros(6, 10))))
    assert probes.classifiers[0].weight.shape == (3, 5)
    assert probes.values()["online_accuracy/module1"].shape == ()


def test_the_flag_without_probes_and_unlabelled_batches_are_refused(tmp_path):
    config = smoke(2, online_probe=True)
    modules = task_of(config).prepare_modules(config, 1, torch.device("cpu"))
    loader, _ = task_of(config).pretrain_loader(config, torch.device("cpu"))
    with pytest.raises(GimError, match="train.online_probe: pass the probes"):
        local.fit(modules, loader, RunFolder.create(tmp_path, "no-probes", config), config.train)
    with pytest.raises(GimError, match="carry no labels"):
        OnlineProbes(num_classes=10).batch(0, None)


def test_stl10s_unlabelled_stream_is_probed_on_its_labelled_split_beside_it(tmp_path: Path):
    """The unlabelled images train the encoder, the labelled `train` split the probes: the encoder ends as without
    probes, and a resume continues the labelled stream where it was."""
    write_stl10(tmp_path)

    def stl10(max_steps: int, **train_options):
        config = smoke(max_steps, **train_options)
        data = replace(config.data, dataset="stl10", root=str(tmp_path), limit=None, batch_size=4)
        return replace(config, data=data, train=replace(config.train, epochs=4))

    assert task_of(stl10(1, online_probe=True)).online_probes(stl10(1), torch.device("cpu")).labelled is not None
    without = snapshot(pretrain(stl10(10), RunFolder.create(tmp_path, "without", stl10(10))))
    straight = RunFolder.create(tmp_path, "straight", stl10(10, online_probe=True))
    assert all(
        torch.equal(tensor, without[name])
        for name, tensor in snapshot(pretrain(stl10(10, online_probe=True), straight)).items()
    )
    resumed = RunFolder.create(tmp_path, "resumed", stl10(6, online_probe=True))
    pretrain(stl10(6, online_probe=True), resumed)  # stops at step 6, mid-way through the labelled split's epoch 2
    pretrain(stl10(10, online_probe=True), resumed, resume=True)
    logged = {row["step"]: row for row in resumed.metrics()}
    for row in straight.metrics():
        assert ACCURACIES <= set(row)
        if row["step"] > 6:
            assert {name: row[name] for name in ACCURACIES} == {name: logged[row["step"]][name] for name in ACCURACIES}


def test_a_torchrun_launch_with_the_flag_but_no_probes_is_refused_before_any_process_joins(tmp_path):
    from greedy_infomax.engines import module_parallel

    config = smoke(2, online_probe=True)
    modules = task_of(config).prepare_modules(config, 1, torch.device("cpu"))
    loader, _ = task_of(config).pretrain_loader(config, torch.device("cpu"))
    run = RunFolder.create(tmp_path, "torchrun", config)
    with pytest.raises(GimError, match="train.online_probe: pass the probes"):
        module_parallel.train(modules, loader, run, config.train)
