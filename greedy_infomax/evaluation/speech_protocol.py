"""The probe protocol of a speech run: speaker and phone accuracy of every module, next to a random encoder and
log-mel features (paper, Sec. 4.2: linear classifiers on frozen features).

Features are extracted once per encoder and split, then both linear classifiers train on the cached features;
the encoder's parameters are hashed before and after to prove that probing left them unchanged.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from greedy_infomax.config import AudioRunConfig
from greedy_infomax.data import load_speech
from greedy_infomax.data.librispeech import LibriSpeechCorpus
from greedy_infomax.engines.local import resolve_device
from greedy_infomax.evaluation.encoders import left_unchanged, probed_encoder, probed_method, random_encoder
from greedy_infomax.evaluation.probes import linear_probe
from greedy_infomax.evaluation.speech_features import (Encoder, SpeechFeatures, log_mel_output, module_outputs,
                                                        speech_features)
from greedy_infomax.reporting.run_folder import RunFolder


def probe_speech_run(run: RunFolder, config: AudioRunConfig) -> dict[str, Any]:
    """Probe every module of the run's newest checkpoint, a random encoder (seed + 1) and log-mel features."""
    device = resolve_device(config.train.device)
    corpus = load_speech(config.data)
    trained, config, progress = probed_encoder(run, config, 1, device)
    p = config.probe
    results: dict[str, Any] = {
        "dataset": config.data.dataset,
        "method": probed_method(run, config),
        "features": (f"speaker: each module's output averaged over every {corpus.spec.window}-sample segment of "
                     f"whole utterances; phone: each module's output per {corpus.spec.hop}-sample label frame"
                     + (f", at most {p.phone_frames} frames per split" if p.phone_frames else "")),
        "speakers": corpus.spec.num_speakers,
        "train_utterances": len(corpus.splits["train"]),
        "test_utterances": len(corpus.splits["test"]),
        "step": progress["step"],
        "probes": ["speaker", "phone"] if corpus.alignment_file else ["speaker"],
        "trained": _probe_encoder(trained, config, corpus, device, "trained"),
    }
    if p.random_init:
        results["random"] = _probe_encoder(random_encoder(config, 1, device), config, corpus, device, "random init")
    if p.log_mel:
        [baseline] = _probe(log_mel_output(corpus.spec), [corpus.spec.hop], config, corpus, device, "log-mel")
        results["baseline"] = {"name": "log-mel", **baseline}
    return results


def _probe_encoder(modules: nn.ModuleList, config: AudioRunConfig, corpus: LibriSpeechCorpus,
                   device: torch.device, name: str) -> list[dict[str, Any]]:
    with left_unchanged(modules, name):
        rows = _probe(module_outputs(modules), config.model.module_hops(), config, corpus, device, name)
    return [{"module": index, **row} for index, row in enumerate(rows, start=1)]


def _probe(encode: Encoder, hops: list[int], config: AudioRunConfig, corpus: LibriSpeechCorpus,
           device: torch.device, name: str) -> list[dict[str, Any]]:
    """Speaker and phone accuracy of each output of `encode`."""
    p = config.probe
    train, test = (speech_features(encode, hops, corpus, split, p.phone_frames, device, name)
                   for split in ("train", "test"))
    return [_classify(train, test, index, config, corpus) for index in range(len(hops))]


def _classify(train: SpeechFeatures, test: SpeechFeatures, index: int, config: AudioRunConfig,
              corpus: LibriSpeechCorpus) -> dict[str, Any]:
    p, seed = config.probe, config.train.seed
    row = {"features": train.speaker[index].shape[1],
           "speaker": linear_probe(train.speaker[index], train.speakers, test.speaker[index], test.speakers,
                                   corpus.spec.num_speakers, p.speaker_epochs, p.speaker_lr, p.batch_size, seed)}
    if train.phone is not None and test.phone is not None:
        row["phone"] = linear_probe(train.phone[index], train.phones, test.phone[index], test.phones,
                                    corpus.spec.num_phones, p.phone_epochs, p.phone_lr, p.batch_size, seed)
    return row
