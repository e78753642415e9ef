"""A toy task in one file, as a contributor would add one: noisy sine waves whose frequency is the class, a stack of
1-d convolutions cut into gradient-isolated modules, and a linear probe of every module. Registered with
`greedy_infomax.tasks.register(TASK)`, it trains, probes and embeds through the same functions as vision and audio.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from itertools import accumulate
from typing import Any, ClassVar

import numpy as np
import torch
from tasks.toy_objective import NextPosition
from torch import nn

from greedy_infomax.config import DistributedConfig, TrainConfig, require
from greedy_infomax.evaluation.embed import FeatureExtractor, check_module, embed
from greedy_infomax.evaluation.protocol import probe_modules
from greedy_infomax.models.split import isolate, split
from greedy_infomax.tasks import Task

OBJECTIVES: dict[str, type[nn.Module]] = {"next_position": NextPosition}


@dataclass(frozen=True)
class ToyData:
    samples: int = 96
    """Waves per split."""
    length: int = 32
    """Samples per wave."""
    batch_size: int = 16
    limit: int | None = None


@dataclass(frozen=True)
class ToyModel:
    channels: tuple[int, ...] = (8, 8)
    stages_per_module: tuple[int, ...] = (1, 1)

    @property
    def num_modules(self) -> int:
        return len(self.stages_per_module)


@dataclass(frozen=True)
class ToyObjective:
    name: str = "next_position"

    def __post_init__(self) -> None:
        require(self.name in OBJECTIVES, "objective.name", f"must be one of {', '.join(OBJECTIVES)}")


@dataclass(frozen=True)
class ToyProbe:
    pool: int = 1
    epochs: int = 20
    lr: float = 1e-2
    batch_size: int = 32
    knn_k: int = 0
    augmented_views: int = 0
    feature_dtype: str = "float32"
    random_init: bool = True
    stages_per_module: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ToyRunConfig:
    task: ClassVar[str] = "toy"
    data: ToyData = field(default_factory=ToyData)
    model: ToyModel = field(default_factory=ToyModel)
    objective: ToyObjective = field(default_factory=ToyObjective)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(lr=1e-2, epochs=2, channels_last=False, checkpoint_every=4, log_every=2)
    )
    probe: ToyProbe = field(default_factory=ToyProbe)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)


CLASSES = 3


class Waves:
    """Batches of (B, 1, length) waves and their class; shuffled per (seed, epoch) when `seed` is given."""

    def __init__(self, data: ToyData, split: str, device: torch.device, seed: int | None = None) -> None:
        rng = np.random.default_rng(0 if split == "train" else 1)
        count = data.samples if data.limit is None else min(data.samples, data.limit)
        self.labels = torch.from_numpy(rng.integers(0, CLASSES, count))
        time = torch.arange(data.length, dtype=torch.float32)
        phase = torch.from_numpy(rng.uniform(0, 2 * math.pi, (count, 1))).float()
        waves = torch.sin((1 + self.labels[:, None].float()) * 2 * math.pi * time / 16 + phase)
        self.inputs = (waves + 0.1 * torch.from_numpy(rng.standard_normal(waves.shape)).float())[:, None]
        self.batch_size, self.device, self.seed = data.batch_size, device, seed

    def __len__(self) -> int:
        n = len(self.inputs)
        return n // self.batch_size if self.seed is not None else -(-n // self.batch_size)

    def epoch(self, epoch: int = 0, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        order = (
            np.arange(len(self.inputs))
            if self.seed is None
            else np.random.default_rng((self.seed, epoch)).permutation(len(self.inputs))
        )
        for b in range(start_batch, len(self)):
            index = torch.from_numpy(order[b * self.batch_size : (b + 1) * self.batch_size])
            yield self.inputs[index].to(self.device), self.labels[index].to(self.device)


class ToyTask(Task):
    name = "toy"
    config_type = ToyRunConfig
    presets = {"toy-smoke": ToyRunConfig()}
    objectives = OBJECTIVES
    demo_preset = paper_preset = "toy-smoke"

    def pretrain_loader(self, config: ToyRunConfig, device: torch.device) -> tuple[Waves, int]:
        return Waves(config.data, "train", device, seed=config.train.seed), 1

    def build_modules(self, config: ToyRunConfig, in_channels: int) -> nn.ModuleList:
        widths = (in_channels, *config.model.channels)
        stages = nn.Sequential(
            *[nn.Sequential(nn.Conv1d(a, b, 3, padding=1), nn.ReLU()) for a, b in zip(widths, widths[1:])]
        )
        blocks = split(stages, after=[str(end - 1) for end in accumulate(config.model.stages_per_module)][:-1])
        return isolate(blocks, self.objective(config), torch.zeros(1, in_channels, config.data.length))

    def probe(self, run, config: ToyRunConfig, device: torch.device) -> dict[str, Any]:
        trained, config, progress = self.probed_encoder(run, config, 1, device)
        train, test = Waves(config.data, "train", device), Waves(config.data, "test", device)
        results = {
            "method": self.probed_method(run, config),
            "step": progress["step"],
            "probes": ["linear"],
            "trained": probe_modules(trained, train, test, config.probe, CLASSES, config.train.seed),
        }
        if config.probe.random_init:
            results["random"] = probe_modules(
                self.random_encoder(config, 1, device),
                train,
                test,
                config.probe,
                CLASSES,
                config.train.seed,
                "random init",
            )
        return results

    def embed(self, run, config: ToyRunConfig, module: int, role: str, device: torch.device) -> dict[str, np.ndarray]:
        modules, _ = self.load_trained(run, config, 1, device)
        split_name = "test" if role == "probe_test" else "train"
        return embed(modules, Waves(config.data, split_name, device), module, config.probe.pool)

    def extractor(self, run, config: ToyRunConfig, module: int, device: torch.device) -> nn.Module:
        modules, _ = self.load_trained(run, config, 1, device)
        check_module(module, len(modules))
        return FeatureExtractor(modules[:module], config.probe.pool)

    def example_batch(self, config: ToyRunConfig, batch_size: int, device: torch.device) -> torch.Tensor:
        return torch.randn(batch_size, 1, config.data.length, device=device)

    def with_baselines(self, config: ToyRunConfig, enabled: bool) -> ToyRunConfig:
        return replace(config, probe=replace(config.probe, random_init=enabled))


TASK = ToyTask()
