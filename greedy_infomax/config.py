"""Typed, frozen configuration: one dataclass per concern, composed into `RunConfig`, plus named presets.

The defaults of every field are the paper's STL-10 setup, so `RunConfig()` is the `paper-stl10` preset.
The CLI flags, `--help` and config files are generated from these dataclasses (see cli.py), so the field
docstrings below are the user documentation of every option.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import ClassVar, Literal, Union

import yaml

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace, set_parsing_settings

from greedy_infomax.errors import GimError


def _require(condition: bool, option: str, message: str) -> None:
    """Reject a bad value with a message that names the option."""
    if not condition:
        raise ValueError(f"{option}: {message}")


@dataclass(frozen=True)
class DataConfig:
    """Which images to train and probe on, and how they are augmented."""

    dataset: Literal["fashion-mnist", "stl10", "image-folder"] = "stl10"
    """Dataset name."""
    root: str | None = None
    """Folder holding the dataset; None: $GIM_DATA (stl10), $GIM_DATA/fashion-mnist then Debian's
    /usr/share/datasets/fashion-mnist (fashion-mnist)."""
    crop: int = 64
    """Side of the square crop fed to the encoder (random when training, centred when evaluating)."""
    flip: bool = True
    """Random horizontal flips when training."""
    grayscale: bool = True
    """Convert colour images to one luma channel."""
    limit: int | None = None
    """Use only the first N images of every split (quick experiments and tests)."""
    batch_size: int = 32
    """Images per training step."""

    def __post_init__(self) -> None:
        _require(self.crop > 0, "data.crop", f"must be positive, got {self.crop}")
        _require(self.batch_size > 1, "data.batch_size", f"needs at least 2 images for negatives, got {self.batch_size}")
        _require(self.limit is None or self.limit >= self.batch_size, "data.limit",
                 f"must be at least one batch ({self.batch_size} images), got {self.limit}")


@dataclass(frozen=True)
class ModelConfig:
    """The pre-activation ResNet encoder (no BatchNorm) and how it is cut into gradient-isolated modules."""

    block: Literal["bottleneck", "basic"] = "bottleneck"
    """Residual block type (bottleneck: expansion 4; basic: two 3x3 convolutions)."""
    blocks_per_stage: tuple[int, ...] = (3, 4, 6)
    """Residual blocks in each stage."""
    planes: tuple[int, ...] = (64, 128, 256)
    """Inner width of each stage (a bottleneck stage outputs 4x this)."""
    stem_channels: int = 64
    """Channels of the stem convolution in front of stage 1."""
    stem_kernel: int = 5
    """Kernel size of the stem convolution (stride 1, same padding)."""
    patch_size: int = 16
    """Side of the square patches every image is cut into; each patch is encoded independently."""
    patch_stride: int = 8
    """Step between neighbouring patches (half the patch size gives 50% overlap)."""
    stages_per_module: tuple[int, ...] = (1, 1, 1)
    """How many consecutive stages each module holds: (1, 1, 1) is GIM, (3,) is end-to-end."""
    autoregressor: Literal["none", "pixelcnn"] = "none"
    """Context network of the last module's InfoNCE: none (GIM: c = z) or the gated PixelCNN of end-to-end CPC."""
    pixelcnn_layers: int = 4
    """Gated masked convolution layers of the PixelCNN."""

    def __post_init__(self) -> None:
        _require(self.pixelcnn_layers > 0, "model.pixelcnn_layers", "must be positive")
        _require(len(self.planes) == len(self.blocks_per_stage), "model.planes",
                 f"needs one width per stage ({len(self.blocks_per_stage)}), got {len(self.planes)}")
        _require(all(n > 0 for n in self.blocks_per_stage), "model.blocks_per_stage", "must all be positive")
        _require(all(p > 0 for p in self.planes), "model.planes", "must all be positive")
        _require(sum(self.stages_per_module) == len(self.blocks_per_stage) and min(self.stages_per_module) > 0,
                 "model.stages_per_module",
                 f"must be positive and add up to the {len(self.blocks_per_stage)} stages, got {self.stages_per_module}")
        _require(0 < self.patch_stride <= self.patch_size, "model.patch_stride",
                 f"must be in 1..patch_size ({self.patch_size}), got {self.patch_stride}")

    @property
    def num_modules(self) -> int:
        return len(self.stages_per_module)

    def grid(self, crop: int) -> int:
        """Patches along each side of a `crop`-sized image."""
        return (crop - self.patch_size) // self.patch_stride + 1


