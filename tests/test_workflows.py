"""What a user runs, as library functions: pretrain_run trains and resumes in its run folder, makes the data first,
removes a folder it made when the run failed before logging anything, keeps any other, and says how to continue a
stopped run; probe_run, embed_run and load_extractor on a trained smoke run, with the options given."""

from __future__ import annotations

import signal
from dataclasses import replace

import numpy as np
import pytest
import torch

from greedy_infomax import workflows
from greedy_infomax.errors import GimError, TrainingStopped
from greedy_infomax.reporting.run_folder import RunFolder
from greedy_infomax.tasks import PRESETS
from greedy_infomax.tasks.vision import TASK, load_split
from greedy_infomax.workflows import embed_run, load_extractor, pretrain_run, probe_run


def smoke(max_steps: int = 1):
    """The smoke preset on 4 images, 2 batches of 2, for `max_steps` steps on the CPU."""
    config = PRESETS["smoke"]
    return replace(
        config,
        data=replace(config.data, limit=4, batch_size=2),
        train=replace(config.train, device="cpu", max_steps=max_steps),
    )


def with_limit(config, limit: int):
    return replace(config, data=replace(config.data, limit=limit))


# -- pretrain_run -------------------------------------------------------------------------------------------------


def test_a_run_trains_in_its_named_folder_and_resumes_there(tmp_path):
    run = pretrain_run(smoke(max_steps=1), output=tmp_path, name="r")
    assert run.path == tmp_path / "r" and run.config == smoke(max_steps=1)
    assert run.started() and run.latest_checkpoint() is not None
    resumed = pretrain_run(smoke(max_steps=2), resume=run.path)
    assert resumed.path == run.path and list(tmp_path.iterdir()) == [run.path]
    assert torch.load(resumed.latest_checkpoint() / "progress.pt", weights_only=False)["step"] == 2
    assert resumed.config == smoke(max_steps=2), "the resumed run's config replaces the saved one"


def test_an_unnamed_run_gets_a_new_folder_with_its_prefix(tmp_path, monkeypatch):
    monkeypatch.setattr(workflows, "pretrain", lambda config, run, resume=False: None)
    first = pretrain_run(smoke(), output=tmp_path, prefix="smoke-")
    second = pretrain_run(smoke(), output=tmp_path, prefix="smoke-")
    assert first.path.parent == second.path.parent == tmp_path and first.path != second.path
    assert first.path.name.startswith("smoke-") and second.path.name.startswith("smoke-")


def test_the_data_is_prepared_before_the_run_folder_is_made(tmp_path, monkeypatch):
    events = []
    monkeypatch.setattr(TASK, "prepare_data", lambda config: events.append(("prepare", list(tmp_path.iterdir()))))
    monkeypatch.setattr(workflows, "pretrain", lambda config, run, resume=False: events.append(("train", run.path)))
    pretrain_run(smoke(), output=tmp_path, name="r")
    assert events == [("prepare", []), ("train", tmp_path / "r")]


def fail(error: BaseException):
    def raising(config, run, resume=False):
        raise error

    return raising


@pytest.mark.parametrize("name", ["r", None])
@pytest.mark.parametrize("error", [GimError("the data cannot be read"), KeyboardInterrupt()])
def test_a_run_that_fails_before_it_logged_anything_leaves_no_folder(tmp_path, monkeypatch, name, error):
    monkeypatch.setattr(workflows, "pretrain", fail(error))
    with pytest.raises(type(error)):
        pretrain_run(smoke(), output=tmp_path, name=name)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_start_in_a_folder_that_was_there_removes_nothing(tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    monkeypatch.setattr(workflows, "pretrain", fail(GimError("the data cannot be read")))
    with pytest.raises(GimError):
        pretrain_run(smoke(), output=tmp_path, name="mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_run_that_fails_after_logging_keeps_its_folder(tmp_path, monkeypatch):
    def log_then_fail(config, run, resume=False):
        run.log(1, {"loss_1": 0.5})
        raise RuntimeError("out of memory")

    monkeypatch.setattr(workflows, "pretrain", log_then_fail)
    with pytest.raises(RuntimeError, match="out of memory"):
        pretrain_run(smoke(), output=tmp_path, name="r")
    assert RunFolder.open(tmp_path / "r").metrics()[0]["loss_1"] == 0.5


def test_a_stopped_run_says_which_command_continues_it(tmp_path, monkeypatch):
    stopped = TrainingStopped(signal.SIGTERM, "stopped by SIGTERM after saving step 3")
    monkeypatch.setattr(workflows, "pretrain", fail(stopped))
    with pytest.raises(TrainingStopped) as error:
        pretrain_run(smoke(), output=tmp_path, name="r", command="python train.py")
    assert error.value.signal_number == signal.SIGTERM
    assert str(error.value) == (
        f"stopped by SIGTERM after saving step 3; continue with: python train.py --resume {tmp_path / 'r'}"
    )


# -- probe_run, embed_run, load_extractor -------------------------------------------------------------------------


def test_a_probe_follows_the_config_it_is_given_instead_of_the_runs(probe_smoke_run):
    config = with_limit(probe_smoke_run.config, 16)
    options = replace(config.probe, knn_k=0, random_init=False, raw_pixels=False)
    results = probe_run(probe_smoke_run, replace(config, probe=options), device="cpu")
    assert (results["train_images"], results["test_images"]) == (16, 16)
    assert results["probes"] == ["linear"] and "random" not in results and "baseline" not in results
    assert all(row.keys() == {"module", "features", "linear"} for row in results["trained"])


@pytest.mark.parametrize(
    "call",
    [
        lambda run: probe_run(run, device="tpu"),
        lambda run: embed_run(run, 1, "probe_test", device="tpu"),
        lambda run: load_extractor(run.path, 1, device="tpu"),
    ],
    ids=["probe", "embed", "extractor"],
)
def test_an_unusable_device_names_the_option(probe_smoke_run, call):
    with pytest.raises(GimError, match="^--device: 'tpu' is not a device this runs on"):
        call(probe_smoke_run)


@pytest.mark.parametrize(("module", "channels"), [(1, 4), (3, 8)])
def test_an_extractor_of_modules_1_to_k_gives_the_embedded_features(probe_smoke_run, module, channels):
    config = with_limit(probe_smoke_run.config, 16)
    arrays = embed_run(probe_smoke_run, module, "probe_test", config, device="cpu")
    assert arrays["features"].shape == (16, channels) and arrays["features"].dtype == np.float32
    assert np.array_equal(arrays["labels"], load_split(config.data, "probe_test").labels)
    extractor = load_extractor(str(probe_smoke_run.path), module)
    assert len(extractor.encoder) == module
    assert not any(parameter.requires_grad for parameter in extractor.parameters())
    images = torch.from_numpy(load_split(config.data, "probe_test").images[:5].copy())  # (5, 1, 28, 28)
    features = extractor(extractor.transform(images))  # (5, C)
    np.testing.assert_allclose(features.numpy(), arrays["features"][:5], rtol=1e-5, atol=1e-6)
