"""The module-parallel engine: gradient-isolated modules trained at the same time in different processes.

torchrun starts WORLD_SIZE processes; rank r is stage r % S of replica r // S (S = distributed.stages, by
default WORLD_SIZE), and stage s owns consecutive modules. Stage 0 reads its replica's share of the batches;
every other stage receives the detached output of the stage before it. Each steps its modules with the local
engine's train_step and sends its output on: only activations cross processes, never a gradient, which is
what gradient isolation allows. Controls (log, checkpoint, end) follow the batches down the pipeline; each
stage answers them with a report to rank 0 (losses, async statistics, and its modules' states for a
checkpoint), and rank 0 writes the metrics rows and per-module checkpoint files a local run writes, with the
same RunFolder, so either kind of run resumes or probes the other's checkpoints.

`pretrain` trains the modules a run's config describes, `train` modules built in Python (the API): both build
the modules on every rank, then run the same start, pipeline and checkpoints.

Replicas of a stage average their gradients before every Adam step (data parallelism); with
distributed.negatives=global each replica draws negatives from every replica's batch of that stage.

Online probes (train.online_probe, an Observer): each stage owns the classifiers of its own modules. Stage 0 asks
the probes what they read of each batch (its labels, or a labelled batch beside it) and that travels with the
activations down the pipeline, each stage probing its modules' outputs and sending on what the next one reads.
Only replica 0 probes: its classifiers are the only ones, so nothing needs to keep replicas' classifiers equal,
and its stages' accuracies and classifier states go to rank 0 in their reports, into the rows and checkpoints a
local run writes. With one replica and the sync schedule, the probes log and save what the local engine's do.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import timedelta
from itertools import islice
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from greedy_infomax.config import DistributedConfig, TrainConfig
from greedy_infomax.data.loader import Batches
from greedy_infomax.engines.divergence import first_ruined, weight_sizes
from greedy_infomax.engines.local import (
    Observer,
    Progress,
    StopSignals,
    check_observer,
    check_skips_in_a_row,
    first_nonfinite,
    logged_values,
    resume_progress,
    settle_resumed,
    train_step,
)
from greedy_infomax.engines.transport import (
    CHECKPOINT,
    CONTROL,
    DATA,
    END,
    LOG,
    REPORT,
    SKIP,
    Channel,
    Inbox,
    Message,
    pack,
    unpack,
)
from greedy_infomax.errors import GimError, TrainingStopped
from greedy_infomax.placement import configure, resolve_device, trained_indices
from greedy_infomax.reporting.run_folder import RunFolder


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_first_rank() -> bool:
    """Rank 0 holds the run folder; read before the process group exists."""
    return int(os.environ.get("RANK", "0")) == 0


@dataclass(frozen=True)
class Settings:
    """What the engine reads of a run: the training loop's options and the layout of the processes."""

    train: TrainConfig
    distributed: DistributedConfig


