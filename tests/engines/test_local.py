"""The local engine on the smoke preset: a resumed run is the uninterrupted run; train_module trains one module;
what each step logs (losses, and the InfoNCE accuracy beside them)."""

from __future__ import annotations

import shutil
import warnings
from dataclasses import replace
from functools import partial

import numpy as np
import pytest
import torch
from conftest import DEVICES, TensorBatches, snapshot
from torch import nn

from greedy_infomax import placement
from greedy_infomax.config import TrainConfig
from greedy_infomax.engines import local
from greedy_infomax.engines.local import train_step
from greedy_infomax.errors import GimError
from greedy_infomax.isolation import IsolatedModule
from greedy_infomax.objectives import InfoNCE1d
from greedy_infomax.placement import autocast_dtype, native_bf16
from greedy_infomax.reporting.run_folder import RunFolder
from greedy_infomax.tasks import PRESETS, prepare_modules
from greedy_infomax.tasks.vision import VisionRunConfig as RunConfig
from greedy_infomax.workflows import pretrain


def smoke(device: str = "cpu", **train_options) -> RunConfig:
    """The smoke preset on 48 images: 6 batches of 8 per epoch, so step 8 is in the middle of epoch 2."""
    config = PRESETS["smoke"]
    return replace(
        config,
        data=replace(config.data, limit=48, batch_size=8),
        train=replace(config.train, epochs=3, device=device, checkpoint_every=4, **train_options),
    )


def _with_overlap(config: RunConfig, overlap: int) -> RunConfig:
    return replace(config, model=replace(config.model, overlap=overlap))


def _losses(run: RunFolder) -> dict[int, dict[str, float]]:
    return {row["step"]: {k: v for k, v in row.items() if k.startswith("loss/")} for row in run.metrics()}


@pytest.mark.parametrize("overlap", [0, 1])
def test_stopped_and_resumed_run_equals_uninterrupted_run(tmp_path, overlap):
    """Also with overlapping modules, whose borrowed stages' gradients must not survive into the resumed run."""
    overlapping = partial(_with_overlap, overlap=overlap)
    config = overlapping(smoke(max_steps=12))
    straight = RunFolder.create(tmp_path, "straight", config)
    straight_modules = pretrain(config, straight)

    interrupted = RunFolder.create(tmp_path, "interrupted", overlapping(smoke(max_steps=8)))
    pretrain(overlapping(smoke(max_steps=8)), interrupted)
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


def test_a_resume_takes_the_new_learning_rate_and_keeps_the_moments(tmp_path):
    run = RunFolder.create(tmp_path, "lr", smoke(max_steps=4))
    pretrain(smoke(max_steps=4), run)
    resumed = pretrain(smoke(max_steps=8, lr=1e-5), run, resume=True)
    for module in resumed:
        assert [group["lr"] for group in module.optimizer.param_groups] == [1e-5]
        assert all(int(state["step"]) == 8 for state in module.optimizer.state.values())


def test_a_resume_with_larger_batches_starts_the_next_epoch(tmp_path):
    """Saved at batch 4 of 6 batches of 8; with batches of 16 an epoch has 3, so batch 4 is past its end."""
    run = RunFolder.create(tmp_path, "bigger", smoke(max_steps=4))
    pretrain(smoke(max_steps=4), run)
    bigger = smoke(max_steps=6)
    bigger = replace(bigger, data=replace(bigger.data, batch_size=16))
    pretrain(bigger, run, resume=True)
    assert run.latest_checkpoint().name == "step-00000006"
    saved = torch.load(run.latest_checkpoint() / "progress.pt")
    assert saved == {"step": 6, "epoch": 1, "batch": 2, "steps_per_module": None}


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


def _poison(monkeypatch, module: int, at_steps: set[int], num_modules: int = 3) -> None:
    """Module `module` returns a NaN loss on the given steps (1-based; every module steps once per batch)."""
    from greedy_infomax.isolation import IsolatedModule

    original, calls = IsolatedModule.loss, [0]

    def loss(self, x, labels=None):
        h, value = original(self, x, labels)
        calls[0] += 1
        step, position = divmod(calls[0] - 1, num_modules)
        return h, value * float("nan") if position + 1 == module and step + 1 in at_steps else value

    monkeypatch.setattr(IsolatedModule, "loss", loss)


