"""The Task surface: what a kind of data (images, speech, ...) provides so that pre-training, probing, embedding,
`gim reproduce` and `gim bench` run on it without knowing which one it is.

A task is one module in greedy_infomax/tasks/ holding its run config (data, model, objective and probe sections
next to the shared train and distributed ones), its presets, its objectives by name, and a `Task` subclass that
builds loaders and modules from that config and runs its probe protocol; one line in tasks/__init__.py registers
it. Everything above this layer (workflows, reproduce, bench, the CLI) reaches a task only through these methods.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from greedy_infomax.config import AnyRunConfig
from greedy_infomax.data.loader import Batches
from greedy_infomax.errors import GimError
from greedy_infomax.evaluation.online_probe import OnlineProbes
from greedy_infomax.models import copy_stages
from greedy_infomax.placement import configure
from greedy_infomax.reporting.run_folder import RunFolder


def objective_options(cls: type[nn.Module]) -> set[str]:
    """The options an objective's constructor takes by name: the fields of the objective config it reads."""
    return set(inspect.signature(cls).parameters)


class Task:
    """One kind of data and its encoder. Subclasses set the class attributes and implement the methods that raise
    NotImplementedError; the others have defaults that fit any task whose run config has the usual sections."""

    name: ClassVar[str]
    """The `task` of its run configs and config files."""
    config_type: ClassVar[type]
    """The run config dataclass; its defaults are the task's paper setup."""
    presets: ClassVar[dict[str, AnyRunConfig]]
    """Named configs, offered by `--preset` (names unique across tasks)."""
    objectives: ClassVar[dict[str, type[nn.Module]]]
    """`objective.name` -> the objective's class; its constructor takes the module's output channels, then any of
    the objective config's fields by name."""
    demo_preset: ClassVar[str]
    """What `gim demo TASK` trains: a preset that runs on a laptop."""
    paper_preset: ClassVar[str]
    """What `gim pretrain` trains by default for this task."""
    budgets: ClassVar[dict[str, str]] = {}
    """`gim reproduce --budget` -> the preset it starts from (smoke, cpu, paper)."""
    paper_results: ClassVar[dict[str, Any]] = {}
    """The paper's last-module accuracies by method, shown next to `gim reproduce`'s."""

    # data ----------------------------------------------------------------------------------------------------------
    def prepare_data(self, config: AnyRunConfig) -> None:
        """Make what the config trains on where it can be made offline (a generated corpus); default: nothing."""

    def pretrain_loader(self, config: AnyRunConfig, device: torch.device) -> tuple[Batches, int]:
        """The seeded, augmented pre-training batches, and the channels of the encoder's input."""
        raise NotImplementedError

    def validation_loader(self, config: AnyRunConfig, device: torch.device) -> Batches | None:
        """The share `train.validation` held out of the pre-training split (which `pretrain_loader` then leaves
        out), in a fixed order; None when it is 0."""
        if config.train.validation:
            raise GimError(f"train.validation: {self.name} runs cannot hold data out yet; pass 0")
        return None

    def needs_labels(self, config: AnyRunConfig) -> bool:
        """Whether the configured objective trains on labels (it says so with `needs_labels = True`)."""
        return getattr(self.objectives[config.objective.name], "needs_labels", False)

    def online_probes(self, config: AnyRunConfig, device: torch.device) -> OnlineProbes:
        """The linear probes `train.online_probe` trains beside pre-training, sized for the data's classes."""
        raise GimError(f"train.online_probe: {self.name} runs do not probe while training")

    def views(self, config: AnyRunConfig) -> int:
        """Rows per sample the configured objective scores: 2 for two augmented views of every sample, rows b and
        B + b of a batch (it says so with `views = 2`), else 1."""
        return getattr(self.objectives[config.objective.name], "views", 1)

    # model ---------------------------------------------------------------------------------------------------------
    def build_modules(self, config: AnyRunConfig, in_channels: int) -> nn.ModuleList:
        """The run's encoder as IsolatedModules, cut as `model.stages_per_module` says."""
        raise NotImplementedError

    def objective(self, config: AnyRunConfig) -> Callable[[int], nn.Module]:
        """The configured objective's class with the options its constructor names, taken from the config's
        objective section: a function of the module's output channels."""
        if config.objective.name not in self.objectives:
            raise GimError(
                f"objective.name: {config.objective.name!r} is not an objective of {self.name} runs; "
                f"choose one of: {', '.join(self.objectives)}"
            )
        cls = self.objectives[config.objective.name]
        return partial(
            cls,
            **{
                name: getattr(config.objective, name)
                for name in objective_options(cls)
                if name != "name" and hasattr(config.objective, name)
            },
        )

    def cut_at(self, config: AnyRunConfig, stages_per_module: tuple[int, ...]) -> AnyRunConfig:
        """The same encoder cut into other modules, for reading features only (e.g. an end-to-end run probed at
        GIM's module boundaries)."""
        return replace(config, model=replace(config.model, stages_per_module=tuple(stages_per_module)))

    def end_to_end_cpc(self, config: AnyRunConfig) -> AnyRunConfig:
        """The end-to-end CPC counterpart of a GIM config (`gim reproduce`): the whole encoder as one module."""
        return replace(config, model=replace(config.model, stages_per_module=(sum(config.model.stages_per_module),)))

    def context_network(self, config: AnyRunConfig) -> str | None:
        """The name of a context network that sets the run apart from plain InfoNCE on the encoder (CPC's), if any."""
        return None

    def end_to_end_name(self, config: AnyRunConfig) -> str:
        """What one self-supervised module trained end to end is called."""
        return "CPC" if self.context_network(config) else "InfoNCE"

    def training_method(self, config: AnyRunConfig) -> str:
        """How the run was trained, in words: its objective, end-to-end or how many modules, and what set it apart
        (the sequential curriculum, one module trained, a context network in the last module). The task's own
        objective (the objective config's default) trained per module is GIM; any other is named: "greedy
        supervised", "greedy simclr"."""
        name = config.objective.name
        other = None if name == type(config.objective)().name else name
        context = self.context_network(config)
        if config.model.num_modules == 1:
            return f"end-to-end {other or self.end_to_end_name(config)}"
        details = [f"{config.model.num_modules} modules"]
        details += ["sequential"] if config.train.curriculum == "sequential" else []
        details += [f"train_module {config.train.train_module}"] if config.train.train_module else []
        details += [f"{context} in module {config.model.num_modules}"] if context else []
        return f"{f'greedy {other}' if other else 'GIM'} ({', '.join(details)})"

    # evaluation ----------------------------------------------------------------------------------------------------
    def probe(self, run: RunFolder, config: AnyRunConfig, device: torch.device) -> dict[str, Any]:
        """The task's probe protocol on the run's newest checkpoint: every module, next to its baselines."""
        raise NotImplementedError

    def embed(
        self, run: RunFolder, config: AnyRunConfig, module: int, role: str, device: torch.device
    ) -> dict[str, np.ndarray]:
        """Module `module`'s (1-based) features, as the probes see them, of the split playing `role` ('pretrain',
        'probe_train' or 'probe_test')."""
        raise NotImplementedError

    def extractor(self, run: RunFolder, config: AnyRunConfig, module: int, device: torch.device) -> nn.Module:
        """Modules 1..`module` of the run as a frozen feature extractor, with the run's input transform as
        `.transform`."""
        raise NotImplementedError

    def supervised_variants(self, budget: str) -> tuple[str, ...]:
        """The supervised baselines `gim reproduce` trains at a budget, each a row of its own ("" names the one
        default baseline)."""
        return ("",)

    def supervised_variant(self, config: AnyRunConfig, variant: str) -> AnyRunConfig:
        """The supervised config of one of `supervised_variants`."""
        return config

    def with_baselines(self, config: AnyRunConfig, enabled: bool) -> AnyRunConfig:
        """The config with the probe's comparison rows (random encoder, raw input) on or off."""
        return replace(config, probe=replace(config.probe, random_init=enabled))

    def budget_config(self, budget: str) -> AnyRunConfig:
        """The GIM config `gim reproduce` starts from for a budget, sized for the data's labels."""
        if budget not in self.budgets:
            raise GimError(f"--budget: {self.name} has the budgets {', '.join(self.budgets)}, not {budget!r}")
        return self.presets[self.budgets[budget]]

    def sized_for_labels(self, config: AnyRunConfig) -> AnyRunConfig:
        """The supervised objective's class counts taken from the data; default: the config's own."""
        return config

    # bench ---------------------------------------------------------------------------------------------------------
    def example_batch(self, config: AnyRunConfig, batch_size: int, device: torch.device) -> torch.Tensor:
        """Random encoder inputs of the config's training shape, for timing (`gim bench`)."""
        raise NotImplementedError

    # shared by every task: building and loading encoders ----------------------------------------------------------
    def prepare_modules(
        self, config: AnyRunConfig, in_channels: int, device: torch.device, with_optimizers: bool = True
    ) -> nn.ModuleList:
        """Build the modules with the run's seed, placed and formatted for speed, optimisers on trained ones only."""
        torch.manual_seed(config.train.seed)
        return configure(self.build_modules(config, in_channels), config.train, device, with_optimizers)

    def load_trained(
        self, run: RunFolder, config: AnyRunConfig, in_channels: int, device: torch.device
    ) -> tuple[nn.ModuleList, dict[str, Any]]:
        """The run's modules with the weights of its newest checkpoint (no optimisers), and the saved progress."""
        modules = self.prepare_modules(config, in_channels, device, with_optimizers=False)
        return modules, run.load_checkpoint(modules, with_optimizers=False)

    def probed_encoder(
        self, run: RunFolder, config: AnyRunConfig, in_channels: int, device: torch.device
    ) -> tuple[nn.ModuleList, AnyRunConfig, dict[str, Any]]:
        """The modules of the run's newest checkpoint, cut at `probe.stages_per_module` when set; the config cut
        alike; the saved progress."""
        trained, progress = self.load_trained(run, config, in_channels, device)
        if config.probe.stages_per_module is not None:
            config = self.cut_at(config, config.probe.stages_per_module)
            trained = copy_stages(trained, self.prepare_modules(config, in_channels, device, with_optimizers=False))
        return trained, config, progress

    def random_encoder(self, config: AnyRunConfig, in_channels: int, device: torch.device) -> nn.ModuleList:
        """The same architecture randomly initialised with seed + 1, so not the trained run's starting weights."""
        random_config = replace(config, train=replace(config.train, seed=config.train.seed + 1))
        return self.prepare_modules(random_config, in_channels, device, with_optimizers=False)

    def probed_method(self, run: RunFolder, config: AnyRunConfig) -> str:
        """The run's training method in words, and the cut the probe made, if any, since it renumbers the modules."""
        cut = config.probe.stages_per_module
        return self.training_method(run.config) + ("" if cut is None else f", probed as modules of {list(cut)} stages")
