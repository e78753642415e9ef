"""The core of Greedy InfoMax: a gradient-isolated module and its training step.

A module is an encoder block, a readout that turns the block's output into what the objective scores, the
objective itself and the module's own optimiser; a module may end in an autoregressor (the audio GRU), whose
output c is both the module's output and the context from which the objective predicts the block's output z.
`step()` detaches its input, so no gradient ever reaches an earlier module, and runs its backward immediately,
so its graph is freed before the next module runs: peak memory is that of the largest single module, not of the
whole network. With overlapping modules (LoCo), a module's loss also reaches the first stages of the next
module's block, and no further. Whether a step's update is applied (not where the loss is NaN or infinite) is
decided on the device, so on a GPU the host never waits for a module.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn


class IsolatedModule(nn.Module):
    """Encoder block + readout + objective (+ autoregressor) + its own optimiser."""

    def __init__(
        self,
        block: nn.Module,
        readout: nn.Module,
        objective: nn.Module,
        autoregressor: nn.Module | None = None,
        lookahead: tuple[nn.Module, ...] = (),
    ) -> None:
        super().__init__()
        self.block = block
        self.readout = readout
        self.objective = objective
        self.autoregressor = autoregressor
        self.optimizer: torch.optim.Optimizer | None = None
        self.autocast_dtype: torch.dtype | None = None
        self.backward_chunks = 1  # >1: the block's backward in that many parts of the batch (train.backward_chunks)
        # Overlapping modules (LoCo): the first stages of the next module's block, run after this block before the
        # readout, so this loss trains them too. A tuple, not submodules: they stay the next module's (its
        # parameters, optimiser and checkpoint), this module only borrows them.
        self.lookahead = tuple(lookahead)
        self.lent: tuple[nn.Module, ...] = ()  # this block's first stages, when the previous module borrows them

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The module's output (the block's, or the autoregressor's if any), the input of the next module."""
        z = self.block(x)
        return z if self.autoregressor is None else self.autoregressor(z)

    def train(self, mode: bool = True) -> IsolatedModule:
        """Borrowed stages run in this module's mode while it computes its loss."""
        super().train(mode)
        for stage in self.lookahead:
            stage.train(mode)
        return self

    def configure_optimizer(self, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
        """Give this module its own Adam over all its parameters (block, readout, objective, autoregressor): the
        fused one, which can skip an update on a device-side flag (and on a CPU is faster than the per-tensor
        loops)."""
        self.optimizer = torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
        return self.optimizer

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Module output and objective on the detached input: the graph ends at this module's input."""
        with self.precision(x.device):
            return self._scored(self.block(x.detach()), labels)

    def step(
        self, x: torch.Tensor, labels: torch.Tensor | None = None, hold: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimisation step of this module alone; returns (detached output, detached loss, skipped).

        The update is skipped when the loss is not finite or `hold` (a bool tensor) is set: weights and Adam
        state stay as they were. `skipped` is that decision as a bool tensor on the device; reading it (or the
        loss) is the caller's sync point, not this method's."""
        if self.optimizer is None:
            raise RuntimeError("configure_optimizer() before step()")
        self._clear_gradients()
        if self.backward_chunks > 1 and any(parameter.requires_grad for parameter in self.block.parameters()):
            h, loss = self._loss_backward_in_chunks(x, labels)
        else:
            h, loss = self.loss(x, labels)
            loss.backward()  # frees this module's graph now, before the next module runs
        skip = ~torch.isfinite(loss.detach())
        if hold is not None:
            skip |= hold
        # The flag GradScaler hands fused Adam: where it is 1 the kernel leaves weights, moments and step count.
        self.optimizer.found_inf = skip.float()
        self.optimizer.step()
        return h.detach(), loss.detach(), self.optimizer.found_inf.bool()

    def _scored(self, z: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(module output, loss) from the block's output z: through the borrowed stages (with overlap), the readout
        and the objective, or the autoregressor whose context the objective predicts from."""
        if self.autoregressor is None:
            scored = z
            for stage in self.lookahead:
                scored = stage(scored)
            return z, self.objective(self.readout(scored), labels)
        c = self.autoregressor(z)
        return c, self.objective(self.readout(z), labels, context=c)

    def _loss_backward_in_chunks(
        self, x: torch.Tensor, labels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """loss() and its backward, holding the block's activations for one of `backward_chunks` parts of the batch
        at a time (gradient caching, Gao et al. 2021): the block encodes the batch without a graph, the loss's
        gradient with respect to the block's output is taken once, then each part is encoded again and
        backpropagated with its share of that gradient. The block treats rows independently (no batch statistics),
        so the summed gradients are the whole batch's (to rounding), for one more forward pass of the block; what
        comes after it (a projector's BatchNorm, the negatives) sees the whole batch. A two-view batch (rows [0, B)
        view 1, [B, 2B) view 2) in 2 parts is backpropagated one view at a time."""
        parts = x.detach().tensor_split(min(self.backward_chunks, len(x)))
        with torch.no_grad(), self.precision(x.device):
            encoded = [self.block(part) for part in parts]
        sizes = [len(output) for output in encoded]
        z = torch.cat(encoded).requires_grad_()
        del encoded  # z holds them: one copy of the output, not two, beside the parts' graphs to come
        with self.precision(x.device):
            h, loss = self._scored(z, labels)
        loss.backward()
        for part, gradient in zip(parts, z.grad.split(sizes)):
            with self.precision(x.device):
                self.block(part).backward(gradient)
        return h, loss

    def _clear_gradients(self) -> None:
        """Drop the gradients this backward is the first to write: this module's own, except those of stages lent
        to the previous module, which already hold that module's gradient (both are summed, then this module's
        optimiser takes one step on them); and those of the stages it borrows, for the same reason."""
        lent = {id(p) for stage in self.lent for p in stage.parameters()}
        for parameter in self.parameters():
            if id(parameter) not in lent:
                parameter.grad = None
        for stage in self.lookahead:
            for parameter in stage.parameters():
                parameter.grad = None

    def metrics(self) -> dict[str, torch.Tensor]:
        """What the objective measured on its last batch besides the loss (e.g. "accuracy"), as detached tensors on
        the device, so that nothing waits for them until they are logged; empty for an objective that measures
        nothing else."""
        return dict(getattr(self.objective, "metrics", {}))

    def precision(self, device: torch.device):
        """bf16 autocast when configured, else a no-op context."""
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=self.autocast_dtype)


def run_frozen(modules: list[IsolatedModule], x: torch.Tensor, chunks: int = 1) -> torch.Tensor:
    """Run modules without autograd (no graph, no saved activations), e.g. those before the one being trained.

    With `chunks` > 1 the batch goes through in that many parts, so the wide intermediate tensors of the frozen
    modules exist for one part at a time (samples never interact in a module's forward pass)."""
    if not modules:
        return x
    with torch.no_grad():
        parts = []
        for part in x.tensor_split(min(chunks, len(x))):
            for module in modules:
                with module.precision(part.device):
                    part = module(part)
            parts.append(part)
    return parts[0] if len(parts) == 1 else torch.cat(parts)
