"""The Task surface's shared behaviour, on a hand-made toy task and on the registered ones: objectives built from
the objective config by constructor argument name, unknown names as one-line errors, the training method in words,
re-cutting the encoder, baselines on and off, budgets, and a random encoder seeded apart from the trained one."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

import pytest
import torch
from torch import nn

from greedy_infomax.config import TrainConfig
from greedy_infomax.errors import GimError
from greedy_infomax.evaluation.features import fingerprint
from greedy_infomax.objectives import (
    BarlowTwins,
    CLAPP1d,
    CLAPP2d,
    InfoNCE1d,
    InfoNCE2d,
    SimCLR,
    SpeechSupervised,
    Supervised,
    VICReg,
)
from greedy_infomax.tasks import PRESETS, preset, task_of
from greedy_infomax.tasks.base import Task


class Toy(nn.Module):
    def __init__(
        self,
        channels: int,
        prediction_steps: int,
        num_negatives: int = 1,
        temperature: float = 0.1,
        name: str = "toy loss",
    ) -> None:
        super().__init__()
        self.channels, self.prediction_steps, self.num_negatives = channels, prediction_steps, num_negatives
        self.temperature, self.name = temperature, name


class Plain(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels


@dataclass(frozen=True)
class ToyObjectiveConfig:
    name: str = "toy"
    prediction_steps: int = 3
    num_negatives: int = 5
    skip_steps: int = 2


@dataclass(frozen=True)
class ToyModelConfig:
    stages_per_module: tuple[int, ...] = (1, 2)

    @property
    def num_modules(self) -> int:
        return len(self.stages_per_module)


@dataclass(frozen=True)
class ToyProbeConfig:
    random_init: bool = True
    stages_per_module: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ToyRunConfig:
    task: ClassVar[str] = "toy"
    objective: ToyObjectiveConfig = field(default_factory=ToyObjectiveConfig)
    model: ToyModelConfig = field(default_factory=ToyModelConfig)
    probe: ToyProbeConfig = field(default_factory=ToyProbeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


class ToyTask(Task):
    """A task that only fills in the class attributes: every method under test is the base class's."""

    name = "toy"
    config_type = ToyRunConfig
    presets = {"toy-small": ToyRunConfig()}
    objectives = {"toy": Toy, "plain": Plain}
    demo_preset = paper_preset = "toy-small"
    budgets = {"smoke": "toy-small"}


TOY = ToyTask()


def toy(**sections) -> ToyRunConfig:
    return replace(ToyRunConfig(), **sections)


def task_for(config) -> Task:
    """The toy task for a toy config (it is not registered), else the registered task of the config."""
    return TOY if config.task == "toy" else task_of(config)


# -- objectives ---------------------------------------------------------------------------------------------------


def test_the_objective_takes_the_constructor_arguments_it_names_from_the_objective_config():
    """prediction_steps and num_negatives by name; skip_steps is not an argument, temperature not an option, and
    the config's `name` is the objective's registry key, never an argument."""
    factory = TOY.objective(toy())
    objective = factory(7)
    assert isinstance(objective, Toy) and objective.channels == 7
    assert (objective.prediction_steps, objective.num_negatives) == (3, 5)
    assert (objective.temperature, objective.name) == (0.1, "toy loss")


def test_an_objective_without_options_is_built_from_the_channels_alone():
    objective = TOY.objective(toy(objective=ToyObjectiveConfig(name="plain")))(4)
    assert isinstance(objective, Plain) and objective.channels == 4


def test_an_unknown_objective_is_a_one_line_error_listing_the_tasks_objectives():
    with pytest.raises(GimError) as error:
        TOY.objective(toy(objective=ToyObjectiveConfig(name="contrastive")))
    assert str(error.value) == (
        "objective.name: 'contrastive' is not an objective of toy runs; choose one of: toy, plain"
    )


@pytest.mark.parametrize(
    ("name", "objective", "cls", "options"),
    [
        (
            "smoke",
            "infonce_2d",
            InfoNCE2d,
            {"prediction_steps": 2, "skip_steps": 1, "num_negatives": 4, "negative_groups": 1},
        ),
        ("smoke", "supervised", Supervised, {"num_classes": 10}),
        (
            "speech-smoke",
            "infonce_1d",
            InfoNCE1d,
            {
                "prediction_steps": 3,
                "num_negatives": 4,
                "subsample": True,
                "subsample_window": 32,
                "negative_groups": 1,
            },
        ),
        ("speech-smoke", "supervised", SpeechSupervised, {"num_speakers": 251, "num_phones": 41, "targets": "both"}),
        ("smoke", "clapp", CLAPP2d, {"prediction_steps": 2, "skip_steps": 1}),
        ("smoke", "simclr", SimCLR, {"temperature": 0.5, "hidden_dim": 512, "projection_dim": None}),
        (
            "smoke",
            "barlow_twins",
            BarlowTwins,
            {"off_diagonal_weight": 5e-3, "hidden_dim": 512, "projection_dim": None},
        ),
        (
            "smoke",
            "vicreg",
            VICReg,
            {
                "invariance_weight": 25.0,
                "variance_weight": 25.0,
                "covariance_weight": 1.0,
                "hidden_dim": 512,
                "projection_dim": None,
            },
        ),
        ("speech-smoke", "clapp", CLAPP1d, {"prediction_steps": 3, "subsample": True, "subsample_window": 32}),
    ],
)
def test_each_tasks_objective_is_its_class_with_the_options_of_the_preset(name, objective, cls, options):
    config = preset(name)
    config = replace(config, objective=replace(config.objective, name=objective))
    factory = task_of(config).objective(config)
    assert factory.func is cls and factory.keywords == options


