"""The tasks by name, and the presets of every task. A new task is one module in this package (see base.py) and
one `register` line below."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch import nn

from greedy_infomax.config import CONFIG_TYPES, AnyRunConfig
from greedy_infomax.errors import GimError
from greedy_infomax.tasks import audio, vision
from greedy_infomax.tasks.base import Task

__all__ = ["PRESETS", "TASKS", "Task", "build_modules", "prepare_modules", "preset", "register", "task_of"]

TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Make a task known to the config loader, `--preset`, `gim demo`, `gim reproduce` and the run folders."""
    clash = sorted(
        set(task.presets) & {name for other in TASKS.values() if other.name != task.name for name in other.presets}
    )
    if clash:
        raise ValueError(f"task {task.name}: preset {clash[0]!r} is another task's")
    TASKS[task.name] = task
    CONFIG_TYPES[task.name] = task.config_type
    return task


def task_of(config: AnyRunConfig) -> Task:
    """The task a run config belongs to."""
    return TASKS[config.task]


class _Presets(Mapping):
    """Every registered task's presets by name, kept up to date as tasks register."""

    def __getitem__(self, name: str) -> AnyRunConfig:
        for task in TASKS.values():
            if name in task.presets:
                return task.presets[name]
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return (name for task in TASKS.values() for name in task.presets)

    def __len__(self) -> int:
        return sum(len(task.presets) for task in TASKS.values())


PRESETS: Mapping[str, AnyRunConfig] = _Presets()


def preset(name: str) -> AnyRunConfig:
    """The named preset; an unknown name fails by listing the valid ones."""
    if name not in PRESETS:
        raise GimError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]


register(vision.TASK)
register(audio.TASK)


def build_modules(config: AnyRunConfig, in_channels: int) -> nn.ModuleList:
    """The run's encoder as IsolatedModules, built by its task."""
    return task_of(config).build_modules(config, in_channels)


def prepare_modules(
    config: AnyRunConfig, in_channels: int, device: torch.device, with_optimizers: bool = True
) -> nn.ModuleList:
    """The run's modules built by its task with the run's seed, placed for speed, optimisers on trained ones."""
    return task_of(config).prepare_modules(config, in_channels, device, with_optimizers)
