"""The `gim` command: sub-commands mapped to library functions, flags generated from the config dataclasses.

    gim demo                  pre-train the fashion-mnist preset, probe every module, print the table
    gim pretrain [options]    pre-train into a new run folder (or --resume RUN)
    gim probe RUN             linear + kNN probes of every module of a run
    gim data NAME             download a dataset where a network exists, or generate the speech corpus
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from jsonargparse import ArgumentParser, Namespace

from greedy_infomax.config import PRESETS, ProbeConfig, RunConfig, config_parser, from_namespace, preset
from greedy_infomax.errors import GimError, TrainingStopped
from greedy_infomax.system import tune_allocator

if TYPE_CHECKING:
    from greedy_infomax.reporting.run_folder import RunFolder

DEMO_PRESET = "fashion-mnist"


def main(argv: list[str] | None = None) -> int:
    """Entry point: a GimError (bad input, bad option) prints one line and exits 2; --debug shows the traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [arg for arg in argv if arg != "--debug"]
    tune_allocator()
    try:
        namespace = _build_parser().parse_args(argv)
        command = namespace.command
        return COMMANDS[command](namespace[command], argv[argv.index(command) + 1:])
    except TrainingStopped as stopped:
        print(f"gim: {stopped}", file=sys.stderr)
        return 128 + stopped.signal_number
    except GimError as error:
        if debug:
            raise
        print(f"gim: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gim: interrupted", file=sys.stderr)
        return 130


def _build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="gim", description="Greedy InfoMax: gradient-isolated training, module by module.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subcommands(dest="command", required=True)
    commands.add_subcommand("pretrain", _pretrain_parser(PRESETS["paper-stl10"]),
                            help="pre-train an encoder module by module")
    commands.add_subcommand("demo", _demo_parser(PRESETS[DEMO_PRESET]),
                            help="the whole story on Fashion-MNIST: pre-train, probe, table and plot")
    commands.add_subcommand("probe", _probe_parser(ProbeConfig()), help="probe every module of a run")
    data = ArgumentParser(description=(
        "Download a dataset (needs a network) into --root, or generate the offline speech corpus there."))
    data.add_argument("name", choices=list(DATA_COMMANDS))
    data.add_argument("--root", type=str, default="data", help="where to put it")
    data.add_argument("--speakers", type=int, default=100, help="speech-corpus: number of synthetic speakers")
    data.add_argument("--utterances", type=int, default=20, help="speech-corpus: utterances per speaker")
    data.add_argument("--seed", type=int, default=0, help="speech-corpus: the corpus is a function of this seed")
    commands.add_subcommand("data", data, help="download STL-10, Fashion-MNIST or LibriSpeech; generate speech")
    return parser


def _pretrain_parser(defaults: RunConfig) -> ArgumentParser:
    parser = config_parser(defaults, description=(
        "Pre-train an encoder greedily. Options override --preset (default paper-stl10) or the resumed run."))
    _add_run_arguments(parser)
    parser.add_argument("--resume", type=str, default=None, help="continue this run folder where it stopped")
    return parser


def _demo_parser(defaults: RunConfig) -> ArgumentParser:
    parser = config_parser(defaults, description=(
        "Pre-train the fashion-mnist preset, probe every module and print the table (about 15 min on 2 cores)."))
    _add_run_arguments(parser)
    return parser


def _probe_parser(defaults: ProbeConfig) -> ArgumentParser:
    parser = ArgumentParser(description="Linear and kNN probes of every module of a run (defaults: the run's).")
    parser.add_argument("run", type=str, help="run folder")
    parser.add_class_arguments(ProbeConfig, "probe", default=defaults, sub_configs=False)
    parser.add_argument("--data.root", type=str, default=None, help="dataset folder, if it moved since training")
    return parser


def _add_run_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--preset", type=str, default=None,
                        help=f"start from a named preset: {', '.join(PRESETS)}")
    parser.add_argument("--output", type=str, default="runs", help="folder holding run folders")
    parser.add_argument("--name", type=str, default=None, help="run folder name (default: the date and time)")


def _reparse(build: Callable[[RunConfig], ArgumentParser], args: Namespace, argv: list[str],
             fallback: RunConfig) -> Namespace:
    """Parse a sub-command's arguments again over the right defaults: the resumed run's config, else the preset.

    The first pass only tells which run or preset was named; options given on the command line always win.
    """
    resume = getattr(args, "resume", None)
    defaults = _open_run(resume).config if resume else preset(args.preset) if args.preset else fallback
    return build(defaults).parse_args(argv)


