"""Scoring trained sweep cells: test sets (as `restore test`), size and FLOPs; latency of all together."""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import torch

from restore.archs import arch_info, count_parameters
from restore.build import build_task, load_pretrained, network_for_task
from restore.inference import call_network
from restore.metrics import MetricSet
from restore.schema import Options
from restore.sweep.grid import Cell, SweepSettings


def evaluate_cell(cell: Cell, options: Options, settings: SweepSettings, cache: dict[str, dict[str, Any]],
                  device: str | None = None) -> dict[str, Any]:
    """The cell's result record: its values, the mean of every metric on every test set, and the
    network's parameters and FLOPs (counted once per network configuration: `cache`)."""
    from restore.tester import run_tests, test_sets, trained_weights
    from restore.trainer import experiment_dir, iterations_done

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    weights = trained_weights(options)
    runs = run_tests(options, weights=weights, models="net", sets=test_sets(options, None, None, "{}", None),
                     save_images=False, device=device, progress=False)
    metrics, higher = {}, {}
    task = build_task(options.task, options.scale)
    for run in runs:
        (model,) = run.results.models
        scorer = MetricSet(options.val.metrics if options.val.metrics is not None else task.default_metrics())
        for metric in run.results.metric_names:
            metrics[f"{run.dataset}/{metric}"] = run.results.mean(model, metric)
            higher[f"{run.dataset}/{metric}"] = scorer.higher_is_better(metric)
    key = json.dumps({"network": options.network_g, "task": options.task, "scale": options.scale}, sort_keys=True)
    if key not in cache:
        cache[key] = measure_network(options, settings)
    return {
        "cell": cell.name, "configuration": cell.configuration, "seed": cell.seed, "values": cell.values,
        "iterations": iterations_done(experiment_dir(options.path.experiments_root, options.name)), "weights": weights,
        **cache[key], "metrics": metrics, "higher_is_better": higher,
    }


def measure_network(options: Options, settings: SweepSettings) -> dict[str, Any]:
    """Parameters and fvcore FLOPs at ``settings.output_size`` (as `restore profile` counts them)."""
    from restore.profile import profile_network

    task = build_task(options.task, options.scale)
    net = network_for_task(options.network_g, task)
    profile = profile_network(net, name=str(options.network_g["type"]), scale=task.scale, in_chans=task.in_chans,
                              output_size=settings.output_hw)
    return {"params": count_parameters(net), "flops": profile.flops, "flops_output": settings.output_size}


def time_configurations(trained: dict[str, tuple[Options, str]], settings: SweepSettings,
                        device: str | None = None) -> dict[str, float]:
    """Median milliseconds of one forward pass of each configuration's trained network.

    All networks are timed together in interleaved rounds (every network once per round, after a
    warm-up call each), so load on a shared machine affects them alike and their ratios hold.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    size, generator = settings.latency_size, torch.Generator().manual_seed(0)
    calls = {}
    for name, (options, weights) in trained.items():
        task = build_task(options.task, options.scale)
        net = network_for_task(options.network_g, task)
        load_pretrained(net, weights, strict=options.path.strict_load_g)
        net = net.eval().to(device)
        info = arch_info(net)
        x = torch.rand(1, task.in_chans, size, size, generator=generator).to(device)
        guide = torch.rand(1, 3, size * task.scale, size * task.scale, generator=generator).to(device) \
            if info.guided else None
        calls[name] = (net, x, task.scale, info, guide)
    times: dict[str, list[float]] = {name: [] for name in calls}
    with torch.no_grad():
        for round_ in range(settings.latency_rounds + 1):  # round 0 warms up
            for name, (net, x, scale, info, guide) in calls.items():
                if x.is_cuda:
                    torch.cuda.synchronize(x.device)
                start = time.perf_counter()
                call_network(net, x, scale=scale, info=info, guide=guide)
                if x.is_cuda:
                    torch.cuda.synchronize(x.device)
                if round_:
                    times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}
