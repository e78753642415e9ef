"""What one switch costs: peak memory and seconds per training step of a preset's modules with `--switch
SECTION.NAME=VALUE` against the preset as it is, on its geometry with random images. E.g. LoCo's overlapping
modules against GIM (`model.overlap=1`, the default), or gradient caching (`train.backward_chunks=4`) for a
two-view objective (`--objective vicreg`; its batch holds two views of each image).

Each measurement is a fresh subprocess (so its peak resident memory is its own): it builds the preset's modules,
takes `--warmup` steps, then times `--steps` steps of every module (GIM simultaneous) and reports the median
step and the peak RSS. "training memory" is the peak minus the resident memory once the modules were built and
the batch made (the interpreter, torch and the weights are the same for both). Without and with the switch
alternate `--repeats` times, so a burst of another job on the shared cores hits both alike.

    python benchmarks/switch_cost.py --switch model.overlap=1 --json benchmarks/results/overlap_memory.json
    python benchmarks/switch_cost.py --objective vicreg --batch-size 32 --switch train.backward_chunks=4
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from greedy_infomax.bench import machine
from greedy_infomax.engines.local import train_step
from greedy_infomax.tasks import PRESETS, prepare_modules, task_of


def measure(preset: str, objective: str | None, switch: str | None, batch_size: int, warmup: int, steps: int) -> dict:
    """One measurement, in this process: median seconds per step and memory, in MiB."""
    config = PRESETS[preset]
    config = replace(
        config,
        data=replace(config.data, batch_size=batch_size),
        objective=replace(config.objective, name=objective or config.objective.name),
        train=replace(config.train, device="cpu", precision="fp32"),
    )
    if switch is not None:
        name, value = switch.split("=", 1)
        section, option = name.split(".")
        settings = getattr(config, section)
        setting = replace(settings, **{option: json.loads(value)})  # 4, true, 0.5
        config = replace(config, **{section: setting})
    modules = prepare_modules(config, 1, torch.device("cpu"))
    images = task_of(config).example_batch(config, batch_size, torch.device("cpu"))
    before = _resident_mib()
    seconds = []
    for step in range(warmup + steps):
        started = time.perf_counter()
        train_step(modules, images, range(len(modules)), (0, step))
        seconds.append(time.perf_counter() - started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "switch": switch,
        "seconds_per_step": statistics.median(seconds[warmup:]),
        "peak_rss_mib": peak,
        "training_mib": peak - before,
    }


def _resident_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="fashion-mnist")
    parser.add_argument("--objective", default=None, help="objective.name (default: the preset's)")
    parser.add_argument("--switch", default="model.overlap=1", help="SECTION.NAME=VALUE set against the preset")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="alternations of without and with the switch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a subprocess's measurement: "" or the switch
    args = parser.parse_args()
    if args.one is not None:
        torch.set_num_threads(args.threads)
        print(
            json.dumps(measure(args.preset, args.objective, args.one or None, args.batch_size, args.warmup, args.steps))
        )
        return
    runs = []
    for repeat in range(args.repeats):
        for switch in ("", args.switch):
            command = [sys.executable, __file__, "--one", switch, "--preset", args.preset]
            command += ["--objective", args.objective] if args.objective else []
            command += ["--batch-size", str(args.batch_size), "--warmup", str(args.warmup)]
            command += ["--steps", str(args.steps), "--threads", str(args.threads)]
            result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            runs.append({"repeat": repeat, **result})
            print(json.dumps(runs[-1]), flush=True)
    summary = {}
    for switch in (None, args.switch):
        mine = [run for run in runs if run["switch"] == switch]
        summary[switch or "none"] = {key: statistics.median(run[key] for run in mine) for key in KEYS}
    ratios = {key: summary[args.switch][key] / summary["none"][key] for key in KEYS}
    print(
        f"{args.switch} / without ({args.preset}, {args.objective or 'its objective'}, batch {args.batch_size}): "
        + json.dumps(ratios)
    )
    if args.json:
        result = {
            "benchmark": "switch_cost",
            "preset": args.preset,
            "objective": args.objective,
            "switch": args.switch,
            "batch_size": args.batch_size,
            "threads": args.threads,
            "machine": machine("cpu"),
            "date": time.strftime("%Y-%m-%d"),
            "runs": runs,
            "median": summary,
            "ratio_with_to_without": ratios,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")


KEYS = ("seconds_per_step", "peak_rss_mib", "training_mib")

if __name__ == "__main__":
    main()
