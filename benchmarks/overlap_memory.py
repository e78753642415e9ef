"""What LoCo's overlapping modules cost against GIM: peak memory and seconds per training step, `model.overlap`
0 (GIM) against 1, on a preset's geometry with random images.

Each measurement is a fresh subprocess (so its peak resident memory is its own): it builds the preset's modules,
takes `--warmup` steps, then times `--steps` steps of every module (GIM simultaneous) and reports the median
step and the peak RSS. "training memory" is the peak minus the resident memory once the modules were built and
the batch made (the interpreter, torch and the weights are the same for both). Overlap 0 and 1 alternate
`--repeats` times, so a burst of another job on the shared cores hits both alike.

    python benchmarks/overlap_memory.py --json benchmarks/results/overlap_memory.json
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
from greedy_infomax.tasks import PRESETS, prepare_modules


def measure(preset: str, overlap: int, batch_size: int, warmup: int, steps: int, threads: int) -> dict:
    """One measurement, in this process: median seconds per step and memory, in MiB."""
    torch.set_num_threads(threads)
    config = PRESETS[preset]
    config = replace(
        config,
        data=replace(config.data, batch_size=batch_size),
        model=replace(config.model, overlap=overlap),
        train=replace(config.train, device="cpu", precision="fp32"),
    )
    modules = prepare_modules(config, 1, torch.device("cpu"))
    images = torch.randn(batch_size, 1, config.data.crop, config.data.crop)
    before = _resident_mib()
    seconds = []
    for step in range(warmup + steps):
        started = time.perf_counter()
        train_step(modules, images, range(len(modules)), (0, step))
        seconds.append(time.perf_counter() - started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "overlap": overlap,
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
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="alternations of overlap 0 and 1")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # a subprocess's measurement
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.preset, args.one, args.batch_size, args.warmup, args.steps, args.threads)))
        return
    runs = []
    for repeat in range(args.repeats):
        for overlap in (0, 1):
            command = [sys.executable, __file__, "--one", str(overlap)]
            command += ["--preset", args.preset, "--batch-size", str(args.batch_size), "--warmup", str(args.warmup)]
            command += ["--steps", str(args.steps), "--threads", str(args.threads)]
            result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            runs.append({"repeat": repeat, **result})
            print(json.dumps(runs[-1]), flush=True)
    summary = {}
    for overlap in (0, 1):
        mine = [run for run in runs if run["overlap"] == overlap]
        summary[overlap] = {key: statistics.median(run[key] for run in mine) for key in mine[0] if key != "repeat"}
    ratios = {key: summary[1][key] / summary[0][key] for key in ("seconds_per_step", "peak_rss_mib", "training_mib")}
    print(f"overlap 1 / overlap 0 ({args.preset}, batch {args.batch_size}): " + json.dumps(ratios))
    if args.json:
        result = {
            "benchmark": "overlap_memory",
            "preset": args.preset,
            "batch_size": args.batch_size,
            "threads": args.threads,
            "machine": machine("cpu"),
            "date": time.strftime("%Y-%m-%d"),
            "runs": runs,
            "median": summary,
            "ratio_overlap1_to_gim": ratios,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
