"""What `gim probe` leaves in a run folder: probe.json, a markdown table and a per-module accuracy plot.

The results of either task have the same shape: `probes` names the accuracy columns (linear and kNN for
vision, speaker and phone for audio); `trained` and `random` hold one row per module; `baseline` holds the
same probes on the raw input's features (raw pixels, log-mel).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from greedy_infomax.reporting.run_folder import check_writable, write_atomic

PROBE_NAMES = {"linear": "linear", "knn": "kNN", "speaker": "speaker", "phone": "phone"}


def format_table(results: dict[str, Any]) -> str:
    """Markdown table: one row per module, every probe's accuracy for the trained and the random encoder."""
    encoders = [name for name in ("trained", "random") if name in results]
    probes = results["probes"]
    header = ["module", "features"] + [f"{_label(results, e)} {PROBE_NAMES[p]}" for e in encoders for p in probes]
    rows = []
    for position, row in enumerate(results["trained"]):
        cells = [str(row["module"]), str(row["features"])]
        for encoder in encoders:
            cells += [percent(results[encoder][position].get(probe)) for probe in probes]
        rows.append(cells)
    if "baseline" in results:
        baseline = results["baseline"]
        cells = [baseline["name"], str(baseline["features"])] + [percent(baseline.get(p)) for p in probes]
        rows.append(cells + [""] * (len(header) - len(cells)))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def plot_accuracy(results: dict[str, Any], path: Path) -> None:
    """One panel per probe: accuracy per module of the trained and random encoders, the baseline as a line."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    probes = [p for p in results["probes"] if p in results["trained"][0]]
    figure, panels = plt.subplots(1, len(probes), figsize=(4.2 * len(probes) + 1.6, 3.6), dpi=120, squeeze=False)
    modules = [row["module"] for row in results["trained"]]
    for axes, probe in zip(panels[0], probes):
        for encoder, colour in (("trained", "tab:blue"), ("random", "tab:green")):
            if encoder in results:
                axes.plot(
                    modules,
                    [100 * row[probe] for row in results[encoder]],
                    "o-",
                    color=colour,
                    label=_label(results, encoder),
                )
        if probe in results.get("baseline", {}):
            axes.axhline(
                100 * results["baseline"][probe], color="grey", linestyle=":", label=results["baseline"]["name"]
            )
        axes.set_xticks(modules)
        axes.set_xlabel("module")
        axes.set_ylabel("test accuracy (%)")
        axes.set_title(f"{PROBE_NAMES[probe]} probe")
        axes.grid(alpha=0.3)
    entries = {label: line for axes in panels[0] for line, label in zip(*axes.get_legend_handles_labels())}
    panels[0][-1].legend(entries.values(), entries.keys(), fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    figure.suptitle(f"{results['dataset']}: {results['method']}, every module", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


REPORT_FILES = ("probe.json", "probe.md", "probe.png")


def check_probe_report(folder: Path) -> None:
    """Fail before probing, not after, where the report could not be written (a read-only run folder); the folder
    (RUN/probes/step-N for a kept step) is made if missing."""
    for name in REPORT_FILES:
        check_writable(folder / name, "probed")


def write_probe_report(run_path: Path, results: dict[str, Any]) -> str:
    """Write probe.json, probe.md and probe.png into the run folder; return the table."""
    table = format_table(results)
    write_atomic(run_path / "probe.json", json.dumps(results, indent=2).encode())
    write_atomic(
        run_path / "probe.md",
        (
            f"# Probes: {results['method']} on {results['dataset']}, step {results['step']}\n\n"
            f"Features: {results['features']}.\n\n{table}\n"
        ).encode(),
    )
    plot_accuracy(results, run_path / "probe.png")
    return table


def _label(results: dict[str, Any], encoder: str) -> str:
    return results["method"] if encoder == "trained" else "random init"


def percent(value: float | None) -> str:
    """An accuracy in [0, 1] as a table cell in percent; empty when missing."""
    return "" if value is None else f"{100 * value:.1f}"
