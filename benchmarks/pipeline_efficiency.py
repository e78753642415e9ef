"""Pipeline efficiency of the module-parallel engine: its throughput over the throughput its slowest stage allows.

Each of --repeats rounds measures, one right after the other, so that the load of a shared machine drifts little
in between:
1. stages alone   each stage (the modules one rank owns) trains in this process, alone, with the threads a rank
                  gets, on the activations it receives in a run: stage 0 reads and augments its batches too, the
                  others step on the frozen output of the modules before them. The slowest stage's median
                  seconds per step bounds any pipeline of these stages: batch size / those seconds.
2. pipeline       `torchrun --nproc-per-node S -m greedy_infomax.cli pretrain` trains the same preset for
                  --steps steps (sync schedule). Its steady throughput comes from metrics.jsonl: rank 0 logs
                  cumulative images/s since its start, which gives the elapsed time at every logged step, and the
                  rate between the first logged step past --skip and the last leaves start-up and pipeline fill out.
3. efficiency     pipeline throughput / the slowest stage's. 1.0: no stage waits for another beyond what the
                  slowest imposes, and transfers are hidden behind computation.
The pipeline also logs each stage's `busy` share (time computing rather than waiting on other ranks): the slowest
stage's share says how well the pipeline keeps it fed under the machine's load at that moment, while the
efficiency also counts how much slower a stage runs next to the others than alone (shared cores, memory).
The median over the rounds is the result. One async run follows, reported as rank 0's data rate and how stale,
reused and dropped the later stages' inputs were (its rate may exceed the bound: a slow stage drops batches).

The load average before and after goes into the JSON; compare only runs made together.

    python benchmarks/pipeline_efficiency.py --json benchmarks/results/pipeline_efficiency-cpu.json
    python benchmarks/pipeline_efficiency.py --device cuda --stages 2     # needs one GPU per stage
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import torch

from greedy_infomax.bench import Schedule, timed_groups
from greedy_infomax.config import AnyRunConfig
from greedy_infomax.engines.local import train_step
from greedy_infomax.engines.module_parallel import Settings, Topology
from greedy_infomax.isolation import run_frozen
from greedy_infomax.placement import resolve_device, trained_indices
from greedy_infomax.tasks import PRESETS, prepare_modules, task_of

REPOSITORY = Path(__file__).resolve().parents[1]


def stage_seconds(config: AnyRunConfig, stages: int, schedule: Schedule) -> list[list[float]]:
    """Seconds per step of every stage alone (groups of steps after a warm-up), as torchrun would split the modules."""
    device = resolve_device(config.train.device)
    loader, in_channels = task_of(config).pretrain_loader(config, device)
    modules = prepare_modules(config, in_channels, device)
    topology = Topology.of(Settings(config.train, config.distributed), config.model.num_modules, 0, stages)
    trained = trained_indices(config.train, config.model.num_modules)
    first = next(iter(loader.epoch(0)))[0]
    seconds = []
    for stage in range(stages):
        owned = topology.modules(stage)
        if stage == 0:
            batches = _endless(loader)
            step = lambda: train_step(modules, next(batches), trained, (0, 0), owned)  # noqa: E731
        else:
            x = run_frozen(list(modules[: owned.start]), first)
            step = lambda x=x, owned=owned: train_step(modules, x, trained, (0, 0), owned)  # noqa: E731
        seconds.append(timed_groups(step, schedule, device))
        print(
            f"stage {stage} (modules {owned.start + 1}-{owned.stop}) alone: "
            f"{statistics.median(seconds[-1]) * 1000:.1f} ms/step",
            file=sys.stderr,
        )
    return seconds


def _endless(loader):
    """Stage 0's batches, read and augmented as in training, epoch after epoch."""
    epoch = 0
    while True:
        for x, _ in loader.epoch(epoch):
            yield x
        epoch += 1


