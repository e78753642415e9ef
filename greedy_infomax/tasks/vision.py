"""The vision task: images cut into a grid of patches, a patch ResNet in gradient-isolated modules, InfoNCE over
the grid (paper, Sec. 4.1), probed by linear and kNN classifiers on every module's pooled features.

Its run config's defaults are the paper's STL-10 setup on one GPU of the original's (32 images, one negative group)
with the cached probe protocol, so that a run folder written before `probe.protocol` existed probes as it did:
`paper-stl10` is `VisionRunConfig()` with the paper's step of 8 such groups and the paper's probe protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from greedy_infomax.config import (
    DistributedConfig,
    TrainConfig,
    check_negative_groups,
    check_negatives,
    check_overlap,
    check_probe_stages,
    require,
)
from greedy_infomax.data import DATASETS, known_dataset, read_images
from greedy_infomax.data.loader import BatchLoader
from greedy_infomax.data.spec import ImageArray, ImageSpec
from greedy_infomax.data.streamed import StreamedImages, StreamLoader, image_batches
from greedy_infomax.data.transforms import ImageTransform
from greedy_infomax.data.views import TwoViewTransform
from greedy_infomax.errors import GimError
from greedy_infomax.evaluation.embed import FeatureExtractor, check_module, embed
from greedy_infomax.evaluation.features import left_unchanged, module_features, raw_pixel_features
from greedy_infomax.evaluation.online_probe import OnlineProbes
from greedy_infomax.evaluation.protocol import probe_features, probe_modules
from greedy_infomax.evaluation.streaming import batch_stream, fit_streaming
from greedy_infomax.models.pixelcnn import PixelCNN
from greedy_infomax.models.vision import patch_resnet_modules
from greedy_infomax.objectives import BarlowTwins, CLAPP2d, InfoNCE2d, SimCLR, Supervised, VICReg
from greedy_infomax.reporting.run_folder import RunFolder
from greedy_infomax.tasks.base import Task, objective_options

OBJECTIVES: dict[str, type[nn.Module]] = {
    "infonce_2d": InfoNCE2d,
    "supervised": Supervised,
    "clapp": CLAPP2d,
    "simclr": SimCLR,
    "barlow_twins": BarlowTwins,
    "vicreg": VICReg,
}
"""`objective.name` -> objective class; a new objective is one file in objectives/ and one line here."""


@dataclass(frozen=True)
class DataConfig:
    """Which images to train and probe on, and how they are augmented."""

    dataset: str = "stl10"
    """Dataset: stl10, fashion-mnist, image-folder (read into memory), photo-folder or imagenet (photos streamed from
    disk by worker processes), or python:package.module:factory, a function of yours that returns the (train, test)
    torch Datasets of uint8 images (and labels), called with `root` when one is given."""
    root: str | None = None
    """Folder holding the dataset; None: $GIM_DATA (stl10), $GIM_DATA/fashion-mnist then Debian's
    /usr/share/datasets/fashion-mnist (fashion-mnist). A python: factory is called with it, when given."""
    crop: int = 64
    """Side of the square crop fed to the encoder (random when training, centred when evaluating; a two-view
    objective's views are random resized crops of this side, see data/views.py)."""
    flip: bool = True
    """Random horizontal flips when training."""
    grayscale: bool = True
    """Convert colour images to one luma channel."""
    limit: int | None = None
    """Use only the first N images of every split (quick experiments and tests)."""
    batch_size: int = 32
    """Images per training step (a two-view objective scores 2 views of each: twice as many rows)."""
    resize: int = 96
    """photo-folder, imagenet: the side each photo is brought to (shorter side resized, centre square kept) by the
    loader's workers, before the random crops of `crop`; 96 is STL-10's size, which the paper crops to 64."""
    workers: int | None = None
    """Worker processes reading the photo-folder, imagenet and python: datasets; None: one per CPU core, at most 8;
    0: the training process itself. Any number reads the same batches."""

    def __post_init__(self) -> None:
        require(
            known_dataset(self.dataset),
            "data.dataset",
            f"must be one of {', '.join(DATASETS)} or python:package.module:factory, got {self.dataset!r}",
        )
        require(self.resize > 0, "data.resize", f"must be positive, got {self.resize}")
        require(self.workers is None or self.workers >= 0, "data.workers", f"must be >= 0, got {self.workers}")
        require(self.crop > 0, "data.crop", f"must be positive, got {self.crop}")
        require(self.batch_size > 1, "data.batch_size", f"needs at least 2 images for negatives, got {self.batch_size}")
        require(
            self.limit is None or self.limit >= self.batch_size,
            "data.limit",
            f"must be at least one batch ({self.batch_size} images), got {self.limit}",
        )


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
    overlap: int = 0
    """LoCo's overlapping modules: each module's loss is scored after the first N stages of the next module too,
    and trains them with it (their gradients from both losses are summed, then the next module's optimiser steps
    once); 0 is GIM. Single-process training only."""
    autoregressor: Literal["none", "pixelcnn"] = "none"
    """Context network of the last module's InfoNCE: none (GIM: c = z) or the gated PixelCNN of end-to-end CPC."""
    pixelcnn_layers: int = 4
    """Gated masked convolution layers of the PixelCNN."""

    def __post_init__(self) -> None:
        require(self.pixelcnn_layers > 0, "model.pixelcnn_layers", "must be positive")
        require(
            len(self.planes) == len(self.blocks_per_stage),
            "model.planes",
            f"needs one width per stage ({len(self.blocks_per_stage)}), got {len(self.planes)}",
        )
        require(all(n > 0 for n in self.blocks_per_stage), "model.blocks_per_stage", "must all be positive")
        require(all(p > 0 for p in self.planes), "model.planes", "must all be positive")
        require(
            sum(self.stages_per_module) == len(self.blocks_per_stage) and min(self.stages_per_module) > 0,
            "model.stages_per_module",
            f"must be positive and add up to the {len(self.blocks_per_stage)} stages, got {self.stages_per_module}",
        )
        require(
            0 < self.patch_stride <= self.patch_size,
            "model.patch_stride",
            f"must be in 1..patch_size ({self.patch_size}), got {self.patch_stride}",
        )

    @property
    def num_modules(self) -> int:
        return len(self.stages_per_module)

    def grid(self, crop: int) -> int:
        """Patches along each side of a `crop`-sized image."""
        return (crop - self.patch_size) // self.patch_stride + 1


@dataclass(frozen=True)
class ObjectiveConfig:
    """The per-module loss."""

    name: str = "infonce_2d"
    """Objective of every module: infonce_2d (InfoNCE); clapp (CLAPP's hinge, one negative per context, on the same
    grid); simclr, barlow_twins or vicreg (two augmented views of every image, each module's output pooled and
    projected); supervised (a pooled linear classifier with cross-entropy on the labelled split: greedy supervised;
    end-to-end supervised with one module); or any objective registered in greedy_infomax.tasks.vision.OBJECTIVES."""
    prediction_steps: int = 5
    """infonce_2d, clapp: K, how many rows below each context row are predicted."""
    skip_steps: int = 1
    """infonce_2d, clapp: rows skipped between a context row and its first target (they overlap with it)."""
    num_negatives: int = 16
    """infonce_2d: negatives per positive, drawn uniformly with replacement for each step k from that step's target
    rows (rows skip_steps + k and below, every column, every image of the query's negative group)."""
    negative_groups: int = 1
    """G: the batch is cut into G equal groups, negatives are drawn within a group and the loss is the mean over
    the groups (the original's nn.DataParallel, one group per GPU; no effect on the supervised objective)."""
    num_classes: int = 10
    """supervised: classes of the dataset's labels."""
    temperature: float = 0.5
    """simclr: tau of NT-Xent (SimCLR's best for small images)."""
    off_diagonal_weight: float = 5e-3
    """barlow_twins: lambda, the weight of the cross-correlation's off-diagonal terms (the paper's)."""
    invariance_weight: float = 25.0
    """vicreg: lambda, the weight of the views' mean squared distance (the paper's)."""
    variance_weight: float = 25.0
    """vicreg: mu, the weight of the hinge holding each dimension's standard deviation at 1 (the paper's)."""
    covariance_weight: float = 1.0
    """vicreg: nu, the weight of the squared off-diagonal covariances (the paper's)."""
    hidden_dim: int = 512
    """simclr, barlow_twins, vicreg: width of the hidden layer of each module's projector (Linear-BN-ReLU-Linear)."""
    projection_dim: int | None = None
    """simclr, barlow_twins, vicreg: width of the projections the loss scores; None: the objective's own (simclr
    128, as SimCLR; barlow_twins and vicreg 512, their papers' 8192 scaled to these narrower modules)."""

    def __post_init__(self) -> None:
        require(self.name in OBJECTIVES, "objective.name", f"must be one of {', '.join(OBJECTIVES)}, got {self.name!r}")
        require(self.prediction_steps > 0, "objective.prediction_steps", "must be positive")
        require(self.skip_steps >= 0, "objective.skip_steps", "must be >= 0")
        require(self.num_negatives > 0, "objective.num_negatives", "must be positive")
        require(self.negative_groups > 0, "objective.negative_groups", "must be positive")
        require(self.num_classes > 1, "objective.num_classes", "must be at least 2")
        require(self.temperature > 0, "objective.temperature", f"must be positive, got {self.temperature}")
        for option in ("off_diagonal_weight", "invariance_weight", "variance_weight", "covariance_weight"):
            require(getattr(self, option) >= 0, f"objective.{option}", f"must be >= 0, got {getattr(self, option)}")
        require(self.hidden_dim > 0, "objective.hidden_dim", f"must be positive, got {self.hidden_dim}")
        require(
            self.projection_dim is None or self.projection_dim > 0,
            "objective.projection_dim",
            f"must be positive (or None: the objective's own), got {self.projection_dim}",
        )


@dataclass(frozen=True)
class ProbeConfig:
    """Linear and kNN probes on the frozen features of every module."""

    protocol: Literal["cached", "paper"] = "cached"
    """cached: features extracted once per encoder and split (centre crops, plus `augmented_views` views), then the
    linear classifier fitted on them standardised and the kNN probe run: fast, for the demos. paper: the paper's
    protocol, streamed through the frozen encoder (evaluation/streaming.py): a fresh random crop and flip of every
    labelled image every epoch, raw features, the linear classifier only (`augmented_views` and `knn_k` unused);
    with pool 1, the paper's C features."""
    pool: int = 1
    """Average-pool each module's patch grid to pool x pool cells before the probe (1: the paper's C features)."""
    epochs: int = 100
    """Epochs of the linear classifier."""
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
    """cached: also fit the probes on this many views of each training image under pre-training's random crop and
    flip, each drawn once and its features cached (the paper's protocol draws anew every epoch); 0: centre crops
    only. A run's default is 10 (the paper setup's, for the cached protocol); the CPU presets use 0 (each view
    costs another pass over their 60k training images)."""
    stages_per_module: tuple[int, ...] | None = None
    """Probe the encoder cut into these modules instead of the run's own (e.g. an end-to-end run at GIM's
    boundaries, to compare module by module); None: the run's modules."""
    feature_dtype: Literal["bfloat16", "float32"] = "bfloat16"
    """cached: how the extracted features are stored. bfloat16 halves the probe's memory (float32's range, 3
    significant digits); the probes compute in float32 either way."""

    def __post_init__(self) -> None:
        require(self.pool > 0, "probe.pool", "must be positive")
        require(self.epochs > 0, "probe.epochs", "must be positive")
        require(self.lr > 0, "probe.lr", "must be positive")
        require(self.batch_size > 0, "probe.batch_size", "must be positive")
        require(self.knn_k >= 0, "probe.knn_k", "must be >= 0")
        require(self.augmented_views >= 0, "probe.augmented_views", "must be >= 0")


@dataclass(frozen=True)
class VisionRunConfig:
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
        require(grid > 0, "model.patch_size", f"{self.model.patch_size} does not fit in a {self.data.crop} crop")
        predicts_rows = "prediction_steps" in objective_options(OBJECTIVES[self.objective.name])
        require(
            not predicts_rows or self.objective.skip_steps + self.objective.prediction_steps < grid,
            "objective.prediction_steps",
            f"{self.objective.prediction_steps} steps after skipping "
            f"{self.objective.skip_steps} need more than the {grid} rows of the patch grid",
        )
        require(
            self.train.train_module is None or self.train.train_module <= self.model.num_modules,
            "train.train_module",
            f"must be at most {self.model.num_modules}, got {self.train.train_module}",
        )
        require(self.probe.pool <= grid, "probe.pool", f"must be at most the grid size {grid}")
        check_probe_stages(self.probe.stages_per_module, len(self.model.blocks_per_stage))
        check_overlap(self.model.overlap, list(self.model.stages_per_module[1:]), self.train)
        check_negative_groups(self.data.batch_size, self.objective.negative_groups)
        check_negatives(self.distributed.negatives, self.objective.name, OBJECTIVES)


PRESETS: dict[str, VisionRunConfig] = {
    # The paper's vision setup: STL-10, 64x64 crops, 7x7 grid of 16x16 patches, bottleneck ResNet 3-4-6 in 3 modules;
    # its 8 GPUs of 32 images: 256 images per Adam step in 8 negative groups; probed by the paper's protocol
    # (300 epochs).
    "paper-stl10": VisionRunConfig(
        data=DataConfig(batch_size=256),
        objective=ObjectiveConfig(negative_groups=8),
        probe=ProbeConfig(protocol="paper", epochs=300, augmented_views=10),
    ),
    # The CPU default used by `gim demo`: 28x28 Fashion-MNIST, 8x8 patches, one basic block per module.
    "fashion-mnist": VisionRunConfig(
        data=DataConfig(dataset="fashion-mnist", crop=28, flip=True, grayscale=True, batch_size=32),
        model=ModelConfig(
            block="basic",
            blocks_per_stage=(1, 1, 1),
            planes=(32, 64, 128),
            stem_channels=32,
            stem_kernel=3,
            patch_size=8,
            patch_stride=4,
        ),
        objective=ObjectiveConfig(prediction_steps=3, skip_steps=1, num_negatives=16),
        # One epoch only, so lr 1e-3 rather than the paper's 2e-4; bf16 where the CPU computes it natively.
        train=TrainConfig(lr=1e-3, epochs=1, precision="auto", checkpoint_every=500),
        # The probe sees every patch vector of the 6x6 grid (no pooling): pooled 128-d features lose most of
        # what a 28x28 image's layout says (docs/results.md has the measurement).
        probe=ProbeConfig(pool=6, epochs=10, lr=1e-3),
    ),
    # ImageNet at the paper's STL-10 geometry (photos brought to 96 pixels, 64-pixel grayscale crops, a 7x7 grid of
    # 16-pixel patches), ResNet-50's four stages (bottleneck blocks 3-4-6-3 of widths 64-512, 256-2048 channels out)
    # one module each: the cut at ResNet-50's stage boundaries that LoCo (Xiong et al., 2020) trains greedily on
    # ImageNet. LoCo trains whole 224-pixel colour images with BatchNorm and SimCLR's loss; this is the paper's
    # patch encoder without normalisation and its InfoNCE, so LoCo's accuracies are not this preset's, and none is
    # claimed for it. 25 epochs of 32 images are about the steps of the paper's 300 STL-10 epochs (1.0M vs 0.94M).
    # The probe caches every module's features of the 1.28M training images (20 GB at pool 1), so it leaves out
    # the random-encoder and raw-pixel baselines, kNN and augmented views, which would each cost as much again.
    "imagenet-resnet50-gim": VisionRunConfig(
        data=DataConfig(dataset="imagenet", resize=96, crop=64, grayscale=True, batch_size=32),
        model=ModelConfig(blocks_per_stage=(3, 4, 6, 3), planes=(64, 128, 256, 512), stages_per_module=(1, 1, 1, 1)),
        objective=ObjectiveConfig(num_classes=1000),
        train=TrainConfig(epochs=25),
        probe=ProbeConfig(knn_k=0, random_init=False, raw_pixels=False),
    ),
    # Seconds, for tests: a tiny encoder on a few hundred images.
    "smoke": VisionRunConfig(
        data=DataConfig(dataset="fashion-mnist", crop=28, limit=256, batch_size=16),
        model=ModelConfig(
            block="basic",
            blocks_per_stage=(1, 1, 1),
            planes=(4, 8, 8),
            stem_channels=4,
            stem_kernel=3,
            patch_size=8,
            patch_stride=4,
        ),
        objective=ObjectiveConfig(prediction_steps=2, skip_steps=1, num_negatives=4),
        train=TrainConfig(lr=1e-3, epochs=1, checkpoint_every=8, log_every=2),
        probe=ProbeConfig(pool=1, epochs=2, knn_k=5),
    ),
}


QUICK_IMAGES = 20_000
"""The `quick` budget of `gim reproduce vision`: the `cpu` budget on a third of Fashion-MNIST's training images (all
10k test images), so that the 13 methods of `--methods all` and their probes take about an hour on 2 cores."""


class VisionTask(Task):
    name = "vision"
    config_type = VisionRunConfig
    presets = PRESETS
    objectives = OBJECTIVES
    demo_preset = "fashion-mnist"
    paper_preset = "paper-stl10"
    budgets = {"smoke": "smoke", "quick": "fashion-mnist", "cpu": "fashion-mnist", "paper": "paper-stl10"}
    paper_results = {
        "GIM": 81.9,
        "end-to-end CPC": 80.5,
        "supervised": 71.4,
        "greedy supervised": 65.2,
        "random init": 27.0,
    }

    def pretrain_loader(self, config: VisionRunConfig, device: torch.device) -> tuple[BatchLoader | StreamLoader, int]:
        """A supervised objective trains on the labelled split (STL-10's 5k `train` images, not `unlabeled`) and
        must be sized for the dataset's classes."""
        data, _ = _pretrain_split(config, self.needs_labels(config))
        if self.needs_labels(config) and config.objective.num_classes != data.spec.num_classes:
            raise GimError(
                f"objective.num_classes: the supervised objective is sized for "
                f"{config.objective.num_classes} classes, the data has {data.spec.num_classes}; pass "
                f"--objective.num_classes {data.spec.num_classes}"
            )
        transform = train_transform(config.data, data.spec, self.views(config))
        loader = image_batches(data, config.data.batch_size, transform, device, config.train.seed, config.data.workers)
        if len(loader) == 0:
            raise GimError(f"{len(data)} pre-training images do not fill one batch of {config.data.batch_size}")
        return loader, input_channels(config.data, data.spec)

    def online_probes(self, config: VisionRunConfig, device: torch.device) -> OnlineProbes:
        """On the pre-training batches; where they have no labels (STL-10's unlabeled split), on the labelled
        probe-training split beside them, augmented and normalised as the pre-training images are."""
        data, _ = _pretrain_split(config, self.needs_labels(config))
        if not (isinstance(data, ImageArray) and data.labels is None):
            return OnlineProbes(data.spec.num_classes, seed=config.train.seed)
        labelled = load_split(config.data, "probe_train")
        transform = train_transform(config.data, data.spec, 1)
        batches = image_batches(
            labelled, config.data.batch_size, transform, device, config.train.seed + 1, config.data.workers
        )
        return OnlineProbes(labelled.spec.num_classes, seed=config.train.seed, labelled=batches)

    def validation_loader(self, config: VisionRunConfig, device: torch.device) -> BatchLoader | StreamLoader | None:
        """The held-out images, centre-cropped (for a two-view objective: two views of each, drawn alike every
        epoch), in batches of training size (the last incomplete one left out)."""
        if not config.train.validation:  # without it, no second read of the pre-training split
            return None
        data, held_out = _pretrain_split(config, self.needs_labels(config))
        if held_out is None:
            return None
        views = self.views(config)
        transform = (
            eval_transform(config.data, data.spec) if views == 1 else train_transform(config.data, data.spec, views)
        )
        loader = image_batches(
            held_out, config.data.batch_size, transform, device, config.train.seed, config.data.workers
        )
        if len(loader) == 0:
            raise GimError(
                f"train.validation: {len(held_out)} held-out images do not fill one batch of {config.data.batch_size}"
            )
        return loader

    def build_modules(self, config: VisionRunConfig, in_channels: int) -> nn.ModuleList:
        """With `model.autoregressor: pixelcnn` the last module's InfoNCE predicts from a PixelCNN's context
        (end-to-end CPC); the module's output stays the encoder's."""
        m = config.model
        objectives = [self.objective(config)] * m.num_modules
        if m.autoregressor == "pixelcnn":
            if objectives[-1].func is not InfoNCE2d:
                raise GimError(
                    "model.autoregressor: the PixelCNN is the context network of InfoNCE (objective.name infonce_2d)"
                )
            objectives[-1] = partial(_with_pixelcnn, objectives[-1], layers=m.pixelcnn_layers)
        return patch_resnet_modules(
            in_channels,
            config.data.crop,
            objectives,
            block=m.block,
            blocks_per_stage=m.blocks_per_stage,
            planes=m.planes,
            stem_channels=m.stem_channels,
            stem_kernel=m.stem_kernel,
            patch_size=m.patch_size,
            patch_stride=m.patch_stride,
            stages_per_module=m.stages_per_module,
            overlap=m.overlap,
        )

    def cut_at(self, config: VisionRunConfig, stages_per_module: tuple[int, ...]) -> VisionRunConfig:
        """The objectives' context networks, which no feature passes through, are left out."""
        config = super().cut_at(config, stages_per_module)
        return replace(config, model=replace(config.model, autoregressor="none"))

    def end_to_end_cpc(self, config: VisionRunConfig) -> VisionRunConfig:
        config = super().end_to_end_cpc(config)
        return replace(config, model=replace(config.model, autoregressor="pixelcnn"))

    def context_network(self, config: VisionRunConfig) -> str | None:
        return "PixelCNN" if config.model.autoregressor == "pixelcnn" else None

    def probe(self, run: RunFolder, config: VisionRunConfig, device: torch.device) -> dict[str, Any]:
        """Every module of the trained encoder, next to a random encoder and raw pixels, by the protocol
        `probe.protocol` names. cached: features extracted once per encoder (all modules in one pass, centre-crop
        evaluation transform, plus `probe.augmented_views` views of each training image under the training
        transform) and reused by the linear and kNN probes. paper: the linear probe streamed, every module's
        classifier fed by one pass per batch."""
        train_loader = eval_loader(config, "probe_train", device)
        test_loader = eval_loader(config, "probe_test", device, train_loader.array.spec)
        in_channels = input_channels(config.data, train_loader.array.spec)
        trained, config, progress = self.probed_encoder(run, config, in_channels, device)
        classes, p, seed = train_loader.array.spec.num_classes, config.probe, config.train.seed
        paper = p.protocol == "paper"
        # paper: every image every epoch, in the probe's batches; cached: view v is epoch v, in the loader's batches
        augmented = _augmented(train_loader, config, p.batch_size if paper else train_loader.batch_size, paper)

        def probe_encoder(modules: nn.ModuleList, name: str) -> list[dict[str, Any]]:
            if paper:
                return _streamed_probe(modules, augmented, test_loader, config, classes, name)
            return probe_modules(modules, train_loader, test_loader, p, classes, seed, name, augmented)

        results: dict[str, Any] = {
            "dataset": config.data.dataset,
            "method": self.probed_method(run, config),
            "protocol": p.protocol,
            "features": _features(p),
            "train_images": len(train_loader.array),
            "test_images": len(test_loader.array),
            "step": progress["step"],
            "probes": ["linear", "knn"] if p.knn_k > 0 and not paper else ["linear"],
            "trained": probe_encoder(trained, "trained"),
        }
        if p.random_init:
            results["random"] = probe_encoder(self.random_encoder(config, in_channels, device), "random init")
        if p.raw_pixels:
            if paper:
                [raw] = _streamed(_pixels, augmented, test_loader, config, classes, "raw pixels")
            else:
                raw = probe_features(
                    raw_pixel_features(train_loader), raw_pixel_features(test_loader), p, classes, seed, knn=False
                )
            results["baseline"] = {"name": "raw pixels", **raw}
        return results

    def embed(
        self, run: RunFolder, config: VisionRunConfig, module: int, role: str, device: torch.device
    ) -> dict[str, np.ndarray]:
        """Pooled as the probes pool (`probe.pool`), every split normalised with the probe-training split's
        statistics, as the probes do."""
        modules, spec = self._trained_encoder(run, config, device)
        return embed(modules, eval_loader(config, role, device, spec), module, config.probe.pool)

    def extractor(self, run: RunFolder, config: VisionRunConfig, module: int, device: torch.device) -> nn.Module:
        """Images (uint8, B x C x H x W) -> `.transform` -> module `module`'s (B, D) pooled features."""
        modules, spec = self._trained_encoder(run, config, device)
        check_module(module, len(modules))
        return FeatureExtractor(modules[:module], config.probe.pool, eval_transform(config.data, spec))

    def _trained_encoder(
        self, run: RunFolder, config: VisionRunConfig, device: torch.device
    ) -> tuple[nn.ModuleList, ImageSpec]:
        """The run's newest modules, and the statistics the probes normalise every split with (those of the
        probe-training split)."""
        spec = load_split(config.data, "probe_train").spec
        modules, _ = self.load_trained(run, config, input_channels(config.data, spec), device)
        return modules, spec

    def with_baselines(self, config: VisionRunConfig, enabled: bool) -> VisionRunConfig:
        return replace(config, probe=replace(config.probe, random_init=enabled, raw_pixels=enabled))

    def budget_config(self, budget: str) -> VisionRunConfig:
        """The paper's linear probe: each module's grid average-pooled to C features; no kNN. The `quick` budget
        trains and probes on the first QUICK_IMAGES training images."""
        config = super().budget_config(budget)
        if budget == "quick":
            config = replace(config, data=replace(config.data, limit=QUICK_IMAGES))
        return replace(config, probe=replace(config.probe, pool=1, knn_k=0))

    def sized_for_labels(self, config: VisionRunConfig) -> VisionRunConfig:
        classes = load_split(config.data, "probe_train").spec.num_classes
        return replace(config, objective=replace(config.objective, num_classes=classes))

    def example_batch(self, config: VisionRunConfig, batch_size: int, device: torch.device) -> torch.Tensor:
        """`batch_size` images, each as many rows as the objective has views."""
        channels = 1 if config.data.grayscale else 3
        return torch.randn(batch_size * self.views(config), channels, config.data.crop, config.data.crop, device=device)


def _pretrain_split(
    config: VisionRunConfig, labelled: bool
) -> tuple[ImageArray | StreamedImages, ImageArray | StreamedImages | None]:
    """The pre-training images (the labelled split for an objective that needs labels) and the share
    `train.validation` held out of them: the last images, so a memory-mapped split stays a view."""
    data = load_split(config.data, "probe_train" if labelled else "pretrain")
    held = round(len(data) * config.train.validation)
    if not held:
        return data, None
    if isinstance(data, StreamedImages):
        return data.held_out(held)
    labels = (None, None) if data.labels is None else (data.labels[:-held], data.labels[-held:])
    return (
        ImageArray(data.images[:-held], labels[0], data.spec),
        ImageArray(data.images[-held:], labels[1], data.spec),
    )


def _with_pixelcnn(objective: partial, channels: int, layers: int) -> nn.Module:
    return objective(channels, autoregressor=PixelCNN(channels, layers))


def load_split(config: DataConfig, role: str) -> ImageArray | StreamedImages:
    """The split playing `role` ('pretrain', 'probe_train' or 'probe_test'), cut to `config.limit` images."""
    return read_images(config.dataset, config.root, role, config.limit, config.resize)


def input_channels(config: DataConfig, spec: ImageSpec) -> int:
    """Channels the encoder receives: one after the grayscale transform, else the dataset's."""
    return 1 if config.grayscale else spec.channels


def train_transform(config: DataConfig, spec: ImageSpec, views: int) -> ImageTransform | TwoViewTransform:
    """uint8 images -> what pre-training sees: a random crop (and flip), or with `views` 2 two random views of
    each image (resized crop, flip, jitter; data/views.py), rows b and B + b; normalised by `spec`."""
    if views == 2:
        return TwoViewTransform.for_data(
            config.crop, config.grayscale, spec, flip_probability=0.5 if config.flip else 0.0
        )
    return ImageTransform.for_data(config.crop, config.flip, config.grayscale, spec)


def eval_transform(config: DataConfig, spec: ImageSpec) -> ImageTransform:
    """uint8 images -> the encoder's evaluation input: centre crop, grayscale if configured, normalised by `spec`."""
    return ImageTransform.for_data(config.crop, False, config.grayscale, spec)


def eval_loader(
    config: VisionRunConfig, role: str, device: torch.device, spec: ImageSpec | None = None
) -> BatchLoader | StreamLoader:
    """The split playing `role` in stored order with the evaluation transform (centre crop, no flip), normalised
    with the statistics of `spec` (default: the split's own; the probes use their training split's for both).

    Batches are twice the training batch: forward-only passes are cheap, and small batches keep activations in cache.
    """
    array = load_split(config.data, role)
    return image_batches(
        array,
        2 * config.data.batch_size,
        eval_transform(config.data, spec or array.spec),
        device,
        workers=config.data.workers,
    )


def _augmented(
    loader: BatchLoader | StreamLoader, config: VisionRunConfig, batch_size: int, keep_last: bool
) -> BatchLoader | StreamLoader:
    """The loader's images under pre-training's random crop and flip, normalised alike; epoch e is view e, with
    its own seeded order and draws; the last incomplete batch left out, as in training, unless `keep_last`."""
    transform = replace(loader.transform, flip=config.data.flip)
    return image_batches(
        loader.array, batch_size, transform, loader.device, config.train.seed, config.data.workers, keep_last
    )


def _streamed_probe(
    modules: nn.ModuleList,
    train: BatchLoader | StreamLoader,
    test: BatchLoader | StreamLoader,
    config: VisionRunConfig,
    classes: int,
    name: str,
) -> list[dict[str, Any]]:
    """The paper's linear probe of every module; fails if it changed any parameter of the encoder."""
    with left_unchanged(modules, name):
        rows = _streamed(partial(module_features, modules, pool=config.probe.pool), train, test, config, classes, name)
    return [{"module": index, **row} for index, row in enumerate(rows, start=1)]


def _streamed(
    encode: Callable[[torch.Tensor], list[torch.Tensor]],
    train: BatchLoader | StreamLoader,
    test: BatchLoader | StreamLoader,
    config: VisionRunConfig,
    classes: int,
    name: str,
) -> list[dict[str, Any]]:
    """Linear(D, classes) on each output of `encode`, trained on every augmented batch of every epoch (each epoch
    its own draws), tested on the test loader's centre crops."""
    p = config.probe
    fitted = fit_streaming(
        batch_stream(encode, train),
        batch_stream(encode, test),
        classes,
        p.epochs,
        p.lr,
        config.train.seed,
        description=f"{name}: linear",
    )
    return [{"features": features, "linear": accuracy} for features, accuracy in fitted]


def _pixels(images: torch.Tensor) -> list[torch.Tensor]:
    """The normalised input images, flattened: the baseline any encoder should beat."""
    return [images.flatten(1)]


def _features(options: ProbeConfig) -> str:
    pooled = f"each module's patch grid average-pooled to {options.pool}x{options.pool} cells"
    if options.protocol == "paper":
        return pooled + (
            "; the paper's protocol, streamed: a fresh random crop and flip of every training image every "
            "epoch, raw features"
        )
    views = options.augmented_views
    return pooled + (f"; fitted on centre crops and {views} augmented views of each image" if views else "")


TASK = VisionTask()
