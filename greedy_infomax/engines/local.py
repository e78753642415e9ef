"""The single-process engine: a thin loop over each module's step(), with logging, checkpoints, resumes and what
happens when a loss is not finite or a stop signal arrives.

`train` trains any list of IsolatedModules (built with models/split.py, or by a task) on any loader of the
`Batches` shape; placement (device, precision, memory format, compilation) is placement.py's.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from greedy_infomax.config import TrainConfig
from greedy_infomax.data.loader import Batches
from greedy_infomax.engines.divergence import WeightWatch
from greedy_infomax.errors import GimError, TrainingStopped
from greedy_infomax.isolation import run_frozen
from greedy_infomax.placement import configure, resolve_device, trained_indices
from greedy_infomax.reporting.run_folder import RunFolder


@dataclass
class Progress:
    """Where training stands: `step` batches done; the next batch is `batch` of `epoch`."""

    step: int = 0
    epoch: int = 0
    batch: int = 0
    steps_per_module: int | None = None
    """Sequential curriculum: the steps each module trains alone, kept so a resume can tell if they moved."""

    def advance(self, batches_per_epoch: int) -> None:
        self.step += 1
        self.batch += 1
        if self.batch == batches_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0

    def epochs_done(self, batches_per_epoch: int) -> float:
        """Epochs trained so far, fractional within one: 1.0 right after the first epoch's last batch."""
        return self.epoch + self.batch / batches_per_epoch


class Observer(Protocol):
    """What watches training without changing it (evaluation/online_probe.py's OnlineProbes): at each step it picks
    what it reads (`batch`: tensors, so a pipeline can send them from stage to stage beside the activations), then
    sees the detached outputs of the trained modules (`observe`: those `owned` by one stage of a pipeline; it
    returns what the next stage reads). Its values are logged beside the losses, and its state, a dict keyed by
    module index, goes into every checkpoint, so a resume goes on where it was."""

    def batch(self, step: int, labels: Any) -> tuple[torch.Tensor, ...]: ...

    def observe(
        self,
        modules: nn.ModuleList,
        trained: range,
        outputs: list[torch.Tensor],
        batch: tuple[torch.Tensor, ...],
        owned: range | None = None,
    ) -> tuple[torch.Tensor, ...]: ...

    def values(self) -> dict[str, torch.Tensor]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None: ...


