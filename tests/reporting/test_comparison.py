"""`gim reproduce`'s comparison from a small hand-made summary: the markdown tables (methods, baselines, the paper's
column, training times), the plot's panels and curves, and the files written."""

from __future__ import annotations

import copy

import pytest
from matplotlib import image, pyplot

from greedy_infomax.reporting.comparison import _duration, comparison_rows, format_comparison, write_comparison

SUMMARY = {
    "task": "audio",
    "budget": "smoke",
    "preset": "speech-smoke",
    "seeds": [3],
    "date": "2025-01-02",
    "paper": {
        "GIM": {"speaker": 99.4, "phone": 62.5},
        "end-to-end CPC": {"speaker": 97.4, "phone": 64.6},
        "log-mel": {"speaker": 17.6, "phone": 39.7},
        "random init": 27.0,
    },
    "methods": [
        {
            "method": "GIM",
            "seeds": [3],
            "seconds": 42.4,
            "results": {
                "dataset": "speech-corpus",
                "probes": ["speaker", "phone"],
                "trained": [
                    {"module": 1, "speaker": 0.5, "phone": 0.25},
                    {"module": 2, "speaker": 0.625, "phone": 0.375},
                    {"module": 3, "speaker": 0.75, "phone": 0.5},
                ],
                "random": [
                    {"module": 1, "speaker": 0.1, "phone": 0.2},
                    {"module": 2, "speaker": 0.1, "phone": 0.2},
                    {"module": 3, "speaker": 0.125, "phone": 0.2},
                ],
                "baseline": {"name": "log-mel", "features": 40, "speaker": 0.8, "phone": 0.4},
            },
        },
        {
            "method": "end-to-end CPC",
            "seeds": [3],
            "seconds": 150.0,
            "results": {
                "dataset": "speech-corpus",
                "probes": ["speaker", "phone"],
                "trained": [
                    {"module": 1, "speaker": 0.125, "phone": 0.5},
                    {"module": 2, "speaker": 0.25, "phone": 0.5},
                    {"module": 3, "phone": 0.5},
                ],
            },
        },  # module 3's speaker probe is missing
    ],
}

TABLES = """\
### speaker probe: test accuracy (%)

| method | module 1 | module 2 | module 3 | paper (last module) | time |
|---|---|---|---|---|---|
| GIM | 50.0 | 62.5 | 75.0 | 99.4 | 42 s |
| end-to-end CPC | 12.5 | 25.0 |  | 97.4 | 2.5 min |
| random init | 10.0 | 10.0 | 12.5 | 27.0 |  |
| log-mel | 80.0 | 80.0 | 80.0 | 17.6 |  |

### phone probe: test accuracy (%)

| method | module 1 | module 2 | module 3 | paper (last module) | time |
|---|---|---|---|---|---|
| GIM | 25.0 | 37.5 | 50.0 | 62.5 | 42 s |
| end-to-end CPC | 50.0 | 50.0 | 50.0 | 64.6 | 2.5 min |
| random init | 20.0 | 20.0 | 20.0 | 27.0 |  |
| log-mel | 40.0 | 40.0 | 40.0 | 39.7 |  |"""


def test_rows_are_the_methods_then_the_random_encoder_and_the_raw_input_under_every_module():
    assert comparison_rows(SUMMARY, "speaker") == [
        ("GIM", [0.5, 0.625, 0.75], None),
        ("end-to-end CPC", [0.125, 0.25, None], None),
        ("random init", [0.1, 0.1, 0.125], None),
        ("log-mel", [0.8] * 3, None),
    ]


def test_one_table_per_probe_with_the_papers_number_and_each_methods_time():
    """The paper's number is one for every probe, or one per probe; a missing accuracy is an empty cell."""
    assert format_comparison(SUMMARY) == TABLES


def test_the_plot_has_a_log_error_panel_per_probe_with_a_curve_per_method_and_the_baseline_as_a_line(
    tmp_path, monkeypatch
):
    figures = []
    close = pyplot.close
    monkeypatch.setattr(pyplot, "close", figures.append)
    assert write_comparison(SUMMARY, tmp_path) == TABLES
    [figure] = figures
    try:
        panels = figure.axes[:2]
        assert [axes.get_title() for axes in panels] == ["speaker probe", "phone probe"]
        assert all(axes.get_yscale() == "log" for axes in panels)
        lines = {line.get_label(): line for line in panels[0].get_lines()}
        assert list(lines) == ["GIM", "end-to-end CPC", "random init", "log-mel"]
        assert list(lines["GIM"].get_ydata()) == pytest.approx([50.0, 37.5, 25.0]), "test error in %"
        assert list(lines["end-to-end CPC"].get_ydata()[:2]) == pytest.approx([87.5, 75.0])
        assert lines["random init"].get_linestyle() == "--" and lines["GIM"].get_linestyle() == "-"
        assert lines["log-mel"].get_linestyle() == ":", "the raw-input baseline is a dotted horizontal line"
        assert list(lines["log-mel"].get_ydata()) == pytest.approx([20.0, 20.0])
    finally:
        close(figure)
    height, width = image.imread(tmp_path / "comparison.png").shape[:2]
    assert (width, height) == (round((4.6 * 2 + 2.2) * 120), round(3.8 * 120)), "two panels and the legend"


