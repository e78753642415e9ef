"""What `gim reproduce` leaves in its folder: comparison.md (one table per probe: rows = methods, columns =
modules, then the paper's number) and comparison.png (per-module test error, log scale, one curve per method).
A method trained at several seeds shows their mean, ± their standard deviation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from greedy_infomax.reporting.probe_report import PROBE_NAMES, percent

Row = tuple[str, list[float | None], list[float | None] | None]
"""A table row: its name, the accuracy per module, and their standard deviation over seeds (None: one seed)."""


def comparison_rows(summary: dict[str, Any], probe: str) -> list[Row]:
    """Every method, then the random encoder and the raw-input baseline (the same input features under every
    module) taken from the runs that probed them."""

    def column(rows: list[dict[str, Any]] | None) -> list[float | None] | None:
        return None if rows is None else [row.get(probe) for row in rows]

    rows = [
        (method["method"], column(method["results"]["trained"]), column(method["results"].get("spread")))
        for method in summary["methods"]
    ]
    for method in summary["methods"]:
        results = method["results"]
        modules = len(results["trained"])
        if "random" in results:
            rows.append(("random init", column(results["random"]), column(results.get("random_spread"))))
        if "baseline" in results:
            spread = results.get("baseline_spread")
            rows.append(
                (
                    results["baseline"]["name"],
                    [results["baseline"].get(probe)] * modules,
                    None if spread is None else [spread.get(probe)] * modules,
                )
            )
    return rows


def format_comparison(summary: dict[str, Any]) -> str:
    """Markdown: one table per probe (accuracy %, test split), with the training time of each method (per seed)
    and, where a method was trained at several seeds, which."""
    first = summary["methods"][0]["results"]
    modules = len(first["trained"])
    seconds = {method["method"]: method["seconds"] for method in summary["methods"]}
    seeds = {method["method"]: method["seeds"] for method in summary["methods"]}
    several = max(len(runs) for runs in seeds.values()) > 1
    sections = []
    for probe in first["probes"]:
        header = [
            "method",
            *[f"module {k}" for k in range(1, modules + 1)],
            "paper (last module)",
            "time per seed" if several else "time",
            *(["seeds"] if several else []),
        ]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, accuracies, spread in comparison_rows(summary, probe):
            paper = summary["paper"].get(name)
            paper = paper.get(probe) if isinstance(paper, dict) else paper
            cells = [
                name,
                *[_with_spread(value, deviation) for value, deviation in zip(accuracies, spread or [None] * modules)],
                "" if paper is None else f"{paper:.1f}",
                _duration(seconds.get(name)),
                *([", ".join(map(str, seeds.get(name, [])))] if several else []),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        sections.append(f"### {PROBE_NAMES[probe]} probe: test accuracy (%)\n\n" + "\n".join(lines))
    return "\n\n".join(sections)


def plot_comparison(summary: dict[str, Any], path: Path) -> None:
    """Per-module test error (%) on a log axis, one curve per method, the raw-input baseline as a dotted line."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")  # 20, 30, 40 rather than 2x10^1 on the log axis

    first = summary["methods"][0]["results"]
    probes = first["probes"]
    baseline = first.get("baseline", {}).get("name")
    figure, panels = plt.subplots(1, len(probes), figsize=(4.6 * len(probes) + 2.2, 3.8), dpi=120, squeeze=False)
    for axes, probe in zip(panels[0], probes):
        if len(summary["methods"]) > 8:  # beyond the default cycle's 10 colours with random init and the baseline
            axes.set_prop_cycle(color=plt.get_cmap("tab20").colors)
        rows = comparison_rows(summary, probe)
        for name, accuracies, spread in rows:
            errors = [float("nan") if value is None else 100 * (1 - value) for value in accuracies]
            modules = range(1, len(errors) + 1)
            style = {"marker": "o", "label": name, "linestyle": "--" if name == "random init" else "-"}
            if name == baseline:
                if accuracies[0] is not None:  # a baseline without this probe draws no line
                    axes.axhline(errors[0], color="grey", linestyle=":", label=name)
            elif spread is not None:
                bars = [float("nan") if value is None else 100 * value for value in spread]
                axes.errorbar(modules, errors, yerr=bars, capsize=0, **style)
            else:
                axes.plot(modules, errors, **style)
        axes.set_yscale("log")
        axes.yaxis.set_major_formatter(plain)
        axes.yaxis.set_minor_formatter(plain)
        axes.set_xticks(range(1, len(first["trained"]) + 1))
        axes.set_xlabel("module")
        axes.set_ylabel("test error (%)")
        axes.set_title(f"{PROBE_NAMES[probe]} probe")
        axes.grid(alpha=0.3, which="both")
    handles = dict(zip(*reversed(panels[0][-1].get_legend_handles_labels())))  # curves come before error bars
    order = [name for name, _, _ in rows if name in handles]
    panels[0][-1].legend(
        [handles[name] for name in order], order, fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5)
    )
    figure.suptitle(f"{first['dataset']}, budget {summary['budget']}: every method, every module", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write_comparison(summary: dict[str, Any], folder: Path) -> str:
    """Write comparison.md and comparison.png into the folder; return the tables."""
    tables = format_comparison(summary)
    seeds = summary["seeds"]
    (folder / "comparison.md").write_text(
        f"# {summary['task']} comparison, budget {summary['budget']} (preset {summary['preset']}, "
        f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}, {summary['date']})\n\n{tables}\n\n"
        f"The paper's column is the last module's accuracy in the paper's setting (STL-10 / LibriSpeech-100), "
        f"not this dataset's. Commands: commands.sh.\n"
    )
    plot_comparison(summary, folder / "comparison.png")
    return tables


def _with_spread(value: float | None, deviation: float | None) -> str:
    return percent(value) if deviation is None else f"{percent(value)} ± {percent(deviation)}"


def _duration(seconds: float | None) -> str:
    """Seconds under a minute (the smoke budget's methods take a few), else minutes."""
    if seconds is None:
        return ""
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"