@dataclass(frozen=True)
class Topology:
    """Where each process stands: rank = replica * stages + stage; stage s owns modules bounds[s] .. bounds[s+1]-1
    (0-based). Replicas of one pipeline are consecutive ranks, so with --nproc-per-node = stages each machine
    holds whole pipelines: activations stay on the machine and only gradient averages cross the network."""

    rank: int
    stages: int
    replicas: int
    bounds: tuple[int, ...]

    @classmethod
    def of(cls, settings: Settings, num_modules: int, rank: int, world: int) -> Topology:
        """Balanced contiguous stages over the modules that run (those after the last trained one never do)."""
        stages, active = settings.distributed.stages or world, trained_indices(settings.train, num_modules).stop
        if world % stages:
            raise GimError(f"distributed.stages: {stages} stages do not divide the {world} processes")
        if settings.train.curriculum == "sequential":
            raise GimError(
                "train.curriculum: the sequential curriculum trains one module at a time, so it runs in "
                "one process (gim pretrain without torchrun)"
            )
        if stages > active:
            which = " (every module up to the one trained)" if settings.train.train_module else ""
            raise GimError(
                f"distributed.stages: {stages} stages for the {active} modules that run{which}; use at most {active}"
            )
        if settings.distributed.schedule == "async" and world > stages:
            raise GimError(
                "distributed.schedule: async runs one replica (its stages step a varying number of "
                "times, so replicas could not average gradients in step); use --nproc-per-node = stages"
            )
        return cls(rank, stages, world // stages, tuple(s * active // stages for s in range(stages + 1)))

    @property
    def stage(self) -> int:
        return self.rank % self.stages

    @property
    def replica(self) -> int:
        return self.rank // self.stages

    def modules(self, rank: int | None = None) -> range:
        stage = (self.rank if rank is None else rank) % self.stages
        return range(self.bounds[stage], self.bounds[stage + 1])

    def rank_of(self, stage: int, replica: int | None = None) -> int:
        return (self.replica if replica is None else replica) * self.stages + stage

    def name(self, rank: int | None = None) -> str:
        """'rank 1 (module 2)' or 'rank 1 (modules 2-3)', 1-based modules as everywhere else."""
        owned = self.modules(rank)
        span = f"module {owned.start + 1}" if len(owned) == 1 else f"modules {owned.start + 1}-{owned.stop}"
        return f"rank {self.rank if rank is None else rank} ({span})"


@dataclass
class Links:
    """This rank's channels: from its predecessor (as an inbox), to its successor, its reports to rank 0, rank 0's
    inboxes of every other stage's reports, and the process group of its stage's replicas."""

    inbox: Inbox | None
    successor: Channel | None
    reports: Channel | None
    report_inboxes: list[Inbox]
    replicas: dist.ProcessGroup | None


def pretrain(
    options: TrainConfig,
    distributed: DistributedConfig,
    num_modules: int,
    data: Callable[[torch.device], tuple[Batches, int]],
    build: Callable[[int, torch.device], nn.ModuleList],
    run: RunFolder | None,
    resume: bool = False,
    on_start: Callable[[], None] | None = None,
    probes: Callable[[torch.device], Observer | None] | None = None,
) -> nn.ModuleList:
    """This process's part of a torchrun launch of a task's run; rank 0 passes the run folder, the others None.
    Stage 0 reads the data (`data(device)`: the loader and the input channels) and rank 0 tells every rank the
    input channels, from which each builds its placed modules with `build` (and its online probes with `probes`);
    rank 0 calls `on_start` once the resumed checkpoint is loaded. Returns the modules (on rank 0 all of them, as
    last checkpointed; elsewhere up to date only for the rank's own)."""
    settings = Settings(options, distributed)
    with _process_group(settings, num_modules, run) as (topology, device):
        loader, in_channels = data(device) if topology.stage == 0 else (None, 0)
        in_channels = _from_first_rank(lambda rank: in_channels, settings, topology, device)
        modules = build(in_channels, device)
        observer = None if probes is None else probes(device)
        progress = _start(settings, topology, run, modules, resume, device, observer)
        if topology.rank == 0 and on_start is not None:
            on_start()
        return _train(settings, topology, run, modules, loader, progress, device, observer)


def train(
    modules: nn.ModuleList,
    loader: Batches,
    run: RunFolder | None,
    options: TrainConfig,
    resume: bool = False,
    distributed: DistributedConfig = DistributedConfig(),
    observer: Observer | None = None,
) -> nn.ModuleList:
    """This process's part of a torchrun launch of a script that built `modules` (and `observer`, the online probes)
    itself (every rank runs it): stage 0 reads `loader`, rank 0 writes `run` (the others may pass None) and hands
    every rank its starting weights. Returns the modules as `pretrain` does."""
    check_observer(options, observer)
    settings = Settings(options, distributed)
    with _process_group(settings, len(modules), run) as (topology, device):
        modules = configure(modules, options, device)
        progress = _start(settings, topology, run, modules, resume, device, observer)
        return _train(settings, topology, run, modules, loader, progress, device, observer)


@contextmanager
def _process_group(
    settings: Settings, num_modules: int, run: RunFolder | None
) -> Iterator[tuple[Topology, torch.device]]:
    """Join the processes, and leave them: at the end, on a stop signal (after rank 0's checkpoint), or on a
    failure (see _exit_before_teardown)."""
    if is_first_rank() and run is None:
        raise GimError("rank 0 writes the run folder: pass it a RunFolder (the other ranks may pass None)")
    if settings.train.validation:
        raise GimError("train.validation: only the local engine holds data out to validate on; run without torchrun")
    if run is not None:
        run.keep_every = settings.train.keep_every
    topology, device = _join(settings, num_modules)
    try:
        yield topology, device
    except TrainingStopped:
        dist.destroy_process_group()
        raise
    except BaseException as error:
        _exit_before_teardown(2 if isinstance(error, GimError) else 130 if isinstance(error, KeyboardInterrupt) else 1)
        raise
    dist.destroy_process_group()


def _exit_before_teardown(code: int) -> None:
    """After a failure, receiving threads may still be blocked in a transfer from a lost rank. If one wakes while
    the interpreter tears down, it cannot take the GIL and the C++ runtime aborts the process (exit 134, seen in
    about a third of the tests that stall a rank). So once the error is printed, leave at the first exit hook
    with the code the gim command gives the error (2 for a GimError)."""

    def leave() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    atexit.register(leave)


def _join(settings: Settings, num_modules: int) -> tuple[Topology, torch.device]:
    """Join the process group torchrun describes: gloo on CPU; NCCL on GPU, process r on cuda:LOCAL_RANK."""
    device = resolve_device(settings.train.device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=settings.distributed.timeout)
        )
    except RuntimeError as error:  # the rendezvous timed out, or its address is unreachable
        where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
        raise GimError(
            f"rank {os.environ.get('RANK')}: could not join the {os.environ.get('WORLD_SIZE')} processes "
            f"at {where}: {str(error).splitlines()[0]}"
        ) from None
    return Topology.of(settings, num_modules, dist.get_rank(), dist.get_world_size()), device


