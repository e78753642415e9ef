"""The local engine on the smoke preset: a resumed run is the uninterrupted run; train_module trains one module."""
from __future__ import annotations

import shutil
from dataclasses import replace

import pytest
import torch

from conftest import snapshot
from greedy_infomax.config import PRESETS, RunConfig
from greedy_infomax.engines.local import pretrain, prepare_modules
from greedy_infomax.reporting.run_folder import RunFolder


def smoke(device: str = "cpu", **train_options) -> RunConfig:
    """The smoke preset on 48 images: 6 batches of 8 per epoch, so step 8 is in the middle of epoch 2."""
    config = PRESETS["smoke"]
    return replace(config, data=replace(config.data, limit=48, batch_size=8),
                   train=replace(config.train, epochs=3, device=device, checkpoint_every=4, **train_options))


def _losses(run: RunFolder) -> dict[int, dict[str, float]]:
    return {row["step"]: {k: v for k, v in row.items() if k.startswith("loss/")} for row in run.metrics()}


def test_stopped_and_resumed_run_equals_uninterrupted_run(tmp_path):
    config = smoke(max_steps=12)
    straight = RunFolder.create(tmp_path, "straight", config)
    straight_modules = pretrain(config, straight)

    interrupted = RunFolder.create(tmp_path, "interrupted", smoke(max_steps=8))
    pretrain(smoke(max_steps=8), interrupted)
    assert interrupted.latest_checkpoint().name == "step-00000008"
    resumed_modules = pretrain(config, interrupted, resume=True)

    assert interrupted.latest_checkpoint().name == "step-00000012"
    straight_state, resumed_state = straight_modules.state_dict(), resumed_modules.state_dict()
    for name, tensor in straight_state.items():
        assert torch.equal(tensor, resumed_state[name]), name
    straight_losses, resumed_losses = _losses(straight), _losses(interrupted)
    assert sorted(resumed_losses) == [2, 4, 6, 8, 10, 12], "each step logged once, none repeated after resume"
    for step in (10, 12):
        assert set(resumed_losses[step]) == {"loss/module1", "loss/module2", "loss/module3"}
        assert resumed_losses[step] == straight_losses[step]


def test_train_module_two_trains_only_module_two(tmp_path):
    config = smoke(max_steps=3, train_module=2)
    initial = snapshot(prepare_modules(config, 1, torch.device("cpu")))
    run = RunFolder.create(tmp_path, "module2", config)
    trained = snapshot(pretrain(config, run))
    for name, tensor in trained.items():
        if name.startswith("1."):
            assert not torch.equal(tensor, initial[name]), f"{name} did not learn"
        else:
            assert torch.equal(tensor, initial[name]), f"{name} changed"
    assert {key for row in run.metrics() for key in row if key.startswith("loss/")} == {"loss/module2"}
    saved = [torch.load(run.latest_checkpoint() / f"module-{k}.pt", weights_only=True) for k in (1, 2, 3)]
    assert [state["optimizer"] is not None for state in saved] == [False, True, False]


def test_resume_after_losing_the_newest_checkpoint_logs_each_step_once(tmp_path):
    """Killed after logging step 6 but before its checkpoint: the resumed run replays 5-6 from step 4, and
    metrics.jsonl must still hold one row per step (as an uninterrupted run's would)."""
    config = smoke(max_steps=6)
    run = RunFolder.create(tmp_path, "killed", config)
    pretrain(config, run)
    shutil.rmtree(run.latest_checkpoint())
    assert run.latest_checkpoint().name == "step-00000004"
    pretrain(config, run, resume=True)
    assert [row["step"] for row in run.metrics()] == [2, 4, 6]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resume_on_cuda_draws_the_same_negatives(tmp_path):
    """Negatives are drawn on the device: a resumed CUDA run must continue the CUDA generator too.

    cuDNN may reorder sums, so losses are compared to 1e-4; other negatives change them by about 1e-2.
    """
    config = smoke("cuda", max_steps=12)
    straight = RunFolder.create(tmp_path, "straight", config)
    pretrain(config, straight)
    interrupted = RunFolder.create(tmp_path, "interrupted", smoke("cuda", max_steps=8))
    pretrain(smoke("cuda", max_steps=8), interrupted)
    pretrain(config, interrupted, resume=True)
    straight_losses, resumed_losses = _losses(straight), _losses(interrupted)
    for step in (10, 12):
        for key, value in straight_losses[step].items():
            assert resumed_losses[step][key] == pytest.approx(value, abs=1e-4), (step, key)
