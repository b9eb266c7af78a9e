"""Scoring one trained sweep cell: its test sets (as `restore test`), size, FLOPs and latency."""

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
    network's parameters, FLOPs and latency (measured once per network configuration: `cache`)."""
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
        cache[key] = measure_network(options, weights, settings, device)
    return {
        "cell": cell.name, "configuration": cell.configuration, "seed": cell.seed, "values": cell.values,
        "iterations": iterations_done(experiment_dir(options)), "weights": weights,
        **cache[key], "metrics": metrics, "higher_is_better": higher,
    }


def measure_network(options: Options, weights: str, settings: SweepSettings, device: str) -> dict[str, Any]:
    """Parameters, fvcore FLOPs at ``settings.output_size`` and median latency on the test device."""
    from restore.profile import profile_network

    task = build_task(options.task, options.scale)
    net = network_for_task(options.network_g, task)
    load_pretrained(net, weights, strict=options.path.strict_load_g)
    net = net.eval().to(device)
    size = settings.latency_size
    x = torch.rand(1, task.in_chans, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    latency = measure_latency(net, x, task.scale, settings.latency_rounds)
    profile = profile_network(net.cpu(), name=str(options.network_g["type"]), scale=task.scale,
                              in_chans=task.in_chans, output_size=settings.output_hw)
    return {"params": count_parameters(net), "flops": profile.flops, "flops_output": settings.output_size,
            "latency_ms": latency * 1e3, "latency_input": f"{size}x{size}", "device": str(device)}


def measure_latency(net: torch.nn.Module, x: torch.Tensor, scale: int, rounds: int) -> float:
    """Median wall seconds of one forward pass over `rounds` timed calls (after a warm-up call)."""
    info = arch_info(net)
    guide = None
    if info.guided:
        guide = torch.rand(1, 3, x.shape[-2] * scale, x.shape[-1] * scale, device=x.device)
    times = []
    with torch.no_grad():
        for i in range(rounds + 1):
            if x.is_cuda:
                torch.cuda.synchronize(x.device)
            start = time.perf_counter()
            call_network(net, x, scale=scale, info=info, guide=guide)
            if x.is_cuda:
                torch.cuda.synchronize(x.device)
            if i:
                times.append(time.perf_counter() - start)
    return statistics.median(times)
