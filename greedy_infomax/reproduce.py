"""`gim reproduce`: every method of the paper's comparison trained with one budget and seed (or several, each
row then their mean and standard deviation), every module probed, and one folder with the tables, the per-module
error plot and the commands that reproduce each run.

Rows are methods: GIM, GIM with the sequential curriculum, end-to-end CPC, greedy supervised and supervised (all
on the same encoder), then the random encoder and the raw-input baseline from the GIM run's probes; with
`--methods all`, also the local-learning methods after GIM (overlapping modules, CLAPP, the two-view objectives
per module and end to end). End-to-end
runs are probed at GIM's module boundaries, so every row has a column per module. A method whose run folder
already holds its probe results is not run again, so an interrupted reproduction continues where it stopped.
"""

from __future__ import annotations

import json
import shlex
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from greedy_infomax.config import AnyRunConfig, end_to_end, to_dict
from greedy_infomax.errors import GimError
from greedy_infomax.reporting.comparison import write_comparison
from greedy_infomax.reporting.probe_report import write_probe_report
from greedy_infomax.reporting.run_folder import RunFolder
from greedy_infomax.tasks import PRESETS, TASKS, task_of
from greedy_infomax.workflows import pretrain, probe_run

SECONDS_FILE = "reproduce-seconds.txt"
"""In a method's folder: the seconds spent training and probing it, summed over interrupted attempts."""


@dataclass(frozen=True)
class Method:
    name: str
    slug: str
    change: Callable[[AnyRunConfig], AnyRunConfig]
    """The method's config made from the budget's GIM config."""
    objective: str | None = None
    """The objective the method trains with, where it is not the task's own: a task without it has no such row."""
    paper: bool = True
    """A row of the paper's comparison (run by default), or a local-learning method after it (`--methods all`)."""

    def fits(self, task: str) -> bool:
        """Whether the task has the method's objective."""
        return self.objective is None or self.objective in TASKS[task].objectives


def _per_module(config: AnyRunConfig) -> AnyRunConfig:
    return config


def _sequential(config: AnyRunConfig) -> AnyRunConfig:
    return replace(config, train=replace(config.train, curriculum="sequential"))


def _cpc(config: AnyRunConfig) -> AnyRunConfig:
    return task_of(config).end_to_end_cpc(config)


def _greedy_supervised(config: AnyRunConfig) -> AnyRunConfig:
    return replace(config, objective=replace(config.objective, name="supervised"))


def _supervised(config: AnyRunConfig) -> AnyRunConfig:
    return end_to_end(_greedy_supervised(config))


SUPERVISED = (_greedy_supervised, _supervised)


METHODS = (
    Method("GIM", "gim", _per_module),
    Method("GIM, sequential curriculum", "gim-sequential", _sequential),
    Method("end-to-end CPC", "cpc", _cpc),
    Method("greedy supervised", "greedy-supervised", _greedy_supervised),
    Method("supervised", "supervised", _supervised),
)
"""The comparison's methods; each supervised one stands for one row per supervised variant of the task."""


def _overlap(config: AnyRunConfig) -> AnyRunConfig:
    return replace(config, model=replace(config.model, overlap=1))


def _trained_with(
    objective: str, cut: Callable[[AnyRunConfig], AnyRunConfig] = _per_module
) -> Callable[[AnyRunConfig], AnyRunConfig]:
    """The objective trained where `cut` places the modules' boundaries: per module (GIM's), per module with LoCo's
    overlap of one stage (`_overlap`), or end to end (`end_to_end`)."""

    def change(config: AnyRunConfig) -> AnyRunConfig:
        return cut(replace(config, objective=replace(config.objective, name=objective)))

    return change


