"""The `gim` command: sub-commands mapped to library functions, flags generated from the config dataclasses.

    gim demo                  pre-train the fashion-mnist preset, probe every module, print the table
    gim pretrain [options]    pre-train into a new run folder (or --resume RUN)
    gim probe RUN             linear + kNN probes of every module of a run
    gim data NAME             download a dataset where a network exists
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from jsonargparse import ArgumentParser, Namespace

from greedy_infomax.config import PRESETS, ProbeConfig, RunConfig, config_parser, from_namespace, preset
from greedy_infomax.errors import GimError
from greedy_infomax.system import tune_allocator

DEMO_PRESET = "fashion-mnist"


def main(argv: list[str] | None = None) -> int:
    """Entry point: a GimError (bad input, bad option) prints one line and exits 2; --debug shows the traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [arg for arg in argv if arg != "--debug"]
    tune_allocator()
    try:
        parser = _build_parser(argv)
        namespace = parser.parse_args(argv)
        return COMMANDS[namespace.command](namespace[namespace.command])
    except GimError as error:
        if debug:
            raise
        print(f"gim: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gim: interrupted", file=sys.stderr)
        return 130


def _build_parser(argv: list[str]) -> ArgumentParser:
    """Sub-command parsers whose defaults are the chosen preset, or the run folder being continued/probed."""
    parser = ArgumentParser(prog="gim", description="Greedy InfoMax: gradient-isolated training, module by module.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subcommands(dest="command", required=True)
    command = next((arg for arg in argv if not arg.startswith("-")), None)

    pretrain = config_parser(_defaults(argv, command == "pretrain"), description="Pre-train an encoder greedily.")
    _add_run_arguments(pretrain)
    pretrain.add_argument("--resume", type=str, default=None, help="continue this run folder where it stopped")
    commands.add_subcommand("pretrain", pretrain, help="pre-train an encoder module by module")

    demo = config_parser(_defaults(argv, command == "demo", DEMO_PRESET), description=(
        "Pre-train the fashion-mnist preset, probe every module and print the table (about 15 min on 2 cores)."))
    _add_run_arguments(demo)
    commands.add_subcommand("demo", demo, help="the whole story on Fashion-MNIST: pre-train, probe, table and plot")

    probe = ArgumentParser(description="Linear and kNN probes of every module of a run.")
    probe.add_argument("run", type=str, help="run folder")
    probe_defaults = _run_config(argv[argv.index("probe") + 1]).probe if command == "probe" and _has_run(argv) \
        else ProbeConfig()
    probe.add_class_arguments(ProbeConfig, "probe", default=probe_defaults, sub_configs=False)
    probe.add_argument("--data.root", type=str, default=None, help="dataset folder, if it moved since training")
    commands.add_subcommand("probe", probe, help="probe every module of a run")

    data = ArgumentParser(description="Download a dataset (needs a network) into --root.")
    data.add_argument("name", choices=["stl10", "fashion-mnist"])
    data.add_argument("--root", type=str, default="data", help="where to put it")
    commands.add_subcommand("data", data, help="download STL-10 or Fashion-MNIST")
    return parser


def _add_run_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--preset", type=str, default=None,
                        help=f"start from a named preset: {', '.join(PRESETS)} (options given after override it)")
    parser.add_argument("--output", type=str, default="runs", help="folder holding run folders")
    parser.add_argument("--name", type=str, default=None, help="run folder name (default: the date and time)")


def _defaults(argv: list[str], active: bool, fallback: str = "paper-stl10") -> RunConfig:
    """The config that flags override: the run being resumed, else the --preset, else the fallback preset."""
    if not active:
        return PRESETS[fallback]
    if "--resume" in argv[:-1]:
        return _run_config(argv[argv.index("--resume") + 1])
    for position, arg in enumerate(argv):
        if arg == "--preset" and position + 1 < len(argv):
            return preset(argv[position + 1])
        if arg.startswith("--preset="):
            return preset(arg.split("=", 1)[1])
    return PRESETS[fallback]


def _has_run(argv: list[str]) -> bool:
    return argv.index("probe") + 1 < len(argv) and not argv[argv.index("probe") + 1].startswith("-")


def _run_config(path: str) -> RunConfig:
    from greedy_infomax.reporting.run_folder import RunFolder
    return RunFolder.open(Path(path)).config


def _config(parser_namespace: Namespace) -> RunConfig:
    """The validated RunConfig of a pretrain/demo namespace; a bad value becomes a one-line error."""
    parser = config_parser(RunConfig())
    values = {key: parser_namespace[key] for key in ("data", "model", "objective", "train", "probe")}
    try:
        return from_namespace(parser, Namespace(**values))
    except (ValueError, TypeError) as error:
        raise GimError(str(error)) from error


def cmd_pretrain(args: Namespace) -> int:
    from greedy_infomax.engines.local import pretrain
    from greedy_infomax.reporting.run_folder import RunFolder

    config = _config(args)
    if args.resume:
        run = RunFolder.open(Path(args.resume))
        run.update_config(config)
    else:
        run = RunFolder.create(Path(args.output), args.name, config)
    print(f"run folder: {run.path}")
    pretrain(config, run, resume=bool(args.resume))
    return 0


def cmd_probe(args: Namespace) -> int:
    from greedy_infomax.evaluation.protocol import probe_run
    from greedy_infomax.reporting.probe_report import write_probe_report
    from greedy_infomax.reporting.run_folder import RunFolder

    run = RunFolder.open(Path(args.run))
    config = run.config
    try:
        probe_options = ProbeConfig(**args.probe.as_dict())
    except ValueError as error:
        raise GimError(str(error)) from error
    data = config.data if args.data.root is None else replace(config.data, root=args.data.root)
    results = probe_run(run, replace(config, probe=probe_options, data=data))
    print(write_probe_report(run.path, results))
    print(f"written: {run.path / 'probe.json'}, {run.path / 'probe.md'}, {run.path / 'probe.png'}")
    return 0


def cmd_demo(args: Namespace) -> int:
    from greedy_infomax.engines.local import pretrain
    from greedy_infomax.evaluation.protocol import probe_run
    from greedy_infomax.reporting.probe_report import write_probe_report
    from greedy_infomax.reporting.run_folder import RunFolder

    config = _config(args)
    run = RunFolder.create(Path(args.output), args.name or f"demo-{_timestamp()}", config)
    print(f"run folder: {run.path}\n1/2 pre-training {config.model.num_modules} gradient-isolated modules")
    pretrain(config, run)
    print("2/2 probing every module (trained and random-init encoders, raw pixels)")
    print(write_probe_report(run.path, probe_run(run)))
    print(f"plot: {run.path / 'probe.png'}")
    return 0


def cmd_data(args: Namespace) -> int:
    from greedy_infomax.data.fashion_mnist import download_fashion_mnist
    from greedy_infomax.data.stl10 import download_stl10

    download = {"stl10": download_stl10, "fashion-mnist": download_fashion_mnist}[args.name]
    print(f"{args.name} ready in {download(Path(args.root))}")
    return 0


def _timestamp() -> str:
    import time
    return time.strftime("%Y%m%d-%H%M%S")


COMMANDS = {"pretrain": cmd_pretrain, "probe": cmd_probe, "demo": cmd_demo, "data": cmd_data}


if __name__ == "__main__":
    sys.exit(main())