@dataclass(frozen=True)
class ObjectiveConfig:
    """The per-module loss."""

    name: Literal["infonce_2d", "supervised"] = "infonce_2d"
    """Objective of every module: InfoNCE, or a pooled linear classifier with cross-entropy on the labelled split
    (greedy supervised; end-to-end supervised with one module)."""
    prediction_steps: int = 5
    """K: how many rows below each context row are predicted."""
    skip_steps: int = 1
    """Rows skipped between a context row and its first target (they overlap with it)."""
    num_negatives: int = 16
    """Negatives per positive, drawn uniformly with replacement from all positions of the batch."""
    num_classes: int = 10
    """supervised: classes of the dataset's labels."""

    def __post_init__(self) -> None:
        _require(self.prediction_steps > 0, "objective.prediction_steps", "must be positive")
        _require(self.skip_steps >= 0, "objective.skip_steps", "must be >= 0")
        _require(self.num_negatives > 0, "objective.num_negatives", "must be positive")
        _require(self.num_classes > 1, "objective.num_classes", "must be at least 2")


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
    emulated, 11x slower than fp32 on an AVX2-only CPU."""
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
    deterministic: bool = True
    """PyTorch's deterministic algorithms: reruns and resumes match bit for bit (about 2% slower on CPU). Off on a
    GPU, cuDNN also times its convolution algorithms for each shape and keeps the fastest."""
    checkpoint_every: int = 1000
    """Write checkpoints every N steps (and always at the end)."""
    log_every: int = 10
    """Log losses every N steps."""
    on_nonfinite: Literal["stop", "skip"] = "stop"
    """A NaN/infinite loss either stops the run (after a checkpoint of the last good weights) or skips the batch
    (100 batches skipped in a row still stop it)."""

    def __post_init__(self) -> None:
        _require(self.lr > 0, "train.lr", f"must be positive, got {self.lr}")
        _require(self.frozen_chunks >= 1, "train.frozen_chunks", f"must be at least 1, got {self.frozen_chunks}")
        _require(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        _require(self.epochs > 0, "train.epochs", f"must be positive, got {self.epochs}")
        _require(self.max_steps is None or self.max_steps > 0, "train.max_steps", "must be positive")
        _require(self.train_module is None or self.train_module > 0, "train.train_module", "is 1-based")
        _require(self.train_module is None or self.curriculum == "simultaneous", "train.curriculum",
                 "sequential trains every module in turn; it cannot be combined with train.train_module")
        _require(self.checkpoint_every > 0, "train.checkpoint_every", "must be positive")
        _require(self.log_every > 0, "train.log_every", "must be positive")


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
        _require(self.stages is None or self.stages > 0, "distributed.stages", "must be positive")
        _require(self.buffer > 0, "distributed.buffer", f"must be positive, got {self.buffer}")
        _require(self.reuse_cap > 0, "distributed.reuse_cap", f"must be positive, got {self.reuse_cap}")
        _require(self.timeout > 0, "distributed.timeout", f"must be positive, got {self.timeout}")


@dataclass(frozen=True)
class ProbeConfig:
    """Linear and kNN probes on the frozen features of every module."""

    pool: int = 1
    """Average-pool each module's patch grid to pool x pool cells before the probe (1: the paper's C features)."""
    epochs: int = 100
    """Epochs of the linear classifier over the cached features."""
    lr: float = 1e-3
    """Adam learning rate of the linear classifier."""
    batch_size: int = 256
    """Minibatch of the linear classifier."""
    knn_k: int = 20
    """Neighbours of the cosine kNN probe (0 turns it off)."""
    random_init: bool = True
    """Also probe a randomly initialised encoder of the same architecture."""
    raw_pixels: bool = True
    """Also fit the linear classifier on raw pixels."""
    augmented_views: int = 0
    """Also fit the probes on this many views of each training image under pre-training's random crop and flip,
    each drawn once and its features cached (the paper's probe trains under that transform, drawing anew every
    epoch); 0: centre crops only. A run's default, the paper's setup, is 10; the CPU presets use 0 (each view
    costs another pass over their 60k training images)."""
    stages_per_module: tuple[int, ...] | None = None
    """Probe the encoder cut into these modules instead of the run's own (e.g. an end-to-end run at GIM's
    boundaries, to compare module by module); None: the run's modules."""

    def __post_init__(self) -> None:
        _require(self.pool > 0, "probe.pool", "must be positive")
        _require(self.epochs > 0, "probe.epochs", "must be positive")
        _require(self.lr > 0, "probe.lr", "must be positive")
        _require(self.batch_size > 0, "probe.batch_size", "must be positive")
        _require(self.knn_k >= 0, "probe.knn_k", "must be >= 0")
        _require(self.augmented_views >= 0, "probe.augmented_views", "must be >= 0")


