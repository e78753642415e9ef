"""Per-operator CPU profile of one training step of any entry point: ours (`greedy_infomax.cli pretrain ...`) or
the original Greedy InfoMax's (`GreedyInfoMax.vision.main_vision ...`, with its own Python environment).

    python benchmarks/profile_step.py OUT OPTIMIZER_STEPS_PER_STEP [--original ROOT] MODULE [its options...]

A step is OPTIMIZER_STEPS_PER_STEP returns of `torch.optim.Adam.step`: 1 for the original (one Adam over all
modules), the number of trained modules for ours (one Adam per module). The first step is left out (warm-up), the
second is profiled (data loading included, as the training loop runs it), then the process exits. OUT gets the
step's wall time and torch.profiler's table of operators by self CPU time, grouped by input shape. With
`--original ROOT`, the stand-ins of side_by_side_original.py are installed first (ROOT holds GreedyInfoMax).
"""

from __future__ import annotations

import os
import runpy
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile


def profile_second_step(out: Path, per_step: int) -> None:
    """Wrap Adam.step: start profiling after `per_step` calls, write the table and exit after 2 * `per_step`."""
    step = torch.optim.Adam.step
    calls = 0
    state: dict = {}

    def profiled_step(self, *args, **kwargs):
        nonlocal calls
        result = step(self, *args, **kwargs)
        calls += 1
        if calls == per_step:
            state["profiler"] = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
            state["profiler"].__enter__()
            state["start"] = time.monotonic()
        elif calls == 2 * per_step:
            seconds = time.monotonic() - state["start"]
            state["profiler"].__exit__(None, None, None)
            table = (
                state["profiler"]
                .key_averages(group_by_input_shape=True)
                .table(
                    sort_by="self_cpu_time_total", row_limit=60, max_name_column_width=40, max_shapes_column_width=100
                )
            )
            out.write_text(f"profiled step: {seconds:.2f} s wall\n{table}\n")
            os._exit(0)
        return result

    torch.optim.Adam.step = profiled_step


def main() -> None:
    out, per_step, *rest = sys.argv[1:]
    if rest[:1] == ["--original"]:
        root, *rest = rest[1:]
        sys.path.insert(0, root)
        sys.path.insert(0, str(Path(__file__).parent))
        from side_by_side_original import stand_ins

        stand_ins()
    module, *options = rest
    profile_second_step(Path(out), int(per_step))
    sys.argv = [module, *options]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