def _open_run(path: str) -> RunFolder:
    from greedy_infomax.reporting.run_folder import RunFolder  # late: torch loads slowly, --help need not wait
    return RunFolder.open(Path(path))


def _config(parser_namespace: Namespace) -> RunConfig:
    """The validated RunConfig of a pretrain/demo namespace; a bad value becomes a one-line error."""
    parser = config_parser(RunConfig())
    values = {key: parser_namespace[key] for key in ("data", "model", "objective", "train", "probe")}
    try:
        return from_namespace(parser, Namespace(**values))
    except (ValueError, TypeError) as error:
        raise GimError(str(error)) from error


def cmd_pretrain(args: Namespace, argv: list[str]) -> int:
    from greedy_infomax.engines.local import pretrain
    from greedy_infomax.reporting.run_folder import RunFolder

    args = _reparse(_pretrain_parser, args, argv, PRESETS["paper-stl10"])
    config = _config(args)
    run = _open_run(args.resume) if args.resume else RunFolder.create(Path(args.output), args.name, config)
    print(f"run folder: {run.path}")
    pretrain(config, run, resume=bool(args.resume))
    return 0


def cmd_probe(args: Namespace, argv: list[str]) -> int:
    from greedy_infomax.evaluation.protocol import probe_run
    from greedy_infomax.reporting.probe_report import write_probe_report

    run = _open_run(args.run)
    config = run.config
    args = _probe_parser(config.probe).parse_args(argv)
    data = config.data if args.data.root is None else replace(config.data, root=args.data.root)
    try:
        config = replace(config, probe=ProbeConfig(**args.probe.as_dict()), data=data)
    except ValueError as error:
        raise GimError(str(error)) from error
    results = probe_run(run, config)
    print(write_probe_report(run.path, results))
    print(f"written: {run.path / 'probe.json'}, {run.path / 'probe.md'}, {run.path / 'probe.png'}")
    return 0


def cmd_demo(args: Namespace, argv: list[str]) -> int:
    from greedy_infomax.engines.local import pretrain
    from greedy_infomax.evaluation.protocol import probe_run
    from greedy_infomax.reporting.probe_report import write_probe_report
    from greedy_infomax.reporting.run_folder import RunFolder

    args = _reparse(_demo_parser, args, argv, PRESETS[DEMO_PRESET])
    config = _config(args)
    run = RunFolder.create(Path(args.output), args.name or time.strftime("demo-%Y%m%d-%H%M%S"), config)
    print(f"run folder: {run.path}\n1/2 pre-training {config.model.num_modules} gradient-isolated modules")
    pretrain(config, run)
    print("2/2 probing every module (trained and random-init encoders, raw pixels)")
    print(write_probe_report(run.path, probe_run(run)))
    print(f"plot: {run.path / 'probe.png'}")
    return 0


def cmd_data(args: Namespace, argv: list[str]) -> int:
    print(f"{args.name} ready in {DATA_COMMANDS[args.name](args)}")
    return 0


def _download(module: str, function: str) -> Callable[[Namespace], Path]:
    """A `gim data` action that calls greedy_infomax.data.<module>.<function>(root), imported when used."""
    def action(args: Namespace) -> Path:
        import importlib
        return getattr(importlib.import_module(f"greedy_infomax.data.{module}"), function)(Path(args.root))
    return action


def _generate_speech(args: Namespace) -> Path:
    from greedy_infomax.data.speech_corpus import generate_speech_corpus
    return generate_speech_corpus(Path(args.root), num_speakers=args.speakers,
                                  utterances_per_speaker=args.utterances, seed=args.seed)


DATA_COMMANDS: dict[str, Callable[[Namespace], Path]] = {
    "stl10": _download("stl10", "download_stl10"),
    "fashion-mnist": _download("fashion_mnist", "download_fashion_mnist"),
    "librispeech": _download("librispeech", "download_librispeech"),
    "speech-corpus": _generate_speech,
}


COMMANDS = {"pretrain": cmd_pretrain, "probe": cmd_probe, "demo": cmd_demo, "data": cmd_data}


if __name__ == "__main__":
    sys.exit(main())
