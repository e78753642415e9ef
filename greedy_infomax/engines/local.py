"""The single-process engine: a thin loop over each module's step(), with logging and checkpoints.

`pretrain` trains the encoder a run's config describes; `train` trains any list of IsolatedModules (built with
models/split.py) on any loader of the `Batches` shape, with the same loop, run folder and checkpoints.
"""
from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils import checkpoint as activation_checkpoint
from tqdm import tqdm

from greedy_infomax.config import AnyRunConfig, TrainConfig
from greedy_infomax.data import pretrain_loader
from greedy_infomax.data.loader import Batches
from greedy_infomax.engines.divergence import WeightWatch
from greedy_infomax.errors import GimError, TrainingStopped
from greedy_infomax.isolation import run_frozen
from greedy_infomax.models import build_modules
from greedy_infomax.reporting.run_folder import RunFolder
from greedy_infomax.system import native_bf16


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


def resolve_device(name: str, option: str = "train.device") -> torch.device:
    """The device `option` names, "auto" being a GPU if torch sees one; one it cannot use is a config error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise GimError(f"{option}: {name!r} is not a device this runs on (cpu, cuda, cuda:1, auto)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise GimError(f"{option}: {name} asked for, but torch sees {torch.cuda.device_count()} CUDA GPUs")
    return device


def trained_indices(options: TrainConfig, num_modules: int) -> range:
    """0-based indices of the modules that learn: all of them, or only `train_module`."""
    k = options.train_module
    return range(num_modules) if k is None else range(k - 1, k)


def prepare_modules(config: AnyRunConfig, in_channels: int, device: torch.device,
                    with_optimizers: bool = True) -> nn.ModuleList:
    """Build the modules with the run's seed, placed and formatted for speed, optimisers on trained ones only."""
    torch.manual_seed(config.train.seed)
    return configure(build_modules(config, in_channels), config.train, device, with_optimizers)


def load_trained(run: RunFolder, config: AnyRunConfig, in_channels: int,
                 device: torch.device) -> tuple[nn.ModuleList, dict[str, Any]]:
    """The run's modules with the weights of its newest checkpoint (no optimisers), and the saved progress."""
    modules = prepare_modules(config, in_channels, device, with_optimizers=False)
    return modules, run.load_checkpoint(modules, with_optimizers=False)


def configure(modules: nn.ModuleList, options: TrainConfig, device: torch.device,
              with_optimizers: bool = True) -> nn.ModuleList:
    """Place modules on the device in the memory format and precision of `options`; optimisers on trained ones."""
    if with_optimizers and options.train_module is not None and options.train_module > len(modules):
        raise GimError(f"train.train_module: must be at most {len(modules)}, got {options.train_module}")
    _set_determinism(options.deterministic, device)
    modules = modules.to(device)
    if options.channels_last:
        modules = to_channels_last(modules)
    dtype = autocast_dtype(options.precision, device)
    for index, module in enumerate(modules):
        module.autocast_dtype = dtype
        if options.recompute_activations:
            recompute_in_backward(module.block)
        if options.compile:
            compile_in_place(module.block)
            compile_in_place(module.objective)
        if with_optimizers and index in trained_indices(options, len(modules)):
            module.configure_optimizer(options.lr, options.weight_decay)
    return modules


def to_channels_last(modules: nn.ModuleList) -> nn.ModuleList:
    """Channels-last for every convolution except strided 1x1 ones reading fewer than 8 channels: on AVX2-only CPUs
    oneDNN gets their weight gradient wrong in that layout (torch 2.13: off by 2-50%, and not the same twice), so
    they keep the standard layout for weight and input, and run eagerly under `train.compile` (whose graph could
    choose channels-last again). Only tiny encoders have such convolutions."""
    modules = modules.to(memory_format=torch.channels_last)
    for conv in modules.modules():
        if (isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.stride != (1, 1)
                and conv.in_channels < 8):
            conv.weight.data = conv.weight.data.clone(memory_format=torch.contiguous_format)
            conv.register_forward_pre_hook(_standard_layout)
            conv.forward = torch.compiler.disable(conv.forward)
    return modules


