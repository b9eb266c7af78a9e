"""Inference cost of PS networks: cached kernels vs materialised convs vs rebuilding every call.

For each PS network (released geometry, random weights) and one input size, in one run:
- ``materialised``: `restore.api.materialize(net)`, plain convs (the unshared network's cost);
- ``PS cached``: the PS network in eval mode under ``no_grad``; kernels are built once and cached;
- ``PS rebuild``: the same with ``cache_kernels`` off, so every call rebuilds every kernel from
  bank and coefficients (what a training-mode forward does);
- ``PS plain ops``: ``PS cached`` with the fused CPU path off (one PyTorch op per layer).
Times are the median of `--rounds` rounds, the variants interleaved within each round, and
ratios are against ``materialised`` measured in the same run.

    python benchmarks/bench_ps_inference.py [--rounds 7] [--size 64] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from machine import cpu_description  # benchmarks/machine.py (this script's folder is on sys.path)
from restore_ps.common import fused_inference

from restore.api import build_network, count_parameters, materialize
from restore.inference import call_network

NETWORKS = {  # label: (arch, N_p, scale), the released geometries
    "DRRN-PS x2": ("DRRN_PS", 18, 2),
    "CARN-PS 8/9 x2": ("CARN_PS", 144, 2),
    "SRFBN-S-PS x2": ("SRFBN_S_PS", 72, 2),
}


def timed(fn, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def variants(arch: str, num_partial_filters: int, scale: int, device: str) -> dict[str, torch.nn.Module]:
    def build(cache: bool) -> torch.nn.Module:
        torch.manual_seed(0)
        sharing = {"type": "partial_filter", "num_partial_filters": num_partial_filters, "cache_kernels": cache}
        return build_network({"type": arch, "sharing": sharing}, scale=scale).to(device).eval()

    cached, rebuilding = build(True), build(False)
    return {"materialised": materialize(cached).eval(), "PS cached": cached, "PS rebuild": rebuilding,
            "PS plain ops": cached}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--size", type=int, default=64, help="LR input size (square)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    machine = torch.cuda.get_device_name() if args.device == "cuda" else cpu_description()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"machine: {machine}; torch {torch.__version__}, {torch.get_num_threads()} threads; load average {load}; "
          f"LR input {args.size}x{args.size}, batch 1, median of {args.rounds} rounds\n")
    print("| network | parameters (PS / materialised) | materialised ms | PS cached ms | PS rebuild ms "
          "| PS plain ops ms | cached / materialised | rebuild / materialised | plain ops / materialised |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    x = torch.rand(1, 3, args.size, args.size, device=args.device)
    for label, (arch, num_partial_filters, scale) in NETWORKS.items():
        nets = variants(arch, num_partial_filters, scale, args.device)
        info = nets["PS cached"].restore_info

        def call(net, info=info, scale=scale, fused=True):
            with fused_inference(fused):
                return call_network(net, x, scale=scale, info=info)

        times: dict[str, list[float]] = {name: [] for name in nets}
        with torch.no_grad():
            for name, net in nets.items():  # warm-up (fills the kernel cache, picks conv algorithms)
                call(net, fused=name != "PS plain ops")
            for _ in range(args.rounds):
                for name, net in nets.items():
                    fused = name != "PS plain ops"
                    times[name].append(timed(lambda net=net, fused=fused: call(net, fused=fused), args.device) * 1000)
            diff = max((call(nets[name], fused=name != "PS plain ops") - call(nets["materialised"])).abs().max().item()
                       for name in ("PS cached", "PS rebuild", "PS plain ops"))
        med = {name: statistics.median(t) for name, t in times.items()}
        counts = f"{count_parameters(nets['PS cached']):,} / {count_parameters(nets['materialised']):,}"
        base = med["materialised"]
        print(f"| {label} | {counts} | {base:.1f} | {med['PS cached']:.1f} | {med['PS rebuild']:.1f} "
              f"| {med['PS plain ops']:.1f} | {med['PS cached'] / base:.2f}x | {med['PS rebuild'] / base:.2f}x "
              f"| {med['PS plain ops'] / base:.2f}x |  <!-- max |PS - materialised| = {diff:.1e} -->")


if __name__ == "__main__":
    main()
