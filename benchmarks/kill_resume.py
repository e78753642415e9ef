"""Kill a smoke run with SIGKILL at random moments, resume it each time, and check nothing was lost or changed.

1. reference  an uninterrupted `gim pretrain --preset smoke` run; its pace (start-up seconds, seconds per step)
              sets the kill schedule
2. victim     the same run, started as a subprocess and killed with SIGKILL, then restarted with
              `gim pretrain --resume` (afresh while the run folder has no config.yaml yet); after the last
              kill it runs to the end. The kill moments are `--kills` seeded uniform draws over the reference
              run's duration. A moment in the reference's start-up kills some start (chosen at random) that
              long after it began; a moment in training kills the victim when it reaches the same point of
              the run (these are taken in order, so the kills walk through the whole run, checkpoint writes
              included). Three kinds of aimed kills are added at random places: `--startup-kills` at a uniform
              moment of a start's start-up, `--checkpoint-kills` as soon as a new `.staging-*` folder appears
              (a checkpoint write has begun), `--metrics-kills` as soon as metrics.jsonl grows (a log write has
              begun), after which part of a further row is appended, as a kill in the middle of that write
              leaves it (a one-line append is too quick to interrupt by timing alone). `--racers` starts are
              raced by a second writer once their training is under way: alternately `gim pretrain --resume`
              with another learning rate, and a fresh start with the same --name; the victim is killed only after
              the racer has exited
3. verdict    every restart must load without an error and continue from the newest checkpoint; every racer
              must exit with code 2 and one line naming the victim's pid; the newest checkpoints of victim and
              reference must hold equal tensors (torch.equal), and metrics.jsonl must log every step once with
              the reference's losses (so neither a torn line nor a racer changed anything)
4. control    a second uninterrupted run, compared with the reference the same way: if even these differ,
              training is not deterministic and a difference of the victim says nothing about resuming

    python benchmarks/kill_resume.py --json benchmarks/results/kill_resume.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch

REPOSITORY = Path(__file__).resolve().parents[1]
TQDM_POSITION = re.compile(r"(\d+)/(\d+) \[")  # "pretrain:  10%|█   | 9/90 [00:01<..."
ERROR_MARKERS = ("Traceback", "gim: error", "Error:")
UNCOMPARED_METRICS = {"samples_per_second"}  # wall-clock rates differ between any two runs
KEEP_CHECKPOINTS = 2  # run_folder.KEEP_CHECKPOINTS


# ---------------------------------------------------------------------------------------------------- starting gim


def pretrain_command(args: argparse.Namespace, output: Path, name: str, resume: bool) -> list[str]:
    if resume:
        return [str(args.gim), "pretrain", "--resume", str(output / name)]
    return [
        str(args.gim),
        "pretrain",
        "--preset",
        "smoke",
        "--output",
        str(output),
        "--name",
        name,
        "--train.epochs",
        str(args.epochs),
        "--train.checkpoint_every",
        str(args.checkpoint_every),
        "--data.limit",
        str(args.limit),
        "--data.batch_size",
        str(args.batch_size),
        "--train.precision",
        "fp32",
    ]


@dataclass(frozen=True)
class PlannedKill:
    """A kill aimed at `aim` ("start-up", "training", "checkpoint write", "metrics write" or "second writer":
    a training moment, raced by another writer first)."""

    aim: str
    moment: float | None  # seconds into the reference run; None for a checkpoint or metrics write


def plan_kills(args: argparse.Namespace, reference: dict, rng: random.Random) -> list[PlannedKill]:
    """Uniform moments of the reference run: training moments in order, the others at random places."""
    moments = [rng.uniform(0, reference["seconds"]) for _ in range(args.kills)]
    plan = [PlannedKill("training", m) for m in sorted(m for m in moments if m >= reference["startup_seconds"])]
    startup = [m for m in moments if m < reference["startup_seconds"]]
    startup += [rng.uniform(0, reference["startup_seconds"]) for _ in range(args.startup_kills)]
    aimed = [PlannedKill("start-up", m) for m in startup]
    aimed += [PlannedKill("checkpoint write", None)] * args.checkpoint_kills
    aimed += [PlannedKill("metrics write", None)] * args.metrics_kills
    training = reference["seconds"] - reference["startup_seconds"]
    aimed += [
        PlannedKill("second writer", reference["startup_seconds"] + rng.uniform(0.3, 0.9) * training)
        for _ in range(args.racers)
    ]
    for kill in aimed:
        plan.insert(rng.randrange(len(plan) + 1), kill)
    return plan


def kill_delay(kill: PlannedKill, reference: dict, checkpoint: int | None) -> float:
    """Seconds after a start at which it reaches the planned moment; it begins `checkpoint` steps ahead."""
    if kill.aim == "start-up":
        return kill.moment
    ahead = (checkpoint or 0) * reference["seconds_per_step"]
    if kill.aim in ("training", "second writer"):
        return max(reference["startup_seconds"], kill.moment - ahead)
    return reference["seconds"] - ahead  # a checkpoint or metrics write: give up at the expected end of the start


@dataclass
class Start:
    """One `gim pretrain` process: how it was started, when it was killed (if it was), how it ended."""

    number: int
    resume: bool
    aim: str | None  # what the kill was aimed at; None: the final start, not killed
    kill_after: float | None  # seconds after the start; None: let it run to the end
    checkpoint_before: int | None  # newest checkpoint step on disk when it started
    killed: bool = False
    seconds: float = 0.0  # from start to exit or kill
    returncode: int | None = None
    started_training_at: int | None = None  # tqdm's first position: the step it resumed from
    steps_done: int | None = None  # tqdm's last position
    errors: list[str] = field(default_factory=list)
    pid: int | None = None
    racer: dict | None = None  # the second writer's command, exit code and last stderr line
    torn_line_added: bool = False  # a metrics-write kill: part of a row appended after it


def child_environment(args: argparse.Namespace) -> dict[str, str]:
    """The environment of every gim process: this one's, with OMP_NUM_THREADS when --threads is given."""
    return {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}