def test_the_markdown_file_names_the_run_and_holds_the_tables(tmp_path):
    one_probe = copy.deepcopy(SUMMARY)
    for method in one_probe["methods"]:
        method["results"]["probes"] = ["speaker"]
    tables = write_comparison(one_probe, tmp_path)
    text = (tmp_path / "comparison.md").read_text()
    title = "# audio comparison, budget smoke (preset speech-smoke, seed 3, 2025-01-02)"
    assert text.startswith(f"{title}\n\n{tables}\n")
    assert tables == TABLES.split("\n\n### phone")[0]
    height, width = image.imread(tmp_path / "comparison.png").shape[:2]
    assert (width, height) == (round((4.6 + 2.2) * 120), round(3.8 * 120)), "one panel and the legend"


def test_durations_under_a_minute_are_seconds_else_minutes():
    assert [_duration(seconds) for seconds in (None, 12.4, 59.4, 60.0, 3600.0)] == [
        "",
        "12 s",
        "59 s",
        "1.0 min",
        "60.0 min",
    ]


def test_a_baseline_without_one_of_the_probes_draws_no_line_in_that_panel(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(pyplot, "close", figures.append)
    partial = copy.deepcopy(SUMMARY)
    del partial["methods"][0]["results"]["baseline"]["phone"]
    write_comparison(partial, tmp_path)
    [figure] = figures
    speaker, phone = figure.axes[:2]
    assert "log-mel" in [line.get_label() for line in speaker.get_lines()]
    assert "log-mel" not in [line.get_label() for line in phone.get_lines()]
    pyplot.close(figure)


def test_a_method_at_several_seeds_shows_mean_and_spread_its_seed_count_and_error_bars(tmp_path, monkeypatch):
    seeded = copy.deepcopy(SUMMARY)
    seeded["seeds"] = [3, 4]
    gim = seeded["methods"][0]
    gim["seeds"] = [3, 4]
    gim["results"]["spread"] = [{"speaker": 0.0125, "phone": 0.05}] * 3
    gim["results"]["random_spread"] = [{"speaker": 0.02, "phone": 0.01}] * 3
    gim["results"]["baseline_spread"] = {"speaker": 0.0, "phone": 0.0}
    figures = []
    monkeypatch.setattr(pyplot, "close", figures.append)
    tables = write_comparison(seeded, tmp_path)
    assert (
        (tmp_path / "comparison.md")
        .read_text()
        .startswith("# audio comparison, budget smoke (preset speech-smoke, seeds 3, 4, 2025-01-02)")
    )
    speaker = tables.split("\n\n### phone")[0].splitlines()
    assert speaker[2] == "| method | module 1 | module 2 | module 3 | paper (last module) | time per seed | seeds |"
    assert speaker[4] == "| GIM | 50.0 ± 1.2 | 62.5 ± 1.2 | 75.0 ± 1.2 | 99.4 | 42 s | 3, 4 |"
    assert speaker[5] == "| end-to-end CPC | 12.5 | 25.0 |  | 97.4 | 2.5 min | 3 |", "a method trained at one seed"
    assert speaker[6] == "| random init | 10.0 ± 2.0 | 10.0 ± 2.0 | 12.5 ± 2.0 | 27.0 |  |  |"
    assert speaker[7] == "| log-mel | 80.0 ± 0.0 | 80.0 ± 0.0 | 80.0 ± 0.0 | 17.6 |  |  |"
    [figure] = figures
    try:
        bars = {child.get_label(): child for child in figure.axes[0].containers}
        assert list(bars) == ["GIM", "random init"] and bars["GIM"].has_yerr, "spreads are error bars"
        legend = [text.get_text() for text in figure.axes[1].get_legend().get_texts()]
        assert legend == ["GIM", "end-to-end CPC", "random init", "log-mel"], "in the table's order"
    finally:
        pyplot.close(figure)
