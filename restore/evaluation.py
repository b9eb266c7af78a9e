"""Scoring networks on an evaluation dataset, and writing what a person wants to look at.

`evaluate` runs one or more models (e.g. the trained net and the task's baseline) on every
image, scores them in data units with the run's metrics, and optionally saves the restored
images and per-image figures. Under several processes each rank scores its share of the images
and the per-image results are gathered, so every rank ends with the full table.
`write_report` turns the results into ``metrics.csv``, ``metrics.md`` and a bar chart.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from restore.data.io import write_image
from restore.data.paired import to_tensor
from restore.inference import run_network
from restore.metrics import MetricSet
from restore.tasks import Task, quantize_uint8


@dataclass
class EvalResults:
    """Per-image metric values of each model, in dataset order."""

    dataset: str
    metric_names: list[str]
    images: list[str] = field(default_factory=list)
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # model -> metric -> per image

    def mean(self, model: str, metric: str) -> float:
        vals = [v for v in self.values[model][metric] if math.isfinite(v)]
        return float(np.mean(vals)) if vals else float("nan")

    @property
    def models(self) -> list[str]:
        return list(self.values)


def _shard(n: int, rank: int, world: int) -> list[int]:
    return list(range(rank, n, world))


@torch.inference_mode()
def evaluate(
    models: Mapping[str, nn.Module],
    dataset: Any,
    task: Task,
    metrics: MetricSet,
    *,
    dataset_name: str = "",
    device: torch.device | str = "cpu",
    quantize: str = "round",
    tile: int | None = None,
    tile_overlap: int = 32,
    save_dir: Path | None = None,
    save_models: tuple[str, ...] | None = None,
    figures: bool = False,
    progress: bool = True,
    rank: int = 0,
    world_size: int = 1,
    gather: Any = None,
) -> EvalResults:
    """Score `models` on every image of `dataset` (items from `dataset[i]` with lq/gt/meta).

    save_dir: where restored outputs go (``<save_dir>/<model>/<name>.<ext>``) and figures
        (``<save_dir>/figures``); `save_models` limits which models' outputs are saved.
    gather: ``accelerate.utils.gather_object`` when running on several processes.
    """
    from tqdm import tqdm

    for net in models.values():
        net.eval()
    indices = _shard(len(dataset), rank, world_size)
    rows: list[tuple[int, str, dict[str, dict[str, float]]]] = []
    bar = tqdm(indices, desc=f"eval {dataset_name}".strip(), unit="img", disable=not progress or rank != 0,
               leave=False)
    for index in bar:
        item = dataset[index]
        name, meta = item["name"], item["meta"]
        lq = to_tensor(item["lq"]).unsqueeze(0).to(device)
        guide = to_tensor(item["guide"]).unsqueeze(0).to(device) if "guide" in item else None
        gt_data = task.to_data(item["gt"], meta, "round")
        context = task.metric_context(meta)
        panels: dict[str, np.ndarray] = {"LQ": task.to_data(item["lq"], meta, quantize)}
        if "guide" in item:
            panels["Guide"] = quantize_uint8(item["guide"])
        scores: dict[str, dict[str, float]] = {}
        for label, net in models.items():
            out = run_network(net, lq, task.scale, guide=guide, tile=tile, tile_overlap=tile_overlap)
            out_data = task.to_data(out[0].permute(1, 2, 0).float().cpu().numpy(), meta, quantize)
            scores[label] = metrics(out_data, gt_data, context)
            panels[label] = out_data
            if save_dir is not None and (save_models is None or label in save_models):
                task.save_output(out_data, save_dir / label / name, meta)
        panels["GT"] = gt_data
        if figures and save_dir is not None:
            picture = task.figure(panels, meta)
            if picture is not None:
                write_image(save_dir / "figures" / f"{name}.png", picture)
        rows.append((index, name, scores))
    if gather is not None and world_size > 1:
        rows = gather(rows)
    rows.sort(key=lambda r: r[0])
    results = EvalResults(dataset_name, metrics.names)
    results.values = {label: {m: [] for m in metrics.names} for label in models}
    for _, name, scores in rows:
        results.images.append(name)
        for label, values in scores.items():
            for metric, value in values.items():
                results.values[label][metric].append(value)
    return results


def _fmt(value: float, metric: str) -> str:
    return f"{value:.4f}" if "ssim" in metric.lower() else f"{value:.2f}"


def markdown_table(results: EvalResults, metrics: MetricSet) -> str:
    """Per-image rows and a mean row; one column per (metric, model)."""
    columns = [(m, model) for m in results.metric_names for model in results.models]
    header = ["image"] + [
        f"{m}{f' ({metrics.unit(m)})' if metrics.unit(m) else ''} {model}" for m, model in columns
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, image in enumerate(results.images):
        cells = [_fmt(results.values[model][m][i], m) for m, model in columns]
        lines.append(f"| {image} | " + " | ".join(cells) + " |")
    means = [_fmt(results.mean(model, m), m) for m, model in columns]
    lines.append("| **mean** | " + " | ".join(f"**{v}**" for v in means) + " |")
    return "\n".join(lines)


def write_report(results: EvalResults, metrics: MetricSet, out_dir: Path, title: str = "") -> dict[str, Path]:
    """Write ``metrics.csv`` (tidy: model, image, metric columns), ``metrics.md`` and one bar
    chart per metric comparing the models image by image."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure registry to touch

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "metrics.csv", "markdown": out_dir / "metrics.md"}
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "image", *results.metric_names])
        for model in results.models:
            for i, image in enumerate(results.images):
                writer.writerow([model, image, *(f"{results.values[model][m][i]:.6f}" for m in results.metric_names)])
            writer.writerow([model, "mean", *(f"{results.mean(model, m):.6f}" for m in results.metric_names)])
    table = markdown_table(results, metrics)
    paths["markdown"].write_text((f"# {title}\n\n" if title else "") + table + "\n", encoding="utf-8")
    for metric in results.metric_names:
        fig = Figure(figsize=(max(4.0, 0.6 * len(results.images) + 2), 3.2))
        ax = fig.subplots()
        width = 0.8 / max(1, len(results.models))
        x = np.arange(len(results.images))
        for k, model in enumerate(results.models):
            ax.bar(x + k * width, results.values[model][metric], width,
                   label=f"{model} (mean {_fmt(results.mean(model, metric), metric)})")
        ax.set_xticks(x + width * (len(results.models) - 1) / 2, results.images, rotation=45, ha="right")
        unit = metrics.unit(metric)
        ax.set_ylabel(f"{metric} ({unit})" if unit else metric)
        better = "higher" if metrics.higher_is_better(metric) else "lower"
        ax.set_title(f"{results.dataset}: {metric} per image ({better} is better)", fontsize=9)
        finite = [v for model in results.models for v in results.values[model][metric] if math.isfinite(v)]
        if finite and better == "higher":
            lo, hi = min(finite), max(finite)
            ax.set_ylim(lo - 0.1 * (hi - lo + 1e-6), hi + 0.1 * (hi - lo + 1e-6))
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths[f"plot_{metric}"] = out_dir / f"{metric}.png"
        fig.savefig(paths[f"plot_{metric}"], dpi=100)
    return paths