def run_start(
    start: Start,
    command: list[str],
    log: Path,
    hard_timeout: float,
    environment: dict,
    run: Path,
    racer: list[str] | None = None,
) -> Start:
    """Run one start; SIGKILL it after `start.kill_after` seconds, or once its aimed write begins in `run` (a new
    checkpoint staging folder, or metrics.jsonl growing), if it is still running. A `racer` command is started
    once training is under way, and the kill waits for it to exit."""
    before = checkpoint_entries(run) if start.aim == "checkpoint write" else {}
    metrics_size = _size(run / "metrics.jsonl")
    aimed = start.aim in ("checkpoint write", "metrics write")
    with open(log, "w") as stderr:
        began = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, cwd=REPOSITORY, env=environment)
        start.pid = process.pid
        limit = start.kill_after if start.kill_after is not None else hard_timeout
        second = None
        while process.poll() is None and (time.perf_counter() - began < limit or (second and second.poll() is None)):
            if start.aim == "checkpoint write" and new_staging(run, before):
                break
            if start.aim == "metrics write" and _size(run / "metrics.jsonl") > metrics_size:
                break
            if racer and second is None and TQDM_POSITION.search(log.read_text(errors="replace")):
                second = subprocess.Popen(
                    racer, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPOSITORY, env=environment
                )
            time.sleep(0.001 if aimed else 0.01)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            start.killed = start.kill_after is not None
        start.returncode = process.wait()
        start.seconds = time.perf_counter() - began
    if second is not None:
        error = second.communicate()[1].strip().splitlines()
        start.racer = {
            "command": " ".join(racer),
            "returncode": second.returncode,
            "stderr_lines": len(error),
            "last_line": error[-1] if error else "",
        }
    if start.killed and start.aim == "metrics write":
        start.torn_line_added = tear_metrics(run)
    text = log.read_text(errors="replace")
    positions = [int(match.group(1)) for match in TQDM_POSITION.finditer(text)]
    start.started_training_at = positions[0] if positions else None
    start.steps_done = positions[-1] if positions else None
    start.errors = [line.strip() for line in re.split(r"[\r\n]", text) if any(m in line for m in ERROR_MARKERS)]
    if not start.killed and start.kill_after is None and start.returncode == -signal.SIGKILL:
        start.errors.append(f"did not finish within {hard_timeout:.0f} s: killed as hung")
    return start


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def tear_metrics(run: Path) -> bool:
    """Append the first half of the last row without its newline, as a kill in the middle of the next log write
    leaves it (that row's step is past the newest checkpoint, which is written after the log of its step)."""
    path = run / "metrics.jsonl"
    lines = path.read_bytes().splitlines() if path.exists() else []
    if not lines:
        return False
    with open(path, "ab") as file:
        file.write(lines[-1][: len(lines[-1]) // 2])
    return True


def racer_result(start: Start) -> tuple[bool, str]:
    """Did the second writer fail at once, in one line naming the victim's pid? (ok, what happened)"""
    racer = start.racer
    if racer is None:
        return False, "no racer started: the victim never reached training"
    ok = (
        racer["returncode"] == 2
        and racer["stderr_lines"] == 1
        and f"is in use by pid {start.pid} " in racer["last_line"]
    )
    return ok, f"exit {racer['returncode']}: {racer['last_line'][:160]}"


def resume_result(start: Start) -> tuple[bool, str]:
    """Did this start load the run and continue from the newest checkpoint? (ok, what happened)"""
    if start.errors:
        return False, start.errors[-1]
    if not start.killed and start.returncode != 0:
        return False, f"exit code {start.returncode}"
    expected = start.checkpoint_before or 0
    if start.started_training_at is not None and start.started_training_at != expected:
        return False, f"continued from step {start.started_training_at}, newest checkpoint was step {expected}"
    if not start.killed:
        return True, f"finished (exit 0), continued from step {expected}"
    if start.started_training_at is None:
        return True, "killed again during start-up, no error"
    return True, f"continued from step {expected}, killed again at step {start.steps_done}"


# ---------------------------------------------------------------------------------------------------- run folder


def checkpoint_steps(run: Path) -> list[int]:
    folder = run / "checkpoints"
    return sorted(int(p.name.removeprefix("step-")) for p in folder.glob("step-*")) if folder.exists() else []


def newest_checkpoint(run: Path) -> int | None:
    steps = checkpoint_steps(run)
    return steps[-1] if steps else None


def checkpoint_entries(run: Path) -> dict[str, tuple[int, int]]:
    """Every entry of RUN/checkpoints with its inode and mtime, to tell what a start created or changed."""
    entries = {}
    try:
        for entry in os.scandir(run / "checkpoints"):
            try:
                entries[entry.name] = (entry.stat().st_ino, entry.stat().st_mtime_ns)
            except FileNotFoundError:  # renamed or removed by a running start since the listing
                pass
    except FileNotFoundError:
        pass
    return entries


def new_staging(run: Path, before: dict[str, tuple[int, int]]) -> bool:
    """Is a checkpoint being written that was not there (or not the same folder) before?"""
    return any(
        name.startswith(".staging-") and before.get(name) != entry for name, entry in checkpoint_entries(run).items()
    )


def metrics_rows(run: Path) -> tuple[list[dict], int]:
    """The parsed rows of metrics.jsonl and how many lines did not parse (a torn write)."""
    path = run / "metrics.jsonl"
    rows, torn = [], 0
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            torn += 1
    return rows, torn


def kill_phase(start: Start, run: Path, before: dict[str, tuple[int, int]]) -> str:
    """Where the kill landed, judged from what the start left behind."""
    if not (run / "config.yaml").exists():
        return "start-up, before the run folder"
    if start.torn_line_added:
        return "metrics write (torn line added)"
    after = checkpoint_entries(run)
    changed = {name for name, entry in after.items() if before.get(name) != entry}
    if any(name.startswith(".staging-") for name in changed):
        return "checkpoint write"
    if any(name.startswith("step-") for name in changed) and len(checkpoint_steps(run)) > KEEP_CHECKPOINTS:
        return "after a checkpoint's rename, before old ones were pruned"
    if start.started_training_at is None:
        return "start-up"
    return "training"


# ---------------------------------------------------------------------------------------------------- the runs


def run_reference(args: argparse.Namespace, workdir: Path, name: str) -> dict:
    """An uninterrupted run, timed: start-up (until tqdm's bar appears) and seconds per step after it."""
    log = workdir / f"{name}.stderr"
    command = pretrain_command(args, workdir, name, resume=False)
    with open(log, "w") as stderr:
        began = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=stderr, cwd=REPOSITORY, env=child_environment(args)
        )
        startup = None
        while process.poll() is None:
            if startup is None and TQDM_POSITION.search(log.read_text(errors="replace")):  # the bar is up
                startup = time.perf_counter() - began
            time.sleep(0.02)
        wall = time.perf_counter() - began
    if process.returncode != 0:
        raise SystemExit(f"{name} run failed (exit {process.returncode}):\n{log.read_text()[-2000:]}")
    total = newest_checkpoint(workdir / name)
    startup = startup if startup is not None else wall
    return {
        "seconds": wall,
        "startup_seconds": startup,
        "steps": total,
        "seconds_per_step": (wall - startup) / total,
        "command": " ".join(command),
    }


def kill_and_resume(args: argparse.Namespace, workdir: Path, reference: dict, deadline: float) -> tuple[list, list]:
    """Start, kill and restart the victim for every planned kill, then let it finish. Returns (kills, starts)."""
    run = workdir / "victim"
    kills, starts = [], []
    hard_timeout = 5 * reference["seconds"] + 60
    for planned in plan_kills(args, reference, random.Random(args.seed)) + [None]:
        if time.time() > deadline:
            break
        checkpoint = newest_checkpoint(run)
        start = Start(
            number=len(starts) + 1,
            resume=(run / "config.yaml").exists(),
            aim=None if planned is None else planned.aim,
            checkpoint_before=checkpoint,
            kill_after=None if planned is None else kill_delay(planned, reference, checkpoint),
        )
        before = checkpoint_entries(run)
        command = pretrain_command(args, workdir, "victim", start.resume)
        racer = None
        if start.aim == "second writer":
            resume = len(starts) % 2 == 0 and start.resume
            racer = pretrain_command(args, workdir, "victim", resume) + (["--train.lr", "0.5"] if resume else [])
        run_start(
            start, command, workdir / f"start-{start.number}.stderr", hard_timeout, child_environment(args), run, racer
        )
        starts.append(start)
        _report_start(start, kills, run, before)
        if not resume_result(start)[0]:
            break
    return kills, starts


def _report_start(start: Start, kills: list[dict], run: Path, before: dict) -> None:
    """Attach this start's outcome to the previous kill, and record a new kill if it was killed."""
    ok, detail = resume_result(start)
    if kills and kills[-1]["next_start"] is None:
        kills[-1]["next_start"] = {"number": start.number, "ok": ok, "result": detail}
    if start.killed:
        rows, torn = metrics_rows(run)
        kills.append(
            {
                "kill": len(kills) + 1,
                **asdict(start),
                "phase": kill_phase(start, run, before),
                "last_logged_step": rows[-1]["step"] if rows else None,
                "torn_metrics_lines": torn,
                "newest_checkpoint": newest_checkpoint(run),
                "next_start": None,
                "racer_ok": racer_result(start) if start.aim == "second writer" else None,
            }
        )
    ending = "killed" if start.killed else f"exit {start.returncode}"
    raced = f"; racer {racer_result(start)[1]}" if start.aim == "second writer" else ""
    print(
        f"start {start.number:2d} ({'resume' if start.resume else 'fresh '}): {ending} after {start.seconds:4.1f} s, "
        f"steps {start.started_training_at}->{start.steps_done}; {detail}{raced}",
        file=sys.stderr,
        flush=True,
    )


# ---------------------------------------------------------------------------------------------------- comparison


def equal_structures(a, b) -> bool:
    """Nested dicts/lists of tensors and plain values: equal keys, torch.equal tensors, == for the rest."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(equal_structures(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(equal_structures(x, y) for x, y in zip(a, b))
    return a == b


def compare_checkpoints(reference: Path, other: Path) -> dict:
    """Every tensor of every module-K.pt (and the optimisers and progress) of the two newest checkpoints."""
    ref_folder = reference / "checkpoints" / f"step-{newest_checkpoint(reference):08d}"
    if newest_checkpoint(other) is None:
        return {"parameters_equal": False, "problem": f"{other.name} has no checkpoint"}
    other_folder = other / "checkpoints" / f"step-{newest_checkpoint(other):08d}"
    modules = sorted(p.name for p in ref_folder.glob("module-*.pt"))
    result = {
        "reference_checkpoint": ref_folder.name,
        "other_checkpoint": other_folder.name,
        "modules": {},
        "different_tensors": [],
    }
    for name in modules:
        ref = torch.load(ref_folder / name, map_location="cpu", weights_only=True)
        if not (other_folder / name).exists():
            result["modules"][name] = {"parameters_equal": False, "tensors": 0, "problem": "missing"}
            continue
        other_state = torch.load(other_folder / name, map_location="cpu", weights_only=True)
        ours, theirs = ref["state_dict"], other_state["state_dict"]
        different = [key for key, tensor in ours.items() if key not in theirs or not torch.equal(tensor, theirs[key])]
        different += sorted(set(theirs) - set(ours))
        result["different_tensors"] += [f"{name}:{key}" for key in different]
        result["modules"][name] = {
            "tensors": len(ref["state_dict"]),
            "parameters_equal": not different,
            "optimizer_equal": equal_structures(ref["optimizer"], other_state["optimizer"]),
        }
    ref_progress = torch.load(ref_folder / "progress.pt", map_location="cpu", weights_only=False)
    other_progress = torch.load(other_folder / "progress.pt", map_location="cpu", weights_only=False)
    result["progress_equal"] = equal_structures(ref_progress, other_progress)
    result["same_module_files"] = modules == sorted(p.name for p in other_folder.glob("module-*.pt"))
    result["parameters_equal"] = (
        ref_folder.name == other_folder.name
        and result["same_module_files"]
        and all(m["parameters_equal"] for m in result["modules"].values())
    )
    result["optimizers_equal"] = all(m.get("optimizer_equal", False) for m in result["modules"].values())
    return result


def compare_metrics(reference: Path, other: Path) -> dict:
    """Each step logged once, in order, with the reference's values (losses, epoch, ...; not images/s)."""
    ref_rows, _ = metrics_rows(reference)
    other_rows, torn = metrics_rows(other)
    other_steps = [row["step"] for row in other_rows]
    duplicated = sorted({step for step in other_steps if other_steps.count(step) > 1})
    by_step = {row["step"]: row for row in other_rows}
    missing = [row["step"] for row in ref_rows if row["step"] not in by_step]
    extra = sorted(set(by_step) - {row["step"] for row in ref_rows})
    different = [
        row["step"]
        for row in ref_rows
        if row["step"] in by_step
        and {k: v for k, v in row.items() if k not in UNCOMPARED_METRICS}
        != {k: v for k, v in by_step[row["step"]].items() if k not in UNCOMPARED_METRICS}
    ]
    in_order = other_steps == sorted(other_steps)
    return {
        "reference_rows": len(ref_rows),
        "other_rows": len(other_rows),
        "torn_lines": torn,
        "duplicated_steps": duplicated,
        "missing_steps": missing,
        "extra_steps": extra,
        "different_steps": different,
        "in_order": in_order,
        "equal": not (torn or duplicated or missing or extra or different) and in_order,
    }


# ---------------------------------------------------------------------------------------------------- report


def table(kills: list[dict]) -> str:
    lines = [
        "| kill | start | aimed at | killed at (s) | landed in | steps done | last logged | newest checkpoint "
        "| next start |",
        "|---:|---|---|---:|---|---:|---:|---:|---|",
    ]
    for kill in kills:
        following = kill["next_start"]
        outcome = "—" if following is None else f"{'ok' if following['ok'] else 'FAILED'}: {following['result']}"
        lines.append(
            f"| {kill['kill']} | {kill['number']} ({'resume' if kill['resume'] else 'fresh'}) "
            f"| {kill['aim']} | {kill['seconds']:.2f} | {kill['phase']} | {_dash(kill['steps_done'])} "
            f"| {_dash(kill['last_logged_step'])} | {_dash(kill['newest_checkpoint'])} | {outcome} |"
        )
    return "\n".join(lines)


def _dash(value) -> str:
    return "—" if value is None else str(value)


def verdict(
    args: argparse.Namespace, kills: list[dict], starts: list[Start], victim: dict, control: dict, changed: list[str]
) -> tuple[bool, str]:
    """One line: PASS only if every kill was followed by a good resume and the victim ended equal to the reference.

    A planned kill can miss when the machine runs faster than during the reference and a start finishes first;
    the line says how many. Others may edit the package meanwhile; files that changed are named.
    """
    resumed = [kill for kill in kills if kill["next_start"] is not None and kill["next_start"]["ok"]]
    finished = bool(starts) and not starts[-1].killed and starts[-1].returncode == 0
    planned = args.kills + args.startup_kills + args.checkpoint_kills + args.metrics_kills + args.racers
    missed = sum(start.aim is not None and not start.killed and not start.errors for start in starts)
    raced = [racer_result(start) for start in starts if start.aim == "second writer"]
    refused = sum(ok for ok, _ in raced)
    torn = sum(start.torn_line_added for start in starts)
    ok = bool(kills) and len(resumed) == len(kills) and finished and victim["equal"] and refused == len(raced)
    line = (
        f"{'PASS' if ok else 'FAIL'}: {len(kills)} kills ({planned} planned"
        + (f", {missed} missed: the start finished first" if missed else "")
        + f"), {len(resumed)} resumes ok, "
        f"{torn} torn metrics lines repaired, {refused} of {len(raced)} racing writers refused, "
        f"run {'finished' if finished else 'did NOT finish'}; victim vs reference: {_equality(victim)}; "
        f"control (2nd uninterrupted run) vs reference: {_equality(control)}"
    )
    if not victim["equal"] and not control["equal"]:
        line += " -> training itself is not deterministic here, so the victim's difference is not evidence about resume"
    return ok, line + (f"; note: {', '.join(changed)} changed while this ran" if changed else "")


def _equality(comparison: dict) -> str:
    checkpoints, metrics = comparison["checkpoints"], comparison["metrics"]
    return (
        f"parameters {_same(checkpoints.get('parameters_equal'))} ({checkpoints.get('other_checkpoint')}), "
        f"optimisers {_same(checkpoints.get('optimizers_equal'))}, metrics {_same(metrics['equal'])}"
    )


def _same(equal: bool | None) -> str:
    return "equal" if equal else "DIFFERENT"


def compare_runs(reference: Path, other: Path) -> dict:
    checkpoints, metrics = compare_checkpoints(reference, other), compare_metrics(reference, other)
    return {
        "checkpoints": checkpoints,
        "metrics": metrics,
        "equal": bool(checkpoints.get("parameters_equal")) and metrics["equal"],
    }


def package_sources() -> dict[str, str]:
    """A digest of each source file of the package: the runs compared must have run the same code."""
    return {
        path.relative_to(REPOSITORY).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted((REPOSITORY / "greedy_infomax").rglob("*.py"))
    }


def machine_info() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPOSITORY).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "greedy_infomax"], capture_output=True, text=True, cwd=REPOSITORY
    ).stdout.strip()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu,
        "logical_cpus": len(os.sched_getaffinity(0)),
        "load_average": os.getloadavg(),
        "torch_threads_default": torch.get_num_threads(),
        "git_commit": commit,
        "package_uncommitted_changes": bool(dirty),
        "command": " ".join(sys.argv),
    }