def pipeline(args: argparse.Namespace, schedule_name: str, workdir: Path) -> dict:
    """One torchrun launch into `workdir`; its steady rate and, for async, the later stages' input statistics."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    name = f"pipeline-{schedule_name}"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(args.stages),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(port),
        "-m",
        "greedy_infomax.cli",
        "pretrain",
        "--preset",
        args.preset,
        "--output",
        str(workdir),
        "--name",
        name,
        "--train.device",
        args.device,
        "--train.max_steps",
        str(args.steps),
        "--train.log_every",
        str(args.log_every),
        "--train.checkpoint_every",
        str(10 * args.steps),
        "--data.batch_size",
        str(args.batch_size),
        "--distributed.schedule",
        schedule_name,
    ]
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY), "OMP_NUM_THREADS": str(args.threads)}
    started = time.perf_counter()
    subprocess.run(command, env=environment, check=True, stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (workdir / name / "metrics.jsonl").read_text().splitlines()]
    elapsed = {row["step"]: row["step"] * args.batch_size / row["samples_per_second"] for row in rows}
    first = min(step for step in elapsed if step > args.skip)
    last = max(elapsed)
    rate = (last - first) * args.batch_size / (elapsed[last] - elapsed[first])
    steady = [row for row in rows if row["step"] > first]
    busy = {key: statistics.mean(row[key] for row in steady) for key in steady[0] if key.startswith("busy/")}
    result = {
        "command": " ".join(command[1:]),
        "wall_seconds": time.perf_counter() - started,
        "steady_images_per_second": rate,
        "steady_steps": [first, last],
        "busy": busy,
    }
    if schedule_name == "async":
        result["inputs"] = _async_summary(rows)
    print(f"{schedule_name} pipeline: {rate:.1f} images/s between steps {first} and {last}", file=sys.stderr)
    return result


def _async_summary(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per later stage: steps, fresh / reused / dropped inputs and staleness, over the whole run."""
    stages = sorted({key.split("/")[1] for row in rows for key in row if key.startswith("async/")})
    summary = {}
    for stage in stages:

        def total(field: str) -> float:
            return sum(row[f"async/{stage}/{field}"] for row in rows)

        steps = total("steps")
        summary[stage] = {
            "steps": steps,
            "reused": total("reused"),
            "dropped": total("dropped"),
            "staleness_mean": sum(row[f"async/{stage}/staleness_mean"] * row[f"async/{stage}/steps"] for row in rows)
            / max(steps, 1),
            "staleness_max": max(row[f"async/{stage}/staleness_max"] for row in rows),
            "uses_max": max(row[f"async/{stage}/uses_max"] for row in rows),
        }
    return summary


def machine(args: argparse.Namespace) -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") and torch.cuda.is_available() else None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "cpu": cpu,
        "logical_cpus": len(os.sched_getaffinity(0)),
        "gpu": gpu,
        "load_average_before": os.getloadavg(),
        "command": " ".join(sys.argv),
    }


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="fashion-mnist", choices=list(PRESETS))
    parser.add_argument("--stages", type=int, default=2, help="processes, one stage each")
    parser.add_argument("--threads", type=int, default=1, help="threads per process")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=240, help="steps of each pipeline run")
    parser.add_argument("--skip", type=int, default=40, help="steps left out of the pipeline's steady rate")
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--alone-steps", type=int, default=40, help="timed steps of each stage alone")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of (stages alone, sync pipeline)")
    parser.add_argument("--no-async", dest="async_run", action="store_false", help="skip the async pipeline")
    parser.add_argument("--json", type=Path)
    return parser.parse_args()


def measure(args: argparse.Namespace, config: AnyRunConfig) -> dict:
    """--repeats rounds of (stages alone, then the sync pipeline), each round's efficiency against its own bound,
    so that a drift in the machine's load between the two measurements stays small; then the async pipeline."""
    report = {
        "machine": machine(args),
        "preset": args.preset,
        "stages": args.stages,
        "threads_per_stage": args.threads,
        "batch_size": args.batch_size,
        "rounds": [],
    }
    schedule = Schedule(warmup=5, steps=args.alone_steps, repeats=5)
    torch.set_num_threads(args.threads)
    topology = Topology.of(Settings(config.train, config.distributed), config.model.num_modules, 0, args.stages)
    modules = [f"modules {owned.start + 1}-{owned.stop}" for owned in map(topology.modules, range(args.stages))]
    with tempfile.TemporaryDirectory() as workdir:
        for round_index in range(args.repeats):
            alone = [statistics.median(seconds) for seconds in stage_seconds(config, args.stages, schedule)]
            bound = args.batch_size / max(alone)
            sync = pipeline(args, "sync", Path(workdir) / str(round_index))
            report["rounds"].append(
                {
                    "stage_seconds_alone": dict(zip(modules, alone)),
                    "bound_images_per_second": bound,
                    "sync": sync,
                    "efficiency": sync["steady_images_per_second"] / bound,
                }
            )
            print(f"round {round_index}: efficiency {report['rounds'][-1]['efficiency']:.3f}", file=sys.stderr)
        if args.async_run:
            report["async"] = pipeline(args, "async", Path(workdir) / "async")
    report["efficiency_median"] = statistics.median(r["efficiency"] for r in report["rounds"])
    report["machine"]["load_average_after"] = os.getloadavg()
    return report


def main() -> None:
    args = arguments()
    config = PRESETS[args.preset]
    config = replace(
        config, data=replace(config.data, batch_size=args.batch_size), train=replace(config.train, device=args.device)
    )
    report = measure(args, config)
    print(
        json.dumps({"efficiency": [r["efficiency"] for r in report["rounds"]], "median": report["efficiency_median"]})
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
