"""UPS vs SwinIR-light (and UPS-S vs SwinIR-S) inference latency, measured side by side in one run.

The paper's setting: x2, one 256x256 LR input, batch 1 (it reports an RTX 2080Ti). Networks have
their default (random) initialisation; weights do not change the work. Rounds are interleaved
(every network once per round, after a warm-up call each), so load on a shared machine affects
all of them alike; the table gives the median wall time per call, the median process CPU time
(all threads), and the ratio of each model's wall time to its SwinIR counterpart's (< 1: UPS
is faster). FLOPs are fvcore counts for the same input (restore.profile).

    python benchmarks/bench_ups_latency.py [--device cpu|cuda] [--size 256] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from machine import cpu_description  # benchmarks/machine.py (this script's folder is on sys.path)

from restore.api import build_network, count_parameters
from restore.profile import count_flops

PAIRS = (("UPS", "SwinIR_light"), ("UPS_S", "SwinIR_S"))


def timed_call(net: torch.nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one forward pass."""
    if x.is_cuda:
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    with torch.no_grad():
        net(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=256, help="LR input height and width (default 256)")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_description()
    print(f"machine: {name}; device {args.device}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"x{args.scale}, LR input 1x3x{args.size}x{args.size}, fp32, median of {args.rounds} interleaved rounds")

    torch.manual_seed(0)
    names = [n for pair in PAIRS for n in pair]
    nets = {n: build_network({"type": n}, in_chans=3, scale=args.scale).eval().to(device) for n in names}
    x = torch.rand(1, 3, args.size, args.size, device=device)
    flops = {n: count_flops(net, x)[0] for n, net in nets.items()}
    for net in nets.values():
        timed_call(net, x)  # warm-up: allocator, cuDNN/oneDNN kernel choice, cached masks
    walls: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.rounds):
        for n, net in nets.items():
            wall, cpu = timed_call(net, x)
            walls[n].append(wall)
            cpus[n].append(cpu)

    print("\n| model | params | FLOPs | wall ms | CPU ms | wall vs SwinIR |\n|---|---:|---:|---:|---:|---:|")
    for ups, swinir in PAIRS:
        for n in (ups, swinir):
            wall = statistics.median(walls[n])
            ratio = wall / statistics.median(walls[swinir])
            print(f"| {n} | {count_parameters(nets[n]):,} | {flops[n] / 1e9:.1f}G | {wall * 1e3:.0f} | "
                  f"{statistics.median(cpus[n]) * 1e3:.0f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
