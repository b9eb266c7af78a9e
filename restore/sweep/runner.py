"""Running a sweep's cells: one ``restore train`` process per cell, then its test and profile.

Where things go (``<sweep>`` is the base option file's name)::

    experiments/<cell>/                 the cell's training run, as `restore train` makes it
    results/<cell>/<set>/               the cell's test report, as `restore test` makes it
    results/<sweep>/cells/<cell>.yml    the cell's complete options (what `restore train -opt` ran)
    results/<sweep>/cells/<cell>.log    the training process's output
    results/<sweep>/cells/<cell>.json   the cell's result: metrics, parameters, FLOPs

A cell with a result file is finished and skipped; a cell whose training reached ``total_iter``
is only tested; a cell with a complete training state resumes from it (``--resume``); any other
cell trains from the start. So a sweep interrupted at any moment, even by SIGKILL, is finished by
running the same command again. Training processes die with the sweep (Linux: parent-death
signal), so a rerun never races an orphan.
"""

from __future__ import annotations

import ctypes
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from restore.data.io import atomic_write_bytes
from restore.errors import OptionError, RestoreError
from restore.schema import Options
from restore.sweep.grid import Cell, Sweep, flatten

DEFAULT_LAUNCHER = (sys.executable,)


class SweepFailed(RestoreError):
    """One or more cells could not be trained or tested."""


@dataclass
class CellPlan:
    cell: Cell
    options: Options
    status: str       # "done" (result on disk), "trained" (to test), "resume" (from a state), "new"
    iteration: int    # iterations already trained


def sweep_root(sweep: Sweep) -> Path:
    return Path(sweep.base.path.results_root) / sweep.name


def cell_file(sweep: Sweep, cell: Cell, suffix: str) -> Path:
    return sweep_root(sweep) / "cells" / f"{cell.name}{suffix}"


def plan_cells(sweep: Sweep, checked: dict[str, Options]) -> list[CellPlan]:
    """Each cell's status, read from disk. A cell that was started with other options is an error
    (its run would mix two configurations): nothing is changed in that case."""
    from restore.trainer import experiment_dir, iterations_done

    plans = []
    for cell in sweep.cells:
        options = checked[cell.name]
        done = iterations_done(experiment_dir(options.path.experiments_root, options.name))
        result = cell_file(sweep, cell, ".json")
        recorded = cell_file(sweep, cell, ".yml")
        if (done or result.is_file()) and recorded.is_file():
            _check_same_options(cell, yaml.safe_load(recorded.read_text(encoding="utf-8")), recorded)
        if result.is_file():
            status = "done"
        elif done >= options.train.total_iter:
            status = "trained"
        else:
            status = "resume" if done else "new"
        plans.append(CellPlan(cell, options, status, done))
    return plans


def _check_same_options(cell: Cell, recorded: dict[str, Any], path: Path) -> None:
    before, now = flatten(recorded), flatten(cell.options)
    changed = [f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(before) | set(now))
               if before.get(k) != now.get(k)]
    if changed:
        raise OptionError(
            f"sweep cell {cell.name} was started with other options ({'; '.join(changed[:5])}"
            f"{'; ...' if len(changed) > 5 else ''}); continuing it would mix two configurations. Give the sweep "
            f"another name (--set name=...), or move experiments/{cell.name} and {path.with_suffix('.*')} away.")


# -- training processes ------------------------------------------------------------------------------

