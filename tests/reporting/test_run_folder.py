"""Run folders: create/open, metrics, atomic checkpoints that survive crashes and full disks."""

from __future__ import annotations

import builtins
import fcntl
import json
import multiprocessing
import os
import pathlib
import shutil
import signal
import struct
import time
from dataclasses import replace

import pytest
import torch
from conftest import run_lock_holder, snapshot

from greedy_infomax.cli import main
from greedy_infomax.errors import GimError
from greedy_infomax.reporting import run_folder
from greedy_infomax.reporting.run_folder import FORMAT_VERSION, RunFolder
from greedy_infomax.tasks import PRESETS, prepare_modules

CPU = torch.device("cpu")


@pytest.fixture
def run(tmp_path, tiny_config) -> RunFolder:
    return RunFolder.create(tmp_path, "run", tiny_config())


def _modules(config):
    return prepare_modules(config, 1, CPU)


def _train_a_little(modules, seed: int) -> None:
    """One optimiser step per module, so weights and Adam state differ from a fresh build."""
    torch.manual_seed(seed)
    x = torch.randn(2, 1, 20, 20)
    for module in modules:
        x, _, _ = module.step(x)


def test_create_then_open_round_trips(tmp_path, tiny_config):
    config = tiny_config(seed=5)
    created = RunFolder.create(tmp_path, "r", config)
    opened = RunFolder.open(tmp_path / "r")
    assert opened.path == created.path == tmp_path / "r"
    assert opened.config == config
    assert json.loads((tmp_path / "r" / "meta.json").read_text())["format_version"] == FORMAT_VERSION
    assert opened.latest_checkpoint() is None
    with pytest.raises(GimError, match="has no checkpoint"):
        opened.load_checkpoint(_modules(config))


@pytest.mark.parametrize("started", ["logged", "checkpointed"])
def test_create_refuses_to_overwrite_a_run(run, tiny_config, started):
    if started == "logged":
        run.log(1, {"loss/module1": 1.0})
        run.close()
    else:
        config = tiny_config()
        run.save_checkpoint(_modules(config), {"step": 1, "epoch": 0, "batch": 1})
    with pytest.raises(GimError, match="already holds a run"):
        RunFolder.create(run.path.parent, run.path.name, tiny_config())


def test_a_run_that_failed_before_logging_anything_can_be_created_again(run, tiny_config):
    """A start-up failure (missing data, a bad device) must not block rerunning the same command."""
    other = replace(tiny_config(), train=replace(tiny_config().train, lr=0.5))
    again = RunFolder.create(run.path.parent, run.path.name, other)
    assert again.path == run.path and again.config == other


def test_unnamed_runs_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(run_folder.time, "strftime", lambda pattern, *args: "20261129-170000")
    names = [RunFolder.create(tmp_path).path.name for _ in range(3)]
    assert names == ["20261129-170000", "20261129-170000-2", "20261129-170000-3"]


def test_open_without_meta_json_fails(tmp_path):
    with pytest.raises(GimError, match="meta.json"):
        RunFolder.open(tmp_path)


