"""Divergence caught before it ruins the checkpoint a resume would start from.

Adam moves every weight by about the learning rate at each step, whatever the gradient, so an absurd learning
rate (1e10) blows the weights up in one step, while the loss can stay finite for a while. A NaN check alone then
saved the blown-up weights as the good ones, and a resume with a sane learning rate started from them. So before
each checkpoint the size of each trained module's weights is compared with its size when training started, and a
run whose weights grew past GROWTH_LIMIT times stops without saving them: the newest checkpoint, checked the
same way when it was written, is the one to resume from. A run that has no checkpoint yet keeps its starting
weights in memory (on the CPU) for that purpose, until it writes its first.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from greedy_infomax.reporting.run_folder import RunFolder

GROWTH_LIMIT = 1000.0
"""How many times its starting root-mean-square a module's weights may grow before the run counts as diverged.
On the smoke preset, 20 steps at learning rates 1e-2 and 1e-1 grew them 1.2 and 4.5 times, one step at 1e10
7.5e10 times; a long healthy run at a sane rate stays far below the limit."""


class WeightWatch:
    """The size of each trained module's weights when training started; and, for a run without a checkpoint, a
    copy of the modules (weights and optimiser state) and of the progress then."""

    def __init__(self, run: RunFolder, modules: nn.ModuleList, progress: dict[str, Any]) -> None:
        self.start = weight_sizes(modules)
        self._initial = None
        if run.latest_checkpoint() is None:
            optimizers = [None if m.optimizer is None else copy.deepcopy(m.optimizer.state_dict()) for m in modules]
            self._initial = ([_on_cpu(module.state_dict()) for module in modules], optimizers, dict(progress))

    def ruined(self, modules: nn.ModuleList) -> tuple[int, float, float] | None:
        """(1-based module, size at the start, size now) of the first trained module whose weights are not finite
        or grew past GROWTH_LIMIT times; None when every module is fine. Waits for the device."""
        return first_ruined(self.start, modules)

    def good_checkpoint(self, run: RunFolder, modules: nn.ModuleList) -> Path:
        """The newest checkpoint, written before the weights were ruined (each one is checked first); in a run
        that has none, the starting state, put back into `modules` and saved now."""
        if (folder := run.latest_checkpoint()) is not None or self._initial is None:
            return folder
        states, optimizers, progress = self._initial
        for module, state, optimizer in zip(modules, states, optimizers, strict=True):
            module.load_state_dict(state)
            if optimizer is not None:
                module.optimizer.load_state_dict(optimizer)
        return run.save_checkpoint(modules, progress)

    def forget_start_once_checkpointed(self, run: RunFolder) -> None:
        """Free the copy of the starting state once the run has a checkpoint to fall back on."""
        if self._initial is not None and run.latest_checkpoint() is not None:
            self._initial = None


def first_ruined(
    start: list[float | None], modules: list[nn.Module], first_number: int = 1
) -> tuple[int, float, float] | None:
    """(module number, size at the start, size now) of the first module whose weights are not finite or grew past
    GROWTH_LIMIT times their `start` sizes (weight_sizes); modules are numbered from `first_number`."""
    for number, (before, now) in enumerate(zip(start, weight_sizes(modules), strict=True), start=first_number):
        if before is not None and not now <= GROWTH_LIMIT * before:  # `not <=`: a NaN size is ruined too
            return number, before, now
    return None


def weight_sizes(modules: list[nn.Module]) -> list[float | None]:
    """The root-mean-square of each trained module's parameters (None for a module without an optimiser, which
    does not learn), with one wait for the device."""
    norms, counts = [], []
    for module in modules:
        parameters = [p.detach() for p in module.parameters() if p.requires_grad] if module.optimizer else []
        counts.append(sum(p.numel() for p in parameters))
        norms.append(
            torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.float()) for p in parameters]))
            if parameters
            else None
        )
    present = [norm for norm in norms if norm is not None]
    values = iter(torch.stack(present).tolist() if present else [])
    return [None if norm is None else next(values) / count**0.5 for norm, count in zip(norms, counts, strict=True)]


def _on_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in state.items()}