# -- the training method in words ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "changes", "method"),
    [
        ("paper-stl10", {}, "GIM (3 modules)"),
        ("paper-stl10", {"train": {"curriculum": "sequential"}}, "GIM (3 modules, sequential)"),
        ("paper-stl10", {"train": {"train_module": 2}}, "GIM (3 modules, train_module 2)"),
        ("paper-stl10", {"model": {"autoregressor": "pixelcnn"}}, "GIM (3 modules, PixelCNN in module 3)"),
        ("paper-stl10", {"model": {"stages_per_module": (3,), "autoregressor": "pixelcnn"}}, "end-to-end CPC"),
        ("paper-stl10", {"model": {"stages_per_module": (3,)}}, "end-to-end InfoNCE"),
        ("paper-stl10", {"objective": {"name": "supervised"}}, "greedy supervised (3 modules)"),
        (
            "paper-stl10",
            {"model": {"stages_per_module": (3,)}, "objective": {"name": "supervised"}},
            "end-to-end supervised",
        ),
        (
            "paper-stl10",
            {"train": {"curriculum": "sequential"}, "model": {"autoregressor": "pixelcnn"}},
            "GIM (3 modules, sequential, PixelCNN in module 3)",
        ),
        ("paper-librispeech", {"model": {"stages_per_module": (6,)}}, "end-to-end CPC"),
        ("paper-librispeech", {}, "GIM (6 modules)"),
        ("paper-stl10", {"objective": {"name": "barlow_twins"}}, "greedy barlow_twins (3 modules)"),
        ("paper-stl10", {"model": {"stages_per_module": (3,)}, "objective": {"name": "simclr"}}, "end-to-end simclr"),
        (
            "paper-librispeech",
            {"objective": {"name": "clapp"}, "train": {"train_module": 6}},
            "greedy clapp (6 modules, train_module 6)",
        ),
    ],
)
def test_training_method_names_what_sets_a_run_apart(name, changes, method):
    config = preset(name)
    config = replace(
        config, **{section: replace(getattr(config, section), **values) for section, values in changes.items()}
    )
    assert task_of(config).training_method(config) == method


@pytest.mark.parametrize(("stages", "method"), [((1, 2), "GIM (2 modules)"), ((3,), "end-to-end InfoNCE")])
def test_without_a_context_network_one_module_is_end_to_end_infonce(stages, method):
    assert TOY.training_method(toy(model=ToyModelConfig(stages))) == method


# -- configs derived from a config ---------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [toy(), PRESETS["paper-librispeech"]], ids=["toy", "audio"])
def test_cut_at_changes_where_the_encoder_is_cut_and_nothing_else(config):
    stages = (1,) * sum(config.model.stages_per_module)
    cut = task_for(config).cut_at(config, list(stages))
    assert cut == replace(config, model=replace(config.model, stages_per_module=stages))
    assert isinstance(cut.model.stages_per_module, tuple)


def test_end_to_end_is_every_stage_in_one_module():
    assert TOY.end_to_end_cpc(toy()).model.stages_per_module == (3,)


@pytest.mark.parametrize(
    ("config", "rows"),
    [
        (toy(), ["random_init"]),
        (PRESETS["smoke"], ["random_init", "raw_pixels"]),
        (PRESETS["speech-smoke"], ["random_init", "log_mel"]),
    ],
    ids=["toy", "vision", "audio"],
)
def test_with_baselines_switches_every_comparison_row_and_nothing_else(config, rows):
    for enabled in (False, True):
        switched = task_for(config).with_baselines(config, enabled)
        assert switched == replace(config, probe=replace(config.probe, **dict.fromkeys(rows, enabled)))


def test_a_budget_is_its_preset_and_an_unknown_budget_names_the_tasks_budgets():
    assert TOY.budget_config("smoke") is TOY.presets["toy-small"]
    with pytest.raises(GimError, match=r"^--budget: toy has the budgets smoke, not 'paper'$"):
        TOY.budget_config("paper")


# -- encoders -----------------------------------------------------------------------------------------------------


def test_a_random_encoder_is_seeded_apart_from_the_trained_one(tiny_config):
    config = tiny_config(seed=4)
    task, cpu = task_of(config), torch.device("cpu")
    trained = task.prepare_modules(config, 1, cpu, with_optimizers=False)
    random = task.random_encoder(config, 1, cpu)
    assert fingerprint(random) != fingerprint(trained)
    assert fingerprint(random) == fingerprint(task.prepare_modules(tiny_config(seed=5), 1, cpu, with_optimizers=False))
    assert all(module.optimizer is None for module in random)
