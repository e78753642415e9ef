"""A run whose weights blow up stops before it saves them, and the checkpoint it names resumes normally."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import snapshot

from greedy_infomax.engines.divergence import GROWTH_LIMIT, WeightWatch, weight_sizes
from greedy_infomax.errors import GimError
from greedy_infomax.reporting.run_folder import RunFolder
from greedy_infomax.tasks import PRESETS, prepare_modules
from greedy_infomax.tasks.vision import VisionRunConfig
from greedy_infomax.workflows import pretrain

CPU = torch.device("cpu")


def smoke(**train_options) -> VisionRunConfig:
    """The smoke preset on 48 images: 6 batches of 8 per epoch, checkpoints every 4 steps."""
    config = PRESETS["smoke"]
    return replace(
        config,
        data=replace(config.data, limit=48, batch_size=8),
        train=replace(config.train, epochs=2, device="cpu", checkpoint_every=4, **train_options),
    )


def test_an_absurd_learning_rate_stops_with_the_starting_weights_saved_and_resumes_like_a_fresh_run(tmp_path):
    """Adam at lr 1e10 blows every weight up in its first step: the weights before it are all there is to keep."""
    config = smoke(max_steps=8, lr=1e10)
    run = RunFolder.create(tmp_path, "absurd", config)
    with pytest.raises(
        GimError,
        match=r"module 1 diverged by step \d: the root-mean-square of its weights went from "
        r"\S+ to \S+e\+\d\d, so they were not saved; the newest checkpoint, "
        r"\S+step-00000000, is from before",
    ):
        pretrain(config, run)
    assert [folder.name for folder in run.checkpoints.iterdir()] == ["step-00000000"]
    sane = smoke(max_steps=8, lr=2e-4)
    resumed = snapshot(pretrain(sane, RunFolder.open(run.path), resume=True))
    fresh = snapshot(pretrain(sane, RunFolder.create(tmp_path, "fresh", sane)))
    for name, tensor in fresh.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0, msg=name)


def test_a_blow_up_after_a_checkpoint_leaves_that_checkpoint_as_it_was(tmp_path):
    run = RunFolder.create(tmp_path, "r", smoke(max_steps=4))
    pretrain(smoke(max_steps=4), run)
    saved = {path.name: path.read_bytes() for path in (run.checkpoints / "step-00000004").iterdir()}
    with pytest.raises(GimError, match=r"diverged by step \d+: .* the newest checkpoint, \S+step-00000004, is from"):
        pretrain(smoke(max_steps=12, lr=1e10), RunFolder.open(run.path), resume=True)
    assert [folder.name for folder in run.checkpoints.iterdir()] == ["step-00000004"]
    assert {path.name: path.read_bytes() for path in (run.checkpoints / "step-00000004").iterdir()} == saved


@pytest.mark.parametrize(
    ("scale", "ruined"),
    [(GROWTH_LIMIT * 0.99, False), (GROWTH_LIMIT * 1.01, True), (float("nan"), True), (float("inf"), True)],
)
def test_weights_count_as_ruined_past_the_growth_limit_or_not_finite(tmp_path, tiny_config, scale, ruined):
    config = tiny_config(train_module=2)  # only module 2 has an optimiser: it alone is watched
    modules = prepare_modules(config, 1, CPU)
    watch = WeightWatch(RunFolder.create(tmp_path, "r", config), modules, {"step": 0})
    assert [size is None for size in weight_sizes(modules)] == [True, False, True]
    with torch.no_grad():
        for module in (modules[0], modules[1]):
            for parameter in module.parameters():
                parameter.mul_(scale)
    found = watch.ruined(modules)
    assert (found is not None) == ruined and (found is None or found[0] == 2)


def test_weights_are_checked_before_a_validation_row_is_logged(tmp_path):
    """An epoch's validation losses are not logged from weights that blew up: the check runs at each epoch's end
    too, not only at the logs and checkpoints (here none falls before the end of the run; non-finite losses are
    skipped, so that they stop nothing earlier)."""
    config = smoke(max_steps=12, lr=1e10, validation=0.25, log_every=100, on_nonfinite="skip")
    config = replace(config, train=replace(config.train, checkpoint_every=100))  # 36 images: 4 steps per epoch
    run = RunFolder.create(tmp_path, "r", config)
    with pytest.raises(GimError, match=r"module 1 diverged by step 4: .*/step-00000000, is from before"):
        pretrain(config, run)
    assert run.metrics() == []
