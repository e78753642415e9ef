"""The encoders a probe protocol compares, vision or speech: a run's trained modules, cut where the probe asks,
and a randomly initialised encoder of the same architecture; and the proof that probing left one unchanged."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from greedy_infomax.config import AnyRunConfig, training_method
from greedy_infomax.engines.local import load_trained, prepare_modules
from greedy_infomax.evaluation.features import fingerprint
from greedy_infomax.models import copy_stages, cut_at
from greedy_infomax.reporting.run_folder import RunFolder


def probed_encoder(run: RunFolder, config: AnyRunConfig, in_channels: int,
                   device: torch.device) -> tuple[nn.ModuleList, AnyRunConfig, dict[str, Any]]:
    """The modules of the run's newest checkpoint, cut at `probe.stages_per_module` when set; the config cut
    alike; the saved progress."""
    trained, progress = load_trained(run, config, in_channels, device)
    if config.probe.stages_per_module is not None:
        config = cut_at(config, config.probe.stages_per_module)
        trained = copy_stages(trained, prepare_modules(config, in_channels, device, with_optimizers=False))
    return trained, config, progress


def probed_method(run: RunFolder, config: AnyRunConfig) -> str:
    """The run's training method in words, and the cut the probe made, if any, since it renumbers the modules."""
    cut = config.probe.stages_per_module
    return training_method(run.config) + ("" if cut is None else f", probed as modules of {list(cut)} stages")


def random_encoder(config: AnyRunConfig, in_channels: int, device: torch.device) -> nn.ModuleList:
    """The same architecture randomly initialised with seed + 1, so not the trained run's starting weights."""
    random_config = replace(config, train=replace(config.train, seed=config.train.seed + 1))
    return prepare_modules(random_config, in_channels, device, with_optimizers=False)


@contextmanager
def left_unchanged(modules: nn.Module, name: str) -> Iterator[None]:
    """Fail if the block changed any parameter: the proof that probing kept the encoder frozen."""
    before = fingerprint(modules)
    yield
    if fingerprint(modules) != before:
        raise RuntimeError(f"probing changed the {name} encoder's parameters")