def _train(
    settings: Settings,
    topology: Topology,
    run: RunFolder | None,
    modules: nn.ModuleList,
    loader: Batches | None,
    progress: Progress,
    device: torch.device,
    observer: Observer | None = None,
) -> nn.ModuleList:
    """Connect and run this rank's stage; a stop signal ends it with TrainingStopped once rank 0 has checkpointed.
    Only replica 0 feeds its `observer` (see the module's docstring)."""
    links = _connect(settings, topology, device)
    _share_replicas(settings, topology, modules, links.replicas)
    observer = observer if topology.replica == 0 else None
    with StopSignals() as stop:
        if topology.stage == 0:
            total = _total_steps(settings.train, loader, topology)
            source = _batches(loader, progress, total, topology, settings.train, stop, observer)
        else:
            source = links.inbox.messages(settings.distributed.timeout)
        recorder = (
            Recorder(settings, topology, run, modules, links.report_inboxes, progress, loader)
            if topology.rank == 0
            else None
        )
        Stage(settings, topology, modules, links, progress.step, observer).run(source, recorder)
    if stop.received is not None:
        where = f"checkpoint {run.latest_checkpoint()}" if topology.rank == 0 else "rank 0 wrote the checkpoint"
        raise TrainingStopped(
            stop.received, f"{topology.name()} stopped by {signal.Signals(stop.received).name}; {where}"
        )
    return modules


def _total_steps(train: TrainConfig, loader: Batches, topology: Topology) -> int:
    total = train.epochs * _steps_per_epoch(loader, topology)
    return total if train.max_steps is None else min(total, train.max_steps)


def _steps_per_epoch(loader: Batches, topology: Topology) -> int:
    """Each replica takes every R-th batch of an epoch, so an epoch is len(loader) // R steps."""
    per_epoch = len(loader) // topology.replicas
    if per_epoch == 0:
        raise GimError(f"{len(loader)} batches per epoch do not give each of {topology.replicas} replicas one")
    return per_epoch


