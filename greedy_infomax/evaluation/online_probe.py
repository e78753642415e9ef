"""Probes while training: a linear classifier per module, fed the detached outputs that pre-training computes anyway,
so each module's accuracy is visible while the run goes, at the cost of one small matmul per module and step.

The classifiers see the module outputs through `torch.no_grad()` (the readout and pooling included) and learn from
their own cross-entropy only, so no gradient or update ever reaches the encoder: a run with the probes trains
exactly the weights of a run without them. The accuracy logged at a step is that of the classifiers' predictions
on the labelled batches since the step logged before, each made before the classifier learned from its batch.

Where the pre-training batches have no labels (STL-10's unlabeled split), the probes read a labelled split beside
them: at each step one of its batches goes through the modules up to the last trained one, frozen, which costs
one forward pass of a batch.
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

    def observe(
        self, modules: nn.ModuleList, trained: range, outputs: list[torch.Tensor], labels: Any, step: int
    ) -> None:
        """Score and train the classifiers of the `trained` modules on their outputs for the batch of step `step`
        (0-based), or on those for the labelled split's batch of that step."""
        if self.labelled is not None:
            outputs, labels = self._labelled_outputs(modules, trained, step)
        if isinstance(labels, tuple):
            labels = labels[0]
        if labels is None:
            raise GimError("train.online_probe: the pre-training batches carry no labels to probe with")
        for index, output in zip(trained, outputs, strict=True):
            with torch.no_grad():
                features = pool_positions(modules[index].readout(output).float(), 1)[: len(labels)]
            classifier = self._classifier(index, features.shape[1], features.device)
            logits = classifier(features)
            loss = F.cross_entropy(logits, labels)
            self.optimizers[index].zero_grad(set_to_none=True)
            loss.backward()
            self.optimizers[index].step()
            correct = (logits.detach().argmax(1) == labels).sum()
            self._correct[index] = self._correct.get(index, 0) + correct
            self._seen[index] = self._seen.get(index, 0) + len(labels)

    def _labelled_outputs(
        self, modules: nn.ModuleList, trained: range, step: int
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The trained modules' outputs for the labelled batch of `step`, from one frozen pass."""
        epoch, batch = divmod(step, len(self.labelled))
        if self._position != (epoch, batch):  # the first step, a resume, or a new epoch
            self._stream = self.labelled.epoch(epoch, batch)
        self._position = (epoch, batch + 1)
        x, labels = next(self._stream)
        x = run_frozen(list(modules[: trained.start]), x)
        outputs = []
        for index in trained:
            x = run_frozen([modules[index]], x)
            outputs.append(x)
        return outputs, labels

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