@dataclass(frozen=True)
class RunConfig:
    """A complete, reproducible vision experiment."""

    task: ClassVar[str] = "vision"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    probe: ProbeConfig = field(default_factory=lambda: ProbeConfig(augmented_views=10))
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def __post_init__(self) -> None:
        grid = self.model.grid(self.data.crop)
        _require(grid > 0, "model.patch_size", f"{self.model.patch_size} does not fit in a {self.data.crop} crop")
        _require(self.objective.skip_steps + self.objective.prediction_steps < grid, "objective.prediction_steps",
                 f"{self.objective.prediction_steps} steps after skipping {self.objective.skip_steps} "
                 f"need more than the {grid} rows of the patch grid")
        _require(self.train.train_module is None or self.train.train_module <= self.model.num_modules,
                 "train.train_module", f"must be at most {self.model.num_modules}, got {self.train.train_module}")
        _require(self.probe.pool <= grid, "probe.pool", f"must be at most the grid size {grid}")
        _check_probe_stages(self.probe.stages_per_module, len(self.model.blocks_per_stage))


@dataclass(frozen=True)
class AudioDataConfig:
    """Which speech corpus to train and probe on (LibriSpeech layout with the CPC split and alignments)."""

    dataset: Literal["librispeech", "speech-corpus", "speech-folder"] = "librispeech"
    """`librispeech`: LibriSpeech train-clean-100; `speech-corpus`: the corpus `gim data speech-corpus` generates;
    `speech-folder`: your own recordings, ROOT/<speaker>/*.flac or *.wav (see data/speech_folder.py)."""
    root: str | None = None
    """Folder holding LibriSpeech/ and LibriSpeech100_labels_split/ (or the speaker folders); None: $GIM_DATA
    (librispeech) or $GIM_DATA/speech-corpus, else ~/.cache/greedy-infomax/speech-corpus (speech-corpus)."""
    limit: int | None = None
    """Use only N utterances of every split, taken from each speaker in turn (quick experiments and tests)."""
    batch_size: int = 8
    """Windows per training step."""

    def __post_init__(self) -> None:
        _require(self.batch_size > 1, "data.batch_size", f"needs at least 2 windows for negatives, got {self.batch_size}")
        _require(self.limit is None or self.limit >= self.batch_size, "data.limit",
                 f"must be at least one batch ({self.batch_size} utterances), got {self.limit}")


