"""A sweep's report: ``sweep.csv`` (one row per cell), ``sweep.md`` (one row per configuration,
seeds pooled) and metric-vs-parameters / metric-vs-FLOPs plots with the Pareto front marked."""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from restore.data.io import atomic_write_bytes
from restore.errors import OptionError
from restore.sweep.grid import SEED_KEY


@dataclass
class Configuration:
    """The cells of one configuration (they differ only by seed) and their scores."""

    name: str
    params: int
    flops: float
    latency_ms: float | None
    seeds: list[int] = field(default_factory=list)
    scores: dict[str, list[float]] = field(default_factory=dict)  # metric -> one value per seed
    pareto: dict[str, bool] = field(default_factory=dict)         # "params"/"flops" -> on the front

    def mean(self, metric: str) -> float:
        return statistics.fmean(self.scores[metric])

    def std(self, metric: str) -> float:
        return statistics.stdev(self.scores[metric]) if len(self.scores[metric]) > 1 else 0.0


def plot_metric(results: list[dict[str, Any]], chosen: str | None) -> str:
    """The metric the plots and the Pareto front use: `chosen`, or the first one recorded."""
    names = list(dict.fromkeys(m for r in results for m in r["metrics"]))
    if chosen is None:
        return names[0]
    if chosen not in names:
        raise OptionError(f"sweep.metric: {chosen!r} is not among the cells' scores: {', '.join(names)}.")
    return chosen


def configurations(results: list[dict[str, Any]], metric: str, latency: dict[str, float] | None = None
                   ) -> list[Configuration]:
    """Results pooled by configuration, in sweep order, with the Pareto fronts of `metric`."""
    latency = latency or {}
    pooled: dict[str, Configuration] = {}
    for r in results:
        name = r["configuration"]
        conf = pooled.setdefault(name, Configuration(name, r["params"], r["flops"], latency.get(name)))
        conf.seeds.append(r["seed"])
        for name, value in r["metrics"].items():
            conf.scores.setdefault(name, []).append(value)
    confs = list(pooled.values())
    higher = next(r["higher_is_better"][metric] for r in results)
    for cost in ("params", "flops"):
        front = pareto_front([(getattr(c, cost), c.mean(metric)) for c in confs], higher)
        for c, on_front in zip(confs, front, strict=True):
            c.pareto[cost] = on_front
    return confs


def pareto_front(points: list[tuple[float, float]], higher_is_better: bool = True) -> list[bool]:
    """For (cost, score) points: True where no other point costs no more and scores at least as
    well, being strictly better in one of the two."""
    sign = 1 if higher_is_better else -1

    def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
        no_worse = a[0] <= b[0] and sign * a[1] >= sign * b[1]
        return no_worse and (a[0] < b[0] or sign * a[1] > sign * b[1])

    return [not any(dominates(q, p) for q in points if q is not p) for p in points]


def write_report(root: Path, title: str, results: list[dict[str, Any]], metric: str | None = None,
                 latency: dict[str, float] | None = None, timing: str = "") -> dict[str, Path]:
    """Write sweep.csv, sweep.md and the two plots under `root`; return their paths.

    `latency` (ms per configuration) and `timing` (how it was measured) come once all cells are done."""
    if not results:
        return {}
    metric = plot_metric(results, metric)
    confs = configurations(results, metric, latency)
    paths = {"csv": root / "sweep.csv", "markdown": root / "sweep.md"}
    atomic_write_bytes(paths["csv"], cells_csv(results, latency or {}).encode())
    table = markdown_table(confs, metric, results[0]["higher_is_better"][metric])
    size = results[0]["flops_output"]
    note = (f"FLOPs: fvcore multiply-accumulates for a {size} output; latency: "
            f"{timing or 'measured when every cell is done'}; scores: mean over seeds (± sample std; "
            f"min to max for {metric}); Pareto: on the front of {metric} against parameters / FLOPs.")
    atomic_write_bytes(paths["markdown"], f"# {title}\n\n{table}\n\n{note}\n".encode())
    stem = metric.replace("/", "_")
    for cost in ("params", "flops"):
        paths[f"plot_{cost}"] = root / f"{stem}_vs_{cost}.png"
        against = "parameters" if cost == "params" else "FLOPs"
        plot(confs, metric, cost, f"{title}: {metric} against {against}\n(mean per configuration, bars from the "
             "lowest to the highest seed, circles: Pareto front)", paths[f"plot_{cost}"], size)
    return paths