def _start(
    settings: Settings,
    topology: Topology,
    run: RunFolder | None,
    modules: nn.ModuleList,
    resume: bool,
    device: torch.device,
    observer: Observer | None = None,
) -> Progress:
    """Rank 0's modules are every rank's start, however each rank built its own: rank 0 reads the newest
    checkpoint when resuming, then sends each rank the progress, its modules' states and their probes' states."""
    if any(getattr(module.objective, "needs_labels", False) for module in modules):
        raise GimError(
            "objective: this objective needs labels on every rank, which only the local engine passes; "
            "run without torchrun"
        )
    if any(module.lookahead for module in modules):
        raise GimError(
            "model.overlap: a module's loss also trains the first stages of the next module, which under torchrun "
            "may live in another process; train overlapping modules without torchrun"
        )
    resumed = topology.rank == 0 and resume
    progress, observed = resume_progress(run, modules, topology.replicas) if resumed else (Progress(), None)
    start = _from_first_rank(
        lambda rank: {
            "progress": asdict(progress),
            "states": _states(modules, topology.modules(rank)),
            "observed": {index: state for index, state in (observed or {}).items() if index in topology.modules(rank)},
        },
        settings,
        topology,
        device,
    )
    if topology.rank > 0:
        _load_states(modules, start["states"])
    if observer is not None:
        observer.load_state_dict(start["observed"], device)
    return Progress(**start["progress"])


def _from_first_rank(packet: Callable[[int], Any], settings: Settings, topology: Topology, device: torch.device) -> Any:
    """packet(rank) as rank 0 computes it: rank 0 sends it to every other rank, which waits for it."""
    if topology.rank > 0:
        channel = _channel(0, dist.group.WORLD, device, settings, topology)
        return unpack(Inbox(channel, None).take(settings.distributed.timeout).tensor)
    for rank in range(1, topology.stages * topology.replicas):
        channel = _channel(rank, dist.group.WORLD, device, settings, topology)
        channel.send(Message(REPORT, 0, END, pack(packet(rank), device)))  # END: the only message
        channel.flush()
    return packet(0)


def _channel(
    peer: int, group: dist.ProcessGroup, device: torch.device, settings: Settings, topology: Topology
) -> Channel:
    return Channel(peer, group, device, settings.distributed.timeout, topology.name(), topology.name(peer))


def _connect(settings: Settings, topology: Topology, device: torch.device) -> Links:
    """One process group per channel and per stage's replicas. Every rank creates every group, in one order."""
    t, d = topology, settings.distributed
    forward = {
        (replica, stage): dist.new_group([t.rank_of(stage, replica), t.rank_of(stage + 1, replica)])
        for replica in range(t.replicas)
        for stage in range(t.stages - 1)
    }
    reports = {stage: dist.new_group([0, t.rank_of(stage, 0)]) for stage in range(1, t.stages)}
    replicas = [dist.new_group([t.rank_of(stage, r) for r in range(t.replicas)]) for stage in range(t.stages)]
    inbox = successor = report_channel = None
    if t.stage > 0:
        previous = _channel(t.rank_of(t.stage - 1), forward[t.replica, t.stage - 1], device, settings, t)
        inbox = Inbox(previous, d.buffer, d.reuse_cap if d.schedule == "async" else None)
    if t.stage < t.stages - 1:
        successor = _channel(t.rank_of(t.stage + 1), forward[t.replica, t.stage], device, settings, t)
    if t.replica == 0 and t.stage > 0:
        report_channel = _channel(0, reports[t.stage], device, settings, t)
    report_inboxes = (
        [Inbox(_channel(stage, reports[stage], device, settings, t), None) for stage in range(1, t.stages)]
        if t.rank == 0
        else []
    )
    return Links(inbox, successor, report_channel, report_inboxes, replicas[t.stage] if t.replicas > 1 else None)


def _share_replicas(
    settings: Settings, topology: Topology, modules: nn.ModuleList, group: dist.ProcessGroup | None
) -> None:
    """Data parallelism for this rank's modules: gradients averaged over the stage's replicas before each Adam
    step, and with global negatives the replicas' batches pooled."""
    if group is None:
        return
    for index in topology.modules():
        module = modules[index]
        if settings.distributed.negatives == "global" and hasattr(module.objective, "negatives_group"):
            module.objective.negatives_group = group  # an objective that draws negatives pools them there
        if module.optimizer is not None:
            module.optimizer.register_step_pre_hook(lambda *_, module=module: _average_gradients(module, group))


