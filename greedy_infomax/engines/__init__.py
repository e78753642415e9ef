"""The engines: local.py trains in one process, module_parallel.py in the processes torchrun starts (one stage of
modules each). `train` picks the one the launch asks for, so one script runs either way."""

from __future__ import annotations

from torch import nn

from greedy_infomax.config import DistributedConfig, TrainConfig
from greedy_infomax.data.torch_data import Data, as_batches
from greedy_infomax.engines import local, module_parallel
from greedy_infomax.engines.local import Observer
from greedy_infomax.placement import resolve_device
from greedy_infomax.reporting.run_folder import RunFolder


def train(
    modules: nn.ModuleList,
    loader: Data,
    run: RunFolder | None,
    options: TrainConfig = TrainConfig(),
    resume: bool = False,
    distributed: DistributedConfig = DistributedConfig(),
    batch_size: int | None = None,
    observer: Observer | None = None,
) -> nn.ModuleList:
    """Train any IsolatedModules greedily, logging and checkpointing in `run`. In one process: the local engine.
    Under torchrun (every rank running the same script): the module-parallel engine as `distributed` lays it out,
    stage 0 reading `loader` and rank 0 writing `run` (the other ranks may pass None, see is_first_rank); rank 0
    returns every module as last checkpointed, the other ranks only their own up to date.

    `loader`: any Batches, a map-style torch Dataset (read in batches of `batch_size`, shuffled by `options.seed`)
    or a DataLoader of your own (data/torch_data.py says when each resumes exactly). With `options.online_probe`,
    `observer` is the probes that learn beside the modules (OnlineProbes; under torchrun, every rank's own)."""
    loader = as_batches(loader, batch_size, resolve_device(options.device), options.seed)
    if module_parallel.launched_by_torchrun():
        return module_parallel.train(modules, loader, run, options, resume, distributed, observer)
    return local.train(modules, loader, run, options, resume, observer)