# ---------------------------------------------------------------------------------------------------- main


def benchmark(args: argparse.Namespace, workdir: Path) -> dict:
    started, sources = time.time(), package_sources()
    machine = machine_info()
    references = {}
    for name in ("reference", "control"):
        print(f"{name} run (uninterrupted) ...", file=sys.stderr, flush=True)
        references[name] = run_reference(args, workdir, name)
        print(
            f"{name}: {references[name]['steps']} steps in {references[name]['seconds']:.1f} s (start-up "
            f"{references[name]['startup_seconds']:.1f} s, {references[name]['seconds_per_step']:.3f} s/step)",
            file=sys.stderr,
            flush=True,
        )
    kills, starts = kill_and_resume(args, workdir, references["reference"], deadline=started + 60 * args.max_minutes)
    victim = compare_runs(workdir / "reference", workdir / "victim")
    control = compare_runs(workdir / "reference", workdir / "control")
    now = package_sources()
    changed = sorted(name for name in sources.keys() | now.keys() if sources.get(name) != now.get(name))
    ok, line = verdict(args, kills, starts, victim, control, changed)
    phases = {phase: sum(k["phase"] == phase for k in kills) for phase in dict.fromkeys(k["phase"] for k in kills)}
    return {
        "machine": machine,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "references": references,
        "kills": kills,
        "phases": phases,
        "starts": [asdict(s) for s in starts],
        "victim_vs_reference": victim,
        "control_vs_reference": control,
        "package_files_changed_during_run": changed,
        "passed": ok,
        "verdict": line,
        "wall_seconds": time.time() - started,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs at uniform random moments of the run")
    parser.add_argument(
        "--startup-kills", type=int, default=3, help="extra kills aimed at a start-up (of a start chosen at random)"
    )
    parser.add_argument(
        "--checkpoint-kills",
        type=int,
        default=5,
        help="extra kills aimed at checkpoint writes (placed at random among the others)",
    )
    parser.add_argument(
        "--metrics-kills",
        type=int,
        default=3,
        help="extra kills as soon as metrics.jsonl grows, each followed by a torn line",
    )
    parser.add_argument(
        "--racers",
        type=int,
        default=3,
        help="extra kills of starts raced by a second writer first (which must be refused)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--checkpoint-every", type=int, default=4)
    parser.add_argument("--limit", type=int, default=9216, help="pre-training images (18 batches of 512)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=512,
        help="larger than the preset's 16, so that a step (not start-up) fills most of the run",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="OMP_NUM_THREADS of every gim process (default: torch's choice, the core count)",
    )
    parser.add_argument("--max-minutes", type=float, default=20, help="stop killing after this long")
    parser.add_argument("--gim", type=Path, default=REPOSITORY / ".venv" / "bin" / "gim")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the run folders here (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="write every kill, start and comparison here")
    args = parser.parse_args(argv)
    if min(args.kills, args.startup_kills, args.checkpoint_kills, args.metrics_kills, args.racers) < 0:
        parser.error("--kills, --startup-kills, --checkpoint-kills, --metrics-kills and --racers must not be negative")
    return args


def main() -> int:
    args = parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gim-kill-resume-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        report = benchmark(args, workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(table(report["kills"]))
    print(f"\n{report['verdict']}  ({report['wall_seconds']:.0f} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
