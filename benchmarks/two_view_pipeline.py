"""Does the two-view augmentation starve training? Seconds per batch of the pre-training loader that makes two
views of every image (data/views.py: resized crop, flip, jitter, grayscale) next to one GIM training step of a
two-view objective on such a batch, per preset.

The engine reads a batch, then trains on it, in one thread of control: nothing prefetches, so the views' time adds
to every step's. Reported per preset, each the median of groups of timed batches (or steps):
  one view     the loader of today's GIM runs (random crop, flip), images/s;
  two views    the two-view loader, images/s (each image yields 2 rows);
  step         one training step of every module (GIM simultaneous) with `--objective` on one two-view batch,
               images/s;
  share        two views / (two views + step): the part of a training step's time spent making its views.
Datasets not on disk (paper-stl10 without $GIM_DATA/stl10) are stood in for by random uint8 images of the same
size and channels in memory: the transform's cost does not depend on the pixels, only reading from disk is left out.

    python benchmarks/two_view_pipeline.py --json benchmarks/results/two-view-pipeline-cpu.json
    python benchmarks/two_view_pipeline.py --device cuda --presets paper-stl10
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
from dataclasses import replace

import numpy as np
import torch

from greedy_infomax.bench import Schedule, machine, timed_groups
from greedy_infomax.data.loader import BatchLoader
from greedy_infomax.data.spec import ImageArray
from greedy_infomax.data.stl10 import STL10_SPEC
from greedy_infomax.engines.local import train_step
from greedy_infomax.errors import GimError
from greedy_infomax.placement import trained_indices
from greedy_infomax.tasks import PRESETS
from greedy_infomax.tasks.vision import TASK, VisionRunConfig, input_channels, load_split, train_transform

CPU_SCHEDULES = {"paper-stl10": Schedule(1, 3, 3), "fashion-mnist": Schedule(3, 24, 4), "smoke": Schedule(3, 24, 4)}
GPU_SCHEDULE = Schedule(5, 50, 5)
DATA_SCHEDULE = Schedule(10, 400, 8)
"""Batches take milliseconds: many, so that a burst of another job on the shared cores moves the median little."""
STAND_INS = {"stl10": STL10_SPEC}


def pretrain_images(config: VisionRunConfig, images: int) -> tuple[ImageArray, str]:
    """The preset's pre-training split, or random images of its size where the dataset is not on disk."""
    try:
        return load_split(config.data, "pretrain"), "read from disk"
    except GimError:
        spec = STAND_INS[config.data.dataset]
        pixels = np.random.default_rng(0).integers(
            0, 256, (images, spec.channels, spec.height, spec.width), dtype=np.uint8
        )
        return ImageArray(pixels, None, spec), f"random {spec.channels}x{spec.height}x{spec.width} stand-ins"


def seconds_per_batch(loader: BatchLoader, schedule: Schedule, device: torch.device) -> float:
    batches = (batch for epoch in itertools.count() for batch in loader.epoch(epoch))
    return statistics.median(timed_groups(lambda: next(batches), schedule, device))


def measure(preset: str, objective: str, device: torch.device, schedule: Schedule) -> dict:
    base = PRESETS[preset]
    config = replace(
        base, objective=replace(base.objective, name=objective), train=replace(base.train, device=str(device))
    )
    B = config.data.batch_size
    array, source = pretrain_images(config, images=B * 64)
    one = BatchLoader(array, B, train_transform(config.data, array.spec, 1), device, seed=0)
    two = BatchLoader(array, B, train_transform(config.data, array.spec, 2), device, seed=0)
    data_one, data_two = (seconds_per_batch(loader, DATA_SCHEDULE, device) for loader in (one, two))
    x, _ = next(two.epoch(0))
    modules = TASK.prepare_modules(config, input_channels(config.data, array.spec), device)
    trained = trained_indices(config.train, config.model.num_modules)
    step = statistics.median(timed_groups(lambda: train_step(modules, x, trained, (0, 0)), schedule, device))
    return {
        "preset": preset,
        "objective": objective,
        "images": source,
        "batch_images": B,
        "rows": x.shape[0],
        "one_view_images_per_s": B / data_one,
        "two_views_images_per_s": B / data_two,
        "step_images_per_s": B / step,
        "share_of_step": data_two / (data_two + step),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--presets",
        nargs="+",
        default=["fashion-mnist", "paper-stl10"],
        choices=[name for name, preset in PRESETS.items() if preset.task == "vision"],
    )
    parser.add_argument("--objective", default="simclr", choices=["simclr", "barlow_twins", "vicreg"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    load_before = os.getloadavg()
    rows = []
    for preset in args.presets:
        schedule = GPU_SCHEDULE if device.type == "cuda" else CPU_SCHEDULES.get(preset, Schedule(3, 24, 4))
        row = measure(preset, args.objective, device, schedule)
        rows.append(row)
        print(
            f"{preset} ({row['images']}, {row['batch_images']} images = {row['rows']} rows): one view "
            f"{row['one_view_images_per_s']:.0f} images/s, two views {row['two_views_images_per_s']:.0f} images/s, "
            f"{args.objective} step {row['step_images_per_s']:.1f} images/s; views take "
            f"{100 * row['share_of_step']:.2f}% of a step",
            flush=True,
        )
    if args.json:
        description = machine(args.device) | {"command": " ".join(["python", *sys.argv])}
        with open(args.json, "w") as file:
            json.dump(
                {
                    "machine": description,
                    "load_average_before": load_before,
                    "load_average_after": os.getloadavg(),
                    "rows": rows,
                },
                file,
                indent=1,
            )


if __name__ == "__main__":
    main()
