"""Scoring networks on an evaluation dataset.

`evaluate` runs one or more models (e.g. the trained net and the task's baseline) on every
image and scores them in data units with the run's metrics. Restored outputs are written, and
figures drawn (`on_image`), by background threads (OpenCV and zlib release the GIL while they
encode), so writing never holds up scoring. Under several processes each rank scores its share of the images and the
per-image results are gathered, so every rank ends with the full table.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from restore.data.paired import to_tensor
from restore.errors import DataError, RestoreError
from restore.inference import run_network
from restore.metrics import MetricSet
from restore.paths import inside
from restore.tasks import Task, quantize_uint8


@dataclass
class EvalResults:
    """Per-image metric values of each model, in dataset order.

    `labels` gives each model's name in tables (e.g. ``Identity`` -> ``noisy input``); `saved`
    where each image's outputs were written."""

    dataset: str
    metric_names: list[str]
    images: list[str] = field(default_factory=list)
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # model -> metric -> per image
    labels: dict[str, str] = field(default_factory=dict)
    saved: dict[str, dict[str, Path]] = field(default_factory=dict)  # image -> model -> file

    def mean(self, model: str, metric: str) -> float:
        vals = [v for v in self.values[model][metric] if math.isfinite(v)]
        return float(np.mean(vals)) if vals else float("nan")

    @property
    def models(self) -> list[str]:
        return list(self.values)

    def label(self, model: str) -> str:
        return self.labels.get(model, model)


def _shard(n: int, rank: int, world: int) -> list[int]:
    return list(range(rank, n, world))


def writer_threads() -> int:
    """Threads that write outputs and figures beside the scoring (one per spare core, at least one)."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def panels_of(item: Mapping[str, Any], task: Task, quantize: str, gt: np.ndarray | None = None
              ) -> dict[str, np.ndarray]:
    """The input side of an image's panels in data units: ``LQ``, ``Guide`` (when given), ``GT``
    (`gt` when it is already in data units)."""
    meta = item["meta"]
    panels = {"LQ": task.to_data(item["lq"], meta, quantize)}
    if "guide" in item:
        panels["Guide"] = quantize_uint8(item["guide"])
    panels["GT"] = gt if gt is not None else task.to_data(item["gt"], meta, "round")
    return panels


def check_finite_output(out: torch.Tensor, model: str, image: str) -> None:
    """A network output with NaN or inf is an error, not a black image or a 7 dB score."""
    if not bool(torch.isfinite(out).all()):
        bad = int((~torch.isfinite(out)).sum())
        raise RestoreError(
            f"{model} produced {bad} non-finite value(s) (NaN or inf) on {image}; its output is not an image. "
            "The weights are finite, so the network overflows on this input: check the weights (a diverged "
            "training run?) and the input's value range."
        )


def output_stem(save_dir: Path, model: str, name: str) -> Path:
    """``save_dir/model/name`` (without extension), refused if `name` would leave `save_dir`."""
    try:
        return inside(save_dir, model, name, what=f"output of image {name!r}")
    except RestoreError as exc:
        raise DataError(str(exc)) from None


class _Writer:
    """Background work for the scoring loop, with a bounded backlog so memory stays flat."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=writer_threads(), thread_name_prefix="restore-writer")
        self.pending: deque[Future] = deque()
        self.limit = 4 * writer_threads()

    def submit(self, fn: Any, *args: Any) -> Future:
        while len(self.pending) >= self.limit:
            self.pending.popleft().result()
        future = self.pool.submit(fn, *args)
        self.pending.append(future)
        return future

    def finish(self) -> None:
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


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
    labels: Mapping[str, str] | None = None,
    on_image: Callable[..., None] | None = None,
    progress: bool = True,
    rank: int = 0,
    world_size: int = 1,
    gather: Any = None,
) -> EvalResults:
    """Score `models` on every image of `dataset` (items from `dataset[i]` with lq/gt/meta).

    save_dir: where restored outputs go (``<save_dir>/<model>/<name>.<ext>``, written by
        background threads); `save_models` limits which models' outputs are saved.
    labels: each model's name in tables (default: its key).
    on_image: called in a background thread once an image is scored, as ``on_image(index,
        panels, meta, scores)`` with the panels in data units (`panels_of` plus each model's output).
    gather: ``accelerate.utils.gather_object`` when running on several processes.
    """
    from tqdm import tqdm

    for net in models.values():
        net.eval()
    indices = _shard(len(dataset), rank, world_size)
    rows: list[tuple[int, str, dict[str, dict[str, float]]]] = []
    saved: dict[str, dict[str, Path]] = {}
    writer = _Writer()
    bar = tqdm(indices, desc=f"eval {dataset_name}".strip(), unit="img", disable=not progress or rank != 0,
               leave=False)
    try:
        for index in bar:
            item = dataset[index]
            name, meta = item["name"], item["meta"]
            lq = to_tensor(item["lq"]).unsqueeze(0).to(device)
            guide = to_tensor(item["guide"]).unsqueeze(0).to(device) if "guide" in item else None
            gt_data = task.to_data(item["gt"], meta, "round")
            context = task.metric_context(meta)
            scores: dict[str, dict[str, float]] = {}
            outputs: dict[str, np.ndarray] = {}
            for label, net in models.items():
                out = run_network(net, lq, task.scale, guide=guide, tile=tile, tile_overlap=tile_overlap)
                check_finite_output(out, (labels or {}).get(label, label), name)
                out_data = task.to_data(out[0].permute(1, 2, 0).float().cpu().numpy(), meta, quantize)
                scores[label] = metrics(out_data, gt_data, context)
                outputs[label] = out_data
                if save_dir is not None and (save_models is None or label in save_models):
                    stem = output_stem(save_dir, label, name)
                    saved.setdefault(name, {})[label] = writer.submit(task.save_output, out_data, stem, meta)
            if on_image is not None:
                writer.submit(on_image, index, {**panels_of(item, task, quantize, gt_data), **outputs}, meta, scores)
            rows.append((index, name, scores))
    finally:
        writer.finish()
    if gather is not None and world_size > 1:
        rows = gather(rows)
    rows.sort(key=lambda r: r[0])
    results = EvalResults(dataset_name, metrics.names, labels=dict(labels or {}))
    results.values = {label: {m: [] for m in metrics.names} for label in models}
    for _, name, scores in rows:
        results.images.append(name)
        for label, values in scores.items():
            for metric, value in values.items():
                results.values[label][metric].append(value)
    results.saved = {name: {label: f.result() for label, f in files.items()} for name, files in saved.items()}
    return results
