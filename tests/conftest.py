"""Shared fixtures: a tiny hand-made config, tiny hand-made modules and batches, one training step of every preset,
a trained smoke run, the smallest generated speech corpus, recorded negative samples, and processes launched as
torchrun launches them."""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import strategies as st
from torch import nn

from greedy_infomax.cli import main
from greedy_infomax.config import AnyRunConfig, TrainConfig
from greedy_infomax.data.librispeech import AudioSpec
from greedy_infomax.engines.local import train_step
from greedy_infomax.isolation import IsolatedModule
from greedy_infomax.placement import trained_indices
from greedy_infomax.reporting.run_folder import RunFolder
from greedy_infomax.tasks import PRESETS, prepare_modules
from greedy_infomax.tasks.vision import DataConfig, ModelConfig, ObjectiveConfig
from greedy_infomax.tasks.vision import VisionRunConfig as RunConfig
from greedy_infomax.workflows import pretrain

# What device-parametrised tests run on: the CPU, and a GPU where there is one.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def make_tiny_config(**train_options) -> RunConfig:
    """20x20 crops -> a 4x4 grid of 8x8 patches (stride 4); basic blocks of 4/8/8 channels in 3 modules."""
    return RunConfig(
        data=DataConfig(dataset="fashion-mnist", crop=20, batch_size=4),
        model=ModelConfig(
            block="basic",
            blocks_per_stage=(1, 1, 1),
            planes=(4, 8, 8),
            stem_channels=4,
            stem_kernel=3,
            patch_size=8,
            patch_stride=4,
        ),
        objective=ObjectiveConfig(prediction_steps=2, skip_steps=1, num_negatives=3),
        train=replace(TrainConfig(lr=1e-2, device="cpu"), **train_options),
    )


@pytest.fixture
def tiny_config() -> Callable[..., RunConfig]:
    """A factory: tiny_config(train_module=2, seed=3, ...) overrides train options."""
    return make_tiny_config


def snapshot(modules: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter and buffer."""
    return {name: tensor.detach().clone() for name, tensor in modules.state_dict().items()}


def tiny_sequence_modules(seed: int = 0) -> nn.ModuleList:
    """Two hand-made modules on (B, 2, T) sequences: module 1's readout widens its (B, 3, T) output to the 4
    channels its features have; module 2 halves T and outputs 5 channels."""
    torch.manual_seed(seed)
    return nn.ModuleList(
        [
            IsolatedModule(nn.Conv1d(2, 3, 3, padding=1), nn.Conv1d(3, 4, 1), nn.Identity()),
            IsolatedModule(nn.Conv1d(3, 5, 3, stride=2, padding=1), nn.Identity(), nn.Identity()),
        ]
    )


class TensorBatches:
    """Batches (a Batches loader) of fixed tensors: epoch e adds e to every input; the epochs asked for are recorded."""

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor | None, batch_size: int) -> None:
        self.inputs, self.labels, self.batch_size = inputs, labels, batch_size
        self.epochs: list[int] = []

    def __len__(self) -> int:
        return math.ceil(len(self.inputs) / self.batch_size)

    def epoch(self, epoch: int = 0, start_batch: int = 0):
        self.epochs.append(epoch)
        for start in range(start_batch * self.batch_size, len(self.inputs), self.batch_size):
            labels = None if self.labels is None else self.labels[start : start + self.batch_size]
            yield self.inputs[start : start + self.batch_size] + epoch, labels


@dataclass
class PresetStep:
    """A preset's modules after one train_step on one random image, and the weights before it."""

    config: AnyRunConfig
    before: dict[str, torch.Tensor]
    modules: nn.ModuleList
    losses: list[torch.Tensor]


def random_input(config: AnyRunConfig, batch: int, generator: torch.Generator) -> torch.Tensor:
    """A random batch shaped like the preset's training input: images (B, C, crop, crop) or windows (B, 1, 20480)."""
    if config.task == "audio":
        return torch.randn(batch, 1, AudioSpec(num_speakers=1).window, generator=generator)
    channels = 1 if config.data.grayscale else 3
    return torch.randn(batch, channels, config.data.crop, config.data.crop, generator=generator)


@cache
def _one_step(name: str) -> PresetStep:
    config = PRESETS[name]
    # One image (window) per negative group is a complete InfoNCE batch for a module (its negatives come from its own
    # patches or time steps), and keeps the paper presets' steps, the slowest things in the test suite, small.
    x = random_input(config, config.objective.negative_groups, torch.Generator().manual_seed(0))
    modules = prepare_modules(config, x.shape[1], torch.device("cpu"))
    before = snapshot(modules)
    _, losses, _ = train_step(
        modules, x, trained_indices(config.train, config.model.num_modules), draws=(config.train.seed, 0)
    )
    return PresetStep(config, before, modules, losses)


@pytest.fixture(scope="session")
def preset_step() -> Callable[[str], PresetStep]:
    """One step of every preset is shared by the config and model tests: paper-stl10 alone takes seconds."""
    return _one_step


@pytest.fixture(scope="session")
def probe_smoke_run(tmp_path_factory) -> RunFolder:
    """A smoke run trained for 2 steps on 64 images, shared by the probe and embedding tests; its probes use 64
    train and 64 test images."""
    config = PRESETS["smoke"]
    config = replace(
        config,
        data=replace(config.data, limit=64),
        train=replace(config.train, max_steps=2, device="cpu"),
        probe=replace(config.probe, epochs=1),
    )
    run = RunFolder.create(tmp_path_factory.mktemp("probe"), "smoke", config)
    pretrain(config, run)
    return run


def write_stl10(root: Path) -> None:
    """STL-10 in its binary layout under `root`: 24 unlabelled images, and the first 12 and 4 of them as the
    labelled train and test splits (labels 1..10 cycling)."""
    folder = root / "stl10_binary"
    folder.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (24, 3, 96, 96), dtype=np.uint8)
    (folder / "unlabeled_X.bin").write_bytes(pixels.tobytes())
    for split, count in (("train", 12), ("test", 4)):
        (folder / f"{split}_X.bin").write_bytes(pixels[:count].tobytes())
        (folder / f"{split}_y.bin").write_bytes(bytes(1 + k % 10 for k in range(count)))