def cells_csv(results: list[dict[str, Any]], latency: dict[str, float]) -> str:
    keys = sorted(dict.fromkeys(k for r in results for k in r["values"]), key=lambda k: k == SEED_KEY)  # seed last
    metrics = list(dict.fromkeys(m for r in results for m in r["metrics"]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["cell", "configuration", "seed", *keys, "params", "flops", "latency_ms", "iterations",
                     "train_seconds", *metrics])
    for r in results:
        seconds = r.get("train_seconds")
        writer.writerow([r["cell"], r["configuration"], r["seed"], *(_cell(r["values"].get(k)) for k in keys),
                         r["params"], f"{r['flops']:.0f}", _number(latency.get(r["configuration"]), ".2f"),
                         r["iterations"],
                         _number(seconds, ".0f"),
                         *(f"{r['metrics'][m]:.6f}" if m in r["metrics"] else "" for m in metrics)])
    return out.getvalue()


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _number(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _fmt(value: float, metric: str, like: float | None = None) -> str:
    """Two decimals (dB, grey levels), four for SSIM and for scores below 1 (`like`: the mean)."""
    reference = value if like is None else like
    return f"{value:.4f}" if "ssim" in metric.lower() or abs(reference) < 1 else f"{value:.2f}"


def markdown_table(confs: list[Configuration], metric: str, higher: bool) -> str:
    metrics = list(dict.fromkeys(m for c in confs for m in c.scores))
    header = ["configuration", "params", "FLOPs", "latency ms", "seeds", *metrics, f"{metric} min to max", "Pareto"]
    best = (max if higher else min)(c.mean(metric) for c in confs)
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 2) + "---|"]
    for c in confs:
        scores = []
        for m in metrics:
            text = _fmt(c.mean(m), m) + (f" ± {_fmt(c.std(m), m, c.mean(m))}" if len(c.scores[m]) > 1 else "")
            scores.append(f"**{text}**" if m == metric and c.mean(m) == best else text)
        front = [cost for cost in ("params", "FLOPs") if c.pareto[cost.lower()]]
        lines.append(f"| {c.name} | {c.params:,} | {c.flops / 1e9:.1f}G | {_number(c.latency_ms, '.1f') or '-'} | "
                     f"{len(c.seeds)} | "
                     + " | ".join(scores)
                     + f" | {_fmt(min(c.scores[metric]), metric)} to {_fmt(max(c.scores[metric]), metric)} | "
                     + f"{', '.join(front) or '-'} |")
    return "\n".join(lines)


def plot(confs: list[Configuration], metric: str, cost: str, title: str, path: Path, output_size: str) -> None:
    """Mean per configuration with a min-max bar over seeds, every seed as a dot, the front as a line."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure registry to touch

    scale = 1e9 if cost == "flops" else 1e3
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.subplots()
    for i, c in enumerate(confs):
        x, values = getattr(c, cost) / scale, c.scores[metric]
        mean = c.mean(metric)
        color = f"C{i % 10}"
        ax.errorbar([x], [mean], yerr=[[mean - min(values)], [max(values) - mean]], fmt="o", color=color,
                    capsize=4, markersize=7, label=f"{c.name} (n={len(values)})")
        ax.scatter([x] * len(values), values, s=12, color=color, alpha=0.5, zorder=3)
    front = sorted((getattr(c, cost) / scale, c.mean(metric)) for c in confs if c.pareto[cost])
    ax.plot(*zip(*front, strict=True), "--", color="black", linewidth=1, label="Pareto front (means)", zorder=1)
    ax.scatter(*zip(*front, strict=True), s=160, facecolors="none", edgecolors="black", zorder=4)
    costs = [getattr(c, cost) for c in confs]
    if min(costs) > 0 and max(costs) / min(costs) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("parameters (thousands)" if cost == "params" else f"FLOPs (G, {output_size} output)")
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    atomic_write_bytes(path, buffer.getvalue())
