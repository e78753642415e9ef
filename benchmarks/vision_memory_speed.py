"""Images per second and peak memory of end-to-end, GIM simultaneous and GIM one-module-at-a-time training.

For every preset it measures, each in a fresh process so that the peak is that mode's alone:

    end-to-end     the whole encoder as one module (`config.end_to_end`): plain backpropagation
    simultaneous   GIM, every module steps on every batch, each with its own backward
    module-k       GIM, only module k learns (`train.train_module=k`); earlier modules run frozen under no_grad

"largest single module" is the module-k run with the highest peak: what GIM's memory should come down to.
Inputs are random tensors of the preset's crop size, so no dataset is needed and data loading is not timed.
Peak memory is the process's peak RSS on CPU (`ru_maxrss`) and `torch.cuda.max_memory_allocated` on CUDA;
"above model" subtracts the memory held right after the modules were built, and the ratios use it.

    python benchmarks/vision_memory_speed.py --json benchmarks/results/vision_memory_speed-cpu.json
    python benchmarks/vision_memory_speed.py --device cuda --precision bf16 --steps 20 --warmup 5
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from greedy_infomax.config import PRESETS, RunConfig, end_to_end
from greedy_infomax.engines.local import prepare_modules, train_step, trained_indices
from greedy_infomax.system import tune_allocator

GIB = 1 << 30

# How the CPU workers' glibc malloc is set up. `tuned` is what training uses; it keeps freed heap memory, which
# peak RSS then counts. `exact` serves every buffer from 64 KiB up with its own mmap and returns it on free, so
# peak RSS follows the live tensors (slower: its speeds are not representative).
ALLOCATORS = {"tuned": "system.tune_allocator() (mallopt), as the gim command does",
              "glibc": "glibc's default malloc settings",
              "exact": "MALLOC_MMAP_THRESHOLD_=65536 MALLOC_TRIM_THRESHOLD_=0: peak RSS follows live memory"}
EXACT_ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


@dataclass(frozen=True)
class Schedule:
    """Untimed warm-up steps, then `steps` timed steps split into `repeats` equal groups (the median is kept)."""

    warmup: int
    steps: int
    repeats: int


# A paper-geometry step takes 15-20 s on 2 CPU cores in fp32; a fashion-mnist step about 0.2 s.
DEFAULT_SCHEDULES = {"paper-stl10": Schedule(warmup=1, steps=3, repeats=3),
                     "fashion-mnist": Schedule(warmup=5, steps=60, repeats=5)}
FALLBACK_SCHEDULE = Schedule(warmup=2, steps=10, repeats=5)


# ---------------------------------------------------------------------------------------------------- worker


def mode_config(preset_name: str, mode: str, batch_size: int, precision: str, device: str) -> RunConfig:
    """The preset with this batch size, precision and device, turned into the given mode."""
    config = PRESETS[preset_name]
    if not config.data.grayscale:
        raise SystemExit(f"{preset_name}: only grayscale presets are supported (the input has 1 channel)")
    config = replace(config, data=replace(config.data, batch_size=batch_size),
                     train=replace(config.train, precision=precision, device=device))
    if mode == "end-to-end":
        return end_to_end(config)
    if mode.startswith("module-"):
        return replace(config, train=replace(config.train, train_module=int(mode.removeprefix("module-"))))
    return config


def memory_now(device: torch.device) -> int:
    """Bytes held now: resident set size on CPU, allocated tensor memory on CUDA."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def memory_peak(device: torch.device) -> int:
    """Bytes at the high-water mark: peak RSS of this process on CPU (ru_maxrss is in KiB on Linux)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_groups(step, schedule: Schedule, device: torch.device) -> list[float]:
    """Seconds per step of each timed group, after the warm-up."""
    for _ in range(schedule.warmup):
        step()
    synchronize(device)
    sizes = [schedule.steps // schedule.repeats + (i < schedule.steps % schedule.repeats)
             for i in range(schedule.repeats)]
    seconds = []
    for size in filter(None, sizes):
        started = time.perf_counter()
        for _ in range(size):
            step()
        synchronize(device)
        seconds.append((time.perf_counter() - started) / size)
    return seconds


def measure(config: RunConfig, schedule: Schedule) -> dict:
    """Build the modules, train on random images, return speed and memory of this process."""
    device = torch.device(config.train.device)
    modules = prepare_modules(config, in_channels=1, device=device)
    crop, batch_size = config.data.crop, config.data.batch_size
    x = torch.randn(batch_size, 1, crop, crop, device=device)                       # (B, 1, crop, crop)
    trained = trained_indices(config.train, config.model.num_modules)
    built = memory_now(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = timed_groups(lambda: train_step(modules, x, trained, (config.train.seed, 0)), schedule, device)
    peak = memory_peak(device)
    return {"seconds_per_step": seconds, "images_per_second": batch_size / statistics.median(seconds),
            "best_images_per_second": batch_size / min(seconds),
            "built_bytes": built, "peak_bytes": peak, "peak_above_model_bytes": peak - built,
            "parameters": sum(p.numel() for p in modules.parameters()),
            "trained_modules": [index + 1 for index in trained], "num_modules": config.model.num_modules,
            "threads": torch.get_num_threads()}


def worker(args: argparse.Namespace) -> None:
    if args.allocator == "tuned":
        tune_allocator()
    config = mode_config(args.preset, args.mode, args.batch_size, args.precision, args.device)
    result = measure(config, Schedule(args.warmup, args.steps, args.repeats))
    print(json.dumps(result))


# ---------------------------------------------------------------------------------------------------- driver


def run_mode(preset_name: str, mode: str, schedule: Schedule, args: argparse.Namespace) -> dict:
    """One measurement in a fresh interpreter; a failure (e.g. out of memory) is recorded, not raised."""
    command = [sys.executable, __file__, "--worker", "--preset", preset_name, "--mode", mode,
               "--batch-size", str(args.batch_size), "--device", args.device, "--precision", args.precision,
               "--warmup", str(schedule.warmup), "--steps", str(schedule.steps), "--repeats", str(schedule.repeats),
               "--allocator", args.allocator]
    environment = {**os.environ, **(EXACT_ENVIRONMENT if args.allocator == "exact" else {})}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    record = {"preset": preset_name, "mode": mode, "wall_seconds": time.perf_counter() - started,
              "warmup": schedule.warmup, "steps": schedule.steps, "repeats": schedule.repeats}
    if done.returncode != 0:
        return {**record, "error": done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]}
    return {**record, **json.loads(done.stdout.strip().splitlines()[-1])}


def schedule_for(preset_name: str, args: argparse.Namespace) -> Schedule:
    """The preset's default schedule with any of --warmup, --steps, --repeats overriding it."""
    default = DEFAULT_SCHEDULES.get(preset_name, FALLBACK_SCHEDULE)
    steps = args.steps if args.steps is not None else default.steps
    repeats = args.repeats if args.repeats is not None else default.repeats
    return Schedule(warmup=args.warmup if args.warmup is not None else default.warmup,
                    steps=steps, repeats=min(repeats, steps))


