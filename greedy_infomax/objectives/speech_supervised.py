"""Supervised per-module losses for speech: the greedy supervised and supervised baselines of the audio table."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from greedy_infomax.errors import GimError


class SpeechSupervised(nn.Module):
    """L = CE(W_s mean_t h_t + b_s, speaker) + mean_f CE(W_p h_f + b_p, phone_f)

    By default the two tasks the probes measure, trained jointly, so that one baseline serves both columns; with
    `targets` "speaker" or "phone" only that term, as the original code trains its speaker and phone baselines as
    two separate models. h is the module's
    output (the context c for a module that ends in the GRU). The speaker classifier reads its time average; the
    phone classifier reads it average-pooled to the 10 ms label frames (after the first convolution a window of
    20,480 samples has 4,095 steps: bins of 31-32 steps), leaving out frames without a label (-1). Each forward
    leaves the batch's accuracy of each classifier in `metrics` ("speaker_accuracy", "phone_accuracy").

    Args:
        channels: C of the output z (B, C, T).
        num_speakers, num_phones: classes of the two tasks.
        targets: "both", "speaker" or "phone": the terms of the loss.
        context_channels: channels of c, when the module ends in an autoregressor.
    """

    needs_labels = True

    def __init__(
        self,
        channels: int,
        num_speakers: int,
        num_phones: int,
        targets: str = "both",
        context_channels: int | None = None,
    ) -> None:
        super().__init__()
        if targets not in ("both", "speaker", "phone"):
            raise ValueError(f"targets: must be both, speaker or phone, got {targets!r}")
        features = context_channels or channels
        self.speaker = nn.Linear(features, num_speakers) if targets != "phone" else None
        self.phone = nn.Linear(features, num_phones) if targets != "speaker" else None
        self.metrics: dict[str, torch.Tensor] = {}

    def forward(
        self,
        z: torch.Tensor,
        labels: tuple[torch.Tensor, torch.Tensor] | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Args: z (B, C, T); labels (speakers (B,), phones (B, F) with -1 where unknown), F <= T."""
        if labels is None or not isinstance(labels, tuple):
            raise GimError(
                "the speech supervised objective needs (speaker, phone) labels: a WindowLoader with phones=True"
            )
        speakers, phones = labels
        h = (z if context is None else context).float()  # (B, C, T)
        loss, metrics = h.new_zeros(()), {}
        if self.speaker is not None:
            logits = self.speaker(h.mean(2))  # (B, speakers)
            loss = loss + F.cross_entropy(logits, speakers)
            metrics["speaker_accuracy"] = (logits.detach().argmax(1) == speakers).float().mean()
        if self.phone is not None:
            frames = F.adaptive_avg_pool1d(h, phones.shape[1]).transpose(1, 2)  # (B, F, C)
            logits = self.phone(frames).flatten(0, 1)  # (B*F, phones)
            loss = loss + F.cross_entropy(logits, phones.flatten(), ignore_index=-1)
            known = phones.flatten() != -1
            correct = (logits.detach().argmax(1) == phones.flatten()) & known
            metrics["phone_accuracy"] = correct.sum() / known.sum().clamp(min=1)
        self.metrics = metrics
        return loss