@dataclass(frozen=True)
class AudioModelConfig:
    """The CPC audio encoder (strided Conv1d layers, then a GRU) and how it is cut into modules."""

    channels: tuple[int, ...] = (512, 512, 512, 512, 512)
    """Output channels of each Conv1d layer."""
    kernels: tuple[int, ...] = (10, 8, 4, 4, 4)
    """Kernel size of each Conv1d layer."""
    strides: tuple[int, ...] = (5, 4, 2, 2, 2)
    """Stride of each Conv1d layer; their product must be the corpus's label hop (160 samples = 10 ms)."""
    paddings: tuple[int, ...] = (2, 2, 2, 2, 1)
    """Zero padding of each Conv1d layer."""
    gru_hidden: int = 256
    """Hidden size of the GRU on top of the convolutions."""
    stages_per_module: tuple[int, ...] = (1, 1, 1, 1, 1, 1)
    """Consecutive stages (each conv, then the GRU) per module: six 1s is GIM, (6,) is end-to-end CPC."""

    def __post_init__(self) -> None:
        layers = len(self.channels)
        _require(len(self.kernels) == len(self.strides) == len(self.paddings) == layers, "model.channels",
                 f"kernels, strides and paddings need one entry per conv layer ({layers})")
        _require(layers > 0 and all(c > 0 for c in self.channels), "model.channels",
                 "needs at least one conv layer, and all sizes positive")
        _require(self.gru_hidden > 0, "model.gru_hidden", f"must be positive, got {self.gru_hidden}")
        _require(sum(self.stages_per_module) == layers + 1 and min(self.stages_per_module) > 0,
                 "model.stages_per_module",
                 f"must be positive and add up to the {layers + 1} stages ({layers} convs + GRU), "
                 f"got {self.stages_per_module}")

    @property
    def num_modules(self) -> int:
        return len(self.stages_per_module)

    def module_hops(self) -> list[int]:
        """Input samples per output step of each module: the product of the strides of the convs up to its end."""
        hops, last = [], 0
        for count in self.stages_per_module:
            last += count
            hops.append(math.prod(self.strides[:min(last, len(self.strides))]))
        return hops


@dataclass(frozen=True)
class AudioObjectiveConfig:
    """The per-module loss: InfoNCE predicting future frames."""

    name: Literal["infonce_1d", "supervised"] = "infonce_1d"
    """Objective of every module: InfoNCE, or linear speaker (time-averaged) and phone (per 10 ms frame)
    classifiers with cross-entropy (greedy supervised; end-to-end supervised with one module)."""
    prediction_steps: int = 12
    """K: how many frames ahead are predicted."""
    num_negatives: int = 10
    """Negatives per positive, drawn from all time steps of all windows of the batch."""
    subsample: bool = True
    """Take contexts and positives from one random `subsample_window`-step window of longer sequences."""
    subsample_window: int = 128
    """Steps of that window (the paper's 128 frames)."""
    num_speakers: int = 251
    """supervised: speakers of the corpus (LibriSpeech train-clean-100: 251)."""
    num_phones: int = 41
    """supervised: phone classes of the alignments."""

    def __post_init__(self) -> None:
        _require(self.prediction_steps > 0, "objective.prediction_steps", "must be positive")
        _require(self.num_negatives > 0, "objective.num_negatives", "must be positive")
        _require(self.subsample_window > self.prediction_steps, "objective.subsample_window",
                 f"must exceed prediction_steps ({self.prediction_steps})")


@dataclass(frozen=True)
class AudioProbeConfig:
    """Linear speaker and phone classifiers on the frozen features of every module."""

    speaker_epochs: int = 50
    """Epochs of the speaker classifier on features averaged over each one-window segment of an utterance."""
    phone_epochs: int = 20
    """Epochs of the phone classifier on per-frame features of whole utterances."""
    phone_frames: int | None = None
    """Keep at most this many training frames (evenly strided) for the phone probe; None keeps all."""
    speaker_lr: float = 1e-3
    """Adam learning rate of the speaker classifier (on standardised features; the paper's)."""
    phone_lr: float = 1e-4
    """Adam learning rate of the phone classifier (the paper's)."""
    batch_size: int = 64
    """Minibatch of both classifiers: segments for the speaker probe, frames for the phone probe (the paper's phone
    probe takes whole utterances)."""
    random_init: bool = True
    """Also probe a randomly initialised encoder of the same architecture."""
    log_mel: bool = True
    """Also fit both classifiers on log-mel filterbank features (an MFCC-like baseline)."""
    stages_per_module: tuple[int, ...] | None = None
    """Probe the encoder cut into these modules instead of the run's own (e.g. an end-to-end run at GIM's
    boundaries, to compare module by module); None: the run's modules."""

    def __post_init__(self) -> None:
        for option in ("speaker_epochs", "phone_epochs", "batch_size", "speaker_lr", "phone_lr"):
            _require(getattr(self, option) > 0, f"probe.{option}", "must be positive")
        _require(self.phone_frames is None or self.phone_frames > 0, "probe.phone_frames", "must be positive")