@pytest.fixture(scope="session")
def speech_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated speech corpus at its smallest (3 festival speakers, 3 utterances each), shared by the speech
    protocol and embedding tests."""
    if shutil.which("festival") is None:
        pytest.skip("needs festival (./setup.sh installs it when run as root)")
    root = tmp_path_factory.mktemp("speech")
    assert main(["data", "speech-corpus", "--root", str(root), "--speakers", "3", "--utterances", "3"]) == 0
    return root


@pytest.fixture
def record_negatives(monkeypatch):
    """record_negatives(objective_module) -> list that fills with (indices, pool_size) per sampling call of the
    module's sampler (sample_negatives, or the audio objective's sample_permuted_negatives)."""

    def record(module: ModuleType) -> list:
        sampled = []
        name = "sample_negatives" if hasattr(module, "sample_negatives") else "sample_permuted_negatives"
        sampler = getattr(module, name)

        def recording(rows, num_negatives, pool_size, device):
            indices = sampler(rows, num_negatives, pool_size, device)
            sampled.append((indices, pool_size))
            return indices

        monkeypatch.setattr(module, name, recording)
        return sampled

    return record


def corrupt(raw: bytes, data) -> bytes:
    """A hypothesis-drawn damage of a file's bytes: cut short at a random length, or one byte overwritten."""
    damaged = bytearray(raw)
    if data.draw(st.booleans(), label="truncate"):
        return bytes(damaged[: data.draw(st.integers(0, len(damaged) - 1), label="length")])
    damaged[data.draw(st.integers(0, len(damaged) - 1), label="offset")] = data.draw(st.integers(0, 255), label="byte")
    return bytes(damaged)


def negatives_avoiding(targets: list[int], pool: int, num_negatives: int) -> torch.Tensor:
    """(len(targets), N) seeded negative indices into range(pool), none equal to its row's positive."""
    negatives = torch.randint(pool, (len(targets), num_negatives), generator=torch.Generator().manual_seed(1))
    positives = torch.tensor(targets)[:, None]
    return torch.where(negatives == positives, (negatives + 1) % pool, negatives)


# -- processes that find each other as torchrun's do ----------------------------------------------------------


@dataclass
class Rank:
    """A forked rank and the file its output goes to."""

    process: multiprocessing.Process
    log: Path

    @property
    def output(self) -> str:
        return self.log.read_text()


def fork_ranks(world: int, logs: Path, target: Callable[..., int], *args: Any) -> list[Rank]:
    """target(*args) in `world` processes that find each other as torchrun's do (RANK, WORLD_SIZE, MASTER_*).
    Forked from this process, which has imported torch already: fresh interpreters would cost 3 s each."""
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ranks = []
    for rank in range(world):
        environment = {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
        }
        log = logs / f"rank{rank}.log"
        process = multiprocessing.get_context("fork").Process(target=_run_rank, args=(environment, log, target, args))
        process.start()
        ranks.append(Rank(process, log))
    return ranks


def _run_rank(environment: dict[str, str], log: Path, target: Callable[..., int], args: tuple) -> None:
    """A rank's life: one thread, output to its log, target's exit code (os._exit: no pytest teardown)."""
    os.environ.update(environment)
    torch.set_num_threads(1)
    sys.stdout = sys.stderr = open(log, "w", buffering=1)  # pytest's capture replaced both
    os.dup2(sys.stderr.fileno(), 2)  # and the C++ runtime's output
    try:
        code = target(*args)
    except BaseException:  # noqa: BLE001 - reported, then exit 1
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def finish(ranks: list[Rank], timeout: float = 60) -> list[int]:
    """The exit codes; kills every rank still running after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    for rank in ranks:
        rank.process.join(max(deadline - time.monotonic(), 0))
    for rank in ranks:
        if rank.process.is_alive():
            rank.process.kill()
            rank.process.join()
    return [rank.process.exitcode for rank in ranks]


@pytest.fixture
def one_thread():
    """Bit-for-bit comparisons need the local engine on one thread, as every rank runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


_LOCK_HOLDER = """
import sys, time
from pathlib import Path
from greedy_infomax.reporting.run_folder import RunFolder
run = RunFolder.open(Path(sys.argv[1])).lock()
print("locked", flush=True)
time.sleep(600)
"""


@contextmanager
def run_lock_holder(path: Path) -> Iterator[subprocess.Popen]:
    """Another process holding the lock of the run folder `path` (as a live `gim pretrain` would) until the block
    ends, when it is SIGKILLed, as a crash would end it."""
    repository = Path(__file__).resolve().parents[1]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repository), os.environ.get("PYTHONPATH", "")])}
    holder = subprocess.Popen(
        [sys.executable, "-c", _LOCK_HOLDER, str(path)], stdout=subprocess.PIPE, text=True, env=environment
    )
    try:
        assert holder.stdout.readline().strip() == "locked", "the holder process did not take the lock"
        yield holder
    finally:
        holder.kill()
        holder.wait()


@contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """`path` made unwritable for this process for the block: mode 555, or for root, whom modes do not stop, the
    immutable attribute (skipped where the file system or the container refuses it)."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(mode)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        pytest.skip("cannot make a folder read-only for root here (chattr +i)")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