def compile_in_place(module: nn.Module) -> None:
    """torch.compile a module's forward (an encoder block, an objective) as one graph with a dynamo cache of its own,
    in place (parameter names, and so checkpoints, stay those of the plain module). Not `nn.Module.compile()`:
    dynamo does not start tracing in torch.nn's own files, so that compiled an nn.Sequential block one residual
    block at a time, the blocks of all modules sharing one cache of 8 graphs: dynamic shapes from the second module
    on, eager mode once a probe's no-grad passes had filled it. Compiled code draws random numbers (an objective's
    negatives) as eager code does, so compiling changes results only by rounding."""
    import torch._inductor.config  # inductor only when compiling: it takes a second to import
    torch._inductor.config.fallback_random = True
    forward = module.forward

    def compiled(*inputs: Any, **named: Any) -> torch.Tensor:
        return forward(*inputs, **named)

    # A copy of the code object per module: dynamo keys its cache on the code object.
    code = compiled.__code__.replace()
    module.forward = torch.compile(types.FunctionType(code, compiled.__globals__, compiled.__name__, None,
                                                     compiled.__closure__))


def _standard_layout(conv: nn.Conv2d, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(x.clone(memory_format=torch.contiguous_format) for x in inputs)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 when asked for, or for 'auto' where the device computes it natively; None means fp32."""
    native = native_bf16(device)
    if precision == "fp32" or (precision == "auto" and not native):
        return None
    if not native:
        warnings.warn(f"train.precision bf16: this {device.type} has no bf16 arithmetic, so autocast emulates it, "
                      "several times slower than fp32; 'auto' picks bf16 only where it is native", stacklevel=3)
    return torch.bfloat16


def recompute_in_backward(block: nn.Module) -> None:
    """Activation checkpointing for each layer of the block's (nested) nn.Sequentials, in place, so parameter names
    stay those of the plain block; under no_grad (frozen modules, probes) the layers run as they are."""
    for sequential in [m for m in block.modules() if isinstance(m, nn.Sequential)]:
        for layer in sequential.children():
            if not isinstance(layer, nn.Sequential):
                layer.forward = functools.partial(_recomputed, layer.forward)


def _recomputed(forward: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
    if not torch.is_grad_enabled():
        return forward(*inputs)
    return activation_checkpoint.checkpoint(forward, *inputs, use_reentrant=False)


def _set_determinism(enabled: bool, device: torch.device) -> None:
    """Without it, multi-threaded CPU kernels (e.g. the accumulating backward of the negatives' gather) and
    cuDNN add in a varying order, so two runs with one seed drift apart in the last bits. Off, cuDNN may also time
    its convolution algorithms for each new shape and keep the fastest, whose choice can differ between runs.
    PyTorch's deterministic mode also fills every new buffer with NaN, a debugging aid that catches kernels that
    read memory they never wrote. No kernel here does, and the fills cost 2.6% of the GPU time of a paper-stl10
    step on an H200 (profile of benchmarks/results/h200-2026-11-28/run1-739f683), so they stay off."""
    if enabled and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for determinism
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not enabled


def train_step(modules: nn.ModuleList, x: torch.Tensor, trained: range, draws: tuple[int, ...],
               owned: range | None = None, labels: torch.Tensor | None = None, frozen_chunks: int = 1,
               hold: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """One batch through the `owned` modules (default: all up to the last trained one), x being the input of the
    first of them: modules before the trained ones run frozen without autograd, then each trained module steps.
    Returns the last owned module's output, the losses, and `held`: a bool tensor on the device, set when some
    module skipped its update (a non-finite loss, or `hold` set on entry).

    `draws` (run seed, step, ...) seeds each module's random draws (see seed_module). Labels reach every
    objective (self-supervised ones ignore them). Once a module skips, the modules after it hold this batch too;
    those before it have stepped. Nothing here waits for the device: the caller reads `held` when it chooses.
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
    if held is None:                                  # no module stepped here and nothing held on entry
        held = torch.zeros((), dtype=torch.bool, device=x.device)
    return x, losses, held


SKIP_LIMIT = 100
"""With on_nonfinite "skip": batches skipped in a row after which a run counts as diverged for good and stops,
rather than running to its end without learning."""


def check_skips_in_a_row(count: int, where: str = "") -> None:
    """Stop a run whose last SKIP_LIMIT batches were all skipped: it diverged for good."""
    if count >= SKIP_LIMIT:
        raise GimError(f"{where}{count} batches in a row were skipped for a non-finite loss: the run diverged for "
                       "good. Lower --train.lr and resume from the newest checkpoint")


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
        os.write(2, f"\n{signal.Signals(number).name}: stopping after this step, with a checkpoint "
                    f"(a second signal stops at once, without one)\n".encode())


def pretrain(config: AnyRunConfig, run: RunFolder, resume: bool = False) -> nn.ModuleList:
    """Self-supervised training of the run's modules; resumes from the newest checkpoint when asked."""
    device = resolve_device(config.train.device)
    loader, in_channels = pretrain_loader(config, device)
    modules = prepare_modules(config, in_channels, device)
    progress = resume_progress(run, modules) if resume else Progress()
    settle_phases(progress, config.train, len(loader))
    run.update_config(config)  # only now: a config that does not fit the checkpoint never overwrites the run's
    train_loop(config.train, run, modules, loader, progress)
    return modules


def train(modules: nn.ModuleList, loader: Batches, run: RunFolder, options: TrainConfig = TrainConfig(),
          resume: bool = False) -> nn.ModuleList:
    """Train any IsolatedModules greedily: `options` as in a run's `train` section, logs and checkpoints in `run`.

    Each module's negatives are drawn from (`options.seed`, step, module); the loader brings its own order and
    augmentation, and must yield batches on `options.device`.
    """
    modules = configure(modules, options, resolve_device(options.device))
    progress = resume_progress(run, modules) if resume else Progress()
    settle_phases(progress, options, len(loader))
    train_loop(options, run, modules, loader, progress)
    return modules


def resume_progress(run: RunFolder, modules: nn.ModuleList, batches_per_step: int = 1) -> Progress:
    """Load the newest checkpoint (weights, optimisers) if any; drop metrics logged after it. The data position
    counts steps of `batches_per_step` loader batches (R data-parallel replicas read R), so an unfinished group of
    batches is skipped."""
    progress = Progress()
    if run.latest_checkpoint() is not None:
        saved = run.load_checkpoint(modules)
        progress = Progress(saved["step"], saved["epoch"], -(-saved["batch"] // batches_per_step),
                            saved.get("steps_per_module"))
    run.forget_metrics_after(progress.step)  # steps past the checkpoint are replayed and logged again
    return progress


def settle_phases(progress: Progress, options: TrainConfig, batches_per_epoch: int) -> None:
    """Record the steps per module of a sequential curriculum (train.epochs x batches per epoch). A resume under
    which they differ (other epochs, batches, limit or data) would put steps already done into other modules'
    phases and retrain modules out of order, so it is refused, unless every step done is still module 1's."""
    if options.curriculum != "sequential":
        progress.steps_per_module = None
        return
    now, saved = options.epochs * batches_per_epoch, progress.steps_per_module
    if saved is not None and saved != now and progress.step > min(saved, now):
        raise GimError(f"train.curriculum sequential: {saved} steps per module when saved, {now} now (other "
                       f"train.epochs, batches or data); at step {progress.step} that would re-cut the phases of "
                       f"the modules already trained. Resume with the saved options, or start a new run")
    progress.steps_per_module = now


def settle_resumed(progress: Progress, total: int, batches_per_epoch: int, options: TrainConfig) -> None:
    """Say when a resumed run has nothing left to train; start the next epoch when the saved position is past the
    end of this one (a resume with larger batches), or the loader would yield nothing, forever."""
    if progress.step >= total:
        limit = "max_steps" if options.max_steps == total else "epochs"
        print(f"nothing to train: the run is at step {progress.step} of the {total} that train.{limit} "
              f"{getattr(options, limit)} allows; raise it to go on", file=sys.stderr)
    if progress.batch >= batches_per_epoch:
        progress.epoch, progress.batch = progress.epoch + 1, 0


def train_loop(options: TrainConfig, run: RunFolder, modules: nn.ModuleList, loader: Batches,
               progress: Progress) -> None:
    """Step every trained module on each batch until `options.epochs` (or `max_steps`) are done (with the
    sequential curriculum, each module alone for `options.epochs` in turn), logging every
    `log_every` steps and checkpointing every `checkpoint_every` steps, at the end, on a signal or on divergence."""
    per_phase = options.epochs * len(loader)
    total = per_phase * (len(modules) if options.curriculum == "sequential" else 1)
    if options.max_steps is not None:
        total = min(total, options.max_steps)
        last = -(-total // per_phase)  # the last module the sequential curriculum reaches
        if options.curriculum == "sequential" and last < len(modules):
            print(f"note: train.max_steps {total} stops the sequential curriculum ({per_phase} steps per module) "
                  f"at module {last} of {len(modules)}; the modules after it stay untrained", file=sys.stderr)
    settle_resumed(progress, total, len(loader), options)
    precision = "fp32" if modules[0].autocast_dtype is None else "bf16"
    bar = tqdm(total=total, initial=progress.step, desc=f"pretrain ({precision})", unit="step", dynamic_ncols=True)
    started, first_step = time.perf_counter(), progress.step
    outcomes = _Outcomes(options.on_nonfinite, run, modules, progress)
    with bar, StopSignals() as stop:  # the bar ends its line even on an error, which then starts a line of its own
        while progress.step < total:
            for inputs, labels in loader.epoch(progress.epoch, progress.batch):
                trained = _trained_at(options, len(modules), progress.step // per_phase)
                names = [f"module{index + 1}" for index in trained]
                _, losses, held = train_step(modules, inputs, trained, (options.seed, progress.step), labels=labels,
                                             frozen_chunks=options.frozen_chunks, hold=outcomes.hold())
                progress.advance(len(loader))
                outcomes.add(replace(progress), trained.start + 1, losses, held)   # reads the step before this one
                bar.update()
                log = progress.step % options.log_every == 0 or progress.step == total
                checkpoint = progress.step % options.checkpoint_every == 0 or progress.step == total
                if log or checkpoint or stop.received is not None:
                    outcomes.settle()
                if log:
                    values = {f"loss/{name}": float(loss) for name, loss in zip(names, outcomes.last_losses())}
                    rate = (progress.step - first_step) * loader.batch_size / (time.perf_counter() - started)
                    run.log(progress.step, {**values, "epoch": progress.epochs_done(len(loader)),
                                            "samples_per_second": rate, "skipped_batches": outcomes.skipped})
                    bar.set_postfix({name: f"{value:.3f}" for name, value in zip(names, values.values())})
                if checkpoint:
                    _checkpoint(run, modules, progress)
                if stop.received is not None:
                    _stopped(run, modules, progress, stop.received)
                if progress.step >= total:
                    break
    if outcomes.skipped:
        print(f"note: {outcomes.skipped} of {progress.step - first_step} batches were skipped for a non-finite loss "
              f"(train.on_nonfinite skip); metrics.jsonl has them step by step", file=sys.stderr)
    run.close()


class _Outcomes:
    """Whether each step's update was applied, read one step late: by the time the host asks about step n, step
    n + 1 is already queued behind it, so a GPU never idles while the host checks. With `on_nonfinite` "stop", a
    skipped step holds every later update on the device until the host sees it, then the run stops with the
    last good weights; with "skip", the batch is counted and training goes on. Before each log and checkpoint the
    weights are checked too (see engines/divergence.py), so no checkpoint holds weights that blew up."""

    def __init__(self, on_nonfinite: str, run: RunFolder, modules: nn.ModuleList, progress: Progress) -> None:
        self.stop_on_nonfinite = on_nonfinite == "stop"
        self.run = run
        self.modules = modules
        self.skipped = 0
        self.in_a_row = 0
        self.watch = WeightWatch(run, modules, asdict(progress))
        self._pending: tuple[Progress, int, list[torch.Tensor], _HostCopy] | None = None
        self._halted: torch.Tensor | None = None
        self._losses: list[torch.Tensor] = []
        self._settled = replace(progress)

    def hold(self) -> torch.Tensor | None:
        """The flag the next step starts from: set once a step was skipped, if that stops the run."""
        return self._halted

    def add(self, after: Progress, first_module: int, losses: list[torch.Tensor], held: torch.Tensor) -> None:
        """Record a step just queued (`after`: the progress once it is done) and read the one before it."""
        self._read()
        self._pending = (after, first_module, losses, _HostCopy(held))
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
        after, first_module, losses, held = self._pending
        self._pending = None
        self._losses = losses
        self._settled = after
        if not held.read():
            self.in_a_row = 0
            return
        self._losses = []
        if self.stop_on_nonfinite:
            _diverged(self.run, self.modules, after, first_nonfinite(losses, first_module), self.watch)
        self.skipped, self.in_a_row = self.skipped + 1, self.in_a_row + 1
        try:
            check_skips_in_a_row(self.in_a_row)
        except GimError:
            self.run.close()
            raise

    def last_losses(self) -> list[torch.Tensor]:
        """The losses of the newest settled step; none if its update was skipped."""
        return self._losses


class _HostCopy:
    """A bool flag copied to the host as soon as the work before it is done. On a GPU, `item()` would also wait
    for every kernel queued after the flag (the whole next step); the copy and its event wait for nothing later."""

    def __init__(self, flag: torch.Tensor) -> None:
        self.ready = None
        if flag.is_cuda:
            flag = flag.to("cpu", non_blocking=True)              # into pinned memory, in stream order
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


def _diverged(run: RunFolder, modules: nn.ModuleList, progress: Progress, culprit: tuple[int, float],
              watch: WeightWatch) -> None:
    """Save the weights (still finite: the bad update was never applied) and stop with the module and step; if
    they had blown up before the loss did, stop as `_ruined` does instead.

    The modules before the culprit have learned from the bad step's batch, so the checkpoint counts that step as
    done, the culprit and the modules after it having skipped it, as `on_nonfinite` "skip" would: a resume does
    not feed that batch to the earlier modules twice."""
    if (ruined := watch.ruined(modules)) is not None:
        _ruined(run, modules, progress, ruined, watch)
    folder = _checkpoint(run, modules, progress)
    run.close()
    module, value = culprit
    raise GimError(f"module {module} diverged at step {progress.step} (loss {value}); saved in {folder} with that "
                   f"step's update skipped from module {module} on. Lower --train.lr and resume, or pass "
                   f"--train.on_nonfinite skip")


def _ruined(run: RunFolder, modules: nn.ModuleList, progress: Progress, ruined: tuple[int, float, float],
            watch: WeightWatch) -> None:
    """Stop a run whose weights blew up, without saving them, naming the checkpoint from before to resume from."""
    folder = watch.good_checkpoint(run, modules)
    run.close()
    module, before, now = ruined
    raise GimError(f"module {module} diverged by step {progress.step}: the root-mean-square of its weights went from "
                   f"{before:.3g} to {now:.3g}, so they were not saved; the newest checkpoint, {folder}, is from "
                   f"before. Lower --train.lr and resume from it")


def _stopped(run: RunFolder, modules: nn.ModuleList, progress: Progress, number: int) -> None:
    folder = _checkpoint(run, modules, progress)
    run.close()
    raise TrainingStopped(number, f"stopped by {signal.Signals(number).name} after step {progress.step}; "
                                  f"checkpoint {folder}")


def _checkpoint(run: RunFolder, modules: nn.ModuleList, progress: Progress) -> Path:
    return run.save_checkpoint(modules, asdict(progress))