def test_open_with_another_format_version_fails(run):
    meta = json.loads((run.path / "meta.json").read_text())
    (run.path / "meta.json").write_text(json.dumps({**meta, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(GimError, match=f"format {FORMAT_VERSION + 1}"):
        RunFolder.open(run.path)


def test_metrics_round_trip(run):
    run.log(2, {"loss/module1": 1.5})
    run.log(4, {"loss/module1": 1.25, "epoch": 0})
    run.close()
    assert run.metrics() == [{"step": 2, "loss/module1": 1.5}, {"step": 4, "loss/module1": 1.25, "epoch": 0}]
    events = [event for path in (run.path / "tensorboard").iterdir() for event in _events(path)]
    assert [(e.step, v.tag, v.simple_value) for e in events for v in e.summary.value] == [
        (2, "loss/module1", 1.5),
        (4, "loss/module1", 1.25),
        (4, "epoch", 0.0),
    ]


def test_a_resumed_run_tells_tensorboard_to_hide_the_steps_it_replays(run):
    run.log(4, {"loss/module1": 1.5})
    run.close()
    resumed = RunFolder.open(run.path)
    resumed.forget_metrics_after(2)
    resumed.log(3, {"loss/module1": 1.25})
    resumed.close()
    newest = max((run.path / "tensorboard").iterdir(), key=lambda path: path.stat().st_mtime_ns)
    assert [(e.step, e.session_log.status) for e in _events(newest) if e.HasField("session_log")] == [(3, 1)]


def _events(path: pathlib.Path) -> list:
    """The events of a TensorBoard file, read record by record (length, checksum, event, checksum)."""
    from tensorboardX.proto.event_pb2 import Event

    data, events, offset = path.read_bytes(), [], 0
    while offset < len(data):
        (length,) = struct.unpack("Q", data[offset : offset + 8])
        events.append(Event.FromString(data[offset + 12 : offset + 12 + length]))
        offset += 12 + length + 4
    return events


def test_a_last_metrics_line_torn_by_a_crash_is_left_out_and_removed_on_resume(run):
    """A kill or a full disk in the middle of a line leaves part of it; the checkpoints are fine, so a resume must
    not die on it."""
    for step in (1, 2, 3):
        run.log(step, {"loss/module1": 1.5})
    run.close()
    whole = (run.path / "metrics.jsonl").read_bytes()
    (run.path / "metrics.jsonl").write_bytes(whole + whole.splitlines()[0][:17])  # '{"step": 1, "loss'
    assert [row["step"] for row in run.metrics()] == [1, 2, 3]
    resumed = RunFolder.open(run.path)
    with pytest.warns(UserWarning, match="metrics.jsonl: removed its last line, cut short by a crash"):
        resumed.forget_metrics_after(2)
    resumed.log(3, {"loss/module1": 1.25})
    resumed.close()
    lines = (run.path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]


def test_a_damaged_metrics_line_before_the_last_is_named(run):
    run.log(1, {"loss/module1": 1.5})
    run.close()
    with open(run.path / "metrics.jsonl", "a") as file:
        file.write('garbage{\n{"step": 2}\n')
    with pytest.raises(GimError, match=r"metrics.jsonl: line 2 is not a metrics row \(b'garbage\{'\)"):
        run.metrics()


def test_a_full_disk_while_logging_names_the_file(run):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    (run.path / "metrics.jsonl").symlink_to("/dev/full")
    with pytest.raises(GimError, match=r"could not write \S+metrics.jsonl \(No space left on device\); no checkpoint"):
        run.log(1, {"loss/module1": 1.5})


def test_save_keeps_the_newest_two_and_load_restores_weights_optimizer_and_progress(run, tiny_config):
    config = tiny_config()
    modules = _modules(config)
    for step in (1, 2, 3):
        _train_a_little(modules, seed=step)
        run.save_checkpoint(modules, {"step": step, "epoch": 0, "batch": step})
    saved = snapshot(modules)
    saved_optimizer = modules[1].optimizer.state_dict()

    folders = sorted(path.name for path in run.checkpoints.iterdir())
    assert folders == ["step-00000002", "step-00000003"]
    assert sorted(path.name for path in (run.checkpoints / "step-00000003").iterdir()) == [
        "module-1.pt",
        "module-2.pt",
        "module-3.pt",
        "progress.pt",
    ]

    fresh = _modules(config)
    progress = run.load_checkpoint(fresh)
    assert progress == {"step": 3, "epoch": 0, "batch": 3}
    assert all(torch.equal(saved[name], tensor) for name, tensor in fresh.state_dict().items())
    loaded_optimizer = fresh[1].optimizer.state_dict()
    assert loaded_optimizer["state"].keys() == saved_optimizer["state"].keys()
    for key, state in saved_optimizer["state"].items():
        assert all(
            torch.equal(torch.as_tensor(value), torch.as_tensor(loaded_optimizer["state"][key][name]))
            for name, value in state.items()
        )


def test_leftover_staging_folder_is_ignored(run, tiny_config):
    modules = _modules(tiny_config())
    run.save_checkpoint(modules, {"step": 4, "epoch": 0, "batch": 4})
    crashed = run.checkpoints / ".staging-00000008"  # a kill while writing step 8
    crashed.mkdir()
    (crashed / "module-1.pt").write_bytes(b"half a file")
    assert run.latest_checkpoint() == run.checkpoints / "step-00000004"
    assert run.load_checkpoint(_modules(tiny_config()))["step"] == 4


def test_loading_into_another_architecture_names_the_file(run, tiny_config):
    config = tiny_config()
    run.save_checkpoint(_modules(config), {"step": 1, "epoch": 0, "batch": 1})
    wider = replace(config, model=replace(config.model, planes=(4, 8, 16)))
    with pytest.raises(GimError, match="module-3.pt") as error:
        run.load_checkpoint(_modules(wider))
    assert "does not fit" in str(error.value)


def test_loading_an_end_to_end_checkpoint_into_three_modules_names_the_file(run, tiny_config):
    config = tiny_config()
    one_module = replace(config, model=replace(config.model, stages_per_module=(3,)))
    run.save_checkpoint(_modules(one_module), {"step": 1, "epoch": 0, "batch": 1})
    with pytest.raises(GimError, match="module-1.pt does not fit"):
        run.load_checkpoint(_modules(config))


def test_a_missing_module_file_is_named(run, tiny_config):
    config = tiny_config()
    folder = run.save_checkpoint(_modules(config), {"step": 1, "epoch": 0, "batch": 1})
    (folder / "module-3.pt").unlink()
    with pytest.raises(GimError, match="module-3.pt is missing"):
        run.load_checkpoint(_modules(config))


@pytest.mark.parametrize(
    ("name", "damage"), [("module-2.pt", lambda data: data[:1000]), ("progress.pt", lambda data: b"garbage")]
)
def test_a_damaged_checkpoint_file_is_named(run, tiny_config, name, damage):
    config = tiny_config()
    folder = run.save_checkpoint(_modules(config), {"step": 1, "epoch": 0, "batch": 1})
    (folder / name).write_bytes(damage((folder / name).read_bytes()))
    with pytest.raises(GimError, match=rf"{name}: cannot be read .* delete its folder"):
        run.load_checkpoint(_modules(config))


def test_a_damaged_meta_json_is_named(run):
    (run.path / "meta.json").write_text("{bad")
    with pytest.raises(GimError, match="meta.json: not a run's metadata"):
        RunFolder.open(run.path)


def _no_space(*args, **kwargs):
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("failing", ["torch.save", "os.rename", "/dev/full"])
def test_failed_save_keeps_the_previous_checkpoint(monkeypatch, run, tiny_config, failing):
    config = tiny_config()
    modules = _modules(config)
    run.save_checkpoint(modules, {"step": 4, "epoch": 0, "batch": 4})
    kept = snapshot(modules)
    _train_a_little(modules, seed=1)
    if failing == "torch.save":
        calls = []

        def save_then_fail(obj, file, *args, **kwargs):  # the disk fills up after module-1.pt is written
            calls.append(file)
            if len(calls) > 1:
                _no_space()
            return real_save(obj, file, *args, **kwargs)

        real_save = torch.save
        monkeypatch.setattr(torch, "save", save_then_fail)
    elif failing == "os.rename":
        monkeypatch.setattr(os, "rename", _no_space)
    else:  # module-2.pt really written to a full device
        if not os.path.exists("/dev/full"):
            pytest.skip("no /dev/full")

        def open_full(path, *args, **kwargs):
            return builtins.open("/dev/full" if str(path).endswith("module-2.pt") else path, *args, **kwargs)

        monkeypatch.setattr(run_folder, "open", open_full, raising=False)
    with pytest.raises(GimError, match="No space left on device") as error:
        run.save_checkpoint(modules, {"step": 8, "epoch": 0, "batch": 8})
    monkeypatch.undo()
    assert str(run.checkpoints / "step-00000004") in str(error.value)
    assert sorted(path.name for path in run.checkpoints.iterdir()) == ["step-00000004"]
    fresh = _modules(config)
    assert run.load_checkpoint(fresh)["step"] == 4
    assert all(torch.equal(kept[name], tensor) for name, tensor in fresh.state_dict().items())
    assert run_folder.RunFolder.open(run.path).latest_checkpoint() == run.checkpoints / "step-00000004"


def test_failing_to_create_the_staging_folder_is_a_gim_error(monkeypatch, run, tiny_config):
    modules = _modules(tiny_config())
    run.save_checkpoint(modules, {"step": 4, "epoch": 0, "batch": 4})
    monkeypatch.setattr(pathlib.Path, "mkdir", _no_space)
    with pytest.raises(GimError, match="No space left on device") as error:
        run.save_checkpoint(modules, {"step": 8, "epoch": 0, "batch": 8})
    monkeypatch.undo()
    assert str(run.checkpoints / "step-00000004") in str(error.value)
    assert run.load_checkpoint(_modules(tiny_config()))["step"] == 4


def test_a_run_killed_while_its_folder_was_created_can_be_created_again(tmp_path):
    first = RunFolder.create(tmp_path, "r", PRESETS["smoke"])
    (first.path / "config.yaml").unlink()  # the state a kill between the two writes leaves
    again = RunFolder.create(tmp_path, "r", PRESETS["smoke"])
    assert RunFolder.open(again.path).config == PRESETS["smoke"]


def test_keep_every_keeps_those_checkpoints_besides_the_newest_two_and_at_step_loads_one(tmp_path):
    modules = prepare_modules(PRESETS["smoke"], 1, torch.device("cpu"))
    run = RunFolder.create(tmp_path, "kept", PRESETS["smoke"])
    run.keep_every = 4
    for step in range(2, 13, 2):
        with torch.no_grad():
            next(modules[0].parameters()).fill_(step)
        run.save_checkpoint(modules, {"step": step, "epoch": 0, "batch": step})
    assert run.checkpoint_steps() == [4, 8, 10, 12]
    run.at_step(8).load_checkpoint(modules, with_optimizers=False)
    assert next(modules[0].parameters()).unique().tolist() == [8.0]
    with pytest.raises(GimError, match=r"--step 6: .* kept no checkpoint of that step \(kept: 4, 8, 10, 12\)"):
        run.at_step(6)


def test_a_run_written_before_the_redesign_resumes_and_probes(tmp_path):
    """runs/a170198-smoke: `gim pretrain --preset smoke --train.max_steps 2` as commit a170198 wrote it (TensorBoard
    files left out). New config fields take their defaults; the weights load where they were saved."""
    old = pathlib.Path(__file__).parent / "runs" / "a170198-smoke"
    run = tmp_path / "run"
    shutil.copytree(old, run)
    saved = torch.load(old / "checkpoints" / "step-00000002" / "module-1.pt", weights_only=True)
    assert main(["pretrain", "--resume", str(run), "--train.max_steps", "3", "--train.device", "cpu"]) == 0
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 3 and steps.count(3) == 1
    assert (
        main(
            [
                "probe",
                str(run),
                "--probe.epochs",
                "1",
                "--probe.knn_k",
                "0",
                "--probe.random_init",
                "false",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert json.loads((run / "probe.json").read_text())["trained"][-1]["module"] == 3
    assert saved.keys() == torch.load(run / "checkpoints" / "step-00000003" / "module-1.pt", weights_only=True).keys()


# -- one writer per run folder -----------------------------------------------------------------------------


def test_a_second_process_cannot_write_a_run_and_a_killed_holder_leaves_no_stale_lock(run, tiny_config):
    """The holder is named so the user can find it; SIGKILL gives no chance to clean up, the kernel does it."""
    run.close()
    before = {path.name: path.read_bytes() for path in run.path.iterdir() if path.is_file() and path.name != "lock"}
    with run_lock_holder(run.path) as holder:
        for write in (
            lambda other: other.lock(),
            lambda other: other.log(1, {"loss/module1": 1.0}),
            lambda other: other.update_config(tiny_config(lr=0.5)),
        ):
            with pytest.raises(GimError, match=rf"is in use by pid {holder.pid} on \S+ \(-c ") as error:
                write(RunFolder.open(run.path))
            assert len(str(error.value).splitlines()) == 1
        with pytest.raises(GimError, match=f"pid {holder.pid}"):
            RunFolder.create(run.path.parent, run.path.name, tiny_config())
    after = {path.name: path.read_bytes() for path in run.path.iterdir() if path.is_file() and path.name != "lock"}
    assert after == before, "the refused writers changed nothing"
    RunFolder.open(run.path).lock().log(1, {"loss/module1": 1.0})


def test_a_lock_taken_through_another_open_file_refuses_this_process_too(tmp_path, tiny_config):
    """flock excludes other open files of the same process: the lock is not only for other processes."""
    (tmp_path / "r").mkdir()
    with open(tmp_path / "r" / "lock", "a+") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        other.write("pid 1 on elsewhere (gim pretrain --name r)\n")
        other.flush()
        with pytest.raises(GimError, match=r"in use by pid 1 on elsewhere \(gim pretrain --name r\)"):
            RunFolder.create(tmp_path, "r", tiny_config())
    assert not (tmp_path / "r" / "meta.json").exists()


def test_run_folders_of_one_process_share_its_lock_until_the_last_closes(run):
    """A script may open the run it created (to resume it) while the first object still exists."""
    second = RunFolder.open(run.path).lock()
    second.log(1, {"loss/module1": 1.0})
    second.close()
    with open(run.path / "lock") as probe:
        with pytest.raises(BlockingIOError):
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        run.close()
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_forked_child_does_not_keep_the_lock_of_its_killed_parent(tmp_path, tiny_config):
    """A data-loading worker forked by the writer: once the writer is gone, the run is free at once."""

    def parent(ready, stop):
        run = RunFolder.create(tmp_path, "r", tiny_config())  # noqa: F841 - held until the kill
        worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,), daemon=False)
        worker.start()
        ready.put(worker.pid)
        stop.wait()
        os.kill(os.getpid(), signal.SIGKILL)

    context = multiprocessing.get_context("fork")
    ready, stop = context.Queue(), context.Event()
    writer = context.Process(target=parent, args=(ready, stop))
    writer.start()
    worker = ready.get(timeout=60)
    try:
        with pytest.raises(GimError, match=f"in use by pid {writer.pid} "):
            RunFolder.open(tmp_path / "r").lock()
        stop.set()
        while writer.exitcode is None:  # not join(): the worker holds a copy of the pipe join() waits on
            time.sleep(0.01)
        assert writer.exitcode == -signal.SIGKILL and os.path.exists(f"/proc/{worker}"), "the worker lives on"
        RunFolder.open(tmp_path / "r").lock().close()
    finally:
        os.kill(worker, signal.SIGKILL)


# -- run names -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["..", ".", "", "../escaped", "/absolute/path", "a/b"])
def test_a_run_name_is_one_folder_inside_the_output(tmp_path, tiny_config, name):
    output = tmp_path / "deep" / "output"
    output.mkdir(parents=True)
    with pytest.raises(GimError, match=r"must be one folder name inside .*output \(not '.', '..' or a path\)"):
        RunFolder.create(output, name, tiny_config())
    assert list(tmp_path.rglob("*.json")) == [] and list(output.iterdir()) == []


def test_a_folder_that_is_not_a_run_is_never_taken_over(tmp_path, tiny_config):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.yaml").write_text("my own file")
    (tmp_path / "a-file").write_text("mine too")
    with pytest.raises(GimError, match="is not a run folder"):
        RunFolder.create(tmp_path, "mine", tiny_config())
    with pytest.raises(GimError, match="is a file"):
        RunFolder.create(tmp_path, "a-file", tiny_config())
    assert sorted(path.name for path in (tmp_path / "mine").iterdir()) == ["config.yaml"]
    assert (tmp_path / "mine" / "config.yaml").read_text() == "my own file"


def test_an_empty_folder_becomes_the_run(tmp_path, tiny_config):
    (tmp_path / "empty").mkdir()
    assert RunFolder.create(tmp_path, "empty", tiny_config()).config == tiny_config()


# -- resume safety -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("deleted", ["every step folder", "the checkpoints folder"])
def test_a_run_whose_checkpoints_were_all_deleted_is_not_rewound_to_step_zero(run, tiny_config, deleted):
    run.log(4, {"loss/module1": 1.5})
    run.save_checkpoint(_modules(tiny_config()), {"step": 4, "epoch": 0, "batch": 4})
    run.close()
    for folder in run.checkpoints.iterdir() if deleted == "every step folder" else [run.checkpoints]:
        shutil.rmtree(folder)
    metrics = (run.path / "metrics.jsonl").read_bytes()
    with pytest.raises(GimError, match="this run saved checkpoints and none is left, so it cannot resume"):
        RunFolder.open(run.path).forget_metrics_after(0)
    assert (run.path / "metrics.jsonl").read_bytes() == metrics


def test_a_run_killed_before_its_first_checkpoint_resumes_from_step_zero(run):
    """The rows it logged are work lost with the kill, not a history to keep."""
    run.log(4, {"loss/module1": 1.5})
    run.close()
    RunFolder.open(run.path).forget_metrics_after(0)
    assert run.metrics() == []


def test_a_relative_data_root_is_stored_absolute(tmp_path, tiny_config, monkeypatch):
    """A probe started from another folder reads the data the run trained on."""
    monkeypatch.chdir(tmp_path)
    config = tiny_config()
    config = replace(config, data=replace(config.data, root="data/fashion"))
    run = RunFolder.create(tmp_path, "r", config)
    monkeypatch.chdir(run.path)
    assert RunFolder.open(run.path).config.data.root == str(tmp_path / "data" / "fashion")
