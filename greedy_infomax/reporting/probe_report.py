"""What `gim probe` leaves in a run folder: probe.json, a markdown table and a per-module accuracy plot."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from greedy_infomax.reporting.run_folder import write_atomic


def format_table(results: dict[str, Any]) -> str:
    """Markdown table: one row per module, linear and kNN accuracy of the trained and the random encoder."""
    encoders = [name for name in ("trained", "random") if name in results]
    header = ["module", "features"] + [f"{_label(results, e)} {probe}" for e in encoders for probe in ("linear", "kNN")]
    rows = []
    for position, row in enumerate(results["trained"]):
        cells = [str(row["module"]), str(row["features"])]
        for encoder in encoders:
            entry = results[encoder][position]
            cells += [_percent(entry.get("linear")), _percent(entry.get("knn"))]
        rows.append(cells)
    if "raw_pixels" in results:
        raw = results["raw_pixels"]
        rows.append(["raw pixels", str(raw["features"]), _percent(raw["linear"])] + [""] * (len(header) - 3))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def plot_accuracy(results: dict[str, Any], path: Path) -> None:
    """Linear-probe accuracy per module: trained encoder, random encoder, raw pixels as a reference line."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 3.8), dpi=120)
    for encoder, colour in (("trained", "tab:blue"), ("random", "tab:green")):
        if encoder in results:
            modules = [row["module"] for row in results[encoder]]
            axes.plot(modules, [100 * row["linear"] for row in results[encoder]], "o-", color=colour,
                      label=f"{_label(results, encoder)}, linear")
            if "knn" in results[encoder][0]:
                axes.plot(modules, [100 * row["knn"] for row in results[encoder]], "s--", color=colour, alpha=0.5,
                          label=f"{_label(results, encoder)}, kNN")
    if "raw_pixels" in results:
        axes.axhline(100 * results["raw_pixels"]["linear"], color="grey", linestyle=":", label="raw pixels, linear")
    axes.set_xticks([row["module"] for row in results["trained"]])
    axes.set_xlabel("module")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(f"{results['dataset']}: probes on every module")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write_probe_report(run_path: Path, results: dict[str, Any]) -> str:
    """Write probe.json, probe.md and probe.png into the run folder; return the table."""
    table = format_table(results)
    write_atomic(run_path / "probe.json", json.dumps(results, indent=2).encode())
    write_atomic(run_path / "probe.md", (f"# Probes: {results['method']} on {results['dataset']}, step {results['step']}\n\n"
                                          f"Features: {results['features']}.\n\n{table}\n").encode())
    plot_accuracy(results, run_path / "probe.png")
    return table


def _label(results: dict[str, Any], encoder: str) -> str:
    return results["method"] if encoder == "trained" else "random init"


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}"