def benchmark_preset(preset_name: str, args: argparse.Namespace) -> list[dict]:
    modes = ["end-to-end", "simultaneous"] + [f"module-{k + 1}" for k in range(PRESETS[preset_name].model.num_modules)]
    schedule = schedule_for(preset_name, args)
    records = []
    for mode in modes:
        print(f"[{preset_name}] {mode}: warm-up {schedule.warmup}, {schedule.steps} timed steps ...",
              end=" ", file=sys.stderr, flush=True)
        record = run_mode(preset_name, mode, schedule, args)
        if "error" in record:
            print(f"failed: {record['error']}", file=sys.stderr, flush=True)
        else:
            print(f"{record['images_per_second']:.2f} img/s, peak {record['peak_bytes'] / GIB:.2f} GiB "
                  f"({record['wall_seconds']:.0f} s)", file=sys.stderr, flush=True)
        records.append(record)
    return records


def summarise(records: list[dict]) -> dict:
    """Derived rows and ratios of one preset: peak above model vs. largest single module and vs. end-to-end."""
    by_mode = {r["mode"]: r for r in records if "error" not in r}
    singles = [r for r in records if r["mode"].startswith("module-")]
    summary = {}
    if singles and not any("error" in r for r in singles):
        largest = max(singles, key=lambda r: r["peak_above_model_bytes"])
        summary["largest_single_module"] = largest["mode"]
        summary["one_at_a_time_images_per_second"] = 1 / sum(1 / r["images_per_second"] for r in singles)
        summary["reference_bytes"] = largest["peak_above_model_bytes"]
    if "end-to-end" in by_mode:
        summary["end_to_end_bytes"] = by_mode["end-to-end"]["peak_above_model_bytes"]
        summary["end_to_end_images_per_second"] = by_mode["end-to-end"]["images_per_second"]
    for mode, record in by_mode.items():
        summary[mode] = {
            "peak_vs_largest_single_module": _ratio(record["peak_above_model_bytes"], summary.get("reference_bytes")),
            "peak_vs_end_to_end": _ratio(record["peak_above_model_bytes"], summary.get("end_to_end_bytes")),
            "speed_vs_end_to_end": _ratio(record["images_per_second"], summary.get("end_to_end_images_per_second"))}
    return summary


