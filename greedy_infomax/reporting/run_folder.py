"""A run folder describes itself: resolved config, metrics, TensorBoard events, per-module checkpoints.

    RUN/config.yaml                       every option, loadable with `--config` (none for a network of your own)
    RUN/meta.json                         format version and what kind of run it is: vision, audio or custom
    RUN/metrics.jsonl                     one JSON object per logged step
    RUN/tensorboard/                      the same scalars for TensorBoard
    RUN/checkpoints/step-NNNNNNNN/        module-K.pt (weights + that module's optimiser) and progress.pt
    RUN/probe.json, probe.md, probe.png   written by `gim probe`
    RUN/lock                              locked by the process writing the run; names it (pid, host, command)

A checkpoint folder is written under a temporary name, flushed to disk and renamed, so the newest
`step-*` folder is always complete: a kill at any moment leaves the previous one intact. One process at a time
writes a run folder: two would interleave their metrics and overwrite each other's checkpoints (see RunLock).
"""
from __future__ import annotations

import fcntl
import itertools
import json
import os
import shutil
import socket
import sys
import time
import weakref
from pathlib import Path
from typing import Any, ClassVar

import torch
import yaml
from torch import nn

from greedy_infomax.config import AnyRunConfig, load_config, to_dict
from greedy_infomax.errors import GimError

FORMAT_VERSION = 1
KEEP_CHECKPOINTS = 2
LOCK_FILE = "lock"


class RunLock:
    """An exclusive flock on RUN/lock, held by the process that writes the run for as long as it writes it.

    The kernel releases it when the process ends, however it ends, so a SIGKILL leaves no stale lock to delete.
    A second process fails at once, naming the holder from what the holder wrote into the file. flock excludes
    every other open file, even one of the same process, so within a process one lock per folder is shared by
    every RunFolder of it (a script may open the run it just created) and released when the last of them closes.
    """

    _held: ClassVar[weakref.WeakValueDictionary[tuple[int, int], RunLock]] = weakref.WeakValueDictionary()

    def __init__(self, file: Any) -> None:
        self._file = file

    @classmethod
    def acquire(cls, folder: Path) -> RunLock:
        file = open(folder / LOCK_FILE, "a+")  # a+: made if missing, and not emptied before the lock is ours
        status = os.fstat(file.fileno())
        held = cls._held.get((status.st_dev, status.st_ino))
        if held is not None and os.fstat(held._file.fileno()).st_nlink > 0:  # not a deleted folder's lock
            file.close()
            return held
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = " ".join(file.read().split()) or "another process"
            file.close()
            raise GimError(f"{folder} is in use by {holder}: one process at a time writes a run folder; wait for "
                           f"that one to end, or stop it") from None
        file.truncate(0)
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
        file.write(f"pid {os.getpid()} on {socket.gethostname()} ({command})\n")
        file.flush()
        lock = cls(file)
        cls._held[status.st_dev, status.st_ino] = lock
        return lock


def check_run_name(output: Path, name: str) -> Path:
    """output/name, for a name that is one folder name: a path (`a/b`, `../x`, `/abs`) would put the run outside
    `output`, and `.` would make `output` itself the run."""
    if not name or name in (".", "..") or "/" in name or (os.altsep and os.altsep in name) or "\0" in name:
        raise GimError(f"run name {name!r}: must be one folder name inside {output} (not '.', '..' or a path)")
    return Path(output) / name