def train_step(
    modules: nn.ModuleList,
    x: torch.Tensor,
    trained: range,
    draws: tuple[int, ...],
    owned: range | None = None,
    labels: torch.Tensor | None = None,
    frozen_chunks: int = 1,
    hold: torch.Tensor | None = None,
    outputs: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """One batch through the `owned` modules (default: all up to the last trained one), x being the input of the
    first of them: modules before the trained ones run frozen without autograd, then each trained module steps.
    Returns the last owned module's output, the losses, and `held`: a bool tensor on the device, set when some
    module skipped its update (a non-finite loss, or `hold` set on entry).

    `draws` (run seed, step, ...) seeds each module's random draws (see seed_module). Labels reach every
    objective (self-supervised ones ignore them). Once a module skips, the modules after it hold this batch too;
    those before it have stepped. Nothing here waits for the device: the caller reads `held` when it chooses.
    Each trained module's (detached) output is appended to `outputs` if given.
    """
    owned = range(trained.stop) if owned is None else owned
    frozen = range(owned.start, max(owned.start, min(owned.stop, trained.start)))
    x = run_frozen([modules[index] for index in frozen], x, frozen_chunks)
    held, losses = hold, []
    for index in range(frozen.stop, owned.stop):
        modules[index].train()
        seed_module(draws, index)
        x, loss, held = modules[index].step(x, labels, held)
        losses.append(loss)
        if outputs is not None:
            outputs.append(x)
    if held is None:  # no module stepped here and nothing held on entry
        held = torch.zeros((), dtype=torch.bool, device=x.device)
    return x, losses, held


SKIP_LIMIT = 100
"""With on_nonfinite "skip": batches skipped in a row after which a run counts as diverged for good and stops,
rather than running to its end without learning."""


def check_skips_in_a_row(count: int, where: str = "") -> None:
    """Stop a run whose last SKIP_LIMIT batches were all skipped: it diverged for good."""
    if count >= SKIP_LIMIT:
        raise GimError(
            f"{where}{count} batches in a row were skipped for a non-finite loss: the run diverged for "
            "good. Lower --train.lr and resume from the newest checkpoint"
        )


def logged_values(
    first_module: int, losses: list[torch.Tensor], metrics: list[dict[str, torch.Tensor]]
) -> dict[str, float]:
    """What a step logs for the modules it trained, from module `first_module` (1-based) on: loss/moduleK, then
    NAME/moduleK for each thing an objective measured besides its loss (accuracy/moduleK for InfoNCE), read from
    the device in one copy."""
    numbers = range(first_module, first_module + len(losses))
    names = [f"loss/module{k}" for k in numbers]
    names += [f"{name}/module{k}" for k, measured in zip(numbers, metrics) for name in measured]
    values = [*losses, *(value for measured in metrics for value in measured.values())]
    return dict(zip(names, torch.stack([value.float() for value in values]).tolist())) if values else {}


def first_nonfinite(losses: list[torch.Tensor], first_module: int) -> tuple[int, float] | None:
    """(1-based module number, loss) of the first non-finite loss of a step whose losses start at module
    `first_module`, or None."""
    for number, loss in enumerate(losses, start=first_module):
        if not torch.isfinite(loss):
            return number, loss.item()
    return None


def seed_module(draws: tuple[int, ...], index: int) -> None:
    """Seed the generator that module `index` draws its negatives (and windows) from with (*draws, index) alone,
    so the module draws the same whichever process runs it and whatever ran before it: a module-parallel run
    equals the local one, and a resumed run needs no saved generator state."""
    torch.manual_seed(int(np.random.SeedSequence((*draws, index)).generate_state(1)[0]))


class StopSignals:
    """SIGINT and SIGTERM ask training to stop after the current step, so a checkpoint can be written first.

    A second signal stops at once (KeyboardInterrupt). Outside the main thread signals cannot be caught,
    and training runs unprotected.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> StopSignals:
        self.received: int | None = None
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}
        return self

    def __exit__(self, *exc_info) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = number
        # os.write, not print: the signal may arrive while the progress bar is printing
        os.write(
            2,
            f"\n{signal.Signals(number).name}: stopping after this step, with a checkpoint "
            f"(a second signal stops at once, without one)\n".encode(),
        )


def train(
    modules: nn.ModuleList,
    loader: Batches,
    run: RunFolder,
    options: TrainConfig = TrainConfig(),
    resume: bool = False,
    observer: Observer | None = None,
) -> nn.ModuleList:
    """Train any IsolatedModules greedily: `options` as in a run's `train` section, logs and checkpoints in `run`.

    Each module's negatives are drawn from (`options.seed`, step, module); the loader brings its own order and
    augmentation, and must yield batches on `options.device`.
    """
    modules = configure(modules, options, resolve_device(options.device))
    return fit(modules, loader, run, options, resume, observer=observer)


def fit(
    modules: nn.ModuleList,
    loader: Batches,
    run: RunFolder,
    options: TrainConfig,
    resume: bool = False,
    on_start: Callable[[], None] | None = None,
    validation: Batches | None = None,
    observer: Observer | None = None,
) -> nn.ModuleList:
    """`train` for modules already placed (placement.configure); `on_start` runs once the checkpoint, if resuming,
    is loaded and checked against `options`, just before the first step. With `validation`, each module's loss on
    it is logged after every epoch. `options.online_probe` needs its `observer` (the probes)."""
    check_observer(options, observer)
    run.keep_every = options.keep_every
    progress, observed = resume_progress(run, modules) if resume else (Progress(), None)
    if observer is not None and observed is not None:
        observer.load_state_dict(observed, next(modules.parameters()).device)
    settle_phases(progress, options, len(loader))
    if on_start is not None:
        on_start()
    train_loop(options, run, modules, loader, progress, validation, observer)
    return modules


def check_observer(options: TrainConfig, observer: Observer | None) -> None:
    """`train.online_probe` set without the probes to train is a mistake of the caller's, said at once."""
    if options.online_probe and observer is None:
        raise GimError(
            "train.online_probe: pass the probes to train them, e.g. observer=gim.OnlineProbes(num_classes=10)"
        )


def validation_losses(modules: nn.ModuleList, loader: Batches, seed: int) -> dict[str, float]:
    """Each module's mean loss over one pass of `loader`, without autograd, every module on the (frozen) output of
    the one before; its random draws (negatives) seeded by the batch alone, so every epoch is scored alike."""
    totals = [0.0] * len(modules)
    with torch.no_grad():
        for batch, (x, labels) in enumerate(loader.epoch(0)):
            for index, module in enumerate(modules):
                seed_module((seed, 0, batch, 1), index)  # apart from every training draw (seed, step)
                x, loss = module.loss(x, labels)
                totals[index] += float(loss)
    return {f"val_loss/module{index + 1}": total / len(loader) for index, total in enumerate(totals)}


def resume_progress(
    run: RunFolder, modules: nn.ModuleList, batches_per_step: int = 1
) -> tuple[Progress, dict[int, Any] | None]:
    """Load the newest checkpoint (weights, optimisers) if any; drop metrics logged after it. Returns the progress
    and the observer's saved state (None if it had none). The data position counts steps of `batches_per_step`
    loader batches (R data-parallel replicas read R), so an unfinished group of batches is skipped."""
    progress, observed = Progress(), None
    if run.latest_checkpoint() is not None:
        saved = run.load_checkpoint(modules)
        observed = saved.get("observer")
        progress = Progress(
            saved["step"], saved["epoch"], -(-saved["batch"] // batches_per_step), saved.get("steps_per_module")
        )
    run.forget_metrics_after(progress.step)  # steps past the checkpoint are replayed and logged again
    return progress, observed


def settle_phases(progress: Progress, options: TrainConfig, batches_per_epoch: int) -> None:
    """Record the steps per module of a sequential curriculum (train.epochs x batches per epoch). A resume under
    which they differ (other epochs, batches, limit or data) would put steps already done into other modules'
    phases and retrain modules out of order, so it is refused, unless every step done is still module 1's."""
    if options.curriculum != "sequential":
        progress.steps_per_module = None
        return
    now, saved = options.epochs * batches_per_epoch, progress.steps_per_module
    if saved is not None and saved != now and progress.step > min(saved, now):
        raise GimError(
            f"train.curriculum sequential: {saved} steps per module when saved, {now} now (other "
            f"train.epochs, batches or data); at step {progress.step} that would re-cut the phases of "
            f"the modules already trained. Resume with the saved options, or start a new run"
        )
    progress.steps_per_module = now


def settle_resumed(progress: Progress, total: int, batches_per_epoch: int, options: TrainConfig) -> None:
    """Say when a resumed run has nothing left to train; start the next epoch when the saved position is past the
    end of this one (a resume with larger batches), or the loader would yield nothing, forever."""
    if progress.step >= total:
        limit = "max_steps" if options.max_steps == total else "epochs"
        print(
            f"nothing to train: the run is at step {progress.step} of the {total} that train.{limit} "
            f"{getattr(options, limit)} allows; raise it to go on",
            file=sys.stderr,
        )
    if progress.batch >= batches_per_epoch:
        progress.epoch, progress.batch = progress.epoch + 1, 0


def train_loop(
    options: TrainConfig,
    run: RunFolder,
    modules: nn.ModuleList,
    loader: Batches,
    progress: Progress,
    validation: Batches | None = None,
    observer: Observer | None = None,
) -> None:
    """Step every trained module on each batch until `options.epochs` (or `max_steps`) are done (with the
    sequential curriculum, each module alone for `options.epochs` in turn), logging every
    `log_every` steps and checkpointing every `checkpoint_every` steps, at the end, on a signal or on divergence."""
    per_phase = options.epochs * len(loader)
    total = per_phase * (len(modules) if options.curriculum == "sequential" else 1)
    if options.max_steps is not None:
        total = min(total, options.max_steps)
        last = -(-total // per_phase)  # the last module the sequential curriculum reaches
        if options.curriculum == "sequential" and last < len(modules):
            print(
                f"note: train.max_steps {total} stops the sequential curriculum ({per_phase} steps per module) "
                f"at module {last} of {len(modules)}; the modules after it stay untrained",
                file=sys.stderr,
            )
    settle_resumed(progress, total, len(loader), options)
    precision = "fp32" if modules[0].autocast_dtype is None else "bf16"
    bar = tqdm(total=total, initial=progress.step, desc=f"pretrain ({precision})", unit="step", dynamic_ncols=True)
    started, first_step = time.perf_counter(), progress.step
    outcomes = _Outcomes(options.on_nonfinite, run, modules, progress, observer)
    with bar, StopSignals() as stop:  # the bar ends its line even on an error, which then starts a line of its own
        while progress.step < total:
            for inputs, labels in loader.epoch(progress.epoch, progress.batch):
                trained = _trained_at(options, len(modules), progress.step // per_phase)
                outputs = None if observer is None else []
                _, losses, held = train_step(
                    modules,
                    inputs,
                    trained,
                    (options.seed, progress.step),
                    labels=labels,
                    frozen_chunks=options.frozen_chunks,
                    hold=outcomes.hold(),
                    outputs=outputs,
                )
                if observer is not None:
                    observer.observe(modules, trained, outputs, observer.batch(progress.step, labels))
                measured = [modules[index].metrics() for index in trained]  # still on the device
                progress.advance(len(loader))
                outcomes.add(replace(progress), trained.start + 1, losses, held, measured)  # reads the step before
                bar.update()
                log = progress.step % options.log_every == 0 or progress.step == total
                checkpoint = progress.step % options.checkpoint_every == 0 or progress.step == total
                validate = validation is not None and progress.batch == 0  # an epoch ended
                if log or validate or checkpoint or stop.received is not None:
                    outcomes.settle()
                if log:
                    values = logged_values(trained.start + 1, *outcomes.last_values())
                    if observer is not None:
                        values |= {name: float(value) for name, value in observer.values().items()}
                    rate = (progress.step - first_step) * loader.batch_size / (time.perf_counter() - started)
                    run.log(
                        progress.step,
                        {
                            **values,
                            "epoch": progress.epochs_done(len(loader)),
                            "samples_per_second": rate,
                            "skipped_batches": outcomes.skipped,
                        },
                    )
                    bar.set_postfix(
                        {
                            key.removeprefix("loss/"): f"{value:.3f}"
                            for key, value in values.items()
                            if key.startswith("loss/")
                        }
                        | {
                            key.replace("online_accuracy/module", "acc"): f"{100 * value:.1f}%"
                            for key, value in values.items()
                            if key.startswith("online_accuracy/")
                        }
                    )
                if validate:
                    run.log(progress.step, validation_losses(modules, validation, options.seed))
                if checkpoint:
                    _checkpoint(run, modules, progress, observer)
                if stop.received is not None:
                    _stopped(run, modules, progress, stop.received, observer)
                if progress.step >= total:
                    break
    if outcomes.skipped:
        print(
            f"note: {outcomes.skipped} of {progress.step - first_step} batches were skipped for a non-finite loss "
            f"(train.on_nonfinite skip); metrics.jsonl has them step by step",
            file=sys.stderr,
        )
    run.close()


class _Outcomes:
    """Whether each step's update was applied, read one step late: by the time the host asks about step n, step
    n + 1 is already queued behind it, so a GPU never idles while the host checks. With `on_nonfinite` "stop", a
    skipped step holds every later update on the device until the host sees it, then the run stops with the
    last good weights; with "skip", the batch is counted and training goes on. Before each log, validation and
    checkpoint the weights are checked too (see engines/divergence.py), so no checkpoint holds weights that blew
    up and no logged loss comes from them."""

    def __init__(
        self,
        on_nonfinite: str,
        run: RunFolder,
        modules: nn.ModuleList,
        progress: Progress,
        observer: Observer | None = None,
    ) -> None:
        self.stop_on_nonfinite = on_nonfinite == "stop"
        self.run = run
        self.modules = modules
        self.observer = observer
        self.skipped = 0
        self.in_a_row = 0
        self.watch = WeightWatch(run, modules, asdict(progress))
        self._pending: tuple[Progress, int, list[torch.Tensor], list[dict[str, torch.Tensor]], _HostCopy] | None = None
        self._halted: torch.Tensor | None = None
        self._values: tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]] = ([], [])
        self._settled = replace(progress)

    def hold(self) -> torch.Tensor | None:
        """The flag the next step starts from: set once a step was skipped, if that stops the run."""
        return self._halted

    def add(
        self,
        after: Progress,
        first_module: int,
        losses: list[torch.Tensor],
        held: torch.Tensor,
        metrics: list[dict[str, torch.Tensor]],
    ) -> None:
        """Record a step just queued (`after`: the progress once it is done; its modules' losses and metrics) and
        read the one before it."""
        self._read()
        self._pending = (after, first_module, losses, metrics, _HostCopy(held))
        if self.stop_on_nonfinite:
            self._halted = held

    def settle(self) -> None:
        """Read the outcome of the newest recorded step and check the weights (both wait for the device); stop
        the run if it diverged and that stops it."""
        self._read()
        self.watch.forget_start_once_checkpointed(self.run)
        if (ruined := self.watch.ruined(self.modules)) is not None:
            _ruined(self.run, self.modules, self._settled, ruined, self.watch)

    def _read(self) -> None:
        """Read the outcome of the newest recorded step (a sync); stop the run if it diverged and that stops it."""
        if self._pending is None:
            return
        after, first_module, losses, metrics, held = self._pending
        self._pending = None
        self._values = (losses, metrics)
        self._settled = after
        if not held.read():
            self.in_a_row = 0
            return
        self._values = ([], [])
        if self.stop_on_nonfinite:
            _diverged(self.run, self.modules, after, first_nonfinite(losses, first_module), self.watch, self.observer)
        self.skipped, self.in_a_row = self.skipped + 1, self.in_a_row + 1
        try:
            check_skips_in_a_row(self.in_a_row)
        except GimError:
            self.run.close()
            raise

    def last_values(self) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
        """The losses and metrics of the newest settled step's modules; none if its update was skipped."""
        return self._values


class _HostCopy:
    """A bool flag copied to the host as soon as the work before it is done. On a GPU, `item()` would also wait
    for every kernel queued after the flag (the whole next step); the copy and its event wait for nothing later."""

    def __init__(self, flag: torch.Tensor) -> None:
        self.ready = None
        if flag.is_cuda:
            flag = flag.to("cpu", non_blocking=True)  # into pinned memory, in stream order
            self.ready = torch.cuda.Event()
            self.ready.record()
        self.flag = flag

    def read(self) -> bool:
        if self.ready is not None:
            self.ready.synchronize()
        return bool(self.flag)


def _trained_at(options: TrainConfig, num_modules: int, phase: int) -> range:
    """The modules that learn in the given phase: with the sequential curriculum, phase k trains module k alone."""
    return range(phase, phase + 1) if options.curriculum == "sequential" else trained_indices(options, num_modules)


def _diverged(
    run: RunFolder,
    modules: nn.ModuleList,
    progress: Progress,
    culprit: tuple[int, float],
    watch: WeightWatch,
    observer: Observer | None = None,
) -> None:
    """Save the weights (still finite: the bad update was never applied) and stop with the module and step; if
    they had blown up before the loss did, stop as `_ruined` does instead.

    The modules before the culprit have learned from the bad step's batch, so the checkpoint counts that step as
    done, the culprit and the modules after it having skipped it, as `on_nonfinite` "skip" would: a resume does
    not feed that batch to the earlier modules twice."""
    if (ruined := watch.ruined(modules)) is not None:
        _ruined(run, modules, progress, ruined, watch)
    folder = _checkpoint(run, modules, progress, observer)
    run.close()
    module, value = culprit
    raise GimError(
        f"module {module} diverged at step {progress.step} (loss {value}); saved in {folder} with that "
        f"step's update skipped from module {module} on. Lower --train.lr and resume, or pass "
        f"--train.on_nonfinite skip"
    )


def _ruined(
    run: RunFolder, modules: nn.ModuleList, progress: Progress, ruined: tuple[int, float, float], watch: WeightWatch
) -> None:
    """Stop a run whose weights blew up, without saving them, naming the checkpoint from before to resume from."""
    folder = watch.good_checkpoint(run, modules)
    run.close()
    module, before, now = ruined
    raise GimError(
        f"module {module} diverged by step {progress.step}: the root-mean-square of its weights went from "
        f"{before:.3g} to {now:.3g}, so they were not saved; the newest checkpoint, {folder}, is from "
        f"before. Lower --train.lr and resume from it"
    )


def _stopped(
    run: RunFolder, modules: nn.ModuleList, progress: Progress, number: int, observer: Observer | None = None
) -> None:
    folder = _checkpoint(run, modules, progress, observer)
    run.close()
    raise TrainingStopped(
        number, f"stopped by {signal.Signals(number).name} after step {progress.step}; checkpoint {folder}"
    )


def _checkpoint(run: RunFolder, modules: nn.ModuleList, progress: Progress, observer: Observer | None = None) -> Path:
    saved = asdict(progress) | ({} if observer is None else {"observer": observer.state_dict()})
    return run.save_checkpoint(modules, saved)