@dataclass(frozen=True)
class AudioRunConfig:
    """A complete, reproducible speech experiment."""

    task: ClassVar[str] = "audio"
    data: AudioDataConfig = field(default_factory=AudioDataConfig)
    model: AudioModelConfig = field(default_factory=AudioModelConfig)
    objective: AudioObjectiveConfig = field(default_factory=AudioObjectiveConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1000, channels_last=False))
    probe: AudioProbeConfig = field(default_factory=AudioProbeConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def __post_init__(self) -> None:
        _require(self.train.train_module is None or self.train.train_module <= self.model.num_modules,
                 "train.train_module", f"must be at most {self.model.num_modules}, got {self.train.train_module}")
        _check_probe_stages(self.probe.stages_per_module, len(self.model.channels) + 1)


def _check_probe_stages(stages_per_module: tuple[int, ...] | None, stages: int) -> None:
    _require(stages_per_module is None or (sum(stages_per_module) == stages and min(stages_per_module) > 0),
             "probe.stages_per_module", f"must be positive and add up to the encoder's {stages} stages, "
             f"got {stages_per_module}")


AnyRunConfig = Union[RunConfig, AudioRunConfig]
CONFIG_TYPES: dict[str, type] = {"vision": RunConfig, "audio": AudioRunConfig}


PRESETS: dict[str, AnyRunConfig] = {
    # The paper's vision setup: STL-10, 64x64 crops, 7x7 grid of 16x16 patches, bottleneck ResNet 3-4-6 in 3 modules.
    "paper-stl10": RunConfig(),
    # The CPU default used by `gim demo`: 28x28 Fashion-MNIST, 8x8 patches, one basic block per module.
    "fashion-mnist": RunConfig(
        data=DataConfig(dataset="fashion-mnist", crop=28, flip=True, grayscale=True, batch_size=32),
        model=ModelConfig(block="basic", blocks_per_stage=(1, 1, 1), planes=(32, 64, 128), stem_channels=32,
                          stem_kernel=3, patch_size=8, patch_stride=4),
        objective=ObjectiveConfig(prediction_steps=3, skip_steps=1, num_negatives=16),
        # One epoch only, so lr 1e-3 rather than the paper's 2e-4; bf16 autocast is 1.4x faster on a CPU with bf16.
        train=TrainConfig(lr=1e-3, epochs=1, precision="auto", checkpoint_every=500),
        # The probe sees every patch vector of the 6x6 grid (no pooling): pooled 128-d features lose
        # most of what a 28x28 image's layout says (measured: 76.9% pooled vs 89.1% full grid, module 3).
        probe=ProbeConfig(pool=6, epochs=10, lr=1e-3),
    ),
    # Seconds, for tests: a tiny encoder on a few hundred images.
    "smoke": RunConfig(
        data=DataConfig(dataset="fashion-mnist", crop=28, limit=256, batch_size=16),
        model=ModelConfig(block="basic", blocks_per_stage=(1, 1, 1), planes=(4, 8, 8), stem_channels=4,
                          stem_kernel=3, patch_size=8, patch_stride=4),
        objective=ObjectiveConfig(prediction_steps=2, skip_steps=1, num_negatives=4),
        train=TrainConfig(lr=1e-3, epochs=1, checkpoint_every=8, log_every=2),
        probe=ProbeConfig(pool=1, epochs=2, knn_k=5),
    ),
    # The paper's audio setup: LibriSpeech-100, the CPC encoder (5 convs of 512 + GRU 256) in 6 modules.
    "paper-librispeech": AudioRunConfig(),
    # The CPU default used by `gim demo audio`: the generated speech corpus and a narrower encoder.
    "speech": AudioRunConfig(
        data=AudioDataConfig(dataset="speech-corpus", batch_size=16),
        model=AudioModelConfig(channels=(128,) * 5, gru_hidden=128),
        train=TrainConfig(lr=1e-3, epochs=20, precision="auto", channels_last=False, checkpoint_every=500),
        # 2 phone epochs instead of the paper's 20, so a 10x larger step.
        probe=AudioProbeConfig(speaker_epochs=50, phone_epochs=2, phone_lr=1e-3, phone_frames=200_000),
    ),
    # Seconds, for tests: a tiny audio encoder on a few generated utterances.
    "speech-smoke": AudioRunConfig(
        data=AudioDataConfig(dataset="speech-corpus", limit=8, batch_size=4),
        model=AudioModelConfig(channels=(8,) * 5, gru_hidden=8),
        objective=AudioObjectiveConfig(prediction_steps=3, num_negatives=4, subsample_window=32),
        train=TrainConfig(lr=1e-3, epochs=2, channels_last=False, checkpoint_every=2, log_every=1),
        probe=AudioProbeConfig(speaker_epochs=2, phone_epochs=1, phone_lr=1e-3, batch_size=64),
    ),
}


def preset(name: str) -> AnyRunConfig:
    """The named preset; an unknown name fails by listing the valid ones."""
    if name not in PRESETS:
        raise GimError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]