class RunFolder:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self._tensorboard = None
        self._purge_step: int | None = None
        self._lock: RunLock | None = None

    @classmethod
    def create(cls, parent: Path, name: str | None = None, config: AnyRunConfig | None = None,
               prefix: str = "") -> RunFolder:
        """A new, empty run folder with the config written into it.

        name None: `prefix` and the date and time, with -2, -3, ... when that folder exists (made at once, so two
        processes started in the same second get two), so a script run twice makes two runs. config None: a
        custom run, whose network is built in the user's Python code (the `train` API); the folder then holds its
        metrics and checkpoints, and the code that built the modules loads them back. A named folder whose run
        stopped before it logged or saved anything (bad data, a bad option) is created again; an empty folder is
        taken; any other folder is refused, so that no folder of the user's is adopted. The new run is locked
        (see RunLock) before it is checked, so two processes starting one name cannot both take it.
        """
        if name is not None:
            path = check_run_name(Path(parent), name)
            _check_adoptable(path)
            path.mkdir(parents=True, exist_ok=True)
        else:
            path = _new_folder(Path(parent), prefix + time.strftime("%Y%m%d-%H%M%S"))
        run = cls(path).lock()
        last_file = path / ("meta.json" if config is None else "config.yaml")  # written last: the run exists
        if last_file.exists() and run.started():
            run.close()
            raise GimError(f"{path} already holds a run: choose another name, or continue it (`gim pretrain "
                           f"--resume {path}`; in Python, resume=True)")
        kind = "custom" if config is None else config.task
        meta = {"format_version": FORMAT_VERSION, "kind": kind, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_atomic(path / "meta.json", json.dumps(meta, indent=2).encode())
        if config is not None:
            run.update_config(config)  # last: a folder killed before this point can simply be created again
        return run

    def lock(self) -> RunFolder:
        """Take the run's lock for this process, if it does not hold it yet (see RunLock): every write takes it,
        and a resume takes it first, so that a second writer fails before it reads any data."""
        if self._lock is None:
            self._lock = RunLock.acquire(self.path)
        return self

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
        self.lock()
        write_atomic(self.path / "config.yaml", yaml.safe_dump(to_dict(config), sort_keys=False).encode())

    # -- metrics -------------------------------------------------------------------------------------------
    def log(self, step: int, scalars: dict[str, float]) -> None:
        """Append scalars to metrics.jsonl and TensorBoard."""
        self.lock()
        with open(self.path / "metrics.jsonl", "a") as file:
            file.write(json.dumps({"step": step, **scalars}) + "\n")
        if self._tensorboard is None:
            from tensorboardX import SummaryWriter  # imported late: only training needs it
            self._tensorboard = SummaryWriter(str(self.path / "tensorboard"), purge_step=self._purge_step)
        for key, value in scalars.items():
            self._tensorboard.add_scalar(key, value, step)

    def forget_metrics_after(self, step: int) -> None:
        """Drop logged rows past `step` (work lost since the checkpoint); TensorBoard purges them itself."""
        self.lock()
        kept = [row for row in self.metrics() if row["step"] <= step]
        write_atomic(self.path / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in kept).encode())
        self._purge_step = step + 1

    def close(self) -> None:
        """Flush TensorBoard and give up this object's share of the lock."""
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None
        self._lock = None

    def metrics(self) -> list[dict[str, Any]]:
        path = self.path / "metrics.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    # -- checkpoints ---------------------------------------------------------------------------------------
    def save_checkpoint(self, modules: nn.ModuleList, progress: dict[str, Any]) -> Path:
        """Write every module (weights + its optimiser state) and the training progress, atomically."""
        self.lock()
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
            shutil.rmtree(old, ignore_errors=True)
        return final

    def latest_checkpoint(self) -> Path | None:
        folders = self._checkpoint_folders()
        return folders[-1] if folders else None

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


def _check_adoptable(path: Path) -> None:
    """Refuse a named run folder that exists and is neither empty nor a run (nor one being created)."""
    if path.exists() and not path.is_dir():
        raise GimError(f"{path} is a file, not a run folder: choose another run name")
    if path.is_dir() and not ((path / "meta.json").exists() or (path / LOCK_FILE).exists()) and any(path.iterdir()):
        raise GimError(f"{path} exists and is not a run folder (no meta.json): choose another run name; a run "
                       f"never takes over a folder that holds other files")


def _new_folder(parent: Path, base: str) -> Path:
    """parent/base, or base-2, base-3, ...: the first that this call could make."""
    for number in itertools.count(1):
        path = parent / (base if number == 1 else f"{base}-{number}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
