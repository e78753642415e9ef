"""`gim reproduce`: every method of the paper's comparison trained with one budget and seed, every module probed,
and one folder with the tables, the per-module error plot and the commands that reproduce each row.

Rows are methods: GIM, GIM with the sequential curriculum, end-to-end CPC, greedy supervised and supervised (all
on the same encoder), then the random encoder and the raw-input baseline from the GIM run's probes. End-to-end
runs are probed at GIM's module boundaries, so every row has a column per module. A method whose run folder
already holds its probe results is not run again, so an interrupted reproduction continues where it stopped.
"""
from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from greedy_infomax.config import PRESETS, AnyRunConfig, end_to_end, to_dict
from greedy_infomax.data import load_speech, load_split
from greedy_infomax.engines.local import pretrain
from greedy_infomax.errors import GimError
from greedy_infomax.evaluation.protocol import probe_run
from greedy_infomax.reporting.comparison import write_comparison
from greedy_infomax.reporting.probe_report import write_probe_report
from greedy_infomax.reporting.run_folder import RunFolder

SECONDS_FILE = "reproduce-seconds.txt"
"""In a method's folder: the seconds spent training and probing it, summed over interrupted attempts."""

BUDGETS: dict[str, dict[str, str]] = {
    "vision": {"smoke": "smoke", "cpu": "fashion-mnist", "paper": "paper-stl10"},
    "audio": {"smoke": "speech-smoke", "cpu": "speech", "paper": "paper-librispeech"},
}
"""The preset each budget starts from: `smoke` for tests, `cpu` for 2 cores in under an hour, `paper` the paper's."""

CPU_AUDIO_EPOCHS = 8
"""The `cpu` audio budget trains the `speech` preset for 8 epochs instead of 20, so that the five methods and their
probes fit in an hour on 2 cores."""


@dataclass(frozen=True)
class Method:
    name: str
    slug: str
    change: Callable[[AnyRunConfig], AnyRunConfig]
    """The method's config made from the budget's GIM config."""


def _sequential(config: AnyRunConfig) -> AnyRunConfig:
    return replace(config, train=replace(config.train, curriculum="sequential"))


def _cpc(config: AnyRunConfig) -> AnyRunConfig:
    config = end_to_end(config)
    if config.task == "vision":
        config = replace(config, model=replace(config.model, autoregressor="pixelcnn"))
    return config


def _greedy_supervised(config: AnyRunConfig) -> AnyRunConfig:
    return replace(config, objective=replace(config.objective, name="supervised"))


METHODS = (
    Method("GIM", "gim", lambda config: config),
    Method("GIM, sequential curriculum", "gim-sequential", _sequential),
    Method("end-to-end CPC", "cpc", _cpc),
    Method("greedy supervised", "greedy-supervised", _greedy_supervised),
    Method("supervised", "supervised", lambda config: end_to_end(_greedy_supervised(config))),
)

PAPER = {
    "vision": {"GIM": 81.9, "end-to-end CPC": 80.5, "supervised": 71.4, "greedy supervised": 65.2,
               "random init": 27.0},
    "audio": {"GIM": {"speaker": 99.4, "phone": 62.5}, "end-to-end CPC": {"speaker": 97.4, "phone": 64.6},
              "log-mel": {"speaker": 17.6, "phone": 39.7}},
}
"""Last-module accuracies of the paper (STL-10 linear probe; LibriSpeech-100 speaker and phone probes, the log-mel
row against the paper's MFCC). Only GIM's 81.9 is confirmed from a primary source (see the spec)."""


def budget_config(task: str, budget: str, root: str | None = None, device: str | None = None) -> AnyRunConfig:
    """The GIM config of a budget: its preset, with the data folder and device given, and what the probes need."""
    config = PRESETS[BUDGETS[task][budget]]
    if budget == "cpu" and task == "audio":
        config = replace(config, train=replace(config.train, epochs=CPU_AUDIO_EPOCHS))
    if root is not None:
        config = replace(config, data=replace(config.data, root=root))
    if device is not None:
        config = replace(config, train=replace(config.train, device=device))
    if task == "vision":  # the paper's linear probe: each module's grid average-pooled to C features; no kNN
        config = replace(config, probe=replace(config.probe, pool=1, knn_k=0))
    return _sized_for_labels(config)


def _sized_for_labels(config: AnyRunConfig) -> AnyRunConfig:
    """The supervised objectives' class counts taken from the data (the generated corpus has its own speakers)."""
    if config.task == "audio":
        spec = load_speech(config.data).spec
        objective = replace(config.objective, num_speakers=spec.num_speakers, num_phones=spec.num_phones)
    else:
        objective = replace(config.objective, num_classes=load_split(config.data, "probe_train").spec.num_classes)
    return replace(config, objective=objective)


