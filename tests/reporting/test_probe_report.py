"""The probe report's plot: one legend for every line of every panel."""

from __future__ import annotations

from pathlib import Path

from matplotlib import pyplot as plt

from greedy_infomax.reporting.probe_report import plot_accuracy


def test_the_legend_names_a_baseline_drawn_only_in_the_first_panel(tmp_path: Path, monkeypatch) -> None:
    """Raw pixels have a linear accuracy and no kNN one, while the legend sits beside the last (kNN) panel."""
    rows = [{"module": k, "features": 8, "linear": 0.5 + k / 10, "knn": 0.4 + k / 10} for k in (1, 2, 3)]
    results = {
        "dataset": "smoke",
        "method": "GIM (3 modules)",
        "probes": ["linear", "knn"],
        "trained": rows,
        "random": rows,
        "baseline": {"name": "raw pixels", "features": 784, "linear": 0.6},
    }
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    plot_accuracy(results, tmp_path / "probe.png")
    [legend] = [axes.get_legend() for axes in figures[0].axes if axes.get_legend() is not None]
    assert [text.get_text() for text in legend.get_texts()] == ["GIM (3 modules)", "random init", "raw pixels"]
    assert (tmp_path / "probe.png").stat().st_size > 0