def end_to_end(config: AnyRunConfig) -> AnyRunConfig:
    """The same experiment with the whole encoder as one module (plain end-to-end backpropagation)."""
    stages = sum(config.model.stages_per_module)
    return replace(config, model=replace(config.model, stages_per_module=(stages,)))


def training_method(config: AnyRunConfig) -> str:
    """How the run was trained, in words: its objective, end-to-end or how many modules, and what set it apart
    (the sequential curriculum, one module trained, a PixelCNN in the last module)."""
    supervised = "supervised" if config.objective.name == "supervised" else None
    pixelcnn = config.task == "vision" and config.model.autoregressor == "pixelcnn"
    if config.model.num_modules == 1:
        return f"end-to-end {supervised or ('CPC' if config.task == 'audio' or pixelcnn else 'InfoNCE')}"
    details = [f"{config.model.num_modules} modules"]
    details += ["sequential"] if config.train.curriculum == "sequential" else []
    details += [f"train_module {config.train.train_module}"] if config.train.train_module else []
    details += [f"PixelCNN in module {config.model.num_modules}"] if pixelcnn else []
    return f"{'greedy supervised' if supervised else 'GIM'} ({', '.join(details)})"


def to_dict(config: AnyRunConfig) -> dict:
    """Plain nested dict (tuples as lists) with the task first, as written to a run folder's config.yaml."""
    def plain(value):
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        return list(value) if isinstance(value, tuple) else value
    return {"task": config.task, **plain(asdict(config))}


def config_parser(defaults: AnyRunConfig, **parser_options) -> ArgumentParser:
    """Flags `--data.batch_size`, `--model.stages_per_module`, ... and `--config FILE`, generated from the
    dataclasses of the defaults' task (vision or audio). A bad value raises argparse.ArgumentError, for the caller to
    report in one line, rather than printing the whole usage and exiting."""
    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    parser = ArgumentParser(exit_on_error=False, **parser_options)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file of options (a run's config.yaml works)")
    parser.add_argument("--task", choices=[defaults.task], default=defaults.task,
                        help="vision or audio: set by --preset or by a --config file's task")
    parser.add_class_arguments(type(defaults), None, default=defaults, sub_configs=False)
    return parser


def from_namespace(parser: ArgumentParser, namespace: Namespace) -> AnyRunConfig:
    """Build and validate the run config of the namespace's task; a bad value raises ValueError naming the option."""
    config_type = CONFIG_TYPES[namespace.task]
    values = Namespace(**{f.name: namespace[f.name] for f in fields(config_type)})
    parts = parser.instantiate(values)
    return config_type(**{f.name: parts[f.name] for f in fields(config_type)})


def config_task(path: Path) -> str:
    """The task (vision or audio) of a config file; no `task` key means vision."""
    return read_config_file(path).get("task", "vision")


def read_config_file(path: Path) -> dict:
    """The options of a config file, checked for the mistakes the options parser reports with a traceback or a
    riddle (a file not in UTF-8, an empty one, `train: 7`), each as one line naming the file."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise GimError(f"{path}: not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}); "
                       "save it as UTF-8") from error
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
            raise GimError(f"{path}: {section.name}: must be a section of options, got {values[section.name]!r}; "
                           f"a config file holds {example}")
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
