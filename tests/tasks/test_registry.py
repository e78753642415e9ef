"""A new task and a new objective are one file each plus one registry line: the toy task (toy_task.py) and the toy
objective (toy_objective.py) train, probe and embed through the library's own functions, and a run folder of the
toy task reloads its config from disk."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from tasks.toy_objective import NextPosition

from greedy_infomax import workflows
from greedy_infomax.config import CONFIG_TYPES
from greedy_infomax.reporting.run_folder import RunFolder
from greedy_infomax.tasks import PRESETS, TASKS, preset, register, vision


@pytest.fixture
def toy_task():
    from tasks import toy_task

    task = register(toy_task.TASK)
    yield task
    del TASKS[task.name], CONFIG_TYPES[task.name]


def test_a_task_from_one_file_pretrains_probes_and_embeds(toy_task, tmp_path):
    assert "toy-smoke" in PRESETS
    run = workflows.pretrain_run(preset("toy-smoke"), tmp_path, "toy")
    assert RunFolder.open(run.path).config == preset("toy-smoke")  # config.yaml names the task "toy"
    results = workflows.probe_run(run, device="cpu")
    assert results["method"] == "GIM (2 modules)"
    trained = [row["linear"] for row in results["trained"]]
    assert len(trained) == 2 and max(trained) > 1 / 3 + 0.2  # above the chance of 3 classes
    arrays = workflows.embed_run(run, 2, "probe_test", device="cpu")
    assert arrays["features"].shape == (96, 8) and np.isfinite(arrays["features"]).all()
    assert sorted(np.unique(arrays["labels"])) == [0, 1, 2]
    assert workflows.load_extractor(run.path, 1)(torch.zeros(4, 1, 32)).shape == (4, 8)


def test_an_objective_from_one_file_trains_a_vision_run(monkeypatch, tmp_path):
    monkeypatch.setitem(vision.OBJECTIVES, "next_position", NextPosition)  # the one registry line
    config = preset("smoke")
    config = replace(
        config, objective=replace(config.objective, name="next_position"), train=replace(config.train, max_steps=6)
    )
    run = workflows.pretrain_run(config, tmp_path, "own-objective")
    modules, _ = TASKS["vision"].load_trained(run, config, 1, torch.device("cpu"))
    assert all(isinstance(module.objective, NextPosition) for module in modules)
    losses = [row for row in run.metrics() if "loss/module1" in row]
    assert losses and all(np.isfinite(row["loss/module3"]) for row in losses)
    assert len(workflows.probe_run(run, device="cpu")["trained"]) == 3


def test_an_unknown_objective_or_clashing_preset_is_refused():
    with pytest.raises(ValueError, match="objective.name: must be one of infonce_2d, supervised"):
        replace(preset("smoke").objective, name="nope")

    class Clash(type(TASKS["vision"])):
        name = "clash"

    with pytest.raises(ValueError, match="preset 'fashion-mnist' is another task's"):
        register(Clash())
    assert "clash" not in TASKS
