"""docs/benchmarks.png: the article's three-way table beside the figures measured here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.results import Summary
from bench.targets import Summaries

ARTICLE = (
    ("sync route +\nsync SQLAlchemy", 600),
    ("async route +\nsync SQLAlchemy", 550),
    ("async route +\nasync SQLAlchemy", 1400),
)
MEASURED = (
    ("article_sync", "article:\nsync + sync"),
    ("article_async_sync", "article:\nasync + sync"),
    ("article_async", "article:\nasync + async"),
    ("classic_sync", "classic sync\n(session in handler)"),
    ("gateway_legacy", "gateway\nlegacy"),
    ("gateway_async", "gateway\nasync"),
    ("router_legacy_mixed", "users router\nlegacy, mixed"),
    ("router_async_mixed", "users router\nasync, mixed"),
)


def bar_label(summary: Summary | None) -> str:
    if summary is None or summary.rps is None:
        return "not run"
    if summary.served_nothing and not summary.rps:
        return "0\ndeadlock"
    return f"{summary.rps:,.0f}"


def draw_article(axes: Any) -> None:
    bars = axes.bar([name for name, _ in ARTICLE], [value for _, value in ARTICLE], color="#9aa5b1")
    axes.bar_label(bars, fmt="%d")
    axes.tick_params(axis="x", labelsize=8)
    axes.set_title("The article (1,000 concurrent requests)")
    axes.set_ylabel("requests per second")


def draw_measured(axes: Any, summaries: Summaries, levels: list[int]) -> float:
    """Grouped bars, one group per configuration, one bar per connection count; the tallest."""
    shown = [(key, label) for key, label in MEASURED if any((key, n) in summaries for n in levels)]
    width, tallest = 0.8 / len(levels), 0.0
    for index, level in enumerate(levels):
        found = [summaries.get((key, level)) for key, _ in shown]
        values = [summary.rps or 0 if summary else 0 for summary in found]
        shift = (index - (len(levels) - 1) / 2) * width
        bars = axes.bar(
            [n + shift for n in range(len(shown))], values, width, label=f"{level} conns"
        )
        axes.bar_label(bars, labels=[bar_label(summary) for summary in found], fontsize=8)
        tallest = max([tallest, *values])
    axes.set_xticks(range(len(shown)), [label for _, label in shown], fontsize=8)
    axes.set_title("Measured here (median req/s, one uvicorn worker)")
    if shown:
        axes.legend()
    else:
        axes.text(0.5, 0.5, "not measured in this run", ha="center", transform=axes.transAxes)
    return tallest


def write_chart(path: Path, summaries: Summaries, levels: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (article, measured) = plt.subplots(
        1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [1, 2.2]}
    )
    draw_article(article)
    tallest = max(draw_measured(measured, summaries, levels), *(v for _, v in ARTICLE))
    for axes in (article, measured):
        axes.set_ylim(0, tallest * 1.15)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
