"""The original Greedy InfoMax and this project, side by side on the same files, in one run.

Given a checkout of loeweX/Greedy_InfoMax (`--original`, the folder holding its GreedyInfoMax package) and a Python
that runs it (`--original-python`: torch, torchvision 0.2.1 installed with --no-deps, six, matplotlib,
scikit-learn, seaborn, soundfile), it fetches nothing and:

1. data      writes STL-10 files in the exact binary layout of `stl10_binary/` (unlabeled_X.bin, train_X.bin,
             train_y.bin, test_X.bin, test_y.bin: uint8, 96x96x3, channel-major, column-major per channel;
             generated images) and generates a speech corpus in the LibriSpeech layout with the CPC split files
             and phone alignments (`gim data speech-corpus`), which is what the original's loaders read:
             LibriSpeech/train-clean-100/<speaker>/<chapter>/<id>.flac and LibriSpeech100_labels_split/
             {train,test}_split.txt (its audio training reads no alignments; they are there all the same).
2. cases     original vision: `python -m GreedyInfoMax.vision.main_vision` with vision_traineval.sh's options
                 (less --download_dataset): batch 32, all three modules, its 16 loader workers;
             ours vision: `gim pretrain --preset paper-stl10 --data.dataset stl10 --data.root DATA`, fp32 and
                 `--train.precision auto` (one case when auto is fp32 on this CPU), at the preset's batch or
                 `--ours-batch`;
             original audio: `python -m GreedyInfoMax.audio.main_audio` with audio_traineval.sh's options: batch
                 8 windows, six modules, its 16 loader workers, its t-SNE of the latents at step 0;
             ours audio: `gim pretrain --preset paper-librispeech --data.dataset librispeech --data.root CORPUS`.
3. rounds    every case once per round, in that order, `--rounds` times (A/B/A/B), so that slow and fast spells
             of a shared machine fall on both sides.

Time per step, steady state: each training process stamps the end of every step. The original's stamps come from a
wrapper around `torch.optim.Adam.step` (it steps one Adam for all modules once per batch; see
side_by_side_original.py, which also exits after the last step wanted); ours come from metrics.jsonl logged every
step (`samples_per_second` is cumulative from the loop's start, so step n ends at n * batch / rate_n). The first
`--warmup` steps, and everything before them (start-up, reading data, building the model, the original's t-SNE
at step 0), are left out: a run's rate is batch * timed steps / (last stamp - the warm-up's last stamp), i.e.
whole loop iterations, data loading included. The original times `--original-steps` (vision) or
`--original-audio-steps` steps; ours about as many samples, rounded to whole steps, at least one. A case's rate
is the median over the rounds; a ratio is ours / original of those medians.

Memory: the process tree of every run (the training process and its loader workers, one session) is sampled
every 0.5 s from /proc: `peak_rss_bytes` is the largest VmHWM (lifetime peak resident set) of any one of its
processes; `peak_tree_pss_bytes` the largest sum of proportional set sizes over the tree (forked workers' shared
pages counted once); `steady_rss_bytes` the largest resident set of any one process sampled after the warm-up,
while training runs (the lifetime peak also holds start-up, such as the original's t-SNE at step 0). As run, ours
keeps freed heap for speed (`gim`'s tuned allocator) and RSS counts it; `--allocator exact` runs both sides with
every buffer from 64 KiB up mapped and returned on free, so that RSS follows the live tensors (speeds then are not
representative).

    python benchmarks/side_by_side.py --original /work/orig --original-python /work/orig-venv/bin/python \\
        --json benchmarks/results/side-by-side-cpu-2026-12-03.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from greedy_infomax.bench import ALLOCATORS, machine
from greedy_infomax.placement import autocast_dtype
from greedy_infomax.tasks import PRESETS

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ORIGINAL_BATCH = {"vision": 32, "audio": 8}  # the original's --batch_size defaults (one CPU: no multi-GPU)
ORIGINAL_ENTRY = {
    # vision_traineval.sh, less --download_dataset (nothing is fetched)
    "vision": ["GreedyInfoMax.vision.main_vision", "--grayscale", "--save_dir", "vision_experiment"],
    # audio_traineval.sh
    "audio": [
        "GreedyInfoMax.audio.main_audio",
        "--subsample",
        "--num_epochs",
        "1000",
        "--learning_rate",
        "2e-4",
        "--start_epoch",
        "0",
        "--save_dir",
        "audio_experiment",
    ],
}
OUR_PRESET = {"vision": "paper-stl10", "audio": "paper-librispeech"}
# `gim` with its allocator tuning left out (for --allocator exact), run as `python -c`
GIM_UNTUNED = (
    "import sys, greedy_infomax.placement as placement; placement.tune_allocator = lambda: None; "
    "from greedy_infomax.cli import main; sys.exit(main())"
)
STL10_SIDE = 96
POLL_SECONDS = 0.5


# ---------------------------------------------------------------------------------------------------------- data


def write_stl10(folder: Path, counts: dict[str, int], seed: int = 0) -> None:
    """`folder/stl10_binary/{split}_X.bin` (and `_y.bin`, labels 1..10) in the release's layout: each image's 3
    channels one after the other, each channel stored column by column. Images: an 8x8 field of random colours
    enlarged to 96x96, plus pixel noise, so that crops differ."""
    rng = np.random.default_rng(seed)
    release = folder / "stl10_binary"
    release.mkdir(parents=True, exist_ok=True)
    for split, count in counts.items():
        coarse = rng.integers(0, 256, (count, 3, 8, 8)).astype(np.int16)
        images = coarse.repeat(STL10_SIDE // 8, axis=2).repeat(STL10_SIDE // 8, axis=3)  # (N, C, H, W)
        images = np.clip(images + rng.normal(0, 16, images.shape), 0, 255).astype(np.uint8)
        images.transpose(0, 1, 3, 2).tofile(release / f"{split}_X.bin")  # (N, C, W, H) on disk
        if split != "unlabeled":
            rng.integers(1, 11, count, dtype=np.uint8).tofile(release / f"{split}_y.bin")


def original_stl10_input(folder: Path) -> Path:
    """The original passes `<input>/stl10_binary` to torchvision's STL10 as its root, which appends stl10_binary
    again: the same files, one folder deeper."""
    original = folder / "original-input"
    (original / "stl10_binary").mkdir(parents=True, exist_ok=True)
    link = original / "stl10_binary" / "stl10_binary"
    if not link.exists():
        link.symlink_to(folder / "stl10_binary")
    return original


def write_speech_corpus(folder: Path, speakers: int, utterances: int) -> None:
    if (folder / "LibriSpeech100_labels_split" / "train_split.txt").is_file():
        return
    subprocess.run(
        [
            sys.executable,
            "-m",
            "greedy_infomax.cli",
            "data",
            "speech-corpus",
            "--root",
            str(folder),
            "--speakers",
            str(speakers),
            "--utterances",
            str(utterances),
        ],
        check=True,
        cwd=REPO,
        env=_our_env(),
    )


def _allocator_env(allocator: str) -> dict[str, str]:
    """glibc's malloc settings of a run: none as-run; `gim bench --allocator exact`'s for exact."""
    return ALLOCATORS["exact"] if allocator == "exact" else {}


def _our_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


# --------------------------------------------------------------------------------------------------------- cases


@dataclass
class Case:
    name: str
    side: str  # original | ours
    task: str  # vision | audio
    batch: int
    warmup: int  # steps left out of the timing
    steps: int  # warm-up + timed
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)


def original_case(task: str, args: argparse.Namespace, data: Path, timed: int) -> Case:
    module, *options = ORIGINAL_ENTRY[task]
    steps = args.warmup + timed
    command = [
        str(args.original_python),
        str(HERE / "side_by_side_original.py"),
        str(args.original),
        str(steps),
        "{stamps}",
        module,
        *options,
        "-i",
        str(data),
        "-o",
        "{out}",
    ]
    env = {**os.environ, "PYTHONPATH": str(args.original), **_allocator_env(args.allocator)}
    env.pop("PYTHONHOME", None)
    return Case(f"original-{task}", "original", task, ORIGINAL_BATCH[task], args.warmup, steps, command, env)


def our_batch_options(task: str, batch: int | None) -> tuple[int, list[str]]:
    """The batch ours steps on, and the flags that set it: the preset's, or `batch` with the preset's images per
    negative group kept where the preset has negative groups (one group when `batch` is not a multiple of it)."""
    config = PRESETS[OUR_PRESET[task]]
    if batch is None or batch == config.data.batch_size:
        return config.data.batch_size, []
    options = ["--data.batch_size", str(batch)]
    groups = getattr(config.objective, "negative_groups", None)
    if groups is not None:
        per_group = config.data.batch_size // groups
        options += ["--objective.negative_groups", str(batch // per_group if batch % per_group == 0 else 1)]
    return batch, options


def our_case(task: str, precision: str, args: argparse.Namespace, data: Path, original_samples: int) -> Case:
    batch, batch_options = our_batch_options(task, args.ours_batch if task == "vision" else args.ours_audio_batch)
    steps = args.warmup + max(1, round(original_samples / batch))
    dataset = ["--data.dataset", "stl10"] if task == "vision" else ["--data.dataset", "librispeech"]
    gim = ["-m", "greedy_infomax.cli"] if args.allocator == "as-run" else ["-c", GIM_UNTUNED]
    command = [
        sys.executable,
        *gim,
        "pretrain",
        "--preset",
        OUR_PRESET[task],
        *dataset,
        "--data.root",
        str(data),
        *batch_options,
        "--train.precision",
        precision,
        "--train.max_steps",
        str(steps),
        "--train.log_every",
        "1",
        "--output",
        "{out}",
        "--name",
        "run",
    ]
    env = {**_our_env(), **_allocator_env(args.allocator)}
    return Case(f"ours-{task}-{precision}", "ours", task, batch, args.warmup, steps, command, env)


def precisions() -> list[str]:
    """fp32, and our default precision `auto` where it is not fp32 on this machine (bf16 where native)."""
    return ["fp32"] if autocast_dtype("auto", torch.device("cpu")) is None else ["fp32", "auto"]


# ------------------------------------------------------------------------------------------------------- running


class TreeMemory:
    """Samples the memory of every process of one session (a process started with start_new_session=True and all
    it forks) until stopped."""

    def __init__(self, session: int) -> None:
        self.session = session
        self.peak_rss = 0
        self.peak_pss = 0
        self.steady_rss = 0
        self.steady = False  # set once warm-up is over
        self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self.sample()

    def sample(self) -> None:
        rss_now, pss = 0, 0
        for pid in self._members():
            status = _status_kib(pid, ("VmHWM", "VmRSS"))
            self.peak_rss = max(self.peak_rss, 1024 * status.get("VmHWM", 0))
            rss_now = max(rss_now, 1024 * status.get("VmRSS", 0))
            pss += _pss_bytes(pid)
        self.peak_pss = max(self.peak_pss, pss)
        if self.steady:
            self.steady_rss = max(self.steady_rss, rss_now)

    def _members(self) -> list[int]:
        members = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[3]) == self.session:  # field 6 of stat: the session id
                    members.append(int(entry.name))
        self.processes = max(self.processes, len(members))
        return members

    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        return {
            "peak_rss_bytes": self.peak_rss,
            "peak_tree_pss_bytes": self.peak_pss,
            "steady_rss_bytes": self.steady_rss,
            "processes": self.processes,
        }


def _status_kib(pid: int, keys: tuple[str, ...]) -> dict[str, int]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {line.split(":")[0]: int(line.split()[1]) for line in lines if line.split(":")[0] in keys}


def _pss_bytes(pid: int) -> int:
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return 0
    return next((1024 * int(line.split()[1]) for line in lines if line.startswith("Pss:")), 0)


def run_case(case: Case, folder: Path, timeout: float) -> dict:
    """Run one case in a fresh session, sample its memory, and return its step stamps and memory."""
    folder.mkdir(parents=True)
    stamps = folder / "stamps.txt"
    command = [part.format(stamps=stamps, out=folder / "out") for part in case.command]
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    with open(folder / "log.txt", "w") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=case.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    memory = TreeMemory(process.pid)
    watch = threading.Thread(target=_mark_steady, args=(memory, case, folder, stamps), daemon=True)
    watch.start()
    try:
        returncode = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        returncode = None
    wall = time.monotonic() - started
    _end_session(process.pid)
    memory.sample()
    record = {
        "case": case.name,
        "returncode": returncode,
        "wall_seconds": wall,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        **memory.stop(),
    }
    ends = _step_ends(case, folder, stamps)
    record["step_ends_seconds"] = [end - ends[0] for end in ends] if ends else []
    record.update(_rate(case, ends))
    return record


def _mark_steady(memory: TreeMemory, case: Case, folder: Path, stamps: Path) -> None:
    """Tell the memory sampler when the warm-up steps are done."""
    while not memory.stopped() and len(_step_ends(case, folder, stamps)) < case.warmup:
        time.sleep(POLL_SECONDS)
    memory.steady = True


def _end_session(session: int) -> None:
    """Stop what the run left (the original's loader workers outlive its main process's exit for a moment)."""
    try:
        os.killpg(session, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _step_ends(case: Case, folder: Path, stamps: Path) -> list[float]:
    """Seconds at which each step ended, on a clock of the run's own (only differences are used)."""
    if case.side == "original":
        return [float(line) for line in stamps.read_text().split()] if stamps.is_file() else []
    metrics = folder / "out" / "run" / "metrics.jsonl"
    if not metrics.is_file():
        return []
    ends = []
    for line in metrics.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "samples_per_second" in row:
            ends.append(row["step"] * case.batch / row["samples_per_second"])
    return ends


def _rate(case: Case, ends: list[float]) -> dict:
    """Samples/s over the steps after the warm-up: whole loop iterations, from the warm-up's last stamp."""
    timed = len(ends) - case.warmup
    if timed < 1 or case.warmup < 1:
        return {"error": f"{len(ends)} steps ended, {case.warmup + 1} needed"}
    seconds = ends[-1] - ends[case.warmup - 1]
    return {
        "timed_steps": timed,
        "seconds_per_step": seconds / timed,
        "samples_per_second": case.batch * timed / seconds,
    }


# ------------------------------------------------------------------------------------------------------- summary


def summarise(cases: list[Case], runs: list[dict]) -> dict:
    """Per case: the median rate over the rounds and the largest memory; per task: ours / original."""
    summary = {}
    for case in cases:
        mine = [run for run in runs if run["case"] == case.name]
        rates = [run["samples_per_second"] for run in mine if "samples_per_second" in run]
        summary[case.name] = {
            "side": case.side,
            "task": case.task,
            "batch": case.batch,
            "rounds": len(mine),
            "samples_per_second": statistics.median(rates) if rates else None,
            "samples_per_second_runs": rates,
            **{
                key: max(run[key] for run in mine)
                for key in ("peak_rss_bytes", "peak_tree_pss_bytes", "steady_rss_bytes")
            },
        }
    for case in (c for c in cases if c.side == "ours"):
        ours, original = summary[case.name], summary[f"original-{case.task}"]
        ours["vs_original"] = {
            "speed": _ratio(ours["samples_per_second"], original["samples_per_second"]),
            **{
                key.removesuffix("_bytes"): _ratio(ours[key], original[key])
                for key in ("peak_rss_bytes", "peak_tree_pss_bytes", "steady_rss_bytes")
            },
        }
    return summary


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def table(summary: dict) -> str:
    gib = 2**30
    rows = [
        "| case | batch | samples/s (median) | runs | speed vs original | peak RSS GiB (vs original) "
        "| tree PSS GiB | steady RSS GiB |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for name, case in summary.items():
        versus = case.get("vs_original", {})
        rate = f"{case['samples_per_second']:.3g}" if case["samples_per_second"] else "failed"
        speed = f"{versus['speed']:.2f}x" if versus.get("speed") else ""
        memory = f" ({versus['peak_rss']:.2f}x)" if versus.get("peak_rss") else ""
        each = ", ".join(f"{r:.3g}" for r in case["samples_per_second_runs"])
        rows.append(
            f"| {name} | {case['batch']} | {rate} | {each} "
            f"| {speed} | {case['peak_rss_bytes'] / gib:.2f}{memory} | {case['peak_tree_pss_bytes'] / gib:.2f} "
            f"| {case['steady_rss_bytes'] / gib:.2f} |"
        )
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------------------- main


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--original",
        type=Path,
        required=True,
        help="checkout of loeweX/Greedy_InfoMax: the folder holding its GreedyInfoMax package",
    )
    parser.add_argument(
        "--original-python",
        type=Path,
        default=os.environ.get("GIM_ORIGINAL_PYTHON"),
        help="a Python that runs the original (default: $GIM_ORIGINAL_PYTHON); benchmarks/README.md",
    )
    parser.add_argument("--tasks", nargs="+", choices=("vision", "audio"), default=["vision", "audio"])
    parser.add_argument("--rounds", type=int, default=2, help="times every case runs, alternating (default 2)")
    parser.add_argument("--warmup", type=int, default=1, help="steps left out of the timing (at least 1; default 1)")
    parser.add_argument(
        "--original-steps",
        type=int,
        default=2,
        help="timed steps of the original's vision (32 "
        "images each; default 2); ours times about as many images, in whole steps, at least one",
    )
    parser.add_argument(
        "--original-audio-steps",
        type=int,
        default=3,
        help="timed steps of the original's audio (8 windows each; default 3); ours likewise",
    )
    parser.add_argument(
        "--ours-batch",
        type=int,
        default=None,
        help="images per step of ours (default: the paper-stl10 preset's), e.g. 32 for the original's",
    )
    parser.add_argument(
        "--ours-audio-batch",
        type=int,
        default=None,
        help="windows per step of ours (default: the paper-librispeech preset's)",
    )
    parser.add_argument("--unlabeled", type=int, default=1024, help="generated unlabelled STL-10 images (default 1024)")
    parser.add_argument("--speakers", type=int, default=12, help="speakers of the generated corpus (default 12)")
    parser.add_argument("--utterances", type=int, default=14, help="utterances per speaker (default 14)")
    parser.add_argument(
        "--allocator",
        choices=("as-run", "exact"),
        default="as-run",
        help="as-run: each side's malloc as its users get it (gim's tuned heap; glibc's defaults for "
        "the original); exact: both with every buffer from 64 KiB up mapped and returned on free, so "
        "RSS follows live tensors (memory only: its speeds are not representative)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800,
        help="seconds one run may take before it is stopped; its stamps so far still count",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="keep data, logs and run folders here")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    if args.original_python is None:
        parser.error("--original-python (or $GIM_ORIGINAL_PYTHON) is needed: see benchmarks/README.md")
    if args.warmup < 1:
        parser.error("--warmup must be at least 1: the first step's start is not stamped")
    if min(args.original_steps, args.original_audio_steps, args.rounds) < 1:
        parser.error("--original-steps, --original-audio-steps and --rounds must be at least 1")
    return args


