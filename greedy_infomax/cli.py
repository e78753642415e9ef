"""The `gim` command: sub-commands mapped to library functions, flags generated from the config dataclasses.

gim demo [vision|audio]   pre-train the fashion-mnist (or speech) preset, probe every module, print the table
gim pretrain [options]    pre-train into a new run folder (or --resume RUN)
gim probe RUN             linear + kNN probes of every module of a run
gim embed RUN --module K  the frozen features of module K for a split, as .npz (or .safetensors) with labels
gim reproduce TASK        every method of the paper's comparison, one budget: tables, error plot, commands
gim data NAME             download a dataset where a network exists, or generate the speech corpus
gim bench                 training speed, FLOP efficiency and memory of every preset and mode on this machine
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import Literal, Optional, get_args, get_type_hints

from jsonargparse import ArgumentParser, Namespace

from greedy_infomax.config import (
    CONFIG_TYPES,
    AnyRunConfig,
    TrainConfig,
    config_parser,
    config_task,
    field_docs,
    from_namespace,
)
from greedy_infomax.errors import GimError, TrainingStopped
from greedy_infomax.placement import resolve_device, tune_allocator
from greedy_infomax.reporting.run_folder import RunFolder, check_writable
from greedy_infomax.tasks import PRESETS, TASKS, preset


def main(argv: list[str] | None = None) -> int:
    """Entry point: a GimError (bad input, bad option) prints one line and exits 2; --debug shows the traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [arg for arg in argv if arg != "--debug"]
    tune_allocator()
    formatwarning, warnings.formatwarning = warnings.formatwarning, _one_line_warning
    try:
        namespace = _build_parser(_run_defaults(argv)).parse_args(argv)
        command = namespace.command
        return COMMANDS[command](namespace[command])
    except TrainingStopped as stopped:
        print(f"gim: {stopped}", file=sys.stderr)
        return 128 + stopped.signal_number
    except (GimError, OSError) as error:  # OSError: mostly a path given that cannot be read or written; --debug
        if debug:
            raise
        print(f"gim: error: {error}", file=sys.stderr)
        return 2
    except argparse.ArgumentError as error:
        if debug:
            raise
        message = " ".join(line.strip() for line in str(error).splitlines())
        command = " ".join(["gim", *[word for word in argv[:1] if word in COMMANDS]])
        print(f"gim: error: {message} (`{command} --help` lists the options)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gim: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = formatwarning


def _one_line_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    """Warnings as one line, like the errors, without the source line that Python prints."""
    kind = "warning" if category is UserWarning else category.__name__
    return f"gim: {kind}: {message}\n"


def _run_defaults(argv: list[str]) -> AnyRunConfig:
    """The config whose values the options of this command line override: the resumed or probed run's, else the
    named preset, else the --config file's, else the command's default preset. Read before the real parse,
    because which options exist depends on the task (vision or audio); the real parse then checks everything.
    """
    peek = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    peek.add_argument("--preset")
    peek.add_argument("--resume")
    peek.add_argument("--name")
    peek.add_argument("--output")
    peek.add_argument("--config", action="append", default=[])
    known, rest = peek.parse_known_args(argv)
    file_tasks = [config_task(Path(path)) for path in known.config]  # each file checked now: a bad one is one line
    words = [word for word in rest if not word.startswith("-")]
    command = words[0] if words else None
    if known.resume:
        if known.preset:
            raise GimError("--preset: a resumed run keeps its own config; pass only the options to change")
        if known.name or known.output:  # checked here, on every torchrun rank alike
            raise GimError(f"--{'name' if known.name else 'output'}: a resumed run stays in its folder {known.resume}")
        return _open_run(known.resume).config
    if known.preset:
        return preset(known.preset)
    if command == "probe":  # the run folder is the positional argument that holds a config.yaml
        runs = [Path(word) for word in words[1:] if (Path(word) / "config.yaml").is_file()]
        if runs:
            return _open_run(str(runs[0])).config
    task = next((word for word in words[1:] if word in TASKS), "vision") if command == "demo" else "vision"
    if file_tasks:  # the file's task decides which options exist; the real parse applies the file
        task = file_tasks[-1]
    return PRESETS[TASKS[task].demo_preset if command == "demo" else TASKS[task].paper_preset]


def _parser(**options) -> ArgumentParser:
    """A parser whose errors raise argparse.ArgumentError, which `main` prints as one line, instead of printing
    the whole usage (`--help` shows it) and exiting."""
    return ArgumentParser(exit_on_error=False, **options)


def _build_parser(defaults: AnyRunConfig) -> ArgumentParser:
    parser = _parser(prog="gim", description="Greedy InfoMax: gradient-isolated training, module by module.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subcommands(dest="command", required=True)
    commands.add_subcommand("pretrain", _pretrain_parser(defaults), help="pre-train an encoder module by module")
    commands.add_subcommand(
        "demo", _demo_parser(defaults), help="the whole story on embedded data: pre-train, probe, table and plot"
    )
    commands.add_subcommand("probe", _probe_parser(defaults), help="probe every module of a run")
    commands.add_subcommand("embed", _embed_parser(), help="write the frozen features of one module of a run")
    commands.add_subcommand(
        "reproduce",
        _reproduce_parser(),
        help="train and probe every method of the paper's comparison: tables and plots",
    )
    data = _parser(
        description=("Download a dataset (needs a network) into --root, or generate the offline speech corpus there.")
    )
    data.add_argument("name", choices=list(DATA_COMMANDS))
    data.add_argument("--root", type=str, default="data", help="where to put it")
    data.add_argument("--speakers", type=int, default=100, help="speech-corpus: number of synthetic speakers")
    data.add_argument("--utterances", type=int, default=20, help="speech-corpus: utterances per speaker")
    data.add_argument("--seed", type=int, default=0, help="speech-corpus: the corpus is a function of this seed")
    commands.add_subcommand("data", data, help="download STL-10, Fashion-MNIST or LibriSpeech; generate speech")
    commands.add_subcommand(
        "bench",
        _bench_parser(),
        help="speed, FLOP efficiency and memory of each preset and mode, against the matmul ceiling",
    )
    return parser


def _pretrain_parser(defaults: AnyRunConfig) -> ArgumentParser:
    defaults_by_task = "; ".join(f"{task.paper_preset} for a {name} --config file" for name, task in TASKS.items())
    parser = config_parser(
        defaults,
        description=(
            f"Pre-train an encoder greedily. Options, a --config file's among them, apply in order over --preset "
            f"(default {TASKS['vision'].paper_preset}; {defaults_by_task}) or the resumed run; `--preset NAME --help` "
            f"lists the options of that preset's task. Presets: {', '.join(PRESETS)}."
        ),
    )
    _add_run_arguments(parser)
    parser.add_argument("--resume", type=str, default=None, help="continue this run folder where it stopped")
    return parser


def _demo_parser(defaults: AnyRunConfig) -> ArgumentParser:
    parser = config_parser(
        defaults,
        description=(
            "Pre-train, probe every module and print the table: `gim demo` on Fashion-MNIST, `gim demo audio` on the "
            "generated speech corpus (generated first if missing); each takes minutes on a laptop."
        ),
    )
    parser.add_argument("demo", nargs="?", choices=list(TASKS), default="vision", help="which task's demo")
    _add_run_arguments(parser)
    parser.add_argument("--resume", type=str, default=None, help="continue this demo's run folder, then probe it")
    return parser


def _probe_parser(defaults: AnyRunConfig) -> ArgumentParser:
    parser = _parser(description="Linear and kNN probes of every module of a run (defaults: the run's).")
    parser.add_argument("run", type=str, help="run folder")
    parser.add_class_arguments(type(defaults.probe), "probe", default=defaults.probe, sub_configs=False)
    parser.add_argument("--data.root", type=str, default=None, help="dataset folder, if it moved since training")
    _add_step_argument(parser)
    _add_device_argument(parser)
    return parser


def _reproduce_parser() -> ArgumentParser:
    from greedy_infomax.reproduce import all_slugs

    parser = _parser(
        description=(
            "Train GIM, GIM with the sequential curriculum, end-to-end CPC, greedy supervised and supervised with one "
            "budget and seed, probe every module of each (and a random encoder and the raw input), and write "
            "comparison.md, comparison.png, comparison.json and commands.sh into --output. Budgets: smoke (seconds), "
            "cpu (Fashion-MNIST / the generated speech corpus, sized for a laptop's CPU), quick (vision: cpu on 20k "
            "training images, for --methods all), paper (STL-10 / LibriSpeech, GPU-sized; needs --root). "
            "Methods already probed in --output are not run again, and the report lists every method probed there."
        )
    )
    parser.add_argument("task", choices=list(TASKS), help="which comparison")
    budgets = list(dict.fromkeys(budget for task in TASKS.values() for budget in task.budgets))
    parser.add_argument("--budget", choices=budgets, default="cpu", help="training budget")
    parser.add_argument(
        "--output", type=str, default=None, help="folder for the runs and reports (default: runs/reproduce-TASK-BUDGET)"
    )
    parser.add_argument("--root", type=str, default=None, help="dataset folder (data.root of every run)")
    parser.add_argument("--device", type=str, default=None, help="train.device of every run (default: auto)")
    parser.add_argument(
        "--methods",
        type=Literal[("all", *all_slugs())],
        nargs="+",
        default=None,
        help="only these methods (default: the paper's comparison; all: also the local-learning methods after GIM)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="train every method at each seed; rows: the mean and standard deviation (default: the preset's seed)",
    )
    return parser


def _bench_parser() -> ArgumentParser:
    from greedy_infomax.bench import DEFAULT_PRESETS, METHODS, PRECISIONS

    parser = _parser(
        description=(
            "Measure the fp32/bf16 matmul ceiling, then train each preset in each mode and precision on random "
            "inputs, each case in a fresh process: samples/s, GFLOP/s (torch's flop counter) as a fraction of the "
            "ceiling, peak memory (RSS on CPU, max allocated on GPU); and the data pipeline alone where the dataset "
            "is on disk. Prints one table, writes OUTPUT.json and OUTPUT.md."
        )
    )
    parser.add_argument("--presets", type=str, nargs="+", default=list(DEFAULT_PRESETS), help="presets to measure")
    parser.add_argument(
        "--modes",
        type=Literal["end-to-end", "simultaneous", "module"],
        nargs="+",
        default=["end-to-end", "simultaneous", "module"],
        help="modes (module: each module trained alone, earlier ones frozen)",
    )
    parser.add_argument(
        "--precisions",
        type=Literal[PRECISIONS],
        nargs="+",
        default=None,
        help="default: fp32, and bf16 where the device computes it natively (emulated bf16 takes hours)",
    )
    parser.add_argument(
        "--methods",
        type=Literal[("all", *METHODS)],
        nargs="+",
        default=[],
        help="also each local-learning method after GIM (all: every one), trained as GIM simultaneous is, against GIM",
    )
    parser.add_argument("--device", type=str, default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--batch_size", type=int, default=None, help="override every preset's batch size")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per case (default: per preset)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (with --steps)")
    parser.add_argument("--repeats", type=int, default=1, help="groups the timed steps are split into (with --steps)")
    docs = field_docs(TrainConfig)
    hints = get_type_hints(TrainConfig)
    for name in BENCH_SWITCHES:  # only those given apply: the presets keep their own otherwise
        parser.add_argument(
            f"--train.{name}",
            type=Optional[hints[name]],
            default=None,
            help=f"for every case (default: each preset's own): {docs[name]}",
        )
    parser.add_argument(
        "--allocator",
        choices=["tuned", "glibc", "exact"],
        default="tuned",
        help=(
            "CPU malloc of the workers: tuned (as gim runs; keeps freed heap, which peak RSS counts), glibc (its "
            "defaults: what tuning gains) or exact (every buffer of 64 KiB or more mmapped and returned on free: peak "
            "RSS follows live tensors; slower)"
        ),
    )
    parser.add_argument(
        "--output",
        type=str,
        default=None,
        help="path without suffix for .json and .md (default: runs/bench/bench-DATE-TIME)",
    )
    return parser


BENCH_SWITCHES = (
    "compile",
    "channels_last",
    "deterministic",
    "recompute_activations",
    "frozen_chunks",
    "backward_chunks",
)
"""The train options `gim bench --train.NAME` sets in every case."""

EMBED_SPLITS = {"train": "probe_train", "test": "probe_test", "pretrain": "pretrain"}
"""`gim embed --split` -> the role of the split in the dataset (stl10's pretrain split is the unlabelled one)."""


def _embed_parser() -> ArgumentParser:
    parser = _parser(
        description=(
            "Write module K's frozen features of a split (pooled as the run's probes pool them) to a NumPy .npz file "
            "holding `features` (N, D) and, when the split is labelled, `labels` (N,); a .safetensors output needs the "
            "optional safetensors package. Data options default to the run's."
        )
    )
    parser.add_argument("run", type=str, help="run folder")
    parser.add_argument("--module", type=int, required=True, help="which module's features (1-based)")
    parser.add_argument("--split", choices=list(EMBED_SPLITS), default="test", help="which split of the dataset")
    parser.add_argument(
        "--output",
        type=str,
        default=None,
        help="file to write, .npz or .safetensors (default: RUN/embeddings/module-K-SPLIT.npz)",
    )
    parser.add_argument("--data.dataset", type=str, default=None, help="embed another dataset (same image format)")
    parser.add_argument("--data.root", type=str, default=None, help="its folder, or the run's dataset's new place")
    parser.add_argument(
        "--data.limit",
        type=int,
        default=None,
        help="only the first N images of the split; 0: all of it (default: the run's limit)",
    )
    parser.add_argument("--probe.pool", type=int, default=None, help="pool each grid to pool x pool cells")
    _add_step_argument(parser)
    _add_device_argument(parser)
    return parser


def _add_step_argument(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--step",
        type=Optional[int],
        default=None,
        help="use the checkpoint of this step (train.keep_every keeps them) instead of the newest",
    )


def _add_device_argument(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        type=str,
        default="auto",
        help="cpu, cuda or cuda:N; auto: a GPU if torch sees one (whatever the run trained on)",
    )


def _add_run_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--preset", type=str, default=None, help=f"start from a named preset: {', '.join(PRESETS)}")
    parser.add_argument("--output", type=str, default=None, help="folder holding run folders (default: runs)")
    parser.add_argument("--name", type=str, default=None, help="run folder name (default: the date and time)")


def _open_run(path: str) -> RunFolder:
    return RunFolder.open(Path(path))


def _config(args: Namespace) -> AnyRunConfig:
    """The validated run config of a pretrain/demo namespace; a bad value becomes a one-line error."""
    try:
        return from_namespace(config_parser(CONFIG_TYPES[args.task]()), args)
    except (ValueError, TypeError) as error:
        raise GimError(str(error)) from error


def cmd_pretrain(args: Namespace) -> int:
    """One process, or under torchrun (WORLD_SIZE > 1) the module-parallel engine, whose rank 0 holds the run."""
    from greedy_infomax.workflows import pretrain_run

    pretrain_run(_config(args), args.output, args.name, args.resume)
    return 0


def cmd_probe(args: Namespace) -> int:
    from greedy_infomax.reporting.probe_report import check_probe_report, write_probe_report
    from greedy_infomax.workflows import probe_run

    run = _open_run(args.run)
    config = run.config
    folder = run.path
    if args.step is not None:
        run, folder = run.at_step(args.step), run.path / "probes" / f"step-{args.step:08d}"
    check_probe_report(folder)  # now: a folder it cannot write fails before the probes, not after
    data = config.data if args.data.root is None else replace(config.data, root=args.data.root)
    try:
        config = replace(config, probe=type(config.probe)(**args.probe.as_dict()), data=data)
    except (ValueError, TypeError) as error:
        raise GimError(str(error)) from error
    results = probe_run(run, config, _checked_device(args.device))
    print(write_probe_report(folder, results))
    print(f"written: {folder / 'probe.json'}, {folder / 'probe.md'}, {folder / 'probe.png'}")
    return 0


def cmd_embed(args: Namespace) -> int:
    from greedy_infomax.evaluation.embed import array_writer
    from greedy_infomax.workflows import embed_run

    run = _open_run(args.run)
    config = _overridden(run.config, args)
    step = "" if args.step is None else f"-step-{args.step:08d}"
    path = Path(args.output or run.path / "embeddings" / f"module-{args.module}-{args.split}{step}.npz")
    if args.step is not None:
        run = run.at_step(args.step)
    write = array_writer(path)
    arrays = embed_run(run, args.module, EMBED_SPLITS[args.split], config, _checked_device(args.device))
    write(arrays)
    print(f"written: {path} ({', '.join(f'{name} {array.shape}' for name, array in arrays.items())})")
    return 0


def _overridden(config: AnyRunConfig, args: Namespace) -> AnyRunConfig:
    """The run's config with the data, probe and device options given on the command line; a bad value is one
    line. Embedding has no batch to fill, so a limit below the training batch shrinks the batch."""
    _checked_device(args.device)
    data = {name: value for name, value in args.data.as_dict().items() if value is not None}
    datasets = get_args(get_type_hints(type(config.data))["dataset"])  # a Literal; a str is checked by the config
    if datasets and data.get("dataset", config.data.dataset) not in datasets:
        raise GimError(f"--data.dataset {data['dataset']}: {config.task} runs embed one of {', '.join(datasets)}")
    if data.get("limit") == 0:  # the whole split, whatever the run was trained on
        data["limit"] = None
    elif data.get("limit") is not None:  # the batch shrinks to the limit, down to the 2 a data config allows
        data["batch_size"] = min(config.data.batch_size, max(data["limit"], 2))
    probe = {name: value for name, value in args.probe.as_dict().items() if value is not None}
    if unknown := sorted(probe.keys() - {field.name for field in fields(config.probe)}):
        raise GimError(f"--probe.{unknown[0]}: not an option of {config.task} runs")
    try:
        return replace(config, data=replace(config.data, **data), probe=replace(config.probe, **probe))
    except (ValueError, TypeError) as error:
        raise GimError(str(error)) from error


def _checked_device(name: str) -> str:
    """--device of probe, embed and bench, checked before any work."""
    resolve_device(name, "--device")
    return name


def cmd_reproduce(args: Namespace) -> int:
    from greedy_infomax.reproduce import reproduce

    output = Path(args.output or f"runs/reproduce-{args.task}-{args.budget}")
    try:
        methods = tuple(args.methods) if args.methods else None
        reproduce(args.task, args.budget, output, args.root, args.device, methods, args.seeds and tuple(args.seeds))
    except TrainingStopped as stopped:
        raise TrainingStopped(
            stopped.signal_number,
            f"{stopped}; continue with the same gim reproduce command, which keeps what {output} holds",
        ) from None
    print((output / "comparison.md").read_text())
    files = ("comparison.md", "comparison.png", "comparison.json", "commands.sh")
    print(f"written: {', '.join(str(output / name) for name in files)}")
    return 0


def cmd_bench(args: Namespace) -> int:
    from greedy_infomax.bench import Schedule, bench, default_precisions, table

    if args.steps is not None and not 1 <= args.repeats <= args.steps:
        raise GimError(f"bench: --repeats must be in 1..--steps ({args.steps}), got {args.repeats}")
    schedule = None if args.steps is None else Schedule(args.warmup, args.steps, args.repeats)
    _checked_device(args.device)  # checked now, as is the output folder: not after minutes of measuring
    output = Path(args.output or time.strftime("runs/bench/bench-%Y%m%d-%H%M%S"))
    for suffix in (".json", ".md"):
        check_writable(output.with_suffix(suffix), "measured")
    precisions = tuple(args.precisions or default_precisions(args.device))
    report = bench(
        tuple(args.presets),
        tuple(args.modes),
        precisions,
        args.device,
        args.batch_size,
        schedule,
        _switches(args),
        args.allocator,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
        methods=tuple(args.methods),
    )
    output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    output.with_suffix(".md").write_text(table(report) + "\n")
    print(table(report))
    print(f"written: {output.with_suffix('.json')}, {output.with_suffix('.md')}")
    return 0


def _switches(args: Namespace) -> dict[str, bool | int]:
    """The train options `gim bench` sets in every case: only those given on the command line."""
    return {name: value for name, value in args.train.as_dict().items() if value is not None}


def cmd_demo(args: Namespace) -> int:
    from greedy_infomax.reporting.probe_report import write_probe_report
    from greedy_infomax.workflows import pretrain_run, probe_run

    config = _config(args)
    if not args.resume and config.task != args.demo:
        raise GimError(f"--preset/--config: they make a {config.task} run, but this is the {args.demo} demo")
    print(f"1/2 pre-training {config.model.num_modules} gradient-isolated modules")
    run = pretrain_run(config, args.output, args.name, args.resume, prefix=f"demo-{config.task}-", command="gim demo")
    print("2/2 probing every module (trained and random-init encoders, and a baseline on the raw input)")
    print(write_probe_report(run.path, probe_run(run, device=config.train.device)))
    print(f"plot: {run.path / 'probe.png'}")
    return 0


def cmd_data(args: Namespace) -> int:
    root = Path(args.root)
    created = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise GimError(f"--root: cannot create the folder {args.root} ({error.strerror})") from error
    try:
        print(f"{args.name} ready in {DATA_COMMANDS[args.name](args)}")
    except GimError:
        if created and not any(root.iterdir()):  # a bad option: leave no empty folder behind
            root.rmdir()
        raise
    return 0


def _download(module: str, function: str) -> Callable[[Namespace], Path]:
    """A `gim data` action that calls greedy_infomax.data.<module>.<function>(root), imported when used."""

    def action(args: Namespace) -> Path:
        import importlib

        return getattr(importlib.import_module(f"greedy_infomax.data.{module}"), function)(Path(args.root))

    return action


def _generate_speech(args: Namespace) -> Path:
    from greedy_infomax.data.speech_corpus import generate_speech_corpus

    return generate_speech_corpus(
        Path(args.root), num_speakers=args.speakers, utterances_per_speaker=args.utterances, seed=args.seed
    )


DATA_COMMANDS: dict[str, Callable[[Namespace], Path]] = {
    "stl10": _download("stl10", "download_stl10"),
    "fashion-mnist": _download("fashion_mnist", "download_fashion_mnist"),
    "librispeech": _download("librispeech", "download_librispeech"),
    "speech-corpus": _generate_speech,
}


COMMANDS = {
    "pretrain": cmd_pretrain,
    "probe": cmd_probe,
    "embed": cmd_embed,
    "demo": cmd_demo,
    "reproduce": cmd_reproduce,
    "data": cmd_data,
    "bench": cmd_bench,
}


if __name__ == "__main__":
    sys.exit(main())