AFTER_GIM = (
    Method("GIM, overlap 1 (LoCo)", "gim-overlap", _overlap, paper=False),
    Method("CLAPP", "clapp", _trained_with("clapp"), "clapp", paper=False),
    *(
        Method(f"{name} {where}", slug + suffix, _trained_with(objective, cut), objective, paper=False)
        for name, objective, slug in (
            ("SimCLR", "simclr", "simclr"),
            ("Barlow Twins", "barlow_twins", "barlow-twins"),
            ("VICReg", "vicreg", "vicreg"),
        )
        for where, suffix, cut in (
            ("per module", "", _per_module),
            ("per module, overlap 1 (LoCo)", "-overlap", _overlap),
            ("end to end", "-end-to-end", end_to_end),
        )
    ),
)
"""The local-learning methods after GIM, on the same encoder, budget and seed (docs/methods.md); each two-view
objective also per module with LoCo's overlap (LoCo's own setting is a contrastive two-view loss with it) and
end to end, to see what training it per module costs and how much of that the overlap recovers."""


def methods_of(task: str, budget: str) -> tuple[Method, ...]:
    """The rows of a task's comparison at a budget: the supervised methods once per supervised variant (audio at
    the paper's budget: a speaker model and a phone model, as the original code trains them)."""
    rows = []
    for method in (*METHODS, *AFTER_GIM):
        if not method.fits(task):
            continue
        if method.change not in SUPERVISED:
            rows.append(method)
            continue
        for variant in TASKS[task].supervised_variants(budget):
            rows.append(
                method
                if not variant
                else Method(
                    f"{method.name} ({variant})",
                    f"{method.slug}-{variant}",
                    lambda config, change=method.change, variant=variant: task_of(config).supervised_variant(
                        change(config), variant
                    ),
                )
            )
    return tuple(rows)


def all_slugs() -> tuple[str, ...]:
    """Every method slug of every task and budget, for `gim reproduce --methods` (beside "all")."""
    return tuple(
        dict.fromkeys(
            method.slug
            for task in TASKS.values()
            for budget in task.budgets
            for method in methods_of(task.name, budget)
        )
    )


def budget_config(task: str, budget: str, root: str | None = None, device: str | None = None) -> AnyRunConfig:
    """The GIM config of a budget: its preset, with the data folder and device given, sized for the data's labels
    (data that can be made offline, the speech corpus, is made first if missing, as `gim pretrain` makes it)."""
    config = TASKS[task].budget_config(budget)
    if root is not None:
        config = replace(config, data=replace(config.data, root=root))
    if device is not None:
        config = replace(config, train=replace(config.train, device=device))
    TASKS[task].prepare_data(config)
    return TASKS[task].sized_for_labels(config)


def method_config(method: Method, base: AnyRunConfig) -> AnyRunConfig:
    """The method's full config: trained as the method says, probed at GIM's module boundaries, with the random
    encoder and the raw-input baseline probed beside GIM (at each seed: a random encoder is a draw too)."""
    config = method.change(base)
    probe = replace(
        config.probe,
        stages_per_module=base.model.stages_per_module
        if config.model.stages_per_module != base.model.stages_per_module
        else None,
    )
    return task_of(config).with_baselines(replace(config, probe=probe), method.slug == "gim")


