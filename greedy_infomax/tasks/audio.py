"""The audio task: raw 16 kHz speech, the CPC encoder (strided convolutions, then a GRU) in gradient-isolated
modules, InfoNCE over future frames (paper, Sec. 4.2), probed by linear speaker and phone classifiers on every
module's frozen features.

Its run config's defaults are the paper's LibriSpeech setup on one GPU of the original's (8 windows, one negative
group) with the cached probe protocol, so that a run folder written before `probe.protocol` existed probes as it did:
`paper-librispeech` is `AudioRunConfig()` with the paper's step of 4 such groups and the paper's probe protocol.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from greedy_infomax.config import (
    DistributedConfig,
    TrainConfig,
    check_negative_groups,
    check_negatives,
    check_overlap,
    check_probe_stages,
    require,
)
from greedy_infomax.data import read_speech, speech_corpus_root
from greedy_infomax.data.librispeech import LABEL_FOLDER, AudioSpec, LibriSpeechCorpus, WindowLoader, standardize
from greedy_infomax.data.speech_corpus import generate_speech_corpus
from greedy_infomax.errors import GimError
from greedy_infomax.evaluation.embed import SpeechFeatureExtractor, check_module
from greedy_infomax.evaluation.features import left_unchanged
from greedy_infomax.evaluation.online_probe import OnlineProbes
from greedy_infomax.evaluation.probes import linear_probe
from greedy_infomax.evaluation.speech_features import (
    Encoder,
    SpeechFeatures,
    log_mel_output,
    module_outputs,
    speech_features,
)
from greedy_infomax.evaluation.streaming import batch_stream, fit_streaming, time_averaged, utterance_stream
from greedy_infomax.models.audio import audio_modules
from greedy_infomax.objectives import CLAPP1d, InfoNCE1d, SpeechSupervised
from greedy_infomax.reporting.run_folder import RunFolder
from greedy_infomax.tasks.base import Task

OBJECTIVES: dict[str, type[nn.Module]] = {"infonce_1d": InfoNCE1d, "supervised": SpeechSupervised, "clapp": CLAPP1d}
"""`objective.name` -> objective class; a new objective is one file in objectives/ and one line here."""

CPU_AUDIO_EPOCHS = 8
"""The `cpu` budget of `gim reproduce audio` trains the `speech` preset for 8 epochs instead of 20, so that the
five methods and their probes fit in an hour on 2 cores."""


@dataclass(frozen=True)
class AudioDataConfig:
    """Which speech corpus to train and probe on (LibriSpeech layout with the CPC split and alignments)."""

    dataset: Literal["librispeech", "speech-corpus", "speech-folder"] = "librispeech"
    """`librispeech`: LibriSpeech train-clean-100; `speech-corpus`: the corpus `gim data speech-corpus` generates;
    `speech-folder`: your own recordings, ROOT/<speaker>/*.flac or *.wav (see data/speech_folder.py)."""
    root: str | None = None
    """Folder holding LibriSpeech/ and LibriSpeech100_labels_split/ (or the speaker folders); None: $GIM_DATA
    (librispeech) or $GIM_DATA/speech-corpus, else ~/.cache/greedy-infomax/speech-corpus (speech-corpus)."""
    limit: int | None = None
    """Use only N utterances of every split, taken from each speaker in turn (quick experiments and tests)."""
    batch_size: int = 8
    """Windows per training step."""

    def __post_init__(self) -> None:
        require(
            self.batch_size > 1, "data.batch_size", f"needs at least 2 windows for negatives, got {self.batch_size}"
        )
        require(
            self.limit is None or self.limit >= self.batch_size,
            "data.limit",
            f"must be at least one batch ({self.batch_size} utterances), got {self.limit}",
        )


@dataclass(frozen=True)
class AudioModelConfig:
    """The CPC audio encoder (strided Conv1d layers, then a GRU) and how it is cut into modules."""

    channels: tuple[int, ...] = (512, 512, 512, 512, 512)
    """Output channels of each Conv1d layer."""
    kernels: tuple[int, ...] = (10, 8, 4, 4, 4)
    """Kernel size of each Conv1d layer."""
    strides: tuple[int, ...] = (5, 4, 2, 2, 2)
    """Stride of each Conv1d layer; their product must be the corpus's label hop (160 samples = 10 ms)."""
    paddings: tuple[int, ...] = (2, 2, 2, 2, 1)
    """Zero padding of each Conv1d layer."""
    gru_hidden: int = 256
    """Hidden size of the GRU on top of the convolutions."""
    stages_per_module: tuple[int, ...] = (1, 1, 1, 1, 1, 1)
    """Consecutive stages (each conv, then the GRU) per module: six 1s is GIM, (6,) is end-to-end CPC."""
    overlap: int = 0
    """LoCo's overlapping modules: each module's loss is scored after the first N convs of the next module too, and
    trains them with it (their gradients from both losses are summed, then the next module's optimiser steps
    once); the GRU is not lent. 0 is GIM. Single-process training only."""

    def __post_init__(self) -> None:
        layers = len(self.channels)
        require(
            len(self.kernels) == len(self.strides) == len(self.paddings) == layers,
            "model.channels",
            f"kernels, strides and paddings need one entry per conv layer ({layers})",
        )
        require(
            layers > 0 and all(c > 0 for c in self.channels),
            "model.channels",
            "needs at least one conv layer, and all sizes positive",
        )
        require(self.gru_hidden > 0, "model.gru_hidden", f"must be positive, got {self.gru_hidden}")
        require(
            sum(self.stages_per_module) == layers + 1 and min(self.stages_per_module) > 0,
            "model.stages_per_module",
            f"must be positive and add up to the {layers + 1} stages ({layers} convs + GRU), "
            f"got {self.stages_per_module}",
        )

    @property
    def num_modules(self) -> int:
        return len(self.stages_per_module)

    def module_hops(self) -> list[int]:
        """Input samples per output step of each module: the product of the strides of the convs up to its end."""
        hops, last = [], 0
        for count in self.stages_per_module:
            last += count
            hops.append(math.prod(self.strides[: min(last, len(self.strides))]))
        return hops


@dataclass(frozen=True)
class AudioObjectiveConfig:
    """The per-module loss: InfoNCE predicting future frames."""

    name: str = "infonce_1d"
    """Objective of every module: infonce_1d (InfoNCE); clapp (CLAPP's hinge, one negative per context, on the
    same frames); supervised (linear speaker, time-averaged, and phone, per 10 ms frame, classifiers with
    cross-entropy: greedy supervised; end-to-end supervised with one module); or any objective registered in
    greedy_infomax.tasks.audio.OBJECTIVES."""
    prediction_steps: int = 12
    """infonce_1d, clapp: K, how many frames ahead are predicted."""
    num_negatives: int = 10
    """infonce_1d: negatives per positive, from all time steps of all windows of the negative group: one table per
    group whose columns are random permutations, step k reading its last rows (the original's sampling_method 1)."""
    negative_groups: int = 1
    """G: the batch is cut into G equal groups, negatives are drawn within a group and the loss is the mean over
    the groups (the original's nn.DataParallel, one group per GPU; no effect on the supervised objective)."""
    subsample: bool = True
    """infonce_1d, clapp: take contexts and positives from one random `subsample_window`-step window of longer
    sequences."""
    subsample_window: int = 128
    """Steps of that window (the paper's 128 frames)."""
    num_speakers: int = 251
    """supervised: speakers of the corpus (LibriSpeech train-clean-100: 251)."""
    num_phones: int = 41
    """supervised: phone classes of the alignments."""
    targets: Literal["both", "speaker", "phone"] = "both"
    """supervised: train the speaker and phone classifiers jointly (one baseline for both probes), or only one of
    them (the original code's separate speaker and phone baselines)."""

    def __post_init__(self) -> None:
        require(self.name in OBJECTIVES, "objective.name", f"must be one of {', '.join(OBJECTIVES)}, got {self.name!r}")
        require(self.prediction_steps > 0, "objective.prediction_steps", "must be positive")
        require(self.num_negatives > 0, "objective.num_negatives", "must be positive")
        require(self.negative_groups > 0, "objective.negative_groups", "must be positive")
        require(
            self.subsample_window > self.prediction_steps,
            "objective.subsample_window",
            f"must exceed prediction_steps ({self.prediction_steps})",
        )


@dataclass(frozen=True)
class AudioProbeConfig:
    """Linear speaker and phone classifiers on the frozen features of every module."""

    protocol: Literal["cached", "paper"] = "cached"
    """cached: features extracted once per encoder and split from whole utterances (speaker: averaged over each
    1.28 s segment; phone: per 10 ms frame), at most `speaker_segments` and `phone_frames` of them, then classifiers
    fitted on them standardised, in minibatches of `batch_size`: fast, for the demos. paper: the paper's protocol,
    streamed through the frozen encoder (evaluation/streaming.py), with raw features: speaker: one random window per
    utterance drawn anew every epoch and encoded alone (the GRU starts from a zero state), averaged over time,
    batches of `batch_size` windows, tested on one window per test utterance; phone: whole utterances, one per
    optimiser step, Xavier-normal init. Either way memory does not grow with the corpus."""
    speaker_epochs: int = 50
    """Epochs of the speaker classifier."""
    phone_epochs: int = 20
    """Epochs of the phone classifier."""
    phone_frames: int | None = 200_000
    """cached: keep at most this many label frames of each split for the phone probe, every s-th one, so the
    features take at most frames x (the modules' channels) x 4 bytes; None keeps all (every 10 ms of the corpus)."""
    speaker_segments: int | None = 20_000
    """cached: keep at most this many 1.28 s segments of each split for the speaker probe, every s-th one; None
    keeps all."""
    speaker_lr: float = 1e-3
    """Adam learning rate of the speaker classifier (the paper's)."""
    phone_lr: float = 1e-4
    """Adam learning rate of the phone classifier (the paper's)."""
    batch_size: int = 64
    """Minibatch of the speaker classifier (windows with the paper's protocol, segments with the cached one) and of
    the cached phone classifier (frames; the paper's phone probe takes one whole utterance per step)."""
    random_init: bool = True
    """Also probe a randomly initialised encoder of the same architecture."""
    log_mel: bool = True
    """Also fit both classifiers on log-mel filterbank features (an MFCC-like baseline)."""
    stages_per_module: tuple[int, ...] | None = None
    """Probe the encoder cut into these modules instead of the run's own (e.g. an end-to-end run at GIM's
    boundaries, to compare module by module); None: the run's modules."""

    def __post_init__(self) -> None:
        for option in ("speaker_epochs", "phone_epochs", "batch_size", "speaker_lr", "phone_lr"):
            require(getattr(self, option) > 0, f"probe.{option}", "must be positive")
        for option in ("phone_frames", "speaker_segments"):
            require(getattr(self, option) is None or getattr(self, option) > 0, f"probe.{option}", "must be positive")


@dataclass(frozen=True)
class AudioRunConfig:
    """A complete, reproducible speech experiment."""

    task: ClassVar[str] = "audio"
    data: AudioDataConfig = field(default_factory=AudioDataConfig)
    model: AudioModelConfig = field(default_factory=AudioModelConfig)
    objective: AudioObjectiveConfig = field(default_factory=AudioObjectiveConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1000, channels_last=False))
    probe: AudioProbeConfig = field(default_factory=AudioProbeConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def __post_init__(self) -> None:
        require(
            self.train.train_module is None or self.train.train_module <= self.model.num_modules,
            "train.train_module",
            f"must be at most {self.model.num_modules}, got {self.train.train_module}",
        )
        check_probe_stages(self.probe.stages_per_module, len(self.model.channels) + 1)
        convs = [*self.model.stages_per_module[1:-1], self.model.stages_per_module[-1] - 1]  # the GRU is not lent
        check_overlap(self.model.overlap, convs if self.model.num_modules > 1 else [], self.train)
        check_negative_groups(self.data.batch_size, self.objective.negative_groups)
        check_negatives(self.distributed.negatives, self.objective.name, OBJECTIVES)


PRESETS: dict[str, AudioRunConfig] = {
    # The paper's audio setup: LibriSpeech-100, the CPC encoder (5 convs of 512 + GRU 256) in 6 modules; its 4 GPUs of
    # 8 windows: 32 windows per Adam step in 4 negative groups; probed by the paper's protocol.
    "paper-librispeech": AudioRunConfig(
        data=AudioDataConfig(batch_size=32),
        objective=AudioObjectiveConfig(negative_groups=4),
        probe=AudioProbeConfig(protocol="paper"),
    ),
    # The CPU default used by `gim demo audio`: the generated speech corpus and a narrower encoder.
    "speech": AudioRunConfig(
        data=AudioDataConfig(dataset="speech-corpus", batch_size=16),
        model=AudioModelConfig(channels=(128,) * 5, gru_hidden=128),
        train=TrainConfig(lr=1e-3, epochs=20, precision="auto", channels_last=False, checkpoint_every=500),
        # 2 phone epochs instead of the paper's 20, so a ten times larger step.
        probe=AudioProbeConfig(speaker_epochs=50, phone_epochs=2, phone_lr=1e-3),
    ),
    # Seconds, for tests: a tiny audio encoder on a few generated utterances.
    "speech-smoke": AudioRunConfig(
        data=AudioDataConfig(dataset="speech-corpus", limit=8, batch_size=4),
        model=AudioModelConfig(channels=(8,) * 5, gru_hidden=8),
        objective=AudioObjectiveConfig(prediction_steps=3, num_negatives=4, subsample_window=32),
        train=TrainConfig(lr=1e-3, epochs=2, channels_last=False, checkpoint_every=2, log_every=1),
        probe=AudioProbeConfig(speaker_epochs=2, phone_epochs=1, phone_lr=1e-3, batch_size=64),
    ),
}


class AudioTask(Task):
    name = "audio"
    config_type = AudioRunConfig
    presets = PRESETS
    objectives = OBJECTIVES
    demo_preset = "speech"
    paper_preset = "paper-librispeech"
    budgets = {"smoke": "speech-smoke", "cpu": "speech", "paper": "paper-librispeech"}
    paper_results = {
        "GIM": {"speaker": 99.4, "phone": 62.5},
        "end-to-end CPC": {"speaker": 97.4, "phone": 64.6},
        "log-mel": {"speaker": 17.6, "phone": 39.7},
    }

    def prepare_data(self, config: AudioRunConfig) -> None:
        """Generate the speech corpus where the config expects it, if it is not there yet."""
        if config.data.dataset != "speech-corpus":
            return
        root = Path(config.data.root).expanduser() if config.data.root else speech_corpus_root()
        if not (root / LABEL_FOLDER).is_dir():
            print(f"generating the speech corpus in {root} (once; about a minute on 2 cores)")
            generate_speech_corpus(root)

    def pretrain_loader(self, config: AudioRunConfig, device: torch.device) -> tuple[WindowLoader, int]:
        """An objective that needs labels gets speaker and phone labels, and must be sized for the corpus."""
        corpus = load_speech(config.data)
        supervised = self.needs_labels(config)
        if supervised:
            if corpus.alignment_file is None:
                raise GimError(
                    "objective.name: the supervised objective trains a phone classifier, and the corpus "
                    "has no phone alignments"
                )
            _check_classes("objective.num_speakers", config.objective.num_speakers, corpus.spec.num_speakers)
            _check_classes("objective.num_phones", config.objective.num_phones, corpus.spec.num_phones)
        training, _ = _held_out(corpus, config.train.validation)
        loader = WindowLoader(
            corpus, "train", config.data.batch_size, device, config.train.seed, phones=supervised, utterances=training
        )
        if len(loader) == 0:
            raise GimError(
                f"{len(loader.utterances)} training utterances do not fill one batch of {config.data.batch_size}"
            )
        return loader, 1

    def online_probes(self, config: AudioRunConfig, device: torch.device) -> OnlineProbes:
        """Speakers: every pre-training window carries its speaker's label."""
        return OnlineProbes(load_speech(config.data).spec.num_speakers, seed=config.train.seed)

    def validation_loader(self, config: AudioRunConfig, device: torch.device) -> WindowLoader | None:
        """One window of each held-out utterance, drawn alike every epoch."""
        if not config.train.validation:
            return None
        corpus = load_speech(config.data)
        _, held_out = _held_out(corpus, config.train.validation)
        loader = WindowLoader(
            corpus,
            "train",
            config.data.batch_size,
            device,
            config.train.seed,
            phones=self.needs_labels(config),
            utterances=held_out,
        )
        if len(loader) == 0:
            raise GimError(
                f"train.validation: {len(held_out)} held-out utterances do not fill one batch of "
                f"{config.data.batch_size}"
            )
        return loader

    def build_modules(self, config: AudioRunConfig, in_channels: int = 1) -> nn.ModuleList:
        """`objective.subsample` only acts on sequences longer than `subsample_window` steps (in the paper's
        encoder: conv 1-4). An objective that predicts ahead (it takes `prediction_steps`) needs every module to
        output more steps than that."""
        m, objective = config.model, self.objective(config)
        return audio_modules(
            in_channels,
            objective,
            window=AudioSpec.window,
            label_hop=AudioSpec.hop,
            prediction_steps=objective.keywords.get("prediction_steps", 0),
            channels=m.channels,
            kernels=m.kernels,
            strides=m.strides,
            paddings=m.paddings,
            gru_hidden=m.gru_hidden,
            stages_per_module=m.stages_per_module,
            overlap=m.overlap,
        )

    def end_to_end_name(self, config: AudioRunConfig) -> str:
        return "CPC"  # the GRU ends every audio encoder: one module trained end to end is CPC

    def probe(self, run: RunFolder, config: AudioRunConfig, device: torch.device) -> dict[str, Any]:
        """Speaker and phone accuracy of every module, a random encoder (seed + 1) and log-mel features, by the
        protocol `probe.protocol` names; with the cached one, under "kept", how many segments and frames of each
        split the classifiers were fitted and scored on."""
        corpus = load_speech(config.data)
        trained, config, progress = self.probed_encoder(run, config, 1, device)
        p = config.probe
        rows, kept = _probe_encoder(trained, config, corpus, device, "trained")
        results: dict[str, Any] = {
            "dataset": config.data.dataset,
            "method": self.probed_method(run, config),
            "protocol": p.protocol,
            "features": _features(p, corpus.spec),
            "speakers": corpus.spec.num_speakers,
            "train_utterances": len(corpus.splits["train"]),
            "test_utterances": len(corpus.splits["test"]),
            "step": progress["step"],
            "probes": ["speaker", "phone"] if corpus.alignment_file else ["speaker"],
            **({"kept": kept} if kept else {}),
            "trained": rows,
        }
        if p.random_init:
            results["random"], _ = _probe_encoder(
                self.random_encoder(config, 1, device), config, corpus, device, "random init"
            )
        if p.log_mel:
            [baseline], _ = _probe(log_mel_output(corpus.spec), [corpus.spec.hop], config, corpus, device, "log-mel")
            results["baseline"] = {"name": "log-mel", **baseline}
        return results

    def embed(
        self, run: RunFolder, config: AudioRunConfig, module: int, role: str, device: torch.device
    ) -> dict[str, np.ndarray]:
        """The cached speech probes' features of module `module` on the train split (roles 'pretrain',
        'probe_train') or the test split: "speaker_features" (segments, D) with "speakers", and, when the corpus
        has phone alignments, "phone_features" (frames, D) with "phones"."""
        split = "test" if role == "probe_test" else "train"
        p = config.probe
        features = speech_features(
            module_outputs(self._encoder(run, config, module, device)),
            config.model.module_hops()[:module],
            load_speech(config.data),
            split,
            p.phone_frames,
            p.speaker_segments,
            device,
            f"module {module}",
        )
        arrays = {"speaker_features": features.speaker[-1].numpy(), "speakers": features.speakers.numpy()}
        if features.phone is not None and features.phones is not None:
            arrays |= {"phone_features": features.phone[-1].numpy(), "phones": features.phones.numpy()}
        return arrays

    def extractor(self, run: RunFolder, config: AudioRunConfig, module: int, device: torch.device) -> nn.Module:
        """Waveforms in [-1, 1] (B, 1, samples) -> `.transform` -> module `module`'s (B, frames, D) features."""
        return SpeechFeatureExtractor(
            self._encoder(run, config, module, device),
            config.model.module_hops()[module - 1],
            partial(standardize, spec=load_speech(config.data).spec),
        )

    def supervised_variants(self, budget: str) -> tuple[str, ...]:
        """At the paper's budget, as the original code: a speaker model and a phone model, each its own row."""
        return ("speaker", "phone") if budget == "paper" else ("",)

    def supervised_variant(self, config: AudioRunConfig, variant: str) -> AudioRunConfig:
        return replace(config, objective=replace(config.objective, targets=variant or "both"))

    def with_baselines(self, config: AudioRunConfig, enabled: bool) -> AudioRunConfig:
        return replace(config, probe=replace(config.probe, random_init=enabled, log_mel=enabled))

    def budget_config(self, budget: str) -> AudioRunConfig:
        config = super().budget_config(budget)
        if budget == "cpu":
            config = replace(config, train=replace(config.train, epochs=CPU_AUDIO_EPOCHS))
        return config

    def sized_for_labels(self, config: AudioRunConfig) -> AudioRunConfig:
        """The generated corpus has its own speakers."""
        spec = load_speech(config.data).spec
        return replace(
            config, objective=replace(config.objective, num_speakers=spec.num_speakers, num_phones=spec.num_phones)
        )

    def example_batch(self, config: AudioRunConfig, batch_size: int, device: torch.device) -> torch.Tensor:
        return torch.randn(batch_size, 1, AudioSpec.window, device=device)

    def _encoder(self, run: RunFolder, config: AudioRunConfig, module: int, device: torch.device) -> nn.ModuleList:
        """Modules 1..`module` of the run's newest checkpoint."""
        modules, _ = self.load_trained(run, config, 1, device)
        check_module(module, len(modules))
        return modules[:module]


def load_speech(config: AudioDataConfig) -> LibriSpeechCorpus:
    """The configured corpus, cut to `config.limit` utterances per split."""
    return read_speech(config.dataset, config.root, config.limit)


def _held_out(corpus: LibriSpeechCorpus, share: float) -> tuple[list, list]:
    """The training utterances and the share held out of them, evenly spread over the split (so over speakers)."""
    utterances = list(corpus.splits["train"])
    held = (
        set(np.round(np.linspace(0, len(utterances) - 1, round(len(utterances) * share))).astype(int))
        if share
        else set()
    )
    return ([u for i, u in enumerate(utterances) if i not in held], [u for i, u in enumerate(utterances) if i in held])


def _check_classes(option: str, configured: int, dataset: int) -> None:
    if configured != dataset:
        raise GimError(
            f"{option}: the supervised objective is sized for {configured} classes, the data has {dataset}; "
            f"pass --{option} {dataset}"
        )


def _features(options: AudioProbeConfig, spec: AudioSpec) -> str:
    """What the classifiers were fitted on, in words, for probe.json."""
    if options.protocol == "paper":
        return (
            f"the paper's protocol, streamed: speaker: each module's output for one random {spec.window}-sample "
            f"window per utterance, drawn anew every epoch and encoded alone, averaged over time; phone: each "
            f"module's output per {spec.hop}-sample label frame of whole utterances, one utterance per step; "
            f"raw features"
        )
    segments = f", at most {options.speaker_segments} segments per split" if options.speaker_segments else ""
    frames = f", at most {options.phone_frames} frames per split" if options.phone_frames else ""
    return (
        f"speaker: each module's output averaged over every {spec.window}-sample segment of whole utterances"
        f"{segments}; phone: each module's output per {spec.hop}-sample label frame{frames}"
    )


def _probe_encoder(
    modules: nn.ModuleList, config: AudioRunConfig, corpus: LibriSpeechCorpus, device: torch.device, name: str
) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
    with left_unchanged(modules, name):
        rows, kept = _probe(module_outputs(modules), config.model.module_hops(), config, corpus, device, name)
    return [{"module": index, **row} for index, row in enumerate(rows, start=1)], kept


def _probe(
    encode: Encoder, hops: list[int], config: AudioRunConfig, corpus: LibriSpeechCorpus, device: torch.device, name: str
) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
    """Speaker and phone accuracy of each output of `encode` by the configured protocol; and, for the cached one,
    the speaker segments and phone frames of each split that it kept."""
    p = config.probe
    if p.protocol == "paper":
        return _paper_probe(encode, hops, config, corpus, device, name), {}
    train, test = (
        speech_features(encode, hops, corpus, split, p.phone_frames, p.speaker_segments, device, name)
        for split in ("train", "test")
    )
    kept = {"speaker_segments": {"train": len(train.speakers), "test": len(test.speakers)}}
    if train.phones is not None and test.phones is not None:
        kept["phone_frames"] = {"train": len(train.phones), "test": len(test.phones)}
    return [_classify(train, test, index, config, corpus) for index in range(len(hops))], kept


def _paper_probe(
    encode: Encoder, hops: list[int], config: AudioRunConfig, corpus: LibriSpeechCorpus, device: torch.device, name: str
) -> list[dict[str, Any]]:
    """The paper's speaker and phone probes of each output of `encode`, streamed: speaker on random windows, the
    last incomplete batch of an epoch left out as in the original, phone on whole utterances in stored order."""
    p, seed, spec = config.probe, config.train.seed, corpus.spec
    train = WindowLoader(corpus, "train", p.batch_size, device, seed)
    if len(train) == 0:
        raise GimError(
            f"probe.batch_size: the {len(train.utterances)} training utterances do not fill one batch "
            f"of {p.batch_size} windows for the speaker probe; pass a smaller --probe.batch_size"
        )
    test = WindowLoader(corpus, "test", p.batch_size, device, seed, shuffle=False)
    windows = time_averaged(encode)
    speaker = fit_streaming(
        batch_stream(windows, train),
        batch_stream(windows, test),
        spec.num_speakers,
        p.speaker_epochs,
        p.speaker_lr,
        seed,
        description=f"{name}: speaker",
    )
    rows = [{"features": features, "speaker": accuracy} for features, accuracy in speaker]
    if corpus.alignment_file is None:
        return rows
    phone = fit_streaming(
        lambda epoch: utterance_stream(encode, hops, corpus, "train", device),
        lambda epoch: utterance_stream(encode, hops, corpus, "test", device),
        spec.num_phones,
        p.phone_epochs,
        p.phone_lr,
        seed,
        xavier=True,
        description=f"{name}: phone",
    )
    return [row | {"phone": accuracy} for row, (_, accuracy) in zip(rows, phone, strict=True)]


def _classify(
    train: SpeechFeatures, test: SpeechFeatures, index: int, config: AudioRunConfig, corpus: LibriSpeechCorpus
) -> dict[str, Any]:
    p, seed = config.probe, config.train.seed
    row = {
        "features": train.speaker[index].shape[1],
        "speaker": linear_probe(
            train.speaker[index],
            train.speakers,
            test.speaker[index],
            test.speakers,
            corpus.spec.num_speakers,
            p.speaker_epochs,
            p.speaker_lr,
            p.batch_size,
            seed,
        ),
    }
    if train.phone is not None and test.phone is not None:
        row["phone"] = linear_probe(
            train.phone[index],
            train.phones,
            test.phone[index],
            test.phones,
            corpus.spec.num_phones,
            p.phone_epochs,
            p.phone_lr,
            p.batch_size,
            seed,
        )
    return row


TASK = AudioTask()