def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the sweep process dies (Linux prctl PR_SET_PDEATHSIG)."""
    if _LIBC is not None:
        _LIBC.prctl(1, int(signal.SIGKILL), 0, 0, 0)


try:  # loaded here, not in the child: a forked child should call, not load
    _LIBC = ctypes.CDLL("libc.so.6", use_errno=True) if sys.platform.startswith("linux") else None
except OSError:
    _LIBC = None


@dataclass
class _Training:
    plan: CellPlan
    process: subprocess.Popen
    log: Any
    slot: int
    started: float


def _start_training(sweep: Sweep, plan: CellPlan, launcher: tuple[str, ...], slot: int,
                    devices: list[str]) -> _Training:
    cell = plan.cell
    options_file = cell_file(sweep, cell, ".yml")
    # Resume only from a complete state that exists: `--resume` without one may be refused.
    resume = ["--resume"] if plan.status == "resume" else []
    command = [*launcher, "-m", "restore", "train", "-opt", str(options_file), "--no-progress", *resume]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if devices:
        env["CUDA_VISIBLE_DEVICES"] = devices[slot % len(devices)]
    log = open(cell_file(sweep, cell, ".log"), "a", encoding="utf-8")  # noqa: SIM115 - closed when it ends
    log.write(f"\n$ {shlex.join(command)}\n")
    log.flush()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                               preexec_fn=_die_with_parent)
    return _Training(plan, process, log, slot, time.time())


def _last_iteration_line(path: Path) -> str:
    """The newest ``[iter a/b]`` of a training log, for the progress bar."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    hits = [line[line.index("[iter "):].split("]")[0] + "]" for line in tail.splitlines() if "[iter " in line]
    return hits[-1] if hits else ""


def _stop(trainings: list[_Training]) -> None:
    for job in trainings:
        if job.process.poll() is None:
            os.killpg(job.process.pid, signal.SIGTERM)
    for job in trainings:
        try:
            job.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(job.process.pid, signal.SIGKILL)
            job.process.wait()
        job.log.close()


# -- the sweep -----------------------------------------------------------------------------------------

def run_sweep(sweep: Sweep, plans: list[CellPlan], *, jobs: int = 1, launcher: tuple[str, ...] = DEFAULT_LAUNCHER,
              devices: list[str] = (), device: str | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Train and test every unfinished cell (`jobs` trainings at a time); the results of all cells."""
    from tqdm import tqdm

    from restore.sweep.evaluate import evaluate_cell, time_configurations
    from restore.sweep.report import write_report

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")

    for plan in plans:
        if plan.status != "done":
            atomic_write_bytes(cell_file(sweep, plan.cell, ".yml"),
                               yaml.safe_dump(plan.cell.options, sort_keys=False).encode())
    results = {p.cell.name: json.loads(cell_file(sweep, p.cell, ".json").read_text()) for p in plans
               if p.status == "done"}
    to_test = deque(p for p in plans if p.status == "trained")
    to_train = deque(p for p in plans if p.status in ("resume", "new"))
    running: list[_Training] = []
    failures: list[str] = []
    cache: dict[str, dict[str, Any]] = {}
    trained_for: dict[str, float] = {}  # wall seconds of the training process this run started
    tqdm.monitor_interval = 0  # no monitor thread: training processes are forked from this one
    bar = tqdm(total=len(plans), initial=len(results), desc=sweep.name, unit="cell", disable=not progress,
               dynamic_ncols=True)

    def say(message: str) -> None:
        tqdm.write(f"[sweep {sweep.name}] {message}", file=sys.stderr)

    say(f"{len(plans)} cells: {len(results)} done, {len(to_test)} to test, "
        f"{sum(p.status == 'resume' for p in to_train)} to resume, {sum(p.status == 'new' for p in to_train)} new")
    try:
        while to_train or running or to_test:
            while to_train and len(running) < jobs:
                plan = to_train.popleft()
                free = min(set(range(jobs)) - {job.slot for job in running})
                running.append(_start_training(sweep, plan, launcher, free, list(devices)))
                start = f"resuming at iteration {plan.iteration}" if plan.status == "resume" else "training"
                say(f"{plan.cell.name}: {start} (log: {cell_file(sweep, plan.cell, '.log')})")
            for job in list(running):
                if job.process.poll() is None:
                    continue
                running.remove(job)
                job.log.close()
                if job.process.returncode == 0:
                    trained_for[job.plan.cell.name] = time.time() - job.started
                    to_test.append(job.plan)
                else:
                    failures.append(f"{job.plan.cell.name} (training exited with status {job.process.returncode}; "
                                    f"see {cell_file(sweep, job.plan.cell, '.log')})")
                    say(f"{job.plan.cell.name}: training failed")
                    bar.update(1)
            if to_test:
                plan = to_test.popleft()
                try:
                    result = evaluate_cell(plan.cell, plan.options, sweep.settings, cache, device=device)
                    result["train_seconds"] = trained_for.get(plan.cell.name)
                except RestoreError as exc:
                    failures.append(f"{plan.cell.name} (test: {exc})")
                else:
                    atomic_write_bytes(cell_file(sweep, plan.cell, ".json"), json.dumps(result, indent=1).encode())
                    results[plan.cell.name] = result
                    write_report(sweep_root(sweep), sweep.name, _in_order(plans, results), sweep.settings.metric)
                    scores = ", ".join(f"{k} {v:.4f}" for k, v in result["metrics"].items())
                    say(f"{plan.cell.name}: {scores}")
                bar.update(1)
                continue
            bar.set_postfix_str(" ".join(_last_iteration_line(cell_file(sweep, job.plan.cell, ".log"))
                                         for job in running))
            time.sleep(0.5)
    except BaseException:
        _stop(running)
        raise
    finally:
        bar.close()
    ordered = _in_order(plans, results)
    if ordered:
        say("timing the trained networks together")
        trained = {}
        for plan in plans:
            if plan.cell.name in results:
                trained.setdefault(plan.cell.configuration, (plan.options, results[plan.cell.name]["weights"]))
        latency = time_configurations(trained, sweep.settings, device)
        size, rounds = sweep.settings.latency_size, sweep.settings.latency_rounds
        timing = (f"median forward pass on a {size}x{size} input ({device}, {torch.get_num_threads()} thread(s)), "
                  f"all configurations timed together in {rounds} interleaved rounds")
        write_report(sweep_root(sweep), sweep.name, ordered, sweep.settings.metric, latency, timing)
    if failures:
        raise SweepFailed(f"{len(failures)} of {len(plans)} sweep cells failed: {'; '.join(failures)}. The others "
                          f"are in {sweep_root(sweep) / 'sweep.csv'}; run the sweep again to retry the failed ones.")
    return ordered


def _in_order(plans: list[CellPlan], results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [results[p.cell.name] for p in plans if p.cell.name in results]