def run_name(slug: str, seed: int, budget_seed: int) -> str:
    """A run's folder name in the reproduction: the method's slug at the budget's own seed (as before seeds could
    be chosen, so earlier reproductions are kept), `<slug>-seed<N>` at another."""
    return slug if seed == budget_seed else f"{slug}-seed{seed}"


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The probe results of one method's seeds as one: each accuracy (trained modules, and the random encoder and
    the raw input where the runs probed them) the mean over the seeds, with their sample standard deviation in
    `spread`, `random_spread`, `baseline_spread` (absent for one seed)."""
    if len(runs) == 1:
        return runs[0]
    probes = runs[0]["probes"]
    trained, spread = _pool([run["trained"] for run in runs], probes)
    result = {**runs[0], "trained": trained, "spread": spread}
    randoms = [run["random"] for run in runs if "random" in run]
    if len(randoms) > 1:
        result["random"], result["random_spread"] = _pool(randoms, probes)
    baselines = [[run["baseline"]] for run in runs if "baseline" in run]
    if len(baselines) > 1:
        [result["baseline"]], [result["baseline_spread"]] = _pool(baselines, probes)
    return result


def _pool(runs: list[list[dict[str, Any]]], probes: list[str]) -> tuple[list[dict], list[dict]]:
    """Rows of per-module results, one list per run, as one list of means and one of sample standard deviations
    (None where a run lacks the accuracy)."""
    means, spreads = [], []
    for rows in zip(*runs):
        values = {probe: [row.get(probe) for row in rows] for probe in probes}
        known = {probe: None not in values[probe] for probe in probes}
        means.append({**rows[0], **{p: statistics.mean(values[p]) if known[p] else None for p in probes}})
        spreads.append({p: statistics.stdev(values[p]) if known[p] else None for p in probes})
    return means, spreads


def reproduce(
    task: str,
    budget: str,
    output: Path,
    root: str | None = None,
    device: str | None = None,
    methods: tuple[str, ...] | None = None,
    seeds: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """Train and probe the paper's methods (or the named slugs; "all": every method) at each seed (default: the
    budget's) into output/<run name>/ and write the comparison there, with every method probed in `output` at any
    of these seeds so far (a run probed before keeps the training time then measured)."""
    base = budget_config(task, budget, root, device)
    seeds = tuple(dict.fromkeys(seeds or (base.train.seed,)))
    if min(seeds) < 0:
        raise GimError(f"--seeds: seeds are non-negative integers, not {min(seeds)}")
    rows_of_task = methods_of(task, budget)
    chosen = [m for m in rows_of_task if (m.paper if methods is None else "all" in methods or m.slug in methods)]
    output.mkdir(parents=True, exist_ok=True)
    preset = TASKS[task].budgets[budget]
    rows, commands = [], [f"# {task}, budget {budget}: preset {preset}"]
    for method in rows_of_task:
        runs, seconds, run_seeds = [], [], []
        for seed in seeds:
            config = method_config(method, replace(base, train=replace(base.train, seed=seed)))
            name = run_name(method.slug, seed, base.train.seed)
            path = output / name
            probed = path / "probe.json"
            if method in chosen:
                done = chosen.index(method) * len(seeds) + seeds.index(seed)
                print(
                    f"[{done + 1}/{len(chosen) * len(seeds)}] {method.name}, seed {seed}: "
                    f"{config.model.num_modules} module(s), {config.objective.name}, "
                    f"curriculum {config.train.curriculum}",
                    flush=True,
                )
                if probed.exists():
                    print(f"  already done: {probed}", flush=True)
                else:
                    _train_and_probe(config, path, device or "auto")
            elif probed.exists():
                print(f"  also in the report: {path}", flush=True)
            else:
                continue
            runs.append(json.loads(probed.read_text()))
            seconds.append(_seconds_spent(path))
            run_seeds.append(seed)
            commands += [f"# {method.name}, seed {seed}", *_commands(preset, config, output, name)]
        if runs:
            rows.append(
                {
                    "method": method.name,
                    "slug": method.slug,
                    "seeds": run_seeds,
                    "seconds": None if None in seconds else sum(seconds) / len(seconds),
                    "results": pooled(runs),
                }
            )
    summary = {
        "task": task,
        "budget": budget,
        "preset": preset,
        "seeds": list(seeds),
        "date": time.strftime("%Y-%m-%d"),
        "methods": rows,
        "paper": TASKS[task].paper_results,
    }
    (output / "commands.sh").write_text("\n".join(commands) + "\n")
    (output / "comparison.json").write_text(json.dumps(summary, indent=2))
    write_comparison(summary, output)
    return summary


def _train_and_probe(config: AnyRunConfig, path: Path, device: str) -> None:
    """Pre-train (continuing a run cut short) and probe into `path`, adding the time spent to its SECONDS_FILE
    even when interrupted, so a method finished in several attempts reports its whole time."""
    resume = (path / "config.yaml").exists()
    started = time.perf_counter()
    try:
        run = RunFolder.open(path) if resume else RunFolder.create(path.parent, path.name, config)
        pretrain(config, run, resume=resume)
        write_probe_report(run.path, probe_run(run, config, device))
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
    return [
        shlex.join(["gim", "pretrain", "--preset", preset, "--output", str(output), "--name", slug, *flags]),
        shlex.join(["gim", "probe", str(output / slug)]),
    ]


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
