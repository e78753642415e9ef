"""What each module's InfoNCE objective costs per training step, eager and compiled as `train.compile` does it.

Eager, the 2-D InfoNCE scoring gathers N negatives for each of its Q queries into a (Q, N, C) tensor (0.9 GB for
module 3 at the paper's batch of 256 in bf16), scores it with a batched matrix-vector product and scatters the
gradient back: memory-bound work that took about 13% of a compiled batch-256 step in the H200 profile of
2026-11-28, when `train.compile` compiled the blocks only. Compiled, the gather and the product can become one
kernel that never writes that tensor. This measures, for every module of a vision preset and on the real readout
output of one random batch, forward + backward of the objective (negative sampling included) eager and compiled,
and checks that both give the same loss and gradient (compiled code draws random numbers as eager code does).

    python benchmarks/infonce_scoring.py                                   # paper-stl10, CPU, batch 16, fp32
    python benchmarks/infonce_scoring.py --device cuda --batch_size 256 --precision bf16 --deterministic false \\
        --json OUT/infonce-scoring.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
from dataclasses import replace

import torch

from greedy_infomax.bench import Schedule, random_inputs, timed_groups
from greedy_infomax.isolation import IsolatedModule
from greedy_infomax.placement import compile_in_place
from greedy_infomax.tasks import PRESETS, prepare_modules
from greedy_infomax.tasks.vision import VisionRunConfig as RunConfig


def readout_outputs(config: RunConfig, device: torch.device) -> tuple[torch.nn.ModuleList, list[torch.Tensor]]:
    """The modules of the preset and what each one's objective scores, for one random batch."""
    x, outputs = random_inputs(config, device), []
    modules = prepare_modules(config, in_channels=x.shape[1], device=device, with_optimizers=False)
    with torch.no_grad():
        for module in modules:
            with module.precision(device):
                x = module.block(x)
                outputs.append(module.readout(x))
    return modules, outputs


def loss_and_gradient(
    objective: torch.nn.Module, module: IsolatedModule, z: torch.Tensor, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward + backward on a leaf copy of z with the negatives of `seed`: (loss, z's gradient)."""
    z = z.detach().clone().requires_grad_()
    torch.manual_seed(seed)
    with module.precision(z.device):
        loss = objective(z)
    loss.backward()
    return loss.detach().float(), z.grad.float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    vision = [name for name, preset in PRESETS.items() if preset.task == "vision"]
    parser.add_argument("--preset", default="paper-stl10", choices=vision)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--deterministic", default="true", choices=("true", "false"))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    base = PRESETS[args.preset]
    config = replace(
        base,
        data=replace(base.data, batch_size=args.batch_size),
        train=replace(
            base.train, device=args.device, precision=args.precision, deterministic=args.deterministic == "true"
        ),
    )
    device = torch.device(args.device)
    schedule = Schedule(3, 30, 3) if device.type == "cuda" else Schedule(1, 6, 3)
    modules, outputs = readout_outputs(config, device)
    rows = []
    for index, (module, z) in enumerate(zip(modules, outputs)):
        compiled = copy.deepcopy(module.objective)
        compile_in_place(compiled)
        eager_loss, eager_grad = loss_and_gradient(module.objective, module, z, seed=index)
        compiled_loss, compiled_grad = loss_and_gradient(compiled, module, z, seed=index)
        row = {
            "module": index + 1,
            "shape": list(z.shape),
            "loss_difference": abs(float(compiled_loss - eager_loss)),
            "gradient_difference": float((compiled_grad - eager_grad).abs().max() / eager_grad.abs().max()),
        }
        for name, objective in (("eager", module.objective), ("compiled", compiled)):
            seconds = timed_groups(lambda: loss_and_gradient(objective, module, z, seed=index), schedule, device)
            row[f"{name}_ms"] = 1e3 * statistics.median(seconds)
        rows.append(row)
        print(
            f"module {row['module']} {tuple(row['shape'])}: eager {row['eager_ms']:.1f} ms, compiled "
            f"{row['compiled_ms']:.1f} ms ({row['eager_ms'] / row['compiled_ms']:.2f}x); loss differs by "
            f"{row['loss_difference']:.2e}, gradient by {row['gradient_difference']:.2e} of its largest entry",
            flush=True,
        )
    total = {name: sum(row[f"{name}_ms"] for row in rows) for name in ("eager", "compiled")}
    print(f"all modules: eager {total['eager']:.1f} ms, compiled {total['compiled']:.1f} ms per step")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(
                {"arguments": vars(args), "torch": torch.__version__, "modules": rows, "total_ms": total},
                file,
                indent=1,
            )


if __name__ == "__main__":
    main()
