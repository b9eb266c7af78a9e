"""The metrics of a test set as files: ``metrics.csv`` (tidy: one row per model and image, plus a
mean row per model; ``\\n`` line ends) and ``metrics.md`` (one column per metric and model)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from restore.data.io import atomic_write_bytes
from restore.evaluation import EvalResults
from restore.metrics import MetricSet


def fmt(value: float, metric: str) -> str:
    """A metric value as tables print it: 4 decimals for SSIM-like metrics, 2 otherwise."""
    return f"{value:.4f}" if "ssim" in metric.lower() else f"{value:.2f}"


def header(metric: str, metrics: MetricSet) -> str:
    """``psnr (dB)``: the metric with its unit, as every table and chart names it."""
    unit = metrics.unit(metric)
    return f"{metric} ({unit})" if unit else metric


def markdown_table(results: EvalResults, metrics: MetricSet) -> str:
    """Per-image rows and a mean row; one column per (metric, model)."""
    columns = [(m, model) for m in results.metric_names for model in results.models]
    head = ["image"] + [f"{header(m, metrics)} {results.label(model)}" for m, model in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, image in enumerate(results.images):
        cells = [fmt(results.values[model][m][i], m) for m, model in columns]
        lines.append(f"| {image} | " + " | ".join(cells) + " |")
    means = [fmt(results.mean(model, m), m) for m, model in columns]
    lines.append("| **mean** | " + " | ".join(f"**{v}**" for v in means) + " |")
    return "\n".join(lines)


def csv_text(results: EvalResults) -> str:
    """The tidy table: ``model,image,<metric>...`` with full precision and ``\\n`` line ends."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "image", *results.metric_names])
    for model in results.models:
        label = results.label(model)
        for i, image in enumerate(results.images):
            writer.writerow([label, image, *(f"{results.values[model][m][i]:.6f}" for m in results.metric_names)])
        writer.writerow([label, "mean", *(f"{results.mean(model, m):.6f}" for m in results.metric_names)])
    return buffer.getvalue()


def write_tables(results: EvalResults, metrics: MetricSet, out_dir: Path, title: str = "") -> dict[str, Path]:
    """Write ``metrics.csv`` and ``metrics.md`` into `out_dir`."""
    paths = {"csv": out_dir / "metrics.csv", "markdown": out_dir / "metrics.md"}
    atomic_write_bytes(paths["csv"], csv_text(results).encode("utf-8"))
    markdown = (f"# {title}\n\n" if title else "") + markdown_table(results, metrics) + "\n"
    atomic_write_bytes(paths["markdown"], markdown.encode("utf-8"))
    return paths
