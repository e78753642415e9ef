"""The module-parallel engine with 2-3 gloo processes on 127.0.0.1, each running `gim pretrain` with the
environment torchrun gives it (RANK, WORLD_SIZE, MASTER_ADDR/PORT), one thread each; its topology in-process.
Runs are the smoke preset on 48 images (6 batches of 8 per epoch, 2 epochs). Messages and inboxes:
test_transport.py.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from conftest import Rank, finish, fork_ranks, write_stl10

from greedy_infomax.cli import main
from greedy_infomax.config import DistributedConfig
from greedy_infomax.engines.local import seed_module
from greedy_infomax.engines.module_parallel import Settings, Topology
from greedy_infomax.errors import GimError
from greedy_infomax.objectives.negatives import shared_pool
from greedy_infomax.reporting.run_folder import RunFolder
from greedy_infomax.tasks import PRESETS, prepare_modules, task_of
from greedy_infomax.tasks.vision import VisionRunConfig as RunConfig
from greedy_infomax.workflows import pretrain, pretrain_run

CPU = torch.device("cpu")
SMOKE = [
    "--preset",
    "smoke",
    "--data.limit",
    "48",
    "--data.batch_size",
    "8",
    "--train.device",
    "cpu",
    "--train.epochs",
    "2",
    "--train.checkpoint_every",
    "2",
]


def smoke(max_steps: int, **distributed) -> RunConfig:
    """The config the SMOKE options give, for the local engine and the reference computations."""
    config = PRESETS["smoke"]
    return replace(
        config,
        data=replace(config.data, limit=48, batch_size=8),
        train=replace(config.train, device="cpu", epochs=2, checkpoint_every=2, max_steps=max_steps),
        distributed=DistributedConfig(**distributed),
    )


def launch(world: int, logs: Path, *options: str) -> list[Rank]:
    """`gim pretrain OPTIONS` in `world` processes with the environment torchrun gives them on one machine."""
    return fork_ranks(world, logs, _pretrain, *options)


def _pretrain(*options: str) -> int:
    return main(["pretrain", *options])


def assert_same_checkpoint(first: Path, second: Path, modules_only: bool = False) -> None:
    """Every weight, optimiser state and progress entry (the online probes' included) of two checkpoint folders
    equal, bit for bit; or only the modules' files."""
    for name in ("module-1.pt", "module-2.pt", "module-3.pt") + (() if modules_only else ("progress.pt",)):
        a, b = (torch.load(folder / name, weights_only=False) for folder in (first, second))
        assert _flatten(a).keys() == _flatten(b).keys(), name
        for key, value in _flatten(a).items():
            same = torch.equal(value, _flatten(b)[key]) if torch.is_tensor(value) else value == _flatten(b)[key]
            assert same, f"{name}: {key}"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {key: item for k, v in value.items() for key, item in _flatten(v, f"{prefix}{k}/").items()}
    return {prefix: value}


def test_sync_pipeline_continues_a_local_run_bit_for_bit_and_a_local_run_continues_it(tmp_path, one_thread):
    """local steps 1-4, then 3 processes (one module each) steps 5-6, then local 7-8 == local 1-8 throughout."""
    straight = RunFolder.create(tmp_path, "straight", smoke(8))
    pretrain(smoke(8), straight)
    mixed = RunFolder.create(tmp_path, "mixed", smoke(4))
    pretrain(smoke(4), mixed)

    ranks = launch(3, tmp_path, "--resume", str(mixed.path), "--train.max_steps", "6")
    assert finish(ranks) == [0, 0, 0], [rank.output for rank in ranks]
    assert_same_checkpoint(mixed.checkpoints / "step-00000006", straight.checkpoints / "step-00000006")

    pretrain(smoke(8), mixed, resume=True)
    assert_same_checkpoint(mixed.checkpoints / "step-00000008", straight.checkpoints / "step-00000008")
    shared = [key for key in straight.metrics()[0] if key != "samples_per_second"]
    assert [{key: row[key] for key in shared} for row in mixed.metrics()] == [
        {key: row[key] for key in shared} for row in straight.metrics()
    ], "losses, epochs and skips as logged locally"
    assert [(row["step"], row["epoch"]) for row in mixed.metrics()] == [(2, 1 / 3), (4, 2 / 3), (6, 1.0), (8, 4 / 3)]


def test_resuming_a_finished_run_on_three_processes_ends_cleanly_on_every_rank(tmp_path, one_thread):
    """Rank 0 used to exit at once, and the other ranks then failed to send it their last report."""
    run = RunFolder.create(tmp_path, "done", smoke(4))
    pretrain(smoke(4), run)
    ranks = launch(3, tmp_path, "--resume", str(run.path), "--train.epochs", "2")
    assert finish(ranks) == [0, 0, 0], [rank.output for rank in ranks]
    assert run.latest_checkpoint().name == "step-00000004"


def test_data_parallel_replicas_average_their_gradients(tmp_path, one_thread):
    """2 replicas of one stage == one process stepping each module on the mean of its gradients on both batches."""
    ranks = launch(
        2,
        tmp_path,
        *SMOKE,
        "--output",
        str(tmp_path),
        "--name",
        "ddp",
        "--train.max_steps",
        "2",
        "--distributed.stages",
        "1",
    )
    assert finish(ranks) == [0, 0], [rank.output for rank in ranks]
    _assert_replica_average(tmp_path / "ddp", steps=2)


def _pretrain_with_nans(rank: str, nan_at: Callable[[int], bool], *options: str) -> int:
    """gim pretrain in which rank `rank`'s module loss is NaN at the calls `nan_at` picks (counted from 1 over its
    modules); 3 batches skipped in a row stop a run."""
    from greedy_infomax.engines import local
    from greedy_infomax.isolation import IsolatedModule

    local.SKIP_LIMIT = 3
    if os.environ["RANK"] == rank:
        original, calls = IsolatedModule.loss, [0]

        def loss(self, x, labels=None):
            h, value = original(self, x, labels)
            calls[0] += 1
            return h, value * float("nan") if nan_at(calls[0]) else value

        IsolatedModule.loss = loss
    return main(["pretrain", *options])


def test_a_replica_that_skips_a_batch_makes_every_replica_skip_it(tmp_path, one_thread):
    """All replicas leave module 2 (and module 3 after it) as they were on that step, and none waits forever."""
    ranks = fork_ranks(
        2,
        tmp_path,
        _pretrain_with_nans,
        "1",
        lambda call: call == 2,
        *SMOKE,
        "--output",
        str(tmp_path),
        "--name",
        "skip",
        "--train.max_steps",
        "2",
        "--distributed.stages",
        "1",
        "--train.on_nonfinite",
        "skip",
        "--train.log_every",
        "1",
    )
    assert finish(ranks) == [0, 0], [rank.output for rank in ranks]
    assert [row["skipped_batches"] for row in RunFolder.open(tmp_path / "skip").metrics()] == [1, 1]
    _assert_replica_average(tmp_path / "skip", steps=2, held={(0, 1), (0, 2)})


def test_a_stage_that_skips_batch_after_batch_stops_the_run(tmp_path, one_thread):
    """Rank 0, the first of 2 stages, has NaN losses from its second module call on: every batch is skipped."""
    ranks = fork_ranks(
        2,
        tmp_path,
        _pretrain_with_nans,
        "0",
        lambda call: call >= 2,
        *SMOKE,
        "--output",
        str(tmp_path),
        "--name",
        "gone",
        "--train.max_steps",
        "12",
        "--distributed.stages",
        "2",
        "--train.on_nonfinite",
        "skip",
        "--distributed.timeout",
        "5",
    )
    assert finish(ranks) == [2, 2], [rank.output for rank in ranks]
    assert "3 batches in a row were skipped for a non-finite loss" in ranks[0].output
    assert "Traceback" not in ranks[0].output + ranks[1].output


def test_a_stage_whose_weights_blow_up_stops_the_run_before_rank_0_saves_them(tmp_path, one_thread):
    """Resumed from step 2 at lr 1e10 with NaN losses skipped, every module's weights blow up in the first step:
    the checkpoint of step 4 must not be written, and rank 0 names its ruined module (rank 1 stops on its own
    check or on losing rank 0, whichever comes first)."""
    first = launch(2, tmp_path, *SMOKE, "--output", str(tmp_path), "--name", "ruined", "--train.max_steps", "2")
    assert finish(first) == [0, 0]
    ranks = launch(
        2,
        tmp_path,
        "--resume",
        str(tmp_path / "ruined"),
        "--train.max_steps",
        "4",
        "--train.lr",
        "1e10",
        "--train.on_nonfinite",
        "skip",
        "--distributed.timeout",
        "5",
    )
    assert finish(ranks) == [2, 2], [rank.output for rank in ranks]
    assert "rank 0 (module 1): module 1 diverged by step 4: the root-mean-square" in ranks[0].output
    assert RunFolder.open(tmp_path / "ruined").latest_checkpoint().name == "step-00000002"


def _assert_replica_average(folder: Path, steps: int, held: set[tuple[int, int]] = frozenset()) -> None:
    """The run's checkpoint equals one process that steps each module on the mean gradient of replica r's batch
    2 * step + r, except the (step, module index) pairs `held`."""
    config = smoke(steps)
    modules = prepare_modules(config, 1, CPU)
    batches = [x for x, _ in task_of(config).pretrain_loader(config, CPU)[0].epoch(0)]
    for step in range(steps):
        inputs = batches[2 * step : 2 * step + 2]  # replica r takes batch 2 * step + r
        for index, module in enumerate(modules):
            gradients = []
            for replica in (0, 1):
                seed_module((config.train.seed, step) + ((replica,) if replica else ()), index)
                output, loss = module.loss(inputs[replica])
                module.optimizer.zero_grad()
                loss.backward()
                gradients.append([p.grad.clone() for p in module.parameters()])
                inputs[replica] = output.detach()
            for parameter, first, second in zip(module.parameters(), *gradients):
                parameter.grad = (first + second) / 2
            if (step, index) not in held:
                module.optimizer.step()
    saved = prepare_modules(config, 1, CPU)
    progress = RunFolder.open(folder).load_checkpoint(saved)
    position = {key: progress[key] for key in ("step", "epoch", "batch", "steps_per_module")}
    assert position == {"step": steps, "epoch": 0, "batch": 2 * steps, "steps_per_module": None}, (
        "the data position counts loader batches"
    )
    for (name, expected), actual in zip(modules.state_dict().items(), saved.state_dict().values()):
        assert torch.equal(expected, actual), name


# -- online probes ---------------------------------------------------------------------------------------------------


def probed(config: RunConfig) -> RunConfig:
    """`config` with train.online_probe, logging every 2 steps and keeping every 4th checkpoint."""
    return replace(config, train=replace(config.train, online_probe=True, log_every=2, keep_every=4))


def _pretrain_in(folder: Path, config: RunConfig, resume: bool) -> int:
    """What `gim pretrain` does on each rank with `config` in `folder`, made or resumed."""
    pretrain_run(config, folder.parent, folder.name, folder if resume else None)
    return 0


def online_accuracies(run: RunFolder) -> list[dict[str, float]]:
    return [{key: value for key, value in row.items() if key.startswith("online_accuracy/")} for row in run.metrics()]


def test_pipeline_stages_probe_their_own_modules_as_the_local_engine_does_and_resume_the_probes(tmp_path, one_thread):
    """Steps 1-4 on 2 stages (module 1 | modules 2-3), then 5-8 resumed: the logged online accuracies and the
    checkpointed classifiers and their optimisers equal a local run's, and the encoder equals a local run's
    without probes, bit for bit."""
    straight = RunFolder.create(tmp_path, "straight", probed(smoke(8)))
    pretrain(probed(smoke(8)), straight)
    without = RunFolder.create(tmp_path, "without", smoke(8))
    pretrain(smoke(8), without)
    piped = tmp_path / "piped"
    for max_steps, resume in ((4, False), (8, True)):
        ranks = fork_ranks(2, tmp_path, _pretrain_in, piped, probed(smoke(max_steps)), resume)
        assert finish(ranks, timeout=180) == [0, 0], [rank.output for rank in ranks]
    for step in ("step-00000004", "step-00000008"):
        assert_same_checkpoint(piped / "checkpoints" / step, straight.checkpoints / step)
    assert_same_checkpoint(piped / "checkpoints" / "step-00000008", without.checkpoints / "step-00000008", True)
    accuracies = online_accuracies(RunFolder.open(piped))
    assert [len(row) for row in accuracies] == [3, 3, 3, 3], "modules 1-3 at steps 2, 4, 6 and 8"
    assert accuracies == online_accuracies(straight)


def test_a_pipeline_probes_stl10s_labelled_split_beside_its_unlabelled_one_as_the_local_engine_does(
    tmp_path, one_thread
):
    """The labelled batch's activations travel from stage to stage beside the unlabelled batch's."""
    write_stl10(tmp_path)
    config = probed(smoke(6))
    config = replace(config, data=replace(config.data, dataset="stl10", root=str(tmp_path), limit=None, batch_size=4))
    straight = RunFolder.create(tmp_path, "straight", config)
    pretrain(config, straight)
    ranks = fork_ranks(2, tmp_path, _pretrain_in, tmp_path / "piped", config, False)
    assert finish(ranks, timeout=180) == [0, 0], [rank.output for rank in ranks]
    assert_same_checkpoint(tmp_path / "piped" / "checkpoints" / "step-00000006", straight.checkpoints / "step-00000006")
    accuracies = online_accuracies(RunFolder.open(tmp_path / "piped"))
    assert [len(row) for row in accuracies] == [3, 3, 3] and accuracies == online_accuracies(straight)


def test_two_replicas_of_two_stages_probe_on_replica_0_and_leave_the_encoder_as_without_probes(tmp_path, one_thread):
    """Replica 0's stages hold the only classifiers (so none can drift apart) and log and save them; the modules
    equal one process stepping each on the mean of its gradients on both replicas' batches, which has no probes."""
    ranks = fork_ranks(4, tmp_path, _pretrain_in, tmp_path / "ddp", probed(smoke(2, stages=2)), False)
    assert finish(ranks, timeout=240) == [0, 0, 0, 0], [rank.output for rank in ranks]
    _assert_replica_average(tmp_path / "ddp", steps=2)
    (row,) = RunFolder.open(tmp_path / "ddp").metrics()
    assert all(0.0 <= row[f"online_accuracy/module{k}"] <= 1.0 for k in (1, 2, 3)), row
    saved = torch.load(tmp_path / "ddp" / "checkpoints" / "step-00000002" / "progress.pt", weights_only=False)
    assert sorted(saved["observer"]) == [0, 1, 2]


def _gather(folder: Path) -> int:
    """Each of 2 ranks pools its rows (along dim 0 and dim 1) and backpropagates a rank-weighted sum of the pool."""
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    results = {}
    for dim in (0, 1):
        rows = (torch.arange(6.0).reshape(2, 3) + 10 * rank).requires_grad_()
        pool = shared_pool(rows, dim, dist.group.WORLD)
        (pool * torch.arange(12.0).reshape(pool.shape) * (rank + 1)).sum().backward()
        results[dim] = (pool.detach(), rows.grad)
    torch.save(results, folder / f"gathered{rank}.pt")
    dist.destroy_process_group()
    return 0


def test_global_negative_pool_holds_every_replica_and_returns_each_the_sum_of_its_gradients(tmp_path):
    ranks = fork_ranks(2, tmp_path, _gather, tmp_path)
    assert finish(ranks) == [0, 0], [rank.output for rank in ranks]
    for rank in (0, 1):
        for dim, (pool, grad) in torch.load(tmp_path / f"gathered{rank}.pt").items():
            rows = [torch.arange(6.0).reshape(2, 3) + 10 * r for r in (0, 1)]
            assert torch.equal(pool, torch.cat(rows, dim)), "in rank order"
            weights = torch.arange(12.0).reshape(pool.shape).chunk(2, dim)[rank]
            assert torch.equal(grad, weights * 1 + weights * 2), "rank 0's and rank 1's gradient for these rows"


def test_async_pipeline_respects_its_buffer_and_reuse_cap(tmp_path):
    """How often module 2 reuses or drops its inputs depends on timing; the bounds and the bookkeeping do not."""
    ranks = launch(
        2,
        tmp_path,
        *SMOKE,
        "--output",
        str(tmp_path),
        "--name",
        "async",
        "--train.max_steps",
        "12",
        "--train.log_every",
        "1",
        "--distributed.schedule",
        "async",
        "--distributed.buffer",
        "2",
        "--distributed.reuse_cap",
        "3",
    )
    assert finish(ranks) == [0, 0], [rank.output for rank in ranks]
    run = RunFolder.open(tmp_path / "async")
    rows = run.metrics()
    assert [row["step"] for row in rows] == list(range(1, 13))
    assert all(row["async/module2/buffered_max"] <= 2 and row["async/module2/uses_max"] <= 3 for row in rows)
    fresh = sum(row["async/module2/steps"] - row["async/module2/reused"] for row in rows)
    assert fresh + sum(row["async/module2/dropped"] for row in rows) == 12, "each batch used or dropped, once"
    run.load_checkpoint(prepare_modules(smoke(12), 1, CPU))


def test_a_supervised_objective_is_refused_by_every_rank_at_once(tmp_path):
    ranks = launch(
        2,
        tmp_path,
        *SMOKE,
        "--output",
        str(tmp_path),
        "--name",
        "s",
        "--objective.name",
        "supervised",
        "--objective.num_classes",
        "10",
        "--distributed.timeout",
        "30",
    )
    assert finish(ranks) == [2, 2], [rank.output for rank in ranks]
    assert all("objective needs labels on every rank" in rank.output for rank in ranks)


def test_overlapping_modules_are_refused_by_every_rank_at_once(tmp_path):
    ranks = launch(2, tmp_path, *SMOKE, "--output", str(tmp_path), "--name", "o", "--model.overlap", "1")
    assert finish(ranks) == [2, 2], [rank.output for rank in ranks]
    assert all("model.overlap: a module's loss also trains the first stages" in rank.output for rank in ranks)


@pytest.mark.parametrize("how", ["killed", "stalled"])
def test_a_lost_rank_stops_the_others_within_the_timeout_naming_it(tmp_path, how):
    """Rank 1 (module 2) of 3 is SIGKILLed or SIGSTOPped after the first checkpoint: ranks 0 and 2 exit with code 2
    and a message naming a rank and its module within the 3 s timeout (plus start-up slack on a busy machine);
    the newest checkpoint loads."""
    ranks = launch(
        3,
        tmp_path,
        *SMOKE,
        "--output",
        str(tmp_path),
        "--name",
        "r",
        "--train.epochs",
        "1000",
        "--distributed.timeout",
        "3",
    )
    checkpoints = tmp_path / "r" / "checkpoints"
    deadline = time.monotonic() + 60
    while not list(checkpoints.glob("step-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(ranks[1].process.pid, signal.SIGKILL if how == "killed" else signal.SIGSTOP)
    lost = time.monotonic()
    codes = finish([ranks[0], ranks[2]], timeout=30)
    waited = time.monotonic() - lost
    finish([ranks[1]], timeout=0)
    first, last = ranks[0].output, ranks[2].output
    assert codes == [2, 2], (first, last)
    assert waited < 3 + 2, f"the others took {waited:.1f} s to stop"
    assert "rank 2 (module 3): " in last and "rank 1 (module 2)" in last, "rank 2 waits on rank 1"
    assert "rank 0 (module 1): " in first and ("rank 1 (module 2)" in first or "rank 2 (module 3)" in first)
    assert "Traceback" not in first + last
    RunFolder.open(tmp_path / "r").load_checkpoint(prepare_modules(smoke(1), 1, CPU))


# -- topology ------------------------------------------------------------------------------------------------------


def test_topology_splits_modules_into_contiguous_stages_and_names_them():
    topology = Topology.of(Settings(smoke(1).train, DistributedConfig(stages=2)), num_modules=3, rank=3, world=4)
    assert (topology.stage, topology.replica, topology.replicas) == (1, 1, 2)
    assert [topology.modules(rank) for rank in range(4)] == [range(0, 1), range(1, 3)] * 2
    assert topology.name() == "rank 3 (modules 2-3)" and topology.name(2) == "rank 2 (module 1)"


@pytest.mark.parametrize(
    "world, options, message",
    [
        (4, {"stages": 3}, "do not divide"),
        (4, {"stages": 4}, "4 stages for the 3 modules that run"),
        (
            3,
            {"stages": 3, "train_module": 2},
            r"3 stages for the 2 modules that run \(every module up to the one trained\)",
        ),
        (4, {"stages": 2, "schedule": "async"}, "async runs one replica"),
    ],
)
def test_topology_rejects_impossible_layouts_naming_the_option(world, options, message):
    train = replace(smoke(1).train, train_module=options.pop("train_module", None))
    with pytest.raises(GimError, match=f"distributed.*{message}"):
        Topology.of(Settings(train, DistributedConfig(**options)), num_modules=3, rank=0, world=world)


def test_two_nodes_joined_by_torchrun_c10d_train_as_one_process_does(tmp_path, one_thread):
    """Two `torchrun --nnodes 2` launches (two machines' worth: one process each, gloo, c10d rendezvous on loopback)
    pipeline the three modules over two stages and write the same checkpoint as the local engine."""
    import shutil
    import socket
    import subprocess
    import sys

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        torchrun,
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{port}",
        "--rdzv-id",
        "two-nodes",
        "-m",
        "greedy_infomax.cli",
        "pretrain",
        *SMOKE,
        "--train.max_steps",
        "4",
        "--output",
        str(tmp_path),
        "--name",
        "nodes",
        "--distributed.stages",
        "2",
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [
        subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [node.communicate(timeout=240)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    straight = RunFolder.create(tmp_path, "straight", smoke(4))
    pretrain(smoke(4), straight)
    assert_same_checkpoint(tmp_path / "nodes" / "checkpoints" / "step-00000004", straight.checkpoints / "step-00000004")
