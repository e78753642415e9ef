"""A run folder describes itself: resolved config, metrics, TensorBoard events, per-module checkpoints.

    RUN/config.yaml                       every option, loadable with `--config` (none for a network of your own)
    RUN/meta.json                         format version and what kind of run it is: vision, audio or custom
    RUN/metrics.jsonl                     one JSON object per logged step
    RUN/tensorboard/                      the same scalars for TensorBoard
    RUN/checkpoints/step-NNNNNNNN/        module-K.pt (weights + that module's optimiser) and progress.pt
    RUN/probe.json, probe.md, probe.png   written by `gim probe`

A checkpoint folder is written under a temporary name, flushed to disk and renamed, so the newest
`step-*` folder is always complete: a kill at any moment leaves the previous one intact.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from greedy_infomax.config import AnyRunConfig, load_config, to_dict
from greedy_infomax.errors import GimError

FORMAT_VERSION = 1
KEEP_CHECKPOINTS = 2


class RunFolder:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self._tensorboard = None
        self._purge_step: int | None = None
        self.keep_every: int | None = None
        """Besides the newest checkpoints, keep those whose step is a multiple of this (train.keep_every)."""
        self.pinned_step: int | None = None
        """Set by `at_step`: the checkpoint that loading reads instead of the newest."""

    @classmethod
    def create(cls, parent: Path, name: str | None = None, config: AnyRunConfig | None = None,
               prefix: str = "") -> RunFolder:
        """A new, empty run folder with the config written into it.

        name None: `prefix` and the date and time, with -2, -3, ... when that folder exists (made at once, so two
        processes started in the same second get two), so a script run twice makes two runs. config None: a
        custom run, whose network is built in the user's Python code (the `train` API); the folder then holds its
        metrics and checkpoints, and the code that built the modules loads them back. A named folder whose run
        stopped before it logged or saved anything (bad data, a bad option) is created again.
        """
        path = Path(parent) / name if name else _new_folder(Path(parent), prefix + time.strftime("%Y%m%d-%H%M%S"))
        last_file = path / ("meta.json" if config is None else "config.yaml")  # written last: the run exists
        if last_file.exists() and cls(path).started():
            raise GimError(f"{path} already holds a run: choose another name, or continue it (`gim pretrain "
                           f"--resume {path}`; in Python, resume=True)")
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        kind = "custom" if config is None else config.task
        meta = {"format_version": FORMAT_VERSION, "kind": kind, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_atomic(path / "meta.json", json.dumps(meta, indent=2).encode())
        if config is not None:
            run.update_config(config)  # last: a folder killed before this point can simply be created again
        return run

    def started(self) -> bool:
        """Whether a run has logged or saved anything here."""
        return (self.path / "metrics.jsonl").exists() or self.latest_checkpoint() is not None

    @classmethod
    def open(cls, path: Path) -> RunFolder:
        """An existing run folder, checked to be one this version can read."""
        path = Path(path)
        meta_path = path / "meta.json"
        if not meta_path.exists():
            raise GimError(f"{path} is not a run folder (no meta.json); `gim pretrain` creates one")
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise GimError(f"{meta_path}: not a run's metadata ({error})") from error
        if meta.get("format_version") != FORMAT_VERSION:
            raise GimError(f"{meta_path}: run format {meta.get('format_version')} is not {FORMAT_VERSION}, "
                           "the one this version of greedy-infomax reads")
        return cls(path)

    @property
    def config(self) -> AnyRunConfig:
        path = self.path / "config.yaml"
        if not path.exists():
            raise GimError(f"{path} not found: a run of a network built in Python (the train API) has no config; "
                           "build the same modules in Python and load the checkpoint with RunFolder.load_checkpoint")
        return load_config(path)

    def update_config(self, config: AnyRunConfig) -> None:
        """Record changed options (e.g. more epochs) when a run is continued."""
        write_atomic(self.path / "config.yaml", yaml.safe_dump(to_dict(config), sort_keys=False).encode())

    # -- metrics -------------------------------------------------------------------------------------------
    def log(self, step: int, scalars: dict[str, float]) -> None:
        """Append scalars to metrics.jsonl and TensorBoard."""
        with open(self.path / "metrics.jsonl", "a") as file:
            file.write(json.dumps({"step": step, **scalars}) + "\n")
        if self._tensorboard is None:
            from tensorboardX import SummaryWriter  # imported late: only training needs it
            self._tensorboard = SummaryWriter(str(self.path / "tensorboard"), purge_step=self._purge_step)
        for key, value in scalars.items():
            self._tensorboard.add_scalar(key, value, step)

    def forget_metrics_after(self, step: int) -> None:
        """Drop logged rows past `step` (work lost since the checkpoint); TensorBoard purges them itself."""
        kept = [row for row in self.metrics() if row["step"] <= step]
        write_atomic(self.path / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in kept).encode())
        self._purge_step = step + 1

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None

    def metrics(self) -> list[dict[str, Any]]:
        path = self.path / "metrics.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    # -- checkpoints ---------------------------------------------------------------------------------------
    def save_checkpoint(self, modules: nn.ModuleList, progress: dict[str, Any]) -> Path:
        """Write every module (weights + its optimiser state) and the training progress, atomically."""
        final = self.checkpoints / f"step-{progress['step']:08d}"
        if final.exists():
            return final
        staging = self.checkpoints / f".staging-{progress['step']:08d}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging.mkdir(parents=True)
            for index, module in enumerate(modules, start=1):
                state = {
                    "format_version": FORMAT_VERSION,
                    "module_index": index,
                    "state_dict": module.state_dict(),
                    "optimizer": None if module.optimizer is None else module.optimizer.state_dict(),
                }
                _save_synced(state, staging / f"module-{index}.pt")
            _save_synced(progress, staging / "progress.pt")
            _fsync_dir(staging)
            os.rename(staging, final)
            _fsync_dir(self.checkpoints)
        except OSError as error:
            shutil.rmtree(staging, ignore_errors=True)
            kept = self.latest_checkpoint()
            raise GimError(f"could not write checkpoint {final} ({error.strerror}); "
                           f"the previous one is intact: {kept}") from error
        for old in self._checkpoint_folders()[:-KEEP_CHECKPOINTS]:
            if not self.keep_every or _step_of(old) % self.keep_every:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def latest_checkpoint(self) -> Path | None:
        """The newest checkpoint's folder (the pinned one, for a run opened `at_step`)."""
        folders = self._checkpoint_folders()
        if self.pinned_step is not None:
            return self.checkpoints / f"step-{self.pinned_step:08d}"
        return folders[-1] if folders else None

    def checkpoint_steps(self) -> list[int]:
        return [_step_of(folder) for folder in self._checkpoint_folders()]

    def at_step(self, step: int) -> RunFolder:
        """This run as it was at checkpoint `step`: loading reads that checkpoint (to probe or embed it); one that
        was not kept is an error listing those that were (train.keep_every keeps more)."""
        if step not in self.checkpoint_steps():
            kept = ", ".join(map(str, self.checkpoint_steps())) or "none"
            raise GimError(f"--step {step}: {self.path} kept no checkpoint of that step (kept: {kept}); "
                           f"train.keep_every N keeps every Nth")
        pinned = RunFolder(self.path)
        pinned.pinned_step = step
        return pinned

    def load_checkpoint(self, modules: nn.ModuleList, with_optimizers: bool = True) -> dict[str, Any]:
        """Load the newest checkpoint into `modules` (and their optimisers); returns the saved progress.

        The optimisers' moments and step counts come from the checkpoint, their learning rate and weight decay stay
        the configured ones: a resume may change them."""
        folder = self.latest_checkpoint()
        if folder is None:
            raise GimError(f"{self.path} has no checkpoint yet")
        for index, module in enumerate(modules, start=1):
            path = folder / f"module-{index}.pt"
            if not path.exists():
                raise GimError(f"{path} is missing: the run has fewer modules than its config describes")
            state = _load(path)
            try:
                module.load_state_dict(state["state_dict"])
            except RuntimeError as error:
                first_line = str(error).splitlines()[1].strip() if "\n" in str(error) else str(error)
                raise GimError(f"{path} does not fit the configured architecture: {first_line}") from error
            if with_optimizers and module.optimizer is not None and state["optimizer"] is not None:
                configured = [{"lr": g["lr"], "weight_decay": g["weight_decay"]} for g in module.optimizer.param_groups]
                module.optimizer.load_state_dict(state["optimizer"])
                for group, values in zip(module.optimizer.param_groups, configured, strict=True):
                    group.update(values)
        return _load(folder / "progress.pt")

    def _checkpoint_folders(self) -> list[Path]:
        return sorted(self.checkpoints.glob("step-*")) if self.checkpoints.exists() else []


def _step_of(folder: Path) -> int:
    return int(folder.name.removeprefix("step-"))


def _load(path: Path) -> Any:
    """A checkpoint file; a damaged one is an error that names it and the way out."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a damaged file raises RuntimeError, EOFError, UnpicklingError, ...
        raise GimError(f"{path}: cannot be read ({type(error).__name__}), the checkpoint is damaged; delete its folder "
                       f"to resume from the one before") from error


def _save_synced(obj: Any, path: Path) -> None:
    with open(path, "wb") as file:
        torch.save(obj, file)
        file.flush()
        os.fsync(file.fileno())


def write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _new_folder(parent: Path, base: str) -> Path:
    """parent/base, or base-2, base-3, ...: the first that this call could make."""
    for number in itertools.count(1):
        path = parent / (base if number == 1 else f"{base}-{number}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
