"""One chart per metric of a test set, comparing the models.

Small sets get a bar per image and model; sets of more than `BAR_LIMIT` images a curve of each
model's values sorted from worst to best (a bar chart of hundreds of images is unreadable). The
value axis starts at 0 and names the unit, and the legend sits below the plot, clear of the data.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from restore.evaluation import EvalResults
from restore.metrics import MetricSet
from restore.report.tables import fmt, header

BAR_LIMIT = 40


def write_charts(results: EvalResults, metrics: MetricSet, out_dir: Path) -> dict[str, Path]:
    """``<metric>.png`` for every metric; returns ``{"plot_<metric>": path}``."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure registry to touch

    paths = {}
    many = len(results.images) > BAR_LIMIT
    for metric in results.metric_names:
        width = 7.0 if many else max(5.0, 0.45 * len(results.images) * max(1, len(results.models)) ** 0.5 + 2)
        fig = Figure(figsize=(width, 4.2), layout="constrained")
        ax = fig.subplots()
        better = "higher" if metrics.higher_is_better(metric) else "lower"
        if many:
            _sorted_curves(ax, results, metric, better)
        else:
            _bars(ax, results, metric)
        ax.set_ylabel(header(metric, metrics))
        ax.set_ylim(bottom=0)
        ax.set_title(f"{results.dataset}: {metric} per image ({better} is better)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        fig.legend(loc="outside lower center", ncols=min(3, len(results.models)), fontsize=8, frameon=False)
        paths[f"plot_{metric}"] = out_dir / f"{metric}.png"
        fig.savefig(paths[f"plot_{metric}"], dpi=100)
    return paths


def _label(results: EvalResults, model: str, metric: str) -> str:
    return f"{results.label(model)} (mean {fmt(results.mean(model, metric), metric)})"


def _bars(ax, results: EvalResults, metric: str) -> None:
    width = 0.8 / max(1, len(results.models))
    x = np.arange(len(results.images))
    for k, model in enumerate(results.models):
        ax.bar(x + k * width, results.values[model][metric], width, label=_label(results, model, metric))
    ax.set_xticks(x + width * (len(results.models) - 1) / 2, results.images, rotation=45, ha="right", fontsize=7)


def _sorted_curves(ax, results: EvalResults, metric: str, better: str) -> None:
    for model in results.models:
        # Worst first: the lowest values when higher is better, else the highest.
        values = sorted((v for v in results.values[model][metric] if math.isfinite(v)), reverse=better == "lower")
        ax.plot(np.arange(1, len(values) + 1), values, label=_label(results, model, metric), linewidth=1.2)
    ax.set_xlabel(f"images, sorted from worst to best ({len(results.images)} images)")