def method_config(method: Method, base: AnyRunConfig) -> AnyRunConfig:
    """The method's full config: trained as the method says, probed at GIM's module boundaries, with the random
    encoder and the raw-input baseline probed once, next to GIM."""
    config = method.change(base)
    probe = replace(config.probe, stages_per_module=base.model.stages_per_module
                    if config.model.stages_per_module != base.model.stages_per_module else None)
    extras = method.slug == "gim"
    if config.task == "audio":
        probe = replace(probe, random_init=extras, log_mel=extras)
    else:
        probe = replace(probe, random_init=extras, raw_pixels=extras)
    return replace(config, probe=probe)


def reproduce(task: str, budget: str, output: Path, root: str | None = None, device: str | None = None,
              methods: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Train and probe every method (or the named slugs) into output/<slug>/ and write the comparison there, with
    every method probed in `output` so far (a method probed before keeps the training time then measured)."""
    base = budget_config(task, budget, root, device)
    chosen = [m for m in METHODS if methods is None or m.slug in methods]
    output.mkdir(parents=True, exist_ok=True)
    rows, commands = [], [f"# {task}, budget {budget}: preset {BUDGETS[task][budget]}"]
    for method in METHODS:
        config, path = method_config(method, base), output / method.slug
        probed = path / "probe.json"
        if method in chosen:
            print(f"[{chosen.index(method) + 1}/{len(chosen)}] {method.name}: {config.model.num_modules} module(s), "
                  f"{config.objective.name}, curriculum {config.train.curriculum}", flush=True)
            if probed.exists():
                print(f"  already done: {probed}", flush=True)
            else:
                _train_and_probe(config, path)
        elif probed.exists():
            print(f"  also in the report: {path}", flush=True)
        else:
            continue
        results = json.loads(probed.read_text())
        rows.append({"method": method.name, "slug": method.slug, "seconds": _seconds_spent(path),
                     "results": results})
        commands += [f"# {method.name}", *_commands(BUDGETS[task][budget], config, output, method.slug)]
    summary = {"task": task, "budget": budget, "preset": BUDGETS[task][budget], "seed": base.train.seed,
               "date": time.strftime("%Y-%m-%d"), "methods": rows, "paper": PAPER[task]}
    (output / "commands.sh").write_text("\n".join(commands) + "\n")
    (output / "comparison.json").write_text(json.dumps(summary, indent=2))
    write_comparison(summary, output)
    return summary


def _train_and_probe(config: AnyRunConfig, path: Path) -> None:
    """Pre-train (continuing a run cut short) and probe into `path`, adding the time spent to its SECONDS_FILE
    even when interrupted, so a method finished in several attempts reports its whole time."""
    resume = (path / "config.yaml").exists()
    started = time.perf_counter()
    try:
        run = RunFolder.open(path) if resume else RunFolder.create(path.parent, path.name, config)
        pretrain(config, run, resume=resume)
        write_probe_report(run.path, probe_run(run, config))
    finally:
        if path.is_dir():
            spent = (_seconds_spent(path) or 0.0) + time.perf_counter() - started
            (path / SECONDS_FILE).write_text(f"{spent:.1f}\n")


def _seconds_spent(path: Path) -> float | None:
    file = path / SECONDS_FILE
    if not file.exists():
        return None
    try:
        return float(file.read_text())
    except ValueError as error:
        raise GimError(f"{file}: not a number of seconds ({error}); delete it to restart the count") from error


def _commands(preset: str, config: AnyRunConfig, output: Path, slug: str) -> list[str]:
    """The `gim pretrain` and `gim probe` command lines that make this row on their own (the probe options are
    part of the run's config, so `gim probe` needs none)."""
    flags = _flags(_differences(to_dict(PRESETS[preset]), to_dict(config)))
    return [shlex.join(["gim", "pretrain", "--preset", preset, "--output", str(output), "--name", slug, *flags]),
            shlex.join(["gim", "probe", str(output / slug)])]


def _differences(before: dict, after: dict, prefix: str = "") -> list[tuple[str, Any]]:
    changed = []
    for key, value in after.items():
        if isinstance(value, dict):
            changed += _differences(before.get(key, {}), value, f"{prefix}{key}.")
        elif before.get(key) != value:
            changed.append((prefix + key, value))
    return changed


def _flags(options: list[tuple[str, Any]]) -> list[str]:
    return [part for name, value in options for part in (f"--{name}", _value(value))]


def _value(value: Any) -> str:
    if isinstance(value, list):
        return json.dumps(value)
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