def _average_gradients(module: nn.Module, group: dist.ProcessGroup) -> None:
    """Replace each gradient by its mean over the replicas and skip the update on every replica where one skips
    it (one all_reduce of the gradients and the skip flags), so equal replicas stay equal after Adam."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    skip = module.optimizer.found_inf
    flat = torch.cat([grad.reshape(-1) for grad in grads] + [skip.reshape(1).to(grads[0].dtype)])
    dist.all_reduce(flat, group=group)
    skip.copy_(flat[-1] > 0)
    flat /= dist.get_world_size(group)
    for grad, mean in zip(grads, flat[:-1].split([grad.numel() for grad in grads])):
        grad.copy_(mean.view_as(grad))


def _states(modules: nn.ModuleList, indices: range) -> dict[int, dict[str, Any]]:
    return {
        index: {
            "state_dict": modules[index].state_dict(),
            "optimizer": None if modules[index].optimizer is None else modules[index].optimizer.state_dict(),
        }
        for index in indices
    }


def _load_states(modules: nn.ModuleList, states: dict[int, dict[str, Any]]) -> None:
    for index, state in states.items():
        modules[index].load_state_dict(state["state_dict"])
        if state["optimizer"] is not None:
            modules[index].optimizer.load_state_dict(state["optimizer"])


def _batches(
    loader: Batches,
    progress: Progress,
    total: int,
    topology: Topology,
    train: TrainConfig,
    stop: StopSignals,
    observer: Observer | None = None,
) -> Iterator[Message]:
    """Stage 0's input: its replica's batches (with what the `observer` reads of each), each followed by a control
    where the local engine would log, checkpoint or end; a stop signal ends the run with a checkpoint."""
    per_epoch = _steps_per_epoch(loader, topology)
    settle_resumed(progress, total, per_epoch, train)
    while progress.step < total:
        for x, labels in islice(_replica_batches(loader, progress, topology), per_epoch - progress.batch):
            observed = () if observer is None else observer.batch(progress.step, labels)
            yield Message(DATA, progress.step, tensor=x, extra=observed)
            progress.advance(per_epoch)
            step = progress.step
            flags = (
                LOG * (step % train.log_every == 0 or step == total)
                | CHECKPOINT * (step % train.checkpoint_every == 0 or step == total)
                | END * (step == total)
            )
            if stop.received is not None:
                flags |= CHECKPOINT | END
            if flags:
                yield Message(CONTROL, step, flags)
            if flags & END:
                return
    yield Message(CONTROL, progress.step, END)  # resumed at the end: nothing left to do


def _replica_batches(loader: Batches, progress: Progress, topology: Topology) -> Iterator[tuple[torch.Tensor, Any]]:
    """The rest of the epoch for this replica: batch b goes to replica b % R, which needs a loader whose epoch()
    takes a stride (BatchLoader, WindowLoader); a single replica reads any loader of the Batches shape."""
    if topology.replicas == 1:
        return loader.epoch(progress.epoch, progress.batch)
    return loader.epoch(progress.epoch, progress.batch * topology.replicas + topology.replica, stride=topology.replicas)


class Stage:
    """This rank's share of the training loop: its modules stepped on each input, outputs and controls passed on,
    controls answered with a report. Apart from where x comes from and where the output goes, it is the local loop.
    The `observer` probes the modules of each input it steps on (under the async schedule, reused inputs again);
    a batch skipped for a non-finite loss is not probed here nor by the stages after."""

    def __init__(
        self,
        settings: Settings,
        topology: Topology,
        modules: nn.ModuleList,
        links: Links,
        step: int,
        observer: Observer | None = None,
    ) -> None:
        self.settings = settings
        self.topology = topology
        self.modules = modules
        self.links = links
        self.observer = observer
        self.step = step  # steps this stage has taken, the version of what it sends
        self.losses: dict[str, float] = {}
        self.skipped = 0
        self.in_a_row = 0  # own batches skipped in a row (on_nonfinite skip)
        self.idle = 0.0  # seconds spent waiting on other ranks since the last report
        self.since = time.perf_counter()
        self.start_sizes = weight_sizes(self._owned())

    def run(self, source: Iterator[Message], recorder: Recorder | None) -> None:
        for message in source if self.links.inbox is None else self._waited_for(source):
            if message.kind == CONTROL:
                self._send(message)
                self._answer(message, recorder)
                if message.ends:
                    break
            else:
                output = self._train(message)
                if output is not None:
                    self._send(output)
        for channel in (self.links.successor, self.links.reports):
            if channel is not None:
                channel.flush()

    def _train(self, message: Message) -> Message | None:
        """Step the owned modules on a received batch; what to send on (None: nothing, async after a skip)."""
        trained, replica = trained_indices(self.settings.train, len(self.modules)), self.topology.replica
        draws = (self.settings.train.seed, self.step) + ((replica,) if replica else ())
        self.step += 1
        if message.kind == SKIP:
            self.skipped, self.losses = self.skipped + 1, {}
            return message
        outputs = None if self.observer is None else []
        output, losses, held = train_step(
            self.modules,
            message.tensor,
            trained,
            draws,
            self.topology.modules(),
            frozen_chunks=self.settings.train.frozen_chunks,
            outputs=outputs,
        )
        first = max(self.topology.modules().start, trained.start) + 1
        if held.item():
            if self.settings.train.on_nonfinite == "stop":
                module, value = first_nonfinite(losses, first) or (None, None)
                where = f"module {module}" if module is not None else "a module of another replica"
                raise GimError(
                    f"{self.topology.name()}: {where} diverged at step {self.step} (loss {value}); the "
                    "newest checkpoint holds the last good weights. Lower --train.lr, or pass "
                    "--train.on_nonfinite skip"
                )
            self.skipped, self.losses, self.in_a_row = self.skipped + 1, {}, self.in_a_row + 1
            check_skips_in_a_row(self.in_a_row, f"{self.topology.name()}: ")
            return Message(SKIP, self.step) if self.settings.distributed.schedule == "sync" else None
        self.in_a_row = 0
        self.losses = logged_values(first, losses, [self.modules[first - 1 + i].metrics() for i in range(len(losses))])
        observed = ()
        if self.observer is not None:
            observed = self.observer.observe(self.modules, trained, outputs, message.extra, self.topology.modules())
        return Message(DATA, self.step, tensor=output, extra=observed)

    def _owned(self) -> list[nn.Module]:
        return [self.modules[index] for index in self.topology.modules()]

    def _check_weights(self, step: int) -> None:
        """Stop before a report (and so before any checkpoint) if an owned module's weights blew up, as the local
        engine does (engines/divergence.py): rank 0 then writes nothing, and its newest checkpoint is from before."""
        ruined = first_ruined(self.start_sizes, self._owned(), self.topology.modules().start + 1)
        if ruined is not None:
            number, before, now = ruined
            raise GimError(
                f"{self.topology.name()}: module {number} diverged by step {step}: the root-mean-square of its "
                f"weights went from {before:.3g} to {now:.3g}, so they were not saved. Lower --train.lr and resume "
                "from the newest checkpoint, which is from before (a run without one yet starts again)"
            )

    def _waited_for(self, source: Iterator[Message]) -> Iterator[Message]:
        """The messages of the inbox, the time spent waiting for them counted as idle."""
        while True:
            started = time.perf_counter()
            message = next(source, None)
            self.idle += time.perf_counter() - started
            if message is None:
                return
            yield message

    def _send(self, message: Message) -> None:
        """Send on (the wait for the successor to take the previous message counts as idle)."""
        if self.links.successor is not None:
            started = time.perf_counter()
            self.links.successor.send(message)
            self.idle += time.perf_counter() - started

    def _answer(self, control: Message, recorder: Recorder | None) -> None:
        """Report to rank 0 (only replica 0 reports: replicas are equal). `busy` is the share of the time since the
        last report this stage spent computing rather than waiting: the pipeline's slowest stage is the one near 1."""
        self._check_weights(control.step)
        started, first = time.perf_counter(), self.topology.modules().start + 1
        shipped = recorder is None and control.flags & CHECKPOINT  # rank 0's own modules are at hand
        statistics = {f"busy/module{first}": 1 - self.idle / (started - self.since)}
        if self.links.inbox is not None and self.settings.distributed.schedule == "async":
            statistics |= {f"async/module{first}/{key}": value for key, value in self.links.inbox.statistics().items()}
        values = self.losses
        if self.observer is not None and control.flags & LOG:
            values = values | {name: float(value) for name, value in self.observer.values().items()}
        report = {
            "step": control.step,
            "losses": values,
            "skipped": self.skipped,
            "statistics": statistics,
            "states": _states(self.modules, self.topology.modules()) if shipped else {},
        }
        if self.observer is not None and control.flags & CHECKPOINT:
            report["observed"] = self.observer.state_dict()
        if recorder is not None:
            recorder.record(control, report)
        elif self.links.reports is not None:
            device = self.links.reports.device
            self.links.reports.send(Message(REPORT, control.step, control.flags, pack(report, device)))
        self.since, self.idle = started, time.perf_counter() - started  # reporting is not this stage's work


