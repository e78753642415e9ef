"""Typed, frozen configuration shared by every task: the training loop, distributed training, and the plumbing that
turns a task's run config into CLI flags, a config file and back.

A task (greedy_infomax/tasks/) composes its own data, model, objective and probe dataclasses with `TrainConfig`
and `DistributedConfig` into its run config, and registers its type here so that a run folder's config.yaml
loads without knowing the task in advance. The CLI flags, `--help` and config files are generated from the
dataclasses, so their field docstrings are the user documentation of every option.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import textwrap
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace, set_parsing_settings

from greedy_infomax.errors import GimError


def require(condition: bool, option: str, message: str) -> None:
    """Reject a bad value with a message that names the option."""
    if not condition:
        raise ValueError(f"{option}: {message}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and the training loop."""

    lr: float = 2e-4
    """Adam learning rate of every module."""
    weight_decay: float = 0.0
    """Adam weight decay."""
    epochs: int = 300
    """Passes over the pre-training split."""
    max_steps: int | None = None
    """Stop after this many steps in total (None: run all epochs)."""
    train_module: int | None = None
    """Train only this module (1-based); earlier modules run frozen without autograd. None: all at once."""
    curriculum: Literal["simultaneous", "sequential"] = "simultaneous"
    """simultaneous: every module steps on every batch; sequential: module 1 alone for all epochs, then module 2 on
    module 1's frozen outputs for as many, and so on (the number of steps is multiplied by the module count)."""
    seed: int = 2
    """Seed of weights, data order, augmentation and negative sampling."""
    device: str = "auto"
    """'auto' (CUDA if available, else CPU), 'cpu', 'cuda' or 'cuda:N'."""
    precision: Literal["fp32", "bf16", "auto"] = "fp32"
    """bf16 runs the forward pass under autocast (weights and optimiser stay fp32). 'auto': bf16 where the device
    computes it natively (a GPU with bf16, a CPU with AVX512-BF16, AMX or Arm BF16), else fp32: elsewhere bf16 is
    emulated, many times slower than fp32."""
    channels_last: bool = True
    """Channels-last memory format for the convolutions (much faster 1x1 convolutions on CPU)."""
    compile: bool = False
    """torch.compile each module's encoder block and objective (fuses the block's element-wise work, and the
    objective's gather of negatives with their scoring; the first steps pay the compilation)."""
    frozen_chunks: int = 1
    """With train_module K > 1, or module K > 1 of the sequential curriculum: run the frozen modules 1..K-1 on the
    batch in this many parts, so their transient activations take that much less memory (the trained module still
    sees the whole batch)."""
    recompute_activations: bool = False
    """Activation checkpointing: each layer of a block (a residual block, a conv) keeps only its input for the
    backward pass and recomputes the rest there: less memory for one more forward pass of the block."""
    backward_chunks: int = 1
    """Backpropagate each trained block in this many parts of the batch (gradient caching): the block encodes the
    batch without a graph, the loss's gradient with respect to its output is taken once, then each part is encoded
    again and backpropagated alone. The block's activations for one part at a time, for one more forward pass;
    the same gradients (to rounding), as blocks treat samples independently. At 2, a two-view objective (SimCLR,
    Barlow Twins, VICReg) holds one view's activations, as a one-view objective does."""
    deterministic: bool = True
    """PyTorch's deterministic algorithms: reruns and resumes match bit for bit (slightly slower). Off on a
    GPU, cuDNN also times its convolution algorithms for each shape and keeps the fastest."""
    checkpoint_every: int = 1000
    """Write checkpoints every N steps (and always at the end); the newest two are kept."""
    keep_every: int | None = None
    """Also keep every checkpoint whose step is a multiple of N, to probe a chosen step later (`gim probe RUN
    --step N`); None: only the newest two."""
    validation: float = 0.0
    """Share of the pre-training split held out (not trained on) whose loss per module is logged after every
    epoch (metrics.jsonl: val_loss/moduleK), to see overfitting; 0: none."""
    log_every: int = 10
    """Log losses every N steps."""
    online_probe: bool = False
    """Train a linear classifier per module on its detached, pooled outputs for the labelled pre-training batches,
    and log each module's accuracy with the losses (online_accuracy/moduleK); the encoder is not changed."""
    on_nonfinite: Literal["stop", "skip"] = "stop"
    """A NaN/infinite loss either stops the run (after a checkpoint of the last good weights) or skips the batch
    (100 batches skipped in a row still stop it)."""

    def __post_init__(self) -> None:
        require(self.lr > 0, "train.lr", f"must be positive, got {self.lr}")
        require(self.frozen_chunks >= 1, "train.frozen_chunks", f"must be at least 1, got {self.frozen_chunks}")
        require(self.backward_chunks >= 1, "train.backward_chunks", f"must be at least 1, got {self.backward_chunks}")
        require(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        require(self.epochs > 0, "train.epochs", f"must be positive, got {self.epochs}")
        require(self.max_steps is None or self.max_steps > 0, "train.max_steps", "must be positive")
        require(self.train_module is None or self.train_module > 0, "train.train_module", "is 1-based")
        require(
            self.train_module is None or self.curriculum == "simultaneous",
            "train.curriculum",
            "sequential trains every module in turn; it cannot be combined with train.train_module",
        )
        require(self.checkpoint_every > 0, "train.checkpoint_every", "must be positive")
        require(self.keep_every is None or self.keep_every > 0, "train.keep_every", "must be positive")
        require(0 <= self.validation < 1, "train.validation", f"must be in [0, 1), got {self.validation}")
        require(self.log_every > 0, "train.log_every", "must be positive")


@dataclass(frozen=True)
class DistributedConfig:
    """Training across the processes torchrun starts: consecutive modules per pipeline stage, stages replicated.

    Rank r is stage r mod `stages` of replica r // `stages`; nothing here matters for a single process.
    """

    stages: int | None = None
    """Pipeline stages per replica, each a process owning consecutive modules; None: one per process (no replicas)."""
    schedule: Literal["sync", "async"] = "sync"
    """sync: every stage steps on every batch in order, as the local engine does; async: a stage never waits for a
    slower predecessor while it holds an input it may reuse, and a slow stage skips to its newest input."""
    buffer: int = 2
    """Inputs a stage holds from its predecessor (sync: queued before the predecessor waits; async: the newest kept)."""
    reuse_cap: int = 2
    """async: the most steps one received input may serve (1: never reuse)."""
    timeout: float = 300.0
    """Seconds a rank waits on another before it stops with an error naming that rank and its modules."""
    negatives: Literal["local", "global"] = "local"
    """Negative pool of each replica: its own batch (local), or the batches of every replica (global, all_gather)."""

    def __post_init__(self) -> None:
        require(self.stages is None or self.stages > 0, "distributed.stages", "must be positive")
        require(self.buffer > 0, "distributed.buffer", f"must be positive, got {self.buffer}")
        require(self.reuse_cap > 0, "distributed.reuse_cap", f"must be positive, got {self.reuse_cap}")
        require(self.timeout > 0, "distributed.timeout", f"must be positive, got {self.timeout}")


AnyRunConfig = Any
"""A task's run config: a frozen dataclass with `task` (ClassVar), data, model, objective, train, probe and
distributed sections."""

CONFIG_TYPES: dict[str, type] = {}
"""Task name -> its run config type; filled by greedy_infomax.tasks.register."""


def end_to_end(config: AnyRunConfig) -> AnyRunConfig:
    """The same experiment with the whole encoder as one module (plain end-to-end backpropagation)."""
    stages = sum(config.model.stages_per_module)
    return replace(config, model=replace(config.model, stages_per_module=(stages,)))


def to_dict(config: AnyRunConfig) -> dict:
    """Plain nested dict (tuples as lists) with the task first, as written to a run folder's config.yaml."""

    def plain(value):
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        return list(value) if isinstance(value, tuple) else value

    return {"task": config.task, **plain(asdict(config))}


def config_parser(defaults: AnyRunConfig, **parser_options) -> ArgumentParser:
    """Flags `--data.batch_size`, `--model.stages_per_module`, ... and `--config FILE`, generated from the
    dataclasses of the defaults' task. A bad value raises argparse.ArgumentError, for the caller to report in one
    line, rather than printing the whole usage and exiting."""
    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    parser = ArgumentParser(exit_on_error=False, **parser_options)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file of options (a run's config.yaml works)")
    parser.add_argument(
        "--task",
        choices=[defaults.task],
        default=defaults.task,
        help="the task (vision, audio, ...): set by --preset or by a --config file's task",
    )
    parser.add_class_arguments(type(defaults), None, default=defaults, sub_configs=False)
    return parser


def from_namespace(parser: ArgumentParser, namespace: Namespace) -> AnyRunConfig:
    """Build and validate the run config of the namespace's task; a bad value raises ValueError naming the option."""
    config_type = CONFIG_TYPES[namespace.task]
    values = Namespace(**{f.name: namespace[f.name] for f in fields(config_type)})
    parts = parser.instantiate(values)
    return config_type(**{f.name: parts[f.name] for f in fields(config_type)})


def config_task(path: Path) -> str:
    """The task of a config file; no `task` key means vision."""
    return read_config_file(path).get("task", "vision")


def read_config_file(path: Path) -> dict:
    """The options of a config file, checked for the mistakes the options parser reports with a traceback or a
    riddle (a file not in UTF-8, an empty one, `train: 7`), each as one line naming the file."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise GimError(
            f"{path}: not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}); save it as UTF-8"
        ) from error
    except OSError as error:
        raise GimError(f"{path}: cannot be read ({error.strerror})") from error
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise GimError(f"{path}: {' '.join(str(error).split())}") from error
    example = "a section per concern, e.g. `train: {lr: 0.001, epochs: 2}`"
    if not isinstance(values, dict):
        held = "nothing" if values is None else f"a {type(values).__name__}"
        raise GimError(f"{path}: holds {held}; a config file holds {example}")
    task = values.get("task", "vision")
    if task not in CONFIG_TYPES:
        raise GimError(f"{path}: task: must be one of {', '.join(CONFIG_TYPES)}, got {task!r}")
    for section in fields(CONFIG_TYPES[task]):
        if section.name in values and not isinstance(values[section.name], dict):
            raise GimError(
                f"{path}: {section.name}: must be a section of options, got {values[section.name]!r}; "
                f"a config file holds {example}"
            )
    return values


def load_config(path: Path) -> AnyRunConfig:
    """Read a config file written by `to_dict` (or by hand; no `task` key means vision), validated like
    command-line options."""
    try:
        parser = config_parser(CONFIG_TYPES[config_task(path)]())
        return from_namespace(parser, parser.parse_path(str(path)))
    except argparse.ArgumentError as error:
        raise GimError(f"{path}: {error} (`gim pretrain --help` lists this version's options)") from error
    except (ValueError, TypeError, AttributeError, yaml.YAMLError) as error:
        raise GimError(f"{path}: {' '.join(str(error).split())}") from error


def check_negatives(negatives: str, objective: str, objectives: dict[str, type]) -> None:
    """`distributed.negatives global` pools an objective's sampled negatives across replicas; only the objectives
    with a `negatives_group` attribute (set by the module-parallel engine) can do that."""
    pooling = [name for name, cls in objectives.items() if hasattr(cls, "negatives_group")]
    require(
        negatives == "local" or objective in pooling,
        "distributed.negatives",
        f"global shares the negative pool across replicas, which only {', '.join(pooling)} can; objective "
        f"{objective} trains on each replica's own batch (pass local)",
    )


def check_probe_stages(stages_per_module: tuple[int, ...] | None, stages: int) -> None:
    """A probe's own cut of the encoder must cover its stages exactly."""
    require(
        stages_per_module is None or (sum(stages_per_module) == stages and min(stages_per_module) > 0),
        "probe.stages_per_module",
        f"must be positive and add up to the encoder's {stages} stages, got {stages_per_module}",
    )


def check_overlap(overlap: int, lendable: list[int], train: TrainConfig) -> None:
    """`model.overlap` N: each module borrows the first N stages of the next, which must have them (`lendable`: the
    stages each module after the first can lend; 0, the module that holds only the GRU, lends none), and the lender
    must step on every batch, since it takes the update of what the borrower's loss adds to those stages."""
    require(overlap >= 0, "model.overlap", f"must be >= 0, got {overlap}")
    lenders = [count for count in lendable if count]
    require(
        overlap <= min(lenders, default=0) or not overlap,
        "model.overlap",
        f"lends the first stages of every next module, so at most {min(lenders, default=0)} here, got {overlap}",
    )
    if overlap:
        check_lenders_step(train, "model.overlap")


def check_lenders_step(train: TrainConfig, option: str) -> None:
    """Overlapping modules need every module to step on every batch: the next module takes the step on the stages
    it lends."""
    require(
        train.curriculum == "simultaneous" and train.train_module is None,
        option,
        "the next module takes the step on the stages it lends, so every module trains on every batch: "
        "train.curriculum simultaneous, no train.train_module",
    )


def check_negative_groups(batch_size: int, groups: int) -> None:
    """`objective.negative_groups` must cut the batch into equal groups of at least 2 (an image or window alone
    has no other to draw negatives from)."""
    require(
        batch_size % groups == 0 and batch_size // groups > 1,
        "objective.negative_groups",
        f"must split data.batch_size ({batch_size}) into equal groups of at least 2, got {groups}",
    )


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass, one line each: the help of flags generated outside
    config_parser (which reads them itself)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs
