"""`gim bench`: how fast and how light training is on this machine, against what the machine can do at all.

In one command it measures the matmul ceiling (GFLOP/s of a large matrix product, fp32 and bf16), then for each
preset, precision and mode, each in a fresh process so that its peak memory is its own:

    end-to-end     the whole encoder as one module: plain backpropagation through every stage
    simultaneous   GIM: every module steps on every batch, each with its own backward (the default training)
    module-K       GIM one module at a time: only module K learns, earlier modules run frozen under no_grad

and with `methods`, each local-learning method after GIM (reproduce.AFTER_GIM: overlapping modules, CLAPP, the
two-view objectives per module and end to end) trained as GIM simultaneous is, next to GIM's own rate and memory;

training samples (images or 1.28 s windows) per second on random inputs of the preset's shape, the FLOPs of one
step (counted by torch's FlopCounterMode, forward and backward) and so the achieved GFLOP/s as a fraction of the
ceiling (measured again before each timed group), and peak memory (peak RSS on CPU,
`torch.cuda.max_memory_allocated` on GPU) above the built model. Where a preset's dataset is on disk it also times
the data pipeline alone (reading, cropping, augmenting, batching), which must outrun training. Timings are medians
over groups of steps; the machine, date and command go into the JSON next to every raw number.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from greedy_infomax.config import AnyRunConfig, end_to_end
from greedy_infomax.errors import GimError
from greedy_infomax.reproduce import AFTER_GIM
from greedy_infomax.tasks import PRESETS, task_of

GIB = 1 << 30
DEFAULT_PRESETS = ("paper-stl10", "fashion-mnist", "paper-librispeech", "speech")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
PRECISIONS = tuple(DTYPES)
DATA_MODE = "data"

# How a CPU worker's glibc malloc is set up. `tuned` is what training uses (placement.tune_allocator): it keeps freed
# heap for speed, and peak RSS counts it. `glibc` leaves glibc's defaults, to see what tuning is worth. `exact`
# gives every buffer from 64 KiB up its own mmap, returned on free, so peak RSS follows the live tensors (slower:
# its speeds are not representative).
ALLOCATORS = {"tuned": {}, "glibc": {}, "exact": {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}}


@dataclass(frozen=True)
class Schedule:
    """Untimed warm-up steps (more while memory still grows: `warm_up`), then `steps` timed steps split into
    `repeats` groups whose median is kept."""

    warmup: int
    steps: int
    repeats: int


# The paper presets' steps are long on a CPU (the paper's 256 images or 32 windows per step), so they get few; the
# small presets' steps are short enough for many more.
CPU_SCHEDULES = {
    "paper-stl10": Schedule(1, 3, 3),
    "paper-librispeech": Schedule(1, 4, 2),
    "fashion-mnist": Schedule(5, 40, 4),
    "speech": Schedule(3, 20, 4),
}
GPU_SCHEDULE = Schedule(5, 50, 5)
SMALL_SCHEDULE = Schedule(2, 10, 2)
SETTLE_LIMIT = 6
"""Warm-up steps at most beyond a schedule's own, waiting for the process's memory to stop growing (`warm_up`)."""

# Training samples of the paper's full schedules, to project their duration from a measured rate: 300 epochs of the
# 100,000 unlabelled STL-10 images; 1000 epochs of one 1.28 s window per utterance, counting all 28,539 utterances
# of train-clean-100 (the CPC train split is a part of them, so the projection is an upper bound).
PAPER_SCHEDULE_SAMPLES = {"paper-stl10": 300 * 100_000, "paper-librispeech": 1000 * 28_539}


@dataclass(frozen=True)
class Case:
    """One measurement: a preset in one mode and precision, on one device."""

    preset: str
    mode: str
    precision: str
    device: str
    batch_size: int | None
    schedule: Schedule
    switches: tuple[tuple[str, bool | int], ...] = ()
    """Speed switches of the train section set for this case, e.g. (("compile", True),)."""
    allocator: str = "tuned"
    method: str | None = None
    """A local-learning method after GIM (its slug in reproduce.AFTER_GIM), in the simultaneous mode."""

    def config(self) -> AnyRunConfig:
        """The preset with this batch size, precision and device, turned into this mode (or method)."""
        config = PRESETS[self.preset]
        data = config.data if self.batch_size is None else replace(config.data, batch_size=self.batch_size)
        config = replace(
            config,
            data=data,
            train=replace(config.train, precision=self.precision, device=self.device, **dict(self.switches)),
        )
        if self.method is not None:
            return METHODS[self.method].change(config)
        if self.mode == "end-to-end":
            return end_to_end(config)
        if self.mode.startswith("module-"):
            return replace(config, train=replace(config.train, train_module=int(self.mode.removeprefix("module-"))))
        return config


METHODS = {method.slug: method for method in AFTER_GIM}


def methods_of(preset: str, requested: tuple[str, ...]) -> list[str]:
    """The methods among `requested` ('all': every one) whose objective the preset's task has."""
    slugs = list(METHODS) if "all" in requested else list(requested)
    return [slug for slug in slugs if METHODS[slug].fits(PRESETS[preset].task)]


def default_precisions(device: str) -> tuple[str, ...]:
    """fp32, and bf16 where the device has it in hardware (emulated, a paper-stl10 bf16 case would take hours)."""
    from greedy_infomax.placement import native_bf16

    return PRECISIONS if native_bf16(torch.device(device)) else ("fp32",)


def modes_of(preset: str, requested: tuple[str, ...]) -> list[str]:
    """The preset's modes among `requested` ('module' stands for every module-K of the preset)."""
    modes = []
    for mode in requested:
        if mode == "module":
            modes += [f"module-{k + 1}" for k in range(PRESETS[preset].model.num_modules)]
        else:
            modes.append(mode)
    return modes


# ------------------------------------------------------------------------------------------- in the worker


def random_inputs(config: AnyRunConfig, device: torch.device) -> torch.Tensor:
    """A batch of the preset's input shape: (B, C, crop, crop) images or (B, 1, window) waveforms."""
    return task_of(config).example_batch(config, config.data.batch_size, device)


def memory_now(device: torch.device) -> int:
    """Bytes held now: resident set size on CPU, allocated tensor memory on CUDA."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def memory_peak(device: torch.device) -> int:
    """Bytes at the high-water mark: this process's peak RSS on CPU (ru_maxrss is in KiB on Linux)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warm_up(step: Callable[[], object], steps: int, device: torch.device) -> int:
    """Run `steps` untimed steps, then more while the last one still raised the peak memory by over 1% (at most
    SETTLE_LIMIT more); returns how many ran. The tuned CPU heap grows over a paper-scale case's first steps, and a
    step that grows it pays page faults, so it is slower than the steps after it."""
    done, grew = 0, True
    while done < steps or (grew and 0 < steps and done < steps + SETTLE_LIMIT):
        before = memory_peak(device)
        step()
        synchronize(device)
        done += 1
        grew = memory_peak(device) > before * 1.01
    return done


def timed_groups(
    step: Callable[[], object],
    schedule: Schedule,
    device: torch.device,
    before_group: Callable[[], object] = lambda: None,
) -> list[float]:
    """Seconds per step of each timed group, after the warm-up; `before_group` runs, untimed, before each group."""
    warm_up(step, schedule.warmup, device)
    sizes = [
        schedule.steps // schedule.repeats + (i < schedule.steps % schedule.repeats) for i in range(schedule.repeats)
    ]
    seconds = []
    for size in filter(None, sizes):
        before_group()
        synchronize(device)
        started = time.perf_counter()
        for _ in range(size):
            step()
        synchronize(device)
        seconds.append((time.perf_counter() - started) / size)
    return seconds


def count_flops(step: Callable[[], object]) -> int:
    """FLOPs of one call, forward and backward, as torch's flop counter sees them (matmuls and convolutions)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


@dataclass
class TrainingCase:
    """A case built: its modules, one random batch, and one training step of them on it as a call."""

    modules: torch.nn.ModuleList
    x: torch.Tensor
    trained: range
    step: Callable[[], object]
    samples: int
    """Images or windows in the batch: a two-view objective's batch holds two rows of each."""


def build_training(case: Case) -> TrainingCase:
    """The modules of the case on its device, a random batch of the preset's shape and the step that trains them
    (what `gim bench` times; benchmarks/gpu_bench.sh profiles it)."""
    from greedy_infomax.engines.local import train_step
    from greedy_infomax.placement import trained_indices

    config = case.config()
    device = torch.device(case.device)
    x = random_inputs(config, device)
    modules = task_of(config).prepare_modules(config, in_channels=x.shape[1], device=device)
    trained = trained_indices(config.train, config.model.num_modules)
    return TrainingCase(
        modules,
        x,
        trained,
        lambda: train_step(modules, x, trained, (config.train.seed, 0), frozen_chunks=config.train.frozen_chunks),
        x.shape[0] // task_of(config).views(config),
    )


def measure_training(case: Case) -> dict:
    """Build the modules, train them on one random batch, return speed, FLOPs and memory of this process.

    The matmul ceiling is measured again right before each timed group, and each group's rate is divided by its
    own: on a CPU shared with other tenants the ceiling moves by a factor of two between runs minutes apart, so a
    ceiling measured once at the start would make the fraction swing as much."""
    device = torch.device(case.device)
    training = build_training(case)
    built = memory_now(device)
    ceilings: list[float] = []

    def measure_ceiling() -> None:
        ceilings.append(matmul_ceiling(DTYPES[case.precision], device, seconds=0.5))

    warmed = warm_up(training.step, case.schedule.warmup, device)
    seconds = timed_groups(training.step, replace(case.schedule, warmup=0), device, before_group=measure_ceiling)
    if device.type == "cuda":  # the peak of a training step, not of the ceiling's matrices
        torch.cuda.reset_peak_memory_stats(device)
        training.step()
        synchronize(device)
    peak = memory_peak(device)  # before counting FLOPs, whose bookkeeping is not training's
    flops = count_flops(training.step)
    median = statistics.median(seconds)
    return {
        "warmup_steps": warmed,
        "seconds_per_step": seconds,
        "samples_per_second": training.samples / median,
        "flops_per_step": flops,
        "gflops_per_second": flops / median / 1e9,
        "ceilings_gflops": ceilings,
        "ceiling_fraction": statistics.median(
            flops / group / 1e9 / ceiling for group, ceiling in zip(seconds, ceilings)
        ),
        "built_bytes": built,
        "peak_bytes": peak,
        "peak_above_model_bytes": peak - built,
        "parameters": sum(p.numel() for p in training.modules.parameters()),
        "trained_modules": [index + 1 for index in training.trained],
        "threads": torch.get_num_threads(),
    }


def measure_data(case: Case) -> dict:
    """Samples per second of the pre-training data pipeline alone (on the CPU, as training reads it)."""
    config = case.config()
    loader, _ = task_of(config).pretrain_loader(config, torch.device("cpu"))
    if len(loader) == 0:
        raise GimError(f"{case.preset}: the dataset holds fewer samples than one batch of {loader.batch_size}")
    batches = (batch for epoch in itertools.count() for batch in loader.epoch(epoch))  # small data: several epochs
    seconds = timed_groups(lambda: next(batches), case.schedule, torch.device("cpu"))
    return {"seconds_per_batch": seconds, "samples_per_second": loader.batch_size / statistics.median(seconds)}


def worker(case: Case) -> dict:
    from greedy_infomax.placement import tune_allocator

    if case.allocator == "tuned":
        tune_allocator()  # as the gim command does, so peak RSS is what a real run holds
    return measure_data(case) if case.mode == DATA_MODE else measure_training(case)


# ------------------------------------------------------------------------------------------- the driver


def matmul_ceiling(dtype: torch.dtype, device: torch.device, size: int | None = None, seconds: float = 2.0) -> float:
    """GFLOP/s of a square matrix product at `size` (default 2048 on CPU, 8192 to fill a GPU), the median of timed
    groups lasting about `seconds` in all."""
    size = size or (8192 if device.type == "cuda" else 2048)
    a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
    torch.mm(a, b)
    synchronize(device)
    started = time.perf_counter()
    torch.mm(a, b)
    synchronize(device)
    once = max(time.perf_counter() - started, 1e-6)
    per_group = max(1, int(seconds / 5 / once))
    groups = timed_groups(lambda: torch.mm(a, b), Schedule(0, 5 * per_group, 5), device)
    return 2 * size**3 / statistics.median(groups) / 1e9


def run_case(case: Case) -> dict:
    """One case in a fresh interpreter; a failure (out of memory, no dataset) is recorded, not raised."""
    command = [sys.executable, "-m", "greedy_infomax.bench", json.dumps(asdict(case))]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **ALLOCATORS[case.allocator]})
    record = {**asdict(case), "wall_seconds": time.perf_counter() - started}
    if done.returncode != 0:
        return {**record, "error": failure(done.returncode, done.stderr)}
    return {**record, **json.loads(done.stdout.strip().splitlines()[-1])}


def failure(returncode: int, stderr: str) -> str:
    """What a failed case's table cell says: its last line of stderr; a case killed without a word (the kernel's
    out-of-memory killer sends SIGKILL) says so."""
    lines = stderr.strip().splitlines()
    if lines:
        return lines[-1]
    if returncode == -signal.SIGKILL:
        return "killed (SIGKILL), most likely out of memory: try a smaller --batch_size"
    return f"exit {returncode}"


def schedule_for(preset: str, device: str, mode: str, override: Schedule | None) -> Schedule:
    if override is not None:
        return override
    if mode == DATA_MODE:
        return Schedule(5, 100, 5)
    if device.startswith("cuda"):
        return GPU_SCHEDULE
    return CPU_SCHEDULES.get(preset, SMALL_SCHEDULE)


def bench(
    presets: tuple[str, ...],
    modes: tuple[str, ...],
    precisions: tuple[str, ...],
    device: str = "cpu",
    batch_size: int | None = None,
    schedule: Schedule | None = None,
    switches: dict[str, bool | int] | None = None,
    allocator: str = "tuned",
    progress: Callable[[str], None] = print,
    methods: tuple[str, ...] = (),
) -> dict:
    """Every case of presets x precisions x modes (and `methods`), plus the matmul ceilings and the data pipelines;
    the report.

    `switches` sets train options of every case (compile, channels_last, recompute_activations, frozen_chunks),
    to measure what each is worth."""
    unknown = sorted(set(presets) - set(PRESETS))
    if unknown:
        raise GimError(f"bench: unknown preset(s) {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
    started = time.perf_counter()
    ceilings = {precision: matmul_ceiling(DTYPES[precision], torch.device(device)) for precision in precisions}
    progress("matmul ceiling: " + ", ".join(f"{p} {g:.1f} GFLOP/s" for p, g in ceilings.items()))
    records = []
    for preset in presets:
        cases = [
            Case(
                preset,
                mode,
                precision,
                device,
                batch_size,
                schedule_for(preset, device, mode, schedule),
                tuple(sorted((switches or {}).items())),
                allocator,
                method,
            )
            for precision in precisions
            for mode, method in _modes_and_methods(preset, modes, methods)
        ]
        cases.append(
            Case(preset, DATA_MODE, "fp32", device, batch_size, schedule_for(preset, device, DATA_MODE, schedule))
        )
        for case in cases:
            record = run_case(case)
            records.append(record)
            progress(
                f"{preset} {case.precision} {case.method or case.mode}: "
                + (
                    f"failed: {record['error']}"
                    if "error" in record
                    else f"{record['samples_per_second']:.1f} samples/s ({record['wall_seconds']:.0f} s)"
                )
            )
    return {
        "machine": machine(device),
        "ceilings_gflops": ceilings,
        "switches": switches or {},
        "allocator": allocator,
        "records": _against_gim(records),
        "wall_seconds": time.perf_counter() - started,
    }


def _modes_and_methods(preset: str, modes: tuple[str, ...], methods: tuple[str, ...]) -> list[tuple[str, str | None]]:
    """The cases of one precision as (mode, method): the modes, then each method trained as GIM simultaneous is,
    with GIM simultaneous itself measured as their reference even where `modes` leaves it out."""
    pairs = [(mode, None) for mode in modes_of(preset, modes)]
    chosen = methods_of(preset, methods)
    if chosen and "simultaneous" not in modes:
        pairs.append(("simultaneous", None))
    return pairs + [("simultaneous", method) for method in chosen]


def _against_gim(records: list[dict]) -> list[dict]:
    """The records, each method's with its samples/s and peak above model over GIM simultaneous's of the same preset
    and precision in this run (None where GIM's case failed)."""
    gim = {
        (r["preset"], r["precision"]): r
        for r in records
        if r["mode"] == "simultaneous" and r.get("method") is None and "error" not in r
    }
    return [
        record
        if record.get("method") is None or "error" in record
        else {**record, **_ratios(record, gim.get((record["preset"], record["precision"])))}
        for record in records
    ]


def _ratios(record: dict, gim: dict | None) -> dict:
    return {
        f"{key}_vs_gim": None if gim is None or not gim[key] else record[key] / gim[key]
        for key in ("samples_per_second", "peak_above_model_bytes")
    }


def machine(device: str) -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    gpu = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu": cpu,
        "logical_cpus": len(os.sched_getaffinity(0)),
        "gpu": gpu,
        "device": device,
        "command": " ".join(["gim", *sys.argv[1:]]),
    }


def table(report: dict) -> str:
    """One markdown table: every training case with speed, FLOP efficiency and memory, then the data pipelines."""
    ceilings = report["ceilings_gflops"]
    rows = [
        "| preset | precision | mode | samples/s | GFLOP/step | GFLOP/s | of matmul ceiling | peak memory (GiB) "
        "| above model (GiB) | vs. largest single module | vs. end-to-end | paper schedule (h) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    training = [r for r in report["records"] if r["mode"] != DATA_MODE and r.get("method") is None]
    for record in training:
        head = f"| {record['preset']} | {record['precision']} | {record['mode']} |"
        if "error" in record:
            rows.append(f"{head} failed: {record['error']} | | | | | | | | |")
            continue
        largest, end = _references(training, record)
        rows.append(
            f"{head} {record['samples_per_second']:.3g} | {record['flops_per_step'] / 1e9:.3g} "
            f"| {record['gflops_per_second']:.3g} | {record['ceiling_fraction']:.2f} "
            f"| {record['peak_bytes'] / GIB:.2f} | {record['peak_above_model_bytes'] / GIB:.2f} "
            f"| {_ratio(record['peak_above_model_bytes'], largest)} "
            f"| {_ratio(record['peak_above_model_bytes'], end)} | {_paper_hours(record)} |"
        )
    rows += _method_rows(report["records"])
    rows += [
        "",
        "| preset | data pipeline samples/s | GIM simultaneous training samples/s (fastest precision) "
        "| data / training |",
        "|---|---:|---:|---:|",
    ]
    for record in (r for r in report["records"] if r["mode"] == DATA_MODE):
        if "error" in record:
            rows.append(f"| {record['preset']} | no data: {record['error']} | | |")
            continue
        training_rate = max(
            (
                r["samples_per_second"]
                for r in training
                if r["preset"] == record["preset"] and r["mode"] == "simultaneous" and "error" not in r
            ),
            default=None,
        )
        rate = record["samples_per_second"]
        rows.append(
            f"| {record['preset']} | {rate:.0f} | "
            + ("— | — |" if training_rate is None else f"{training_rate:.3g} | {rate / training_rate:.1f} |")
        )
    info = report["machine"]
    rows += [
        "",
        "matmul ceiling at the start: "
        + ", ".join(f"{p} {g:.1f} GFLOP/s" for p, g in ceilings.items())
        + f"; {info['gpu'] or info['cpu']}, {info['threads']} threads, torch {info['torch']}, {info['date']}; "
        f"switches: {_switches(report['switches'])}; allocator: {report['allocator']}",
    ]
    return "\n".join(rows)


def _method_rows(records: list[dict]) -> list[str]:
    """The methods after GIM against GIM simultaneous of the same preset and precision, in this run."""
    methods = [r for r in records if r.get("method") is not None]
    if not methods:
        return []
    rows = [
        "",
        "| preset | precision | method | samples/s | vs. GIM | peak above model (GiB) | vs. GIM |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for record in methods:
        head = f"| {record['preset']} | {record['precision']} | {record['method']} |"
        if "error" in record:
            rows.append(f"{head} failed: {record['error']} | | | |")
            continue
        speed, memory = (
            "—" if record[key] is None else f"{record[key]:.2f}"
            for key in ("samples_per_second_vs_gim", "peak_above_model_bytes_vs_gim")
        )
        rows.append(
            f"{head} {record['samples_per_second']:.3g} | {speed} | {record['peak_above_model_bytes'] / GIB:.2f} "
            f"| {memory} |"
        )
    return rows + ["", "Samples are images or windows: a two-view method's step scores two views of each."]


def _references(training: list[dict], record: dict) -> tuple[int | None, int | None]:
    """Peak above model of the largest single module and of end-to-end, for the record's preset and precision."""
    same = [
        r
        for r in training
        if r["preset"] == record["preset"] and r["precision"] == record["precision"] and "error" not in r
    ]
    singles = [r["peak_above_model_bytes"] for r in same if r["mode"].startswith("module-")]
    ends = [r["peak_above_model_bytes"] for r in same if r["mode"] == "end-to-end"]
    return (max(singles) if singles else None), (ends[0] if ends else None)


def _paper_hours(record: dict) -> str:
    """Hours the paper's full schedule would take at this record's rate, for the presets with the paper's geometry."""
    samples = PAPER_SCHEDULE_SAMPLES.get(record["preset"])
    return "—" if samples is None else f"{samples / record['samples_per_second'] / 3600:.3g}"


def _switches(switches: dict[str, bool | int]) -> str:
    return ", ".join(f"train.{name}={value}" for name, value in switches.items()) or "the presets' own"


def _ratio(value: int, reference: int | None) -> str:
    return "—" if not reference else f"{value / reference:.2f}"


if __name__ == "__main__":
    case = json.loads(sys.argv[1])
    print(
        json.dumps(
            worker(
                Case(
                    **{
                        **case,
                        "schedule": Schedule(**case["schedule"]),
                        "switches": tuple(map(tuple, case["switches"])),
                    }
                )
            )
        )
    )
