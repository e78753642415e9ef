"""Linear probes fitted on features recomputed through the frozen encoder at every optimiser step, never cached:
the paper's probe protocols.

Caching features once (features.py, speech_features.py) is fast, but it fixes the augmentation and holds every
feature of a split in memory. The paper's protocols draw anew every epoch (a fresh random crop and flip of every
labelled image, a fresh random window of every utterance) and see whole utterances, so here each epoch is a
stream: per optimiser step, every output's (N, D) features and the (N,) labels they share. Memory holds one step,
whatever the size of the dataset. One forward pass serves the classifiers of all the encoder's modules, each with
its own Adam, so probing every module costs one pass per epoch; each classifier sees exactly what it would see
alone. Features are raw: the paper's classifiers are not fitted on standardised features.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from greedy_infomax.data.librispeech import LibriSpeechCorpus, standardize
from greedy_infomax.data.loader import Batches
from greedy_infomax.errors import GimError
from greedy_infomax.evaluation.features import finite
from greedy_infomax.evaluation.probes import linear_classifier
from greedy_infomax.evaluation.speech_features import Encoder, aligned_frames

Step = tuple[list[torch.Tensor], torch.Tensor]
"""One optimiser step: each output's (N, D) features, and their (N,) labels."""
Stream = Callable[[int], Iterable[Step]]
"""Epoch -> its steps."""


def fit_streaming(
    train: Stream,
    test: Stream,
    num_classes: int,
    epochs: int,
    lr: float,
    seed: int,
    xavier: bool = False,
    description: str = "probe",
) -> list[tuple[int, float]]:
    """(features D, test accuracy) of one Linear(D, classes) per output, trained with Adam and cross-entropy for
    `epochs` passes over the train stream, one step per item, then scored on every item of the test stream."""
    classifiers: list[nn.Linear] = []
    optimizers: list[torch.optim.Optimizer] = []
    for epoch in tqdm(range(epochs), desc=description, unit="epoch", leave=False, dynamic_ncols=True):
        for features, labels in train(epoch):
            if not classifiers:
                classifiers = [linear_classifier(x.shape[1], num_classes, seed, xavier).to(x.device) for x in features]
                optimizers = [torch.optim.Adam(c.parameters(), lr=lr) for c in classifiers]
            for classifier, optimizer, x in zip(classifiers, optimizers, finite(features, description), strict=True):
                loss = F.cross_entropy(classifier(x), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    if not classifiers:
        raise GimError(f"{description}: the training data gave no step to fit the classifier on")
    accuracies = stream_accuracy(classifiers, test(0), description)
    return [(c.in_features, accuracy) for c, accuracy in zip(classifiers, accuracies, strict=True)]


def stream_accuracy(classifiers: list[nn.Linear], test: Iterable[Step], description: str) -> list[float]:
    """Each classifier's share of correctly classified test items, over the whole stream."""
    correct, total = [0] * len(classifiers), 0
    with torch.no_grad():
        for features, labels in test:
            for index, (classifier, x) in enumerate(zip(classifiers, finite(features, description), strict=True)):
                correct[index] += (classifier(x).argmax(1) == labels).sum().item()
            total += len(labels)
    if total == 0:
        raise GimError(f"{description}: no test items")
    return [count / total for count in correct]


def batch_stream(encode: Callable[[torch.Tensor], list[torch.Tensor]], loader: Batches) -> Stream:
    """Epoch e of the loader, each batch encoded: its draws (crops, flips, windows) are epoch e's."""

    def epoch(e: int) -> Iterator[Step]:
        for inputs, labels in loader.epoch(e):
            yield encode(inputs), labels

    return epoch


def time_averaged(encode: Encoder) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    """(B, 1, window) windows -> each output averaged over time, (B, C): the speaker probe's features. Every
    window of the batch is its own sequence, so a recurrent module starts it from a zero state."""
    return lambda x: [output.mean(2) for output in encode(x)]


def utterance_stream(
    encode: Encoder, hops: list[int], corpus: LibriSpeechCorpus, split: str, device: torch.device
) -> Iterator[Step]:
    """Whole utterances of the split in stored order, one per step: each output's (frames, C) per label frame,
    matched to the phone labels from the end (speech_features.py says why), and those labels."""
    for utterance in corpus.splits[split]:
        labels = torch.from_numpy(corpus.phones(utterance))
        samples = standardize(corpus.waveform(utterance), corpus.spec)
        audio = torch.from_numpy(np.ascontiguousarray(samples)[None, None]).to(device)  # (1, 1, N)
        frames = aligned_frames(encode(audio), hops, corpus.spec, len(labels))  # (C, count) each
        count = frames[0].shape[1]
        yield [f.T for f in frames], labels[len(labels) - count :].to(device)
