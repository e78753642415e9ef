"""Presets build and train; bad values name their option; configs round-trip through YAML."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
import torch
import yaml

from greedy_infomax.config import TrainConfig, end_to_end, load_config, to_dict
from greedy_infomax.errors import GimError
from greedy_infomax.tasks import PRESETS, preset, task_of
from greedy_infomax.tasks.vision import DataConfig, ModelConfig, ObjectiveConfig, ProbeConfig
from greedy_infomax.tasks.vision import VisionRunConfig as RunConfig


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_and_runs_one_step(preset_step, name):
    result = preset_step(name)
    assert len(result.modules) == result.config.model.num_modules
    assert len(result.losses) == result.config.model.num_modules
    assert all(torch.isfinite(loss) for loss in result.losses)
    after = result.modules.state_dict()
    assert all(not torch.equal(result.before[key], after[key]) for key in after), "one Adam step moves every weight"


PAPER_VISION = {  # shared/spec/paper-gim.md, "Vision (STL-10)"
    # 32 images on each of 8 GPUs: 256 per Adam step, negatives within each GPU's 32.
    "data": {"dataset": "stl10", "crop": 64, "flip": True, "grayscale": True, "batch_size": 256},
    "model": {
        "block": "bottleneck",
        "blocks_per_stage": [3, 4, 6],
        "planes": [64, 128, 256],
        "stem_channels": 64,
        "stem_kernel": 5,
        "patch_size": 16,
        "patch_stride": 8,
        "stages_per_module": [1, 1, 1],
        "autoregressor": "none",
        "pixelcnn_layers": 4,
    },
    "objective": {
        "name": "infonce_2d",
        "prediction_steps": 5,
        "skip_steps": 1,
        "num_negatives": 16,
        "negative_groups": 8,
        "num_classes": 10,
    },
    "train": {"lr": 2e-4, "weight_decay": 0.0, "epochs": 300, "seed": 2, "curriculum": "simultaneous"},
    "probe": {"protocol": "paper", "pool": 1, "lr": 1e-3, "epochs": 300},
}
PAPER_AUDIO = {  # shared/spec/paper-gim.md, "Audio (LibriSpeech train-clean-100)"
    "data": {"dataset": "librispeech", "batch_size": 32},  # 8 windows on each of 4 GPUs
    "model": {
        "channels": [512] * 5,
        "kernels": [10, 8, 4, 4, 4],
        "strides": [5, 4, 2, 2, 2],
        "paddings": [2, 2, 2, 2, 1],
        "gru_hidden": 256,
        "stages_per_module": [1] * 6,
    },
    "objective": {
        "name": "infonce_1d",
        "prediction_steps": 12,
        "num_negatives": 10,
        "subsample": True,
        "subsample_window": 128,
        "negative_groups": 4,
        "num_speakers": 251,
        "num_phones": 41,
    },
    "train": {"lr": 2e-4, "weight_decay": 0.0, "epochs": 1000, "seed": 2, "curriculum": "simultaneous"},
    "probe": {
        "protocol": "paper",
        "speaker_epochs": 50,
        "phone_epochs": 20,
        "speaker_lr": 1e-3,
        "phone_lr": 1e-4,
        "batch_size": 64,
    },
}


@pytest.mark.parametrize(("name", "paper"), [("paper-stl10", PAPER_VISION), ("paper-librispeech", PAPER_AUDIO)])
def test_paper_presets_hold_the_papers_values(name, paper):
    values = to_dict(preset(name))
    assert {section: {key: values[section][key] for key in keys} for section, keys in paper.items()} == paper


def test_paper_vision_preset_is_the_default_config_in_8_groups_with_the_papers_probe_and_cuts_a_7x7_grid():
    """The defaults are one of the original's GPUs; the preset takes 8 of them in one step. The default probe
    protocol stays the cached one, so run folders written before it existed probe alike."""
    assert RunConfig().probe.protocol == "cached"
    assert preset("paper-stl10") == replace(
        RunConfig(),
        data=DataConfig(batch_size=8 * RunConfig().data.batch_size),
        objective=ObjectiveConfig(negative_groups=8),
        probe=replace(RunConfig().probe, protocol="paper", epochs=300),
    )
    assert RunConfig().model.grid(RunConfig().data.crop) == 7


BAD_VALUES = [
    (lambda: ModelConfig(planes=(64, 128)), "model.planes"),
    (lambda: ModelConfig(blocks_per_stage=(3, 0, 6)), "model.blocks_per_stage"),
    (lambda: ModelConfig(stages_per_module=(1, 1)), "model.stages_per_module"),
    (lambda: ModelConfig(patch_stride=17), "model.patch_stride"),
    (lambda: ModelConfig(patch_stride=0), "model.patch_stride"),
    (lambda: RunConfig(objective=ObjectiveConfig(prediction_steps=6)), "objective.prediction_steps"),
    (lambda: RunConfig(objective=ObjectiveConfig(prediction_steps=5, skip_steps=2)), "objective.prediction_steps"),
    (lambda: RunConfig(train=TrainConfig(train_module=4)), "train.train_module"),
    (lambda: TrainConfig(train_module=0), "train.train_module"),
    (lambda: TrainConfig(lr=-1.0), "train.lr"),
    (lambda: RunConfig(data=DataConfig(crop=8)), "model.patch_size"),
    (lambda: DataConfig(batch_size=1), "data.batch_size"),
    (lambda: DataConfig(dataset="mnist"), "data.dataset"),
    (lambda: DataConfig(resize=0), "data.resize"),
    (lambda: DataConfig(workers=-1), "data.workers"),
    (lambda: ObjectiveConfig(num_negatives=0), "objective.num_negatives"),
    (lambda: ObjectiveConfig(negative_groups=0), "objective.negative_groups"),
    (lambda: RunConfig(objective=ObjectiveConfig(negative_groups=3)), "objective.negative_groups"),
    (lambda: RunConfig(objective=ObjectiveConfig(negative_groups=32)), "objective.negative_groups"),
    (lambda: RunConfig(probe=ProbeConfig(pool=8)), "probe.pool"),
    (lambda: RunConfig(model=ModelConfig(overlap=-1)), "model.overlap"),
    (lambda: RunConfig(model=ModelConfig(overlap=2)), "model.overlap"),  # the next modules have 1 stage each
    (lambda: RunConfig(model=ModelConfig(overlap=1), train=TrainConfig(curriculum="sequential")), "model.overlap"),
    (lambda: RunConfig(model=ModelConfig(overlap=1), train=TrainConfig(train_module=1)), "model.overlap"),
]


@pytest.mark.parametrize("build, option", BAD_VALUES, ids=[option for _, option in BAD_VALUES])
def test_bad_value_raises_value_error_naming_the_option(build, option):
    with pytest.raises(ValueError, match=rf"^{option.replace('.', '[.]')}: "):
        build()


def test_largest_valid_prediction_steps_is_accepted():
    config = RunConfig(objective=ObjectiveConfig(prediction_steps=5, skip_steps=1))  # rows 0 -> 6 of 7
    assert config.objective.prediction_steps == 5


@pytest.mark.parametrize("name", list(PRESETS))
def test_to_dict_yaml_load_config_round_trips(tmp_path, name):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(to_dict(PRESETS[name]), sort_keys=False))
    assert load_config(path) == PRESETS[name]


def test_round_trip_keeps_non_default_values(tmp_path):
    config = replace(end_to_end(PRESETS["smoke"]), train=replace(PRESETS["smoke"].train, max_steps=7, train_module=1))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(to_dict(config)))
    loaded = load_config(path)
    assert loaded == config and loaded.model.stages_per_module == (3,)


def test_load_config_rejects_a_bad_value_naming_file_and_option(tmp_path):
    values = to_dict(PRESETS["smoke"])
    values["train"]["lr"] = -1.0
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(GimError, match="train.lr") as error:
        load_config(path)
    assert str(path) in str(error.value)


def test_load_config_names_an_option_this_version_lacks_in_one_line(tmp_path, capsys):
    values = to_dict(PRESETS["speech-smoke"])
    values["probe"]["lr"] = 1e-3  # renamed speaker_lr / phone_lr since
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(GimError, match=r"config.yaml: .*'probe' does not accept option 'lr'.*pretrain --help"):
        load_config(path)
    assert capsys.readouterr().err == "", "no usage dump"


CONFIG_FILE_MISTAKES = {
    "not UTF-8": ("train:\n  lr: 0.001  # caf\xe9\n".encode("latin-1"), r"not UTF-8 text \(byte 0xe9 at offset 25\)"),
    "a section as a number": (b"train: 7\n", r"train: must be a section of options, got 7"),
    "empty": (b"", r"holds nothing; a config file holds a section per concern"),
    "comments only": (b"# nothing yet\n", r"holds nothing"),
    "a list": (b"- train\n", r"holds a list"),
    "an unknown task": (b"task: video\n", r"task: must be one of vision, audio, got 'video'"),
}


@pytest.mark.parametrize("mistake", CONFIG_FILE_MISTAKES)
def test_a_config_file_mistake_is_one_line_naming_the_file(tmp_path, mistake):
    content, message = CONFIG_FILE_MISTAKES[mistake]
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    with pytest.raises(GimError, match=rf"^{re.escape(str(path))}: {message}") as error:
        load_config(path)
    assert len(str(error.value).splitlines()) == 1


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(GimError, match="nope") as error:
        preset("nope")
    assert all(name in str(error.value) for name in PRESETS)


@pytest.mark.parametrize("name", ["paper-stl10", "paper-librispeech"])
def test_global_negatives_are_accepted_only_by_objectives_that_pool_them(name):
    """The module-parallel engine hands its replica group to an objective with a `negatives_group`: InfoNCE."""
    config = PRESETS[name]
    task = task_of(config)
    for objective, cls in task.objectives.items():
        change = {
            "objective": replace(config.objective, name=objective),
            "distributed": replace(config.distributed, negatives="global"),
        }
        if hasattr(cls, "negatives_group"):
            assert objective.startswith("infonce") and replace(config, **change).distributed.negatives == "global"
        else:
            with pytest.raises(ValueError, match=f"^distributed.negatives: .* objective {objective} trains on each"):
                replace(config, **change)