def _ratio(value: float, reference: float | None) -> float | None:
    return None if not reference else value / reference


def _cell(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def table(results: dict[str, dict]) -> str:
    """The markdown table of every preset's modes, plus the 'one module at a time' summary row."""
    lines = ["| preset | mode | images/s | best group | speed vs. end-to-end | peak memory (GiB) | above model (GiB) "
             "| vs. largest single module | vs. end-to-end |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for preset_name, result in results.items():
        summary = result["summary"]
        for record in result["records"]:
            if "error" in record:
                lines.append(f"| {preset_name} | {record['mode']} | failed: {' '.join(record['error'])} "
                             "| | | | | | |")
                continue
            ratios = summary[record["mode"]]
            name = record["mode"] + (" (largest single module)" if record["mode"] == summary.get(
                "largest_single_module") else "")
            lines.append(f"| {preset_name} | {name} | {record['images_per_second']:.2f} "
                         f"| {record['best_images_per_second']:.2f} "
                         f"| {_cell(ratios['speed_vs_end_to_end'], '.2f')} "
                         f"| {record['peak_bytes'] / GIB:.2f} | {record['peak_above_model_bytes'] / GIB:.2f} "
                         f"| {_cell(ratios['peak_vs_largest_single_module'], '.2f')} "
                         f"| {_cell(ratios['peak_vs_end_to_end'], '.2f')} |")
        if "one_at_a_time_images_per_second" in summary:
            rate = summary["one_at_a_time_images_per_second"]
            e2e = summary.get("end_to_end_images_per_second")
            lines.append(f"| {preset_name} | one module at a time, all modules in turn | {rate:.2f} | "
                         f"| {_cell(_ratio(rate, e2e), '.2f')} | | | 1.00 "
                         f"| {_cell(_ratio(summary['reference_bytes'], summary.get('end_to_end_bytes')), '.2f')} |")
    return "\n".join(lines)


def machine_info(args: argparse.Namespace) -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") and torch.cuda.is_available() else None
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
            "python": platform.python_version(), "threads": torch.get_num_threads(), "cpu": cpu,
            "logical_cpus": len(os.sched_getaffinity(0)), "gpu": gpu, "device": args.device,
            "precision": args.precision, "batch_size": args.batch_size,
            "allocator": ALLOCATORS[args.allocator],
            "command": " ".join(sys.argv)}


def driver(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    results = {}
    for preset_name in args.presets:
        records = benchmark_preset(preset_name, args)
        results[preset_name] = {"records": records, "summary": summarise(records)}
    print(table(results))
    report = {"machine": machine_info(args), "wall_seconds": time.perf_counter() - started, "results": results}
    print(f"\nwall time {report['wall_seconds']:.0f} s", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["paper-stl10", "fashion-mnist"], choices=list(PRESETS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (default: per preset)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: per preset)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed groups the steps are split into; images/s is their median (default: per preset)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--allocator", choices=list(ALLOCATORS), default="tuned",
                        help="CPU malloc settings: " + "; ".join(f"{k}: {v}" for k, v in ALLOCATORS.items()))
    parser.add_argument("--json", type=Path, default=None, help="write all raw numbers and machine info here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.worker:
        worker(arguments)
    else:
        driver(arguments)
