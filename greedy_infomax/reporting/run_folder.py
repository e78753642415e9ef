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
import struct
import sys
import tempfile
import time
import warnings
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
    A forked child (a data-loading worker) closes its copy at once: a lock still shared with a child would outlive
    a killed writer until the child noticed.
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
            raise GimError(
                f"{folder} is in use by {holder}: one process at a time writes a run folder; wait for "
                f"that one to end, or stop it"
            ) from None
        file.truncate(0)
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
        file.write(f"pid {os.getpid()} on {socket.gethostname()} ({command})\n")
        file.flush()
        lock = cls(file)
        cls._held[status.st_dev, status.st_ino] = lock
        return lock

    @property
    def held(self) -> bool:
        return not self._file.closed

    @classmethod
    def _drop_in_forked_child(cls) -> None:
        for lock in list(cls._held.values()):
            lock._file.close()
        cls._held.clear()


os.register_at_fork(after_in_child=RunLock._drop_in_forked_child)


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
        self.keep_every: int | None = None
        """Besides the newest checkpoints, keep those whose step is a multiple of this (train.keep_every)."""
        self.pinned_step: int | None = None
        """Set by `at_step`: the checkpoint that loading reads instead of the newest."""

    @classmethod
    def create(
        cls, parent: Path, name: str | None = None, config: AnyRunConfig | None = None, prefix: str = ""
    ) -> RunFolder:
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
            raise GimError(
                f"{path} already holds a run: choose another name, or continue it (`gim pretrain "
                f"--resume {path}`; in Python, resume=True)"
            )
        kind = "custom" if config is None else config.task
        meta = {"format_version": FORMAT_VERSION, "kind": kind, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_atomic(path / "meta.json", json.dumps(meta, indent=2).encode())
        if config is not None:
            run.update_config(config)  # last: a folder killed before this point can simply be created again
        return run

    def lock(self) -> RunFolder:
        """Take the run's lock for this process, if it does not hold it yet (see RunLock): every write takes it,
        and a resume takes it first, so that a second writer fails before it reads any data."""
        if self._lock is None or not self._lock.held:  # not held: dropped when this process was forked
            self._lock = RunLock.acquire(self.path)
        return self

    def started(self) -> bool:
        """Whether a run has logged or saved anything here."""
        return (self.path / "metrics.jsonl").exists() or self.latest_checkpoint() is not None

    @classmethod
    def open(cls, path: Path) -> RunFolder:
        """An existing run folder, checked to be one this version can read."""
        run = cls(path)
        if not (run.path / "meta.json").exists():
            raise GimError(f"{path} is not a run folder (no meta.json); `gim pretrain` creates one")
        if (version := run._meta().get("format_version")) != FORMAT_VERSION:
            raise GimError(
                f"{run.path / 'meta.json'}: run format {version} is not {FORMAT_VERSION}, "
                "the one this version of greedy-infomax reads"
            )
        return run

    @property
    def config(self) -> AnyRunConfig:
        path = self.path / "config.yaml"
        if not path.exists():
            raise GimError(
                f"{path} not found: a run of a network built in Python (the train API) has no config; "
                "build the same modules in Python and load the checkpoint with RunFolder.load_checkpoint"
            )
        return load_config(path)

    def update_config(self, config: AnyRunConfig) -> None:
        """Record the options (changed ones, e.g. more epochs, when a run is continued), the data folder made
        absolute: `gim probe` started from another folder must read the data the run trained on, not whatever
        sits at the same relative path there."""
        self.lock()
        values = to_dict(config)
        if values["data"].get("root"):
            values["data"]["root"] = os.path.abspath(os.path.expanduser(values["data"]["root"]))
        write_atomic(self.path / "config.yaml", yaml.safe_dump(values, sort_keys=False).encode())

    # -- metrics -------------------------------------------------------------------------------------------
    def log(self, step: int, scalars: dict[str, float]) -> None:
        """Append scalars to metrics.jsonl and TensorBoard. A write that fails (a full disk) is an error naming the
        file; a line it cut short is removed by the resume."""
        self.lock()
        path = self.path / "metrics.jsonl"
        try:
            with open(path, "a") as file:
                file.write(json.dumps({"step": step, **scalars}) + "\n")
            if self._tensorboard is None:
                self._tensorboard = _EventFile(self.path / "tensorboard", self._purge_step)
            path = self._tensorboard.path
            self._tensorboard.add(step, scalars)
        except OSError as error:
            self.close()
            kept = self.latest_checkpoint()
            raise GimError(
                f"could not write {path} ({error.strerror}); "
                + (f"the newest checkpoint is intact: {kept}" if kept else "no checkpoint was saved yet")
                + "; resume once the disk has room"
            ) from error

    def forget_metrics_after(self, step: int) -> None:
        """Drop logged rows past `step` (work lost since the checkpoint), and a last line torn by a crash;
        TensorBoard purges its rows itself. A run that saved checkpoints and holds none now (deleted) is not
        rewound to step 0, which would erase its history."""
        self.lock()
        if step == 0 and self.latest_checkpoint() is None and self._meta().get("checkpointed"):
            raise GimError(
                f"{self.checkpoints}: this run saved checkpoints and none is left, so it cannot resume "
                "(it would start again from step 0 and erase its metrics); restore them, or start a new run"
            )
        rows, torn = self._read_metrics()
        if torn:
            warnings.warn(
                f"{self.path / 'metrics.jsonl'}: removed its last line, cut short by a crash while it was written",
                stacklevel=2,
            )
        kept = [row for row in rows if row["step"] <= step]
        write_atomic(self.path / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in kept).encode())
        self._purge_step = step + 1

    def close(self) -> None:
        """Close the TensorBoard file and give up this object's share of the lock."""
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None
        self._lock = None

    def metrics(self) -> list[dict[str, Any]]:
        """The logged rows, without a last line cut short by a crash (a kill or a full disk in the middle of a write),
        which a resume removes; a damaged line before the last is an error, since no crash makes one."""
        return self._read_metrics()[0]

    def _read_metrics(self) -> tuple[list[dict[str, Any]], bool]:
        """(rows, whether the last line was torn)."""
        path = self.path / "metrics.jsonl"
        lines = path.read_bytes().splitlines() if path.exists() else []
        numbered = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
        rows = [_metrics_row(line) for _, line in numbered]
        for (number, line), row in zip(numbered[:-1], rows[:-1], strict=True):
            if row is None:
                raise GimError(
                    f"{path}: line {number} is not a metrics row ({line[:40]!r}); only a last line cut "
                    "short by a crash is repaired: delete that line to go on"
                )
        torn = bool(rows) and rows[-1] is None
        return rows[:-1] if torn else rows, torn

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
            raise GimError(
                f"could not write checkpoint {final} ({error.strerror}); the previous one is intact: {kept}"
            ) from error
        for old in self._checkpoint_folders()[:-KEEP_CHECKPOINTS]:
            if not self.keep_every or _step_of(old) % self.keep_every:
                shutil.rmtree(old, ignore_errors=True)
        if (self.path / "meta.json").exists() and not self._meta().get("checkpointed"):  # see forget_metrics_after
            write_atomic(self.path / "meta.json", json.dumps({**self._meta(), "checkpointed": True}, indent=2).encode())
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
            raise GimError(
                f"--step {step}: {self.path} kept no checkpoint of that step (kept: {kept}); "
                f"train.keep_every N keeps every Nth"
            )
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

    def _meta(self) -> dict[str, Any]:
        path = self.path / "meta.json"
        if not path.exists():
            return {}
        try:
            meta = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise GimError(f"{path}: not a run's metadata ({error})") from error
        if not isinstance(meta, dict):
            raise GimError(f"{path}: not a run's metadata (not a JSON object)")
        return meta

    def _checkpoint_folders(self) -> list[Path]:
        return sorted(self.checkpoints.glob("step-*")) if self.checkpoints.exists() else []


