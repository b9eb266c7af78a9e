"""Helpers shared by the task tests: building tasks, running the `restore test` CLI and reading
the mean row of its metrics.csv."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from restore.build import build_task, network_for_task
from restore.cli import main
from restore.tasks import Sample, Task
from tests.conftest import REPO


def task(**options) -> Task:
    return build_task(options)


def baseline_output(task_: Task, lq: np.ndarray) -> np.ndarray:
    """The task's baseline model run on one network-space LQ array (HWC)."""
    net = network_for_task(task_.baseline, task_)
    with torch.no_grad():
        out = net(torch.from_numpy(np.ascontiguousarray(lq)).permute(2, 0, 1)[None])
    return out[0].permute(1, 2, 0).numpy()


def prepared(task_: Task, gt_path: Path, lq_path: Path | None = None) -> Sample:
    gt = task_.read(gt_path)
    lq = None if lq_path is None else task_.read(lq_path)
    return task_.prepare(gt, lq, name=gt_path.stem, source=gt_path)


def restore_test(*args: str, out: Path) -> int:
    """`restore test ARGS --out OUT --no-progress`-style run in this process (from the project root)."""
    import os

    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        return main(["test", *args, "--out", str(out)])
    finally:
        os.chdir(cwd)


def mean_row(report: Path, model: str) -> dict[str, float]:
    """The mean scores of `model` in a report folder's metrics.csv."""
    with open(report / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["model"] == model and row["image"] == "mean":
                return {k: float(v) for k, v in row.items() if k not in ("model", "image")}
    raise AssertionError(f"no mean row for {model} in {report / 'metrics.csv'}")