def build_cases(args: argparse.Namespace, data: dict[str, Path]) -> list[Case]:
    cases = []
    for task in args.tasks:
        timed = args.original_steps if task == "vision" else args.original_audio_steps
        cases.append(original_case(task, args, data.get(f"original-{task}", data[task]), timed))
        samples = timed * ORIGINAL_BATCH[task]
        cases += [our_case(task, precision, args, data[task], samples) for precision in precisions()]
    return cases


def write_data(args: argparse.Namespace, workdir: Path) -> dict[str, Path]:
    data = {"vision": workdir / "stl10", "audio": workdir / "speech"}
    if "vision" in args.tasks:
        largest = max(args.ours_batch or 0, PRESETS[OUR_PRESET["vision"]].data.batch_size, ORIGINAL_BATCH["vision"])
        write_stl10(data["vision"], {"unlabeled": max(args.unlabeled, 4 * largest), "train": 256, "test": 256})
        data["original-vision"] = original_stl10_input(data["vision"])
    if "audio" in args.tasks:
        write_speech_corpus(data["audio"], args.speakers, args.utterances)
    return data


def main() -> None:
    args = parse()
    with tempfile.TemporaryDirectory(prefix="side-by-side-") as scratch:
        workdir = args.workdir or Path(scratch)
        data = write_data(args, workdir)
        cases = build_cases(args, data)
        runs, started = [], time.monotonic()
        for round_ in range(args.rounds):
            for case in cases:
                print(f"round {round_ + 1}/{args.rounds}: {case.name} ({case.steps} steps of {case.batch})", flush=True)
                runs.append(
                    {
                        "round": round_ + 1,
                        **run_case(case, workdir / "runs" / f"{case.name}-{round_ + 1}", args.timeout),
                    }
                )
                print(f"  {_line(runs[-1])}", flush=True)
        summary = summarise(cases, runs)
    print(table(summary))
    report = {
        "machine": {
            **machine("cpu"),
            "command": " ".join(["python", *sys.argv]),
            "load_average_start": runs[0]["load_average_before"] if runs else None,
        },
        "original": {"path": str(args.original), "python": str(args.original_python)},
        "our_precisions": precisions(),  # without "auto" where auto is fp32 on this CPU
        "settings": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
        "cases": [
            {"name": c.name, "batch": c.batch, "warmup": c.warmup, "steps": c.steps, "command": " ".join(c.command)}
            for c in cases
        ],
        "wall_seconds": time.monotonic() - started,
        "summary": summary,
        "runs": runs,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def _line(run: dict) -> str:
    rate = f"{run['samples_per_second']:.3g} samples/s" if "samples_per_second" in run else run.get("error")
    return (
        f"{rate}, {run['wall_seconds']:.0f} s, peak RSS {run['peak_rss_bytes'] / 2**30:.2f} GiB, "
        f"load {run['load_average_before']:.1f} -> {run['load_average_after']:.1f}"
    )


if __name__ == "__main__":
    main()