def _step_of(folder: Path) -> int:
    return int(folder.name.removeprefix("step-"))


class _EventFile:
    """TensorBoard's scalars, written by the training thread itself, flushed at each log: tensorboardX's
    SummaryWriter writes from a thread of its own and flushes again at exit, so a full disk printed tracebacks from
    both, besides the error."""

    def __init__(self, folder: Path, purge_step: int | None) -> None:
        from tensorboardX.proto.event_pb2 import Event, SessionLog  # imported late: only training needs them

        folder.mkdir(exist_ok=True)
        self.path = folder / f"events.out.tfevents.{time.time():.0f}.{socket.gethostname()}.{os.getpid()}"
        self._file = open(self.path, "ab")
        self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))
        if purge_step is not None:  # TensorBoard hides the events of older files from this step on
            self._write(Event(wall_time=time.time(), step=purge_step, session_log=SessionLog(status=SessionLog.START)))

    def add(self, step: int, scalars: dict[str, float]) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import scalar

        for key, value in scalars.items():
            self._write(Event(wall_time=time.time(), step=step, summary=scalar(key, value)))
        self._file.flush()

    def _write(self, event: Any) -> None:
        """One record of TensorFlow's format: length, its checksum, the serialised event, its checksum."""
        from tensorboardX.record_writer import masked_crc32c

        data = event.SerializeToString()
        header = struct.pack("Q", len(data))
        self._file.write(
            header + struct.pack("I", masked_crc32c(header)) + data + struct.pack("I", masked_crc32c(data))
        )

    def close(self) -> None:
        """Close the file; after a failed write, without the error of writing its rest again (already reported)."""
        try:
            self._file.close()
        except OSError:
            pass


def _metrics_row(line: bytes) -> dict[str, Any] | None:
    """A line of metrics.jsonl as the row it holds, or None for a line that holds none."""
    try:
        row = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return row if isinstance(row, dict) and isinstance(row.get("step"), int) else None


def _load(path: Path) -> Any:
    """A checkpoint file; a damaged one is an error that names it and the way out."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a damaged file raises RuntimeError, EOFError, UnpicklingError, ...
        raise GimError(
            f"{path}: cannot be read ({type(error).__name__}), the checkpoint is damaged; delete its folder "
            f"to resume from the one before"
        ) from error


def _save_synced(obj: Any, path: Path) -> None:
    with open(path, "wb") as file:
        torch.save(obj, file)
        file.flush()
        os.fsync(file.fileno())


def check_writable(path: Path, work: str) -> None:
    """Fail now, in one line, where `path` could not be written after `work` (minutes or hours of it): its folder
    is made and a scratch file written and removed there; a folder at `path` itself is refused, not replaced."""
    path = Path(path)
    if path.is_dir():
        raise GimError(f"{path} is a folder, not a file to write; nothing was {work}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".check"):
            pass
    except OSError as error:
        raise GimError(f"cannot write {path} ({error.strerror}); nothing was {work}") from error


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
        raise GimError(
            f"{path} exists and is not a run folder (no meta.json): choose another run name; a run "
            f"never takes over a folder that holds other files"
        )


def _new_folder(parent: Path, base: str) -> Path:
    """parent/base, or base-2, base-3, ...: the first that this call could make."""
    for number in itertools.count(1):
        path = parent / (base if number == 1 else f"{base}-{number}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
