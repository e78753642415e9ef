"""Can photos streamed from disk keep the paper's training fed, and does memory stay flat as the folder grows?

1. photos     N JPEGs with sides drawn uniformly from 64..512 pixels (smooth colour fields with noise, quality
              90), in 10 class folders of ROOT/train; a folder of N/5 of them (hard links) beside it
2. decode     the photo-folder pre-training loader of the paper geometry (`paper-stl10` with --data.dataset
              photo-folder: decode, shorter side to 96, centre square in the default worker processes; random
              64-pixel crop, flip and grayscale in the training process) read for a whole epoch of each folder,
              each in a fresh process: samples/s after the first batch, the start (listing and the 512-photo
              spec), the peak RSS of the main process (VmHWM; and its RSS every 50 batches) and of the largest
              worker (ru_maxrss of the children; a forked worker's RSS counts the pages it shares with the main
              process)
3. training   `paper-stl10` GIM (3 modules, simultaneous, fp32) stepping on random input of its shape, 32 images per
              step as recorded (one of the original's GPUs): samples/s, the median of timed steps after one untimed step
4. small      2,000 photos of one size (96 pixels): image-folder (read whole into memory, then batches) against
              photo-folder (streamed), so the in-memory path is kept only where it is faster

    python benchmarks/decode_rate.py --photos 50000 --json benchmarks/results/decode_rate-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from multiprocessing import Pool
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # the package is imported in the measuring processes only, after their baseline
    from greedy_infomax.tasks.vision import VisionRunConfig

CLASSES = 10


def make_photo(task: tuple[Path, int, int | None]) -> int:
    """Photo `index` at `path`: a 6x6 grid of random colours, bicubically enlarged, with pixel noise; sides drawn
    from 64..512 unless `side` fixes both. Returns the file's bytes."""
    path, index, side = task
    rng = np.random.default_rng(index)
    width, height = (side, side) if side else rng.integers(64, 513, size=2)
    field = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize(
        (int(width), int(height)), Image.Resampling.BICUBIC
    )
    pixels = np.asarray(field, dtype=np.int16) + rng.normal(0, 12, (int(height), int(width), 3)).astype(np.int16)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path.stat().st_size


def make_folder(root: Path, count: int, side: int | None = None) -> dict:
    """ROOT/train/class-K/NNNNNN.jpg, photo i in class i mod 10, written by one process per core."""
    for k in range(CLASSES):
        (root / "train" / f"class-{k}").mkdir(parents=True, exist_ok=True)
    tasks = [(root / "train" / f"class-{i % CLASSES}" / f"{i:06d}.jpg", i, side) for i in range(count)]
    started = time.perf_counter()
    with Pool(len(os.sched_getaffinity(0))) as pool:
        sizes = pool.map(make_photo, tasks, chunksize=64)
    return {"photos": count, "bytes": int(sum(sizes)), "seconds": time.perf_counter() - started}


def linked_subset(source: Path, target: Path, count: int) -> None:
    """The first `count` photos of `source` as hard links in `target` (same classes, no copy)."""
    for i in range(count):
        path = Path("train") / f"class-{i % CLASSES}" / f"{i:06d}.jpg"
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        os.link(source / path, target / path)


def read_epoch(root: str, dataset: str) -> dict:
    """In this (fresh) process: one epoch of the paper geometry's pre-training loader on `root`."""
    import torch

    from greedy_infomax.tasks import PRESETS, task_of

    baseline = peak_rss_mib()
    config = paper_geometry(PRESETS["paper-stl10"])
    config = replace(config, data=replace(config.data, dataset=dataset, root=root))
    started = time.perf_counter()
    loader, _ = task_of(config).pretrain_loader(config, torch.device("cpu"))
    ready = time.perf_counter()
    batches = loader.epoch(0)
    next(batches)
    first = time.perf_counter()
    trace = []  # (batch, RSS MiB) every 50 batches
    for count, _ in enumerate(batches, start=1):
        if count % 50 == 0:
            trace.append((count, rss_mib()))
    done = time.perf_counter()
    return {
        "dataset": dataset,
        "workers": getattr(loader, "workers", 0),
        "batches": count + 1,
        "start_seconds": ready - started,
        "first_batch_seconds": first - ready,
        "samples_per_second": count * loader.batch_size / (done - first),
        "peak_rss_main_mib": peak_rss_mib(),
        "rss_after_imports_mib": baseline,
        "rss_main_trace_mib": trace,
        "peak_rss_largest_worker_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def peak_rss_mib() -> float:
    """This process's own peak RSS (VmHWM; ru_maxrss would carry the peak of the process that started it)."""
    return _status_mib("VmHWM")


def rss_mib() -> float:
    return _status_mib("VmRSS")


def _status_mib(field: str) -> float:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1]) / 1024


def in_fresh_process(root: Path, dataset: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--read", str(root), "--dataset", dataset],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def paper_geometry(config: VisionRunConfig) -> VisionRunConfig:
    """paper-stl10 at 32 images per step in one negative group (one of the original's GPUs), the batch of the
    recorded results; the preset's own step is 8 such groups."""
    return replace(
        config, data=replace(config.data, batch_size=32), objective=replace(config.objective, negative_groups=1)
    )


def training_rate(steps: int) -> dict:
    """paper-stl10 GIM, every module stepping on random (32, 1, 64, 64) input, fp32, on the CPU."""
    import torch

    from greedy_infomax.engines.local import train_step
    from greedy_infomax.placement import trained_indices
    from greedy_infomax.tasks import PRESETS, task_of

    config = paper_geometry(PRESETS["paper-stl10"])
    config = replace(config, train=replace(config.train, device="cpu"))
    task = task_of(config)
    modules = task.prepare_modules(config, 1, torch.device("cpu"))
    x = task.example_batch(config, config.data.batch_size, torch.device("cpu"))
    seconds = []
    for step in range(steps + 1):
        started = time.perf_counter()
        train_step(modules, x, trained_indices(config.train, len(modules)), (config.train.seed, step))
        seconds.append(time.perf_counter() - started)
    return {
        "batch_size": config.data.batch_size,
        "threads": torch.get_num_threads(),
        "step_seconds": seconds[1:],
        "samples_per_second": config.data.batch_size / statistics.median(seconds[1:]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=50_000)
    parser.add_argument("--train-steps", type=int, default=3, help="timed training steps; 0: no training measured")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--read", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", default="photo-folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.read:
        print(json.dumps(read_epoch(args.read, args.dataset)))
        return
    from greedy_infomax.bench import machine

    work = Path(tempfile.mkdtemp(prefix="decode-rate-"))
    try:
        report = {"machine": {**machine("cpu"), "command": " ".join(["python", *sys.argv])}}
        report["generated"] = make_folder(work / "large", args.photos)
        linked_subset(work / "large", work / "small", args.photos // 5)
        report["folders"] = {}
        for name, count in (("small", args.photos // 5), ("large", args.photos)):
            report["folders"][str(count)] = record = in_fresh_process(work / name, "photo-folder")
            print(f"{count} photos: {record}", file=sys.stderr)
        make_folder(work / "one-size", 2000, side=96)
        report["one_size_2000"] = {
            dataset: in_fresh_process(work / "one-size", dataset) for dataset in ("image-folder", "photo-folder")
        }
        if args.train_steps:
            report["training"] = training_rate(args.train_steps)  # last: it grows this process
            print(f"training: {report['training']}", file=sys.stderr)
        if args.train_steps:
            decode = report["folders"][str(args.photos)]["samples_per_second"]
            report["decode_over_training"] = decode / report["training"]["samples_per_second"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
