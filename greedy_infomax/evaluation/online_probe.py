"""Probes while training: a linear classifier per module, fed the detached outputs that pre-training computes anyway,
so each module's accuracy is visible while the run goes, at the cost of one small matmul per module and step.

The classifiers see the module outputs through `torch.no_grad()` (the readout and pooling included) and learn from
their own cross-entropy only, so no gradient or update ever reaches the encoder: a run with the probes trains
exactly the weights of a run without them. The accuracy logged at a step is that of the classifiers' predictions
on the labelled batches since the step logged before, each made before the classifier learned from its batch.

Where the pre-training batches have no labels (STL-10's unlabeled split), the probes read a labelled split beside
them: at each step one of its batches goes through the modules up to the last trained one, frozen, which costs
one forward pass of a batch.

Under torchrun the probes of each module live with it, on its stage: what they read of a batch (`batch`: its
targets, and a labelled batch's activations) goes down the pipeline beside the training activations, each stage
probing its own modules (`observe` with `owned`) and passing on what the next one reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from greedy_infomax.data.loader import Batches
from greedy_infomax.errors import GimError
from greedy_infomax.evaluation.features import pool_positions
from greedy_infomax.isolation import run_frozen


class OnlineProbes:
    """One linear classifier per module, on its output read out and average-pooled to (B, C) as the paper's probes
    pool. Labels: (B,) class indices per sample; of a tuple (speakers beside phones) the first; two-view batches
    (2B rows for B labels) are probed on the first view. With `labelled`, its batches are probed instead of the
    pre-training ones: step s reads batch s mod len(labelled) of its epoch s // len(labelled)."""

    def __init__(self, num_classes: int, lr: float = 1e-3, seed: int = 0, labelled: Batches | None = None) -> None:
        if num_classes < 2:
            raise GimError(f"train.online_probe: needs at least 2 classes, got {num_classes}")
        self.num_classes = num_classes
        self.lr = lr
        self.seed = seed
        self.classifiers: dict[int, nn.Linear] = {}
        self.optimizers: dict[int, torch.optim.Optimizer] = {}
        self._correct: dict[int, torch.Tensor] = {}
        self._seen: dict[int, torch.Tensor] = {}
        self.labelled = labelled
        self._stream: Iterator[tuple[torch.Tensor, Any]] | None = None
        self._position: tuple[int, int] | None = None

    def batch(self, step: int, labels: Any) -> tuple[torch.Tensor, ...]:
        """What the probes read at step `step` (0-based) whose pre-training batch has `labels`: `(targets,)`, the
        (B,) classes of that batch, to probe its outputs; or `(targets, inputs)`, the labelled split's batch of the
        step, to probe the modules' outputs on `inputs`. Plain tensors, so a pipeline sends them along."""
        if self.labelled is not None:
            epoch, batch = divmod(step, len(self.labelled))
            if self._position != (epoch, batch):  # the first step, a resume, or a new epoch
                self._stream = self.labelled.epoch(epoch, batch)
            self._position = (epoch, batch + 1)
            inputs, labels = next(self._stream)
        if isinstance(labels, tuple):
            labels = labels[0]
        if labels is None:
            raise GimError("train.online_probe: the pre-training batches carry no labels to probe with")
        return (labels,) if self.labelled is None else (labels, inputs)

    def observe(
        self,
        modules: nn.ModuleList,
        trained: range,
        outputs: list[torch.Tensor],
        batch: tuple[torch.Tensor, ...],
        owned: range | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Score and train the classifiers of the trained modules among `owned` (default: every module up to the
        last trained one), given their `outputs` on the training batch and what `batch` returned: on those outputs,
        or on the modules' outputs on the batch's inputs (one frozen pass, from the first owned module). Returns
        `batch` as the module after `owned` reads it (its inputs advanced through the owned modules)."""
        owned = range(trained.stop) if owned is None else owned
        probed = range(max(owned.start, trained.start), owned.stop)
        targets = batch[0]
        if len(batch) == 2:  # a labelled batch of its own: its inputs go through the owned modules, frozen
            x = run_frozen(list(modules[owned.start : probed.start]), batch[1])
            outputs = []
            for index in probed:
                x = run_frozen([modules[index]], x)
                outputs.append(x)
            batch = (targets, x)
        for index, output in zip(probed, outputs, strict=True):
            self._learn(index, modules[index], output, targets)
        return batch

    def _learn(self, index: int, module: nn.Module, output: torch.Tensor, targets: torch.Tensor) -> None:
        """Score module `index`'s classifier on its pooled output, then take one step on its cross-entropy."""
        with torch.no_grad():
            features = pool_positions(module.readout(output).float(), 1)[: len(targets)]  # (B, C), the first view
        classifier = self._classifier(index, features.shape[1], features.device)
        logits = classifier(features)
        loss = F.cross_entropy(logits, targets)
        self.optimizers[index].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers[index].step()
        correct = (logits.detach().argmax(1) == targets).sum()
        self._correct[index] = self._correct.get(index, 0) + correct
        self._seen[index] = self._seen.get(index, 0) + len(targets)

    def values(self) -> dict[str, torch.Tensor]:
        """online_accuracy/moduleK, the share of samples classified right since the last call (in [0, 1], as the
        objectives' accuracy/moduleK), as device tensors; then starts over."""
        values = {
            f"online_accuracy/module{index + 1}": self._correct[index] / self._seen[index]
            for index in sorted(self._correct)
        }
        self._correct, self._seen = {}, {}
        return values

    def state_dict(self) -> dict[str, Any]:
        return {
            index: {"classifier": classifier.state_dict(), "optimizer": self.optimizers[index].state_dict()}
            for index, classifier in self.classifiers.items()
        }

    def load_state_dict(self, state: dict[int, dict[str, Any]], device: torch.device) -> None:
        for index, saved in state.items():
            features = saved["classifier"]["weight"].shape[1]
            self._classifier(index, features, device).load_state_dict(saved["classifier"])
            self.optimizers[index].load_state_dict(saved["optimizer"])

    def _classifier(self, index: int, features: int, device: torch.device) -> nn.Linear:
        """Module `index`'s classifier, made at its first batch (when its feature count is known), seeded by the
        run's seed and the module alone: the global generator, which draws the negatives, is left as it was."""
        if index not in self.classifiers:
            generator = torch.Generator().manual_seed(self.seed * 1000 + index)
            classifier = nn.utils.skip_init(nn.Linear, features, self.num_classes)
            bound = features**-0.5
            with torch.no_grad():
                classifier.weight.uniform_(-bound, bound, generator=generator)
                classifier.bias.zero_()
            self.classifiers[index] = classifier.to(device)
            self.optimizers[index] = torch.optim.Adam(self.classifiers[index].parameters(), lr=self.lr)
        return self.classifiers[index]