@pytest.mark.parametrize("device", DEVICES)
def test_nan_loss_stops_with_module_and_step_after_saving_finite_weights(tmp_path, monkeypatch, device):
    from greedy_infomax.errors import GimError

    _poison(monkeypatch, module=2, at_steps={6})
    config = smoke(device, max_steps=12, log_every=100)  # no log at step 6: the divergence is seen one step late
    run = RunFolder.create(tmp_path, "nan", config)
    with pytest.raises(GimError, match=r"module 2 diverged at step 6"):
        pretrain(config, run)
    assert run.latest_checkpoint().name == "step-00000006"
    # The host reads a step's outcome one step late; the held step 7 must not have moved anything either.
    # Module 1 stepped on batch 6 before module 2 diverged; modules 2 and 3 are as after step 5. The checkpoint
    # counts step 6 as done, so a resume does not feed batch 6 to module 1 again.
    monkeypatch.undo()
    clean = {
        steps: snapshot(
            pretrain(
                smoke(device, max_steps=steps),
                RunFolder.create(tmp_path, f"clean{steps}", smoke(device, max_steps=steps)),
            )
        )
        for steps in (5, 6)
    }
    for k in (1, 2, 3):
        state = torch.load(run.latest_checkpoint() / f"module-{k}.pt", weights_only=True)["state_dict"]
        expected = clean[6 if k == 1 else 5]
        tolerance = 0 if device == "cpu" else 1e-6  # GPU kernels may differ in the last bits; an Adam step is 1e-3
        for name, tensor in state.items():
            torch.testing.assert_close(tensor, expected[f"{k - 1}.{name}"], rtol=0, atol=tolerance)


