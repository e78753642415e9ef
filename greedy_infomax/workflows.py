"""What a user runs, as library functions: pre-train a task's run into its run folder (creating, resuming and
cleaning it up, on one process or under torchrun), probe it, embed a split, load a feature extractor. The CLI
and the Python API both call these, so a script gets what `gim` does.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from greedy_infomax.config import AnyRunConfig
from greedy_infomax.engines import local, module_parallel
from greedy_infomax.errors import TrainingStopped
from greedy_infomax.evaluation.online_probe import OnlineProbes
from greedy_infomax.placement import resolve_device, tune_allocator
from greedy_infomax.reporting.run_folder import RunFolder
from greedy_infomax.tasks import task_of


def pretrain(config: AnyRunConfig, run: RunFolder | None, resume: bool = False) -> nn.ModuleList:
    """Train the modules the run's config describes; resumes from the newest checkpoint when asked. Under torchrun
    each rank trains its stage (module_parallel.py) and only rank 0 needs `run`."""
    task = task_of(config)
    tune_allocator("training")

    def save_config() -> None:  # only once resumed: a config that does not fit the checkpoint never overwrites it
        run.update_config(config)

    def probes(device: torch.device) -> OnlineProbes | None:
        return task.online_probes(config, device) if config.train.online_probe else None

    if module_parallel.launched_by_torchrun():
        return module_parallel.pretrain(
            config.train,
            config.distributed,
            config.model.num_modules,
            data=lambda device: task.pretrain_loader(config, device),
            build=lambda in_channels, device: task.prepare_modules(config, in_channels, device),
            run=run,
            resume=resume,
            on_start=save_config,
            probes=probes,
        )
    device = resolve_device(config.train.device)
    loader, in_channels = task.pretrain_loader(config, device)
    validation = task.validation_loader(config, device)
    modules = task.prepare_modules(config, in_channels, device)
    return local.fit(
        modules, loader, run, config.train, resume, on_start=save_config, validation=validation, observer=probes(device)
    )


@contextmanager
def run_folder(
    config: AnyRunConfig,
    output: str | Path | None = None,
    name: str | None = None,
    resume: str | Path | None = None,
    prefix: str = "",
    command: str = "gim pretrain",
) -> Iterator[RunFolder | None]:
    """The run folder to train in: `resume`'s, else a new one under `output` (default runs/); None on the torchrun
    ranks other than 0, which write nothing. A folder this call made, in which the run failed before it logged or
    saved anything (bad data, a bad device, Ctrl-C while loading), is removed again, so failed starts leave no
    litter; a folder that was there before is never removed. A stop signal's message gets the command that
    continues the run. The folder is locked (RunFolder.lock) for as long as the run writes it: a second process
    that would write it fails at once, before reading any data."""
    if not module_parallel.is_first_rank():
        yield None
        return
    if resume:
        run, made = RunFolder.open(Path(resume)).lock(), False
    else:
        parent = Path(output or "runs")
        made = name is None or not (parent / name).exists()
        run = RunFolder.create(parent, name, config, prefix)
    print(f"run folder: {run.path}")
    try:
        yield run
    except TrainingStopped as stopped:
        again = "the same torchrun command with" if module_parallel.launched_by_torchrun() else command
        raise TrainingStopped(stopped.signal_number, f"{stopped}; continue with: {again} --resume {run.path}") from None
    except BaseException:
        run.close()
        if made and not run.started():
            shutil.rmtree(run.path, ignore_errors=True)
        raise


def pretrain_run(
    config: AnyRunConfig,
    output: str | Path | None = None,
    name: str | None = None,
    resume: str | Path | None = None,
    prefix: str = "",
    command: str = "gim pretrain",
) -> RunFolder | None:
    """Everything `gim pretrain` does: make the data where it can be made offline (not under torchrun, where every
    rank would make it at once), then train in a new or resumed run folder. Returns the folder (None on the ranks
    other than 0)."""
    if not module_parallel.launched_by_torchrun():
        task_of(config).prepare_data(config)
    with run_folder(config, output, name, resume, prefix, command) as run:
        pretrain(config, run, resume=resume is not None)
    return run


def probe_run(run: RunFolder, config: AnyRunConfig | None = None, device: str = "auto") -> dict[str, Any]:
    """Probe every module of the run's newest checkpoint by its task's protocol; `config` may override the run's
    probe and data options."""
    config = config or run.config
    tune_allocator("probing")
    return task_of(config).probe(run, config, resolve_device(device, "--device"))


def embed_run(
    run: RunFolder, module: int, role: str, config: AnyRunConfig | None = None, device: str = "auto"
) -> dict[str, np.ndarray]:
    """Module `module`'s (1-based) features of the run's newest checkpoint on the split playing `role`
    ('pretrain', 'probe_train' or 'probe_test') of the run's dataset, or of the dataset `config` names instead."""
    config = config or run.config
    return task_of(config).embed(run, config, module, role, resolve_device(device, "--device"))


def load_extractor(path: str | Path, module: int, device: str = "cpu") -> nn.Module:
    """The feature extractor of module `module` of the run in `path` (its newest checkpoint), with the run's
    input transform as `.transform`: `extractor(extractor.transform(x))` gives the (B, D) features of images of a
    vision run, or the (B, frames, D) features of waveforms (B, 1, samples) of an audio run."""
    run = RunFolder.open(Path(path))
    config = run.config
    return task_of(config).extractor(run, config, module, resolve_device(device, "--device"))