class Recorder:
    """Rank 0 assembles every stage's reports for a control into the row and the checkpoint a local run writes
    at that step. Rows wait until all stages have reported; checkpoints and the end wait for them."""

    def __init__(
        self,
        settings: Settings,
        topology: Topology,
        run: RunFolder,
        modules: nn.ModuleList,
        inboxes: list[Inbox],
        progress: Progress,
        loader: Batches,
    ) -> None:
        self.settings = settings
        self.topology = topology
        self.run = run
        self.modules = modules
        self.inboxes = inboxes
        self.progress = progress
        self.batch_size = loader.batch_size
        self.per_epoch = _steps_per_epoch(loader, topology)
        self.pending: dict[int, tuple[Message, dict[str, Any], list[dict[str, Any]]]] = {}
        # the newest step each other stage has reported: none yet, not even for a resumed run's first step, whose
        # END control a run resumed at its end sends at once, and every stage reports before rank 0 may exit
        self.reported = [progress.step - 1] * len(inboxes)
        self.started, self.first_step = time.perf_counter(), progress.step

    def record(self, control: Message, report: dict[str, Any]) -> None:
        p = self.progress
        rate = (
            (p.step - self.first_step) * self.batch_size * self.topology.replicas / (time.perf_counter() - self.started)
        )
        position = {**asdict(p), "batch": p.batch * self.topology.replicas}  # as a local run would save it
        logged = {"epochs_done": p.epochs_done(self.per_epoch), "samples_per_second": rate}
        self.pending[control.step] = (control, {**logged, **position}, [report])
        self._collect(wait=bool(control.flags & (CHECKPOINT | END)))
        if control.ends:
            self.run.close()

    def _collect(self, wait: bool) -> None:
        """Take the reports that have arrived; with `wait`, all of them up to the newest control, within one
        timeout in all (a silent stage fails naming every stage that has not reported)."""
        newest, deadline = max(self.pending), time.monotonic() + self.settings.distributed.timeout
        for stage, inbox in enumerate(self.inboxes, start=1):
            while inbox.ready() or (wait and self.reported[stage - 1] < newest):
                try:
                    report = unpack(inbox.take(max(deadline - time.monotonic(), 0.0)).tensor)
                except GimError as error:
                    silent = [self.topology.name(s) for s, step in enumerate(self.reported, start=1) if step < newest]
                    raise GimError(f"{error} (no report for step {newest} from: {', '.join(silent)})") from None
                self.reported[stage - 1] = report["step"]
                self.pending[report["step"]][2].append(report)
        while self.pending and len(self.pending[min(self.pending)][2]) == self.topology.stages:
            self._write(*self.pending.pop(min(self.pending)))

    def _write(self, control: Message, own: dict[str, Any], reports: list[dict[str, Any]]) -> None:
        if control.flags & LOG:
            losses = {key: value for report in reports for key, value in report["losses"].items()}
            statistics = {key: value for report in reports for key, value in report["statistics"].items()}
            self.run.log(
                control.step,
                {
                    **dict(sorted(losses.items())),
                    "epoch": own["epochs_done"],
                    "samples_per_second": own["samples_per_second"],
                    "skipped_batches": max(report["skipped"] for report in reports),
                    **statistics,
                },
            )
        if control.flags & CHECKPOINT:
            for report in reports:
                _load_states(self.modules, report["states"])
            saved = {key: own[key] for key in asdict(self.progress)}
            observed = [report["observed"] for report in reports if "observed" in report]
            if observed:  # every stage's probes, in the one dict a local run saves
                saved["observer"] = {index: state for states in observed for index, state in states.items()}
            self.run.save_checkpoint(self.modules, saved)