def test_resuming_after_divergence_equals_skipping_the_bad_batch(tmp_path, monkeypatch):
    """The checkpoint written on divergence counts the bad step as done and skipped from the culprit on, so a
    resume neither replays its batch to the earlier modules nor loses a later one."""
    from greedy_infomax.errors import GimError

    config = smoke(max_steps=12, log_every=100)
    with monkeypatch.context() as patch:
        _poison(patch, module=2, at_steps={6})
        skipped = snapshot(
            pretrain(
                replace(config, train=replace(config.train, on_nonfinite="skip")),
                RunFolder.create(tmp_path, "skip", config),
            )
        )
    with monkeypatch.context() as patch:
        _poison(patch, module=2, at_steps={6})
        run = RunFolder.create(tmp_path, "stop", config)
        with pytest.raises(GimError, match="diverged at step 6"):
            pretrain(config, run)
    resumed = snapshot(pretrain(config, RunFolder.open(run.path), resume=True))
    assert resumed.keys() == skipped.keys()
    for name, tensor in resumed.items():
        torch.testing.assert_close(tensor, skipped[name], rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("log_every", [1, 5])
def test_nan_loss_skips_the_batch_when_configured(tmp_path, monkeypatch, capsys, log_every, device):
    _poison(monkeypatch, module=3, at_steps={3, 7})
    config = smoke(device, max_steps=10, on_nonfinite="skip", log_every=log_every)
    run = RunFolder.create(tmp_path, "skip", config)
    modules = pretrain(config, run)
    assert "note: 2 of 10 batches were skipped for a non-finite loss" in capsys.readouterr().err
    assert run.latest_checkpoint().name == "step-00000010"
    skipped = {row["step"]: row["skipped_batches"] for row in run.metrics()}
    assert (skipped[5], skipped[10]) == (1, 2)
    if log_every == 1:
        assert "loss/module3" not in run.metrics()[2], "the poisoned step logs no loss"
    assert all(torch.isfinite(p).all() for p in modules.parameters())


def test_a_run_that_skips_batch_after_batch_stops_instead_of_running_on(tmp_path, monkeypatch):
    """Skips in a row up to the limit stop the run; the same number of skips with a good step between them does not."""
    from greedy_infomax.errors import GimError

    monkeypatch.setattr(local, "SKIP_LIMIT", 3)
    config = smoke(max_steps=12, on_nonfinite="skip", log_every=100)
    with monkeypatch.context() as patch:
        _poison(patch, module=1, at_steps={2, 3, 5, 6})
        pretrain(config, RunFolder.create(tmp_path, "apart", config))
    with monkeypatch.context() as patch:
        _poison(patch, module=1, at_steps={2, 3, 4})
        with pytest.raises(GimError, match="3 batches in a row were skipped for a non-finite loss"):
            pretrain(config, RunFolder.create(tmp_path, "in-a-row", config))


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_signal_writes_a_checkpoint_and_the_run_resumes_to_the_same_result(tmp_path, monkeypatch, signal_name):
    import os
    import signal

    import greedy_infomax.engines.local as local
    from greedy_infomax.errors import TrainingStopped

    config = smoke(max_steps=12)
    straight = snapshot(pretrain(config, RunFolder.create(tmp_path, "straight", config)))

    original_step = local.train_step
    calls = {"n": 0}

    def signalling(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            os.kill(os.getpid(), getattr(signal, signal_name))
        return original_step(*args, **kwargs)

    monkeypatch.setattr(local, "train_step", signalling)
    run = RunFolder.create(tmp_path, "signalled", config)
    with pytest.raises(TrainingStopped, match=f"stopped by {signal_name} after step 6") as stopped:
        pretrain(config, run)
    assert stopped.value.signal_number == getattr(signal, signal_name)
    assert run.latest_checkpoint().name == "step-00000006"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "handlers restored"
    monkeypatch.setattr(local, "train_step", original_step)
    resumed = snapshot(pretrain(config, run, resume=True))
    assert all(torch.equal(resumed[name], straight[name]) for name in straight)


def test_resume_before_the_first_checkpoint_starts_over_without_stale_metrics(tmp_path):
    config = smoke(max_steps=4)
    straight = snapshot(pretrain(config, RunFolder.create(tmp_path, "straight", config)))
    run = RunFolder.create(tmp_path, "killed-early", config)
    run.log(2, {"loss/module1": 9.0})  # logged by a run killed before it wrote any checkpoint
    resumed = snapshot(pretrain(config, run, resume=True))
    assert [row["step"] for row in run.metrics()] == [2, 4]
    assert run.metrics()[0]["loss/module1"] != 9.0
    assert all(torch.equal(resumed[name], straight[name]) for name in straight)


def test_two_runs_with_one_seed_are_bit_identical_at_a_large_batch():
    """At batch 512 on 2 threads the default kernels accumulate in a varying order; `deterministic` fixes it."""
    from greedy_infomax.engines.local import train_step
    from greedy_infomax.placement import trained_indices

    config = PRESETS["smoke"]
    config = replace(config, data=replace(config.data, batch_size=512, limit=None))
    images = torch.randn(512, 1, 28, 28, generator=torch.Generator().manual_seed(0))

    def train() -> dict[str, torch.Tensor]:
        modules = prepare_modules(config, 1, torch.device("cpu"))
        for step in range(3):
            train_step(
                modules,
                images,
                trained_indices(config.train, config.model.num_modules),
                draws=(config.train.seed, step),
            )
        return snapshot(modules)

    first, second = train(), train()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_deterministic_mode_leaves_new_buffers_unfilled():
    """PyTorch's deterministic mode NaN-fills every new buffer by default, a pass over memory no step needs."""
    prepare_modules(PRESETS["smoke"], 1, torch.device("cpu"))
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.utils.deterministic.fill_uninitialized_memory


def test_sequential_curriculum_trains_each_module_alone_in_turn(tmp_path):
    """Phase k (epochs x batches steps) trains module k on the frozen outputs of the modules before it; a run
    resumed in the middle of phase 2 ends where the uninterrupted one does."""
    config = smoke(curriculum="sequential")
    config = replace(config, train=replace(config.train, epochs=1))  # 6 steps per phase, 18 in all
    initial = snapshot(prepare_modules(config, 1, torch.device("cpu")))
    straight = RunFolder.create(tmp_path, "straight", config)
    phase_one = snapshot(
        pretrain(
            replace(config, train=replace(config.train, max_steps=6)), RunFolder.create(tmp_path, "phase1", config)
        )
    )
    for name, tensor in phase_one.items():
        assert torch.equal(tensor, initial[name]) != name.startswith("0."), name
    final = snapshot(pretrain(config, straight))
    assert straight.latest_checkpoint().name == "step-00000018"
    for name, tensor in final.items():
        assert not torch.equal(tensor, initial[name]) or "objective" in name, f"{name} never learned"
    logged = {row["step"]: {k for k in row if k.startswith("loss/")} for row in straight.metrics()}
    assert logged[6] == {"loss/module1"} and logged[8] == {"loss/module2"} and logged[18] == {"loss/module3"}

    interrupted = RunFolder.create(tmp_path, "interrupted", config)
    pretrain(replace(config, train=replace(config.train, max_steps=8)), interrupted)
    resumed = snapshot(pretrain(config, interrupted, resume=True))
    assert all(torch.equal(tensor, resumed[name]) for name, tensor in final.items())


@pytest.mark.parametrize(("trained", "allowed"), [(18, False), (3, True)], ids=["module-3-done", "in-module-1"])
def test_a_sequential_run_refuses_a_resume_that_would_re_cut_the_phases_of_trained_modules(tmp_path, trained, allowed):
    """With 2 epochs, step 13 of a finished 1-epoch run would fall in module 2's phase: module 2 retrained after
    module 3 had fitted to it, and module 1 never trained further. Within module 1's phase nothing moves."""
    config = smoke(curriculum="sequential")
    config = replace(config, train=replace(config.train, epochs=1))  # 6 steps per module
    run = RunFolder.create(tmp_path, "r", config)
    pretrain(replace(config, train=replace(config.train, max_steps=trained)), run)
    more = replace(config, train=replace(config.train, epochs=2, max_steps=trained + 1))
    if allowed:
        pretrain(more, run, resume=True)
        assert {key for key in run.metrics()[-1] if key.startswith("loss/")} == {"loss/module1"}
    else:
        before = run.config
        with pytest.raises(GimError, match="6 steps per module when saved, 12 now"):
            pretrain(more, run, resume=True)
        assert run.config == before, "the run's config is left as it was"


@pytest.mark.parametrize(
    ("max_steps", "note"),
    [
        (6, "train.max_steps 6 stops the sequential curriculum (6 steps per module) at module 1 of 3"),
        (11, "train.max_steps 11 stops the sequential curriculum (6 steps per module) at module 2 of 3"),
        (13, None),
    ],
)
def test_a_step_limit_that_cuts_the_sequential_curriculum_says_so(tmp_path, capsys, max_steps, note):
    config = smoke(curriculum="sequential", max_steps=max_steps)
    config = replace(config, train=replace(config.train, epochs=1))  # 6 steps per phase, 18 in all
    pretrain(config, RunFolder.create(tmp_path, "r", config))
    err = capsys.readouterr().err
    assert ("stay untrained" in err) == (note is not None) and (note is None or note in err)


@pytest.mark.parametrize(
    ("trained", "resumed", "message"),
    [
        (None, 100, "at step 18 of the 18 that train.epochs 3 allows"),
        (8, 8, "at step 8 of the 8 that train.max_steps 8 allows"),
    ],
)
def test_a_resume_with_nothing_left_names_the_limit_that_binds(tmp_path, capsys, trained, resumed, message):
    """It used to ask for more --train.max_steps when the epochs were what ended the run."""
    run = RunFolder.create(tmp_path, "r", smoke(max_steps=trained))
    pretrain(smoke(max_steps=trained), run)
    capsys.readouterr()
    pretrain(smoke(max_steps=resumed), run, resume=True)
    assert f"nothing to train: the run is {message}; raise it to go on" in capsys.readouterr().err


def test_recomputed_activations_train_like_stored_ones_and_keep_far_fewer_for_backward():
    x = torch.randn(4, 1, 28, 28)
    results = []
    for recompute in (False, True):
        modules = prepare_modules(smoke(precision="fp32", recompute_activations=recompute), 1, torch.device("cpu"))
        saved_bytes = []

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            saved_bytes.append(tensor.numel() * tensor.element_size())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            _, losses, _ = train_step(modules, x, range(3), (2, 0))
        results.append((list(modules.state_dict()), torch.stack(losses), modules, sum(saved_bytes)))
    (names, losses, plain, stored), (recomputed_names, recomputed_losses, recomputed, kept) = results
    assert names == recomputed_names  # checkpoints load either way
    torch.testing.assert_close(recomputed_losses, losses)
    for a, b in zip(plain.parameters(), recomputed.parameters()):
        torch.testing.assert_close(a, b)
    assert kept < 0.6 * stored


@pytest.mark.parametrize(
    "capabilities, expected",
    [
        ({"avx512_bf16": True}, True),
        ({"amx_bf16": True}, True),
        ({"bf16": True}, True),
        ({"avx2": True}, False),
        ({}, False),
    ],
)
def test_native_bf16_follows_the_cpu_features_torch_detects(monkeypatch, capabilities, expected):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    assert native_bf16(torch.device("cpu")) is expected


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_native_and_bf16_elsewhere_warns(monkeypatch, native):
    monkeypatch.setattr(placement, "native_bf16", lambda device: native)
    cpu = torch.device("cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert autocast_dtype("fp32", cpu) is None
        assert autocast_dtype("auto", cpu) is (torch.bfloat16 if native else None)
        assert not caught
        assert autocast_dtype("bf16", cpu) is torch.bfloat16
    assert any("emulates" in str(warning.message) for warning in caught) is not native
    modules = prepare_modules(smoke(precision="auto"), 1, cpu)
    assert {module.autocast_dtype for module in modules} == {torch.bfloat16 if native else None}


def test_channels_last_computes_the_gradients_of_the_standard_layout():
    """smoke's module 2 opens with a strided 1x1 shortcut over 4 channels, which oneDNN gets wrong in channels-last
    on AVX2-only CPUs unless the engine keeps it in the standard layout."""
    x = torch.randn(8, 1, 28, 28)
    gradients = []
    for channels_last in (False, True):
        modules = prepare_modules(smoke(precision="fp32", channels_last=channels_last), 1, torch.device("cpu"))
        train_step(modules, x, range(3), (2, 0))
        gradients.append({name: p.grad for name, p in modules.named_parameters()})
    standard, channels_last = gradients
    for name, gradient in standard.items():
        torch.testing.assert_close(channels_last[name], gradient, rtol=1e-3, atol=1e-6, msg=name)


def test_negatives_are_drawn_anew_for_every_step_and_module_and_alike_for_the_same_ones(record_negatives):
    """The draws of a step are a function of (seed, step, module) alone: that is what makes resumed and
    module-parallel runs equal a local one, but it must not repeat the same negatives every step."""
    from greedy_infomax.objectives import infonce_2d

    sampled = record_negatives(infonce_2d)
    modules = prepare_modules(smoke(precision="fp32"), 1, torch.device("cpu"))
    x = torch.randn(4, 1, 28, 28)
    for step in (0, 0, 1):
        train_step(modules, x, range(3), (2, step))
    per_step = len(sampled) // 3  # one draw per module and prediction step
    first, again, next_step = (sampled[index : index + per_step] for index in (0, per_step, 2 * per_step))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again)), "same seed and step: same negatives"
    assert not any(torch.equal(a[0], b[0]) for a, b in zip(first, next_step)), "a new step draws new negatives"
    per_module = per_step // 3
    assert not torch.equal(first[per_module][0], first[2 * per_module][0]), (
        "modules 2 and 3 (same pool size) draw apart"
    )


def test_validation_holds_data_out_and_logs_each_modules_loss_after_every_epoch(tmp_path):
    """A quarter of the 48 images held out: 36 left train 4 batches of 8 per epoch, and after each of the 3 epochs
    every module's loss on the held-out 12 (one batch) is logged, the same in a rerun."""
    config = smoke(validation=0.25)
    runs = [RunFolder.create(tmp_path, name, config) for name in ("a", "b")]
    for run in runs:
        pretrain(config, run)
    rows = [[row for row in run.metrics() if "val_loss/module1" in row] for run in runs]
    assert [row["step"] for row in rows[0]] == [4, 8, 12]
    assert rows[0] == rows[1]
    assert all(np.isfinite(row[f"val_loss/module{k}"]) for row in rows[0] for k in (1, 2, 3))
    assert rows[0][-1]["val_loss/module1"] != rows[0][0]["val_loss/module1"]  # the modules learned between
    with pytest.raises(GimError, match="train.validation: 5 held-out images do not fill one batch of 8"):
        pretrain(smoke(validation=0.1), RunFolder.create(tmp_path, "small", smoke(validation=0.1)))


def test_each_modules_infonce_accuracy_is_logged_beside_its_loss(tmp_path):
    """accuracy/moduleK, the share of contexts whose positive scored highest, at every logged step of every
    module; the smoke preset's 4 negatives make chance 0.2."""
    config = smoke(max_steps=4)
    run = RunFolder.create(tmp_path, "accuracy", config)
    pretrain(config, run)
    for row in run.metrics():
        assert {f"accuracy/module{k}" for k in (1, 2, 3)} <= set(row), row
        assert all(0.0 <= row[f"accuracy/module{k}"] <= 1.0 for k in (1, 2, 3))


def constant_sequences(count: int = 64, seed: int = 0) -> torch.Tensor:
    """An easy toy for InfoNCE: each (4, 12) sequence one random vector plus a little noise, so a frame's future is
    itself and its negatives, mostly other sequences' frames, look different."""
    generator = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(count, 4, 1, generator=generator) + 0.1 * torch.randn(count, 4, 12, generator=generator)


def toy_module(objective: nn.Module) -> nn.ModuleList:
    torch.manual_seed(0)
    return nn.ModuleList([IsolatedModule(nn.Conv1d(4, 8, 1), nn.Identity(), objective)])


def test_infonce_accuracy_starts_at_chance_and_rises_on_an_easy_toy(tmp_path, monkeypatch):
    """4 negatives: chance is 0.2 at the first step, and training lifts it well above. The values stay on the device
    until a step is logged: one read per logged step (log_every 2 of 32 steps: 16)."""
    original, reads = local.logged_values, []
    monkeypatch.setattr(local, "logged_values", lambda *args: reads.append(args) or original(*args))
    modules = toy_module(InfoNCE1d(8, prediction_steps=2, num_negatives=4))
    run = RunFolder.create(tmp_path, "toy")
    local.train(
        modules,
        TensorBatches(constant_sequences(), None, 8),
        run,
        TrainConfig(lr=3e-2, epochs=4, log_every=2, device="cpu"),
    )
    accuracy = [row["accuracy/module1"] for row in run.metrics()]
    assert len(reads) == len(accuracy) == 16
    assert abs(accuracy[0] - 0.2) < 0.1 and np.mean(accuracy[-4:]) > 0.5, accuracy
    measured = modules[0].metrics()["accuracy"]
    assert torch.is_tensor(measured) and measured.ndim == 0 and not measured.requires_grad


class Energy(nn.Module):
    """An objective that measures nothing but its loss."""

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return z.pow(2).mean()


def test_an_objective_without_metrics_logs_its_loss_alone(tmp_path):
    run = RunFolder.create(tmp_path, "energy")
    local.train(
        toy_module(Energy()),
        TensorBatches(constant_sequences(16), None, 8),
        run,
        TrainConfig(epochs=1, log_every=1, device="cpu"),
    )
    assert [sorted(key for key in row if "/" in key) for row in run.metrics()] == [["loss/module1"]] * 2
