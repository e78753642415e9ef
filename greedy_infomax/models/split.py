"""Cutting any network into gradient-isolated modules: the one path by which every model is built, ours or yours.

    blocks = split(network, after=["relu1", "relu2"])          # an nn.Sequential cut after two named children
    modules = isolate(blocks, InfoNCE2d, sample=images[:1])     # each block + readout + objective, sized by a pass

`isolate` runs one sample through the blocks to learn what each module outputs, so an objective is given as a
factory of its input channels (a class such as InfoNCE2d, or a functools.partial of one), never with sizes
typed in; the paper's models (vision.py, audio.py) are assembled with these two functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from greedy_infomax.isolation import IsolatedModule

Objective = nn.Module | Callable[..., nn.Module]
"""An objective instance (one module only), or a factory called with the channels C of the module's readout
output (its dim 1), plus `context_channels=` for the module that ends in an autoregressor."""


def split(network: nn.Sequential, after: Sequence[str]) -> list[nn.Sequential]:
    """The network's children cut into len(after) + 1 consecutive blocks, block i ending after child `after[i]`.

    Names are the network's child names, in order (an nn.Sequential built from a list names them "0", "1", ...).
    Cutting after the last child leaves the last block empty, the identity: what a module holding only an
    autoregressor needs (GIM's audio GRU module). Blocks are renumbered from "0", as `nn.Sequential(*layers)` is.
    """
    names = [name for name, _ in network.named_children()]
    for name in after:
        if name not in names:
            raise ValueError(f"no child named {name!r} to cut after; the network's children are: {', '.join(names)}")
    ends = [names.index(name) + 1 for name in after]
    if any(end <= previous for previous, end in zip(ends, ends[1:])):
        raise ValueError(f"cut points must be distinct and in the network's order, got {list(after)}")
    children = list(network.children())
    starts = [0] + ends
    return [nn.Sequential(*children[start:end]) for start, end in zip(starts, ends + [len(children)])]


def isolate(
    blocks: Sequence[nn.Module],
    objectives: Objective | Sequence[Objective],
    sample: torch.Tensor,
    readouts: Sequence[nn.Module] | None = None,
    autoregressor: nn.Module | None = None,
    overlap: int = 0,
) -> nn.ModuleList:
    """One IsolatedModule per block, with its readout (default: identity) and its objective sized from `sample`.

    Args:
        blocks: consecutive pieces of the encoder; block i receives the (detached) output of module i - 1.
        objectives: one `Objective` for every module, or a list with one per module.
        sample: an input batch (one example is enough); it runs once without autograd, blocks in eval mode.
        readouts: one per block: what the objective scores is readout(block output), e.g. a grid of patch vectors.
        autoregressor: ends the last module (CPC's context network): its output is that module's output and the
            context c from which the objective predicts the block's output.
        overlap: LoCo's overlapping modules: module i's objective scores its block's output passed on through the
            first `overlap` children (stages) of block i + 1, which its backward trains too; block i + 1 still
            receives block i's output, detached, and its own loss trains all of it. A stage's gradients from the
            two losses are summed, then module i + 1's optimiser takes one step. An empty block (the module that
            holds only an autoregressor) lends nothing.
    """
    readouts = [nn.Identity() for _ in blocks] if readouts is None else list(readouts)
    if len(readouts) != len(blocks):
        raise ValueError(f"{len(readouts)} readouts for {len(blocks)} blocks: give one per block")
    lookaheads = _lookaheads(blocks, overlap)
    modules, x = [], sample
    for index, (block, readout, objective) in enumerate(zip(blocks, readouts, _one_each(objectives, len(blocks)))):
        context = autoregressor if index == len(blocks) - 1 else None
        x, channels, context_channels = _sizes(block, readout, context, x, index, lookaheads[index])
        objective = _build(objective, channels, context_channels)
        modules.append(IsolatedModule(block, readout, objective, context, lookaheads[index]))
    for borrower, lender in zip(modules, modules[1:]):
        lender.lent = borrower.lookahead
    return nn.ModuleList(modules).train()


def _lookaheads(blocks: Sequence[nn.Module], overlap: int) -> list[tuple[nn.Module, ...]]:
    """The stages each module borrows from the next block: its first `overlap` children (none for the last)."""
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    borrowed = []
    for index, lender in enumerate(blocks[1:], start=2):
        stages = list(lender.children())
        if overlap and stages and (not isinstance(lender, nn.Sequential) or len(stages) < overlap):
            raise ValueError(
                f"overlap {overlap}: block {index} must be an nn.Sequential of at least {overlap} stages to lend "
                f"the module before it, got {type(lender).__name__} with {len(stages)} children"
            )
        borrowed.append(tuple(stages[:overlap]))
    return [*borrowed, ()]


def _one_each(objectives: Objective | Sequence[Objective], count: int) -> list[Objective]:
    """One objective per module; a single instance cannot serve several, its parameters would couple them."""
    if isinstance(objectives, (list, tuple)):
        if len(objectives) != count:
            raise ValueError(f"{len(objectives)} objectives for {count} blocks: give one, or one per block")
        return list(objectives)
    if isinstance(objectives, nn.Module) and count > 1:
        raise ValueError(
            f"one objective instance cannot serve {count} modules (they would share its parameters): "
            "pass a factory such as its class or functools.partial(InfoNCE2d, prediction_steps=3)"
        )
    return [objectives] * count


def _sizes(
    block: nn.Module,
    readout: nn.Module,
    autoregressor: nn.Module | None,
    x: torch.Tensor,
    index: int,
    lookahead: tuple[nn.Module, ...] = (),
) -> tuple[torch.Tensor, int, int | None]:
    """The module's output on x, the channels of what its objective scores, and of its context (if any).

    Eval mode, so that sizing neither updates nor trips over batch statistics (BatchNorm on one example).
    """
    for part in (block, readout, autoregressor, *lookahead):
        if part is not None:
            part.eval()
    try:
        with torch.no_grad():
            h = block(x)
            c = None if autoregressor is None else autoregressor(h)
            scored = h
            for stage in lookahead:
                scored = stage(scored)
            z = readout(scored)
    except RuntimeError as error:
        raise ValueError(f"module {index + 1} fails on its input of shape {tuple(x.shape)}: {error}") from error
    return (h if c is None else c), z.shape[1], None if c is None else c.shape[1]


def _build(objective: Objective, channels: int, context_channels: int | None) -> nn.Module:
    if isinstance(objective, nn.Module):
        return objective
    return objective(channels) if context_channels is None else objective(channels, context_channels=context_channels)
