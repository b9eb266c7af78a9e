"""Whole-image vs tiled inference on a large photo: time, peak memory and agreement, in one run.

The image is scikit-image's 1411x1411 retina photograph (RGB, no download); the network is
basicsr's MSRResNet x2 with random weights (PyTorch's default initialisation, so every layer
counts). Each configuration runs in a fresh Python process so its peak memory is its own:
on the CPU the growth of the process's maximum resident set size (``ru_maxrss``) during
inference, on CUDA ``torch.cuda.max_memory_allocated``. The first configuration (whole image)
is the baseline of the ratios; `pixels x` is the LQ area the network processes relative to the
image (the work the overlaps add), `CPU s` the process's CPU time (less sensitive than wall time to
other load on a shared machine), and `max |diff|` compares each tiled output with the whole-image
output in [0, 1] units.

    python benchmarks/bench_tiled_inference.py [--device cpu|cuda] [--tiles 512 256 128]
        [--overlap 32] [--num-feat 32] [--num-block 4] [--size 1411]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_description  # benchmarks/machine.py (this script's folder is on sys.path)


def machine(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name()
    return cpu_description()


def worker(config: dict) -> None:
    """Run one configuration and print its measurements as JSON (in a fresh process)."""
    import numpy as np
    import skimage.data
    import torch
    from torch import nn

    from restore.api import build_network
    from restore.inference import run_network

    torch.manual_seed(0)
    net = build_network({"type": "MSRResNet", "num_feat": config["num_feat"], "num_block": config["num_block"]},
                        in_chans=3, out_chans=3, scale=2)
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            module.reset_parameters()
    device = torch.device(config["device"])
    net.eval().to(device)
    photo, size = skimage.data.retina(), config["size"]
    top = (photo.shape[0] - size) // 2
    lq = torch.from_numpy(photo[top : top + size, top : top + size]).permute(2, 0, 1)[None].float() / 255.0
    tile = config["tile"]
    with torch.inference_mode():
        run_network(net, lq[..., :64, :64].to(device), 2)  # load kernels before the baseline
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        else:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start, cpu_start = time.perf_counter(), time.process_time()
        # As `restore infer` does: tiled, the image stays on the CPU and only tiles visit the device.
        out = run_network(net, lq if tile else lq.to(device), 2, tile=tile, tile_overlap=config["overlap"])
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        if device.type == "cuda":
            peak_mib = (torch.cuda.max_memory_allocated() - before) / 2**20
        else:
            peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    np.save(config["save"], out[0].float().cpu().numpy())
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_mib": peak_mib, "shape": list(out.shape)}))


def pixels_processed(size: int, tile: int | None, overlap: int) -> float:
    """LQ pixels the network sees, relative to the image: the work tiling adds by overlapping."""
    from restore.inference import tile_starts

    if tile is None:
        return 1.0
    tile = min(tile, size)
    return (len(tile_starts(size, tile, overlap)) * tile / size) ** 2


def run_config(config: dict) -> dict:
    result = subprocess.run([sys.executable, __file__, "--worker", json.dumps(config)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"configuration {config} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--tiles", type=int, nargs="+", default=[512, 256, 128])
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--num-feat", type=int, default=32)
    parser.add_argument("--num-block", type=int, default=4)
    parser.add_argument("--size", type=int, default=1411, help="centre crop of the retina photo (LQ pixels)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return

    import numpy as np

    print(f"machine: {machine(args.device)}; device {args.device}")
    print(f"MSRResNet x2 (num_feat {args.num_feat}, num_block {args.num_block}) on the retina photo, "
          f"{args.size}x{args.size} -> {2 * args.size}x{2 * args.size}, overlap {args.overlap}")
    metric = "peak CUDA MiB" if args.device == "cuda" else "peak RSS growth MiB"
    print(f"{'tile':>8} {'pixels x':>8} {'seconds':>8} {'time x':>7} {'CPU s':>8} {'CPU x':>6} "
          f"{metric:>20} {'memory x':>9} {'max |diff|':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        baseline = None
        for tile in [None, *args.tiles]:
            save = str(Path(tmp) / f"{tile}.npy")
            config = {"device": args.device, "tile": tile, "overlap": args.overlap, "num_feat": args.num_feat,
                      "num_block": args.num_block, "size": args.size, "save": save}
            measured = run_config(config)
            if baseline is None:
                baseline, whole = measured, np.load(save)
                diff = 0.0
            else:
                diff = float(np.abs(np.load(save) - whole).max())
            work = pixels_processed(args.size, tile, args.overlap)
            print(f"{tile or 'whole':>8} {work:8.2f} {measured['seconds']:8.2f} "
                  f"{measured['seconds'] / baseline['seconds']:7.2f} {measured['cpu_seconds']:8.1f} "
                  f"{measured['cpu_seconds'] / baseline['cpu_seconds']:6.2f} {measured['peak_mib']:20.0f} "
                  f"{measured['peak_mib'] / baseline['peak_mib']:9.3f} {diff:11.2e}")


if __name__ == "__main__":
    main()
