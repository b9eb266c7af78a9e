"""`restore train` against BasicSR's own training loop on the CPU: same network, data, batch, seed.

Both loops train basicsr's MSRResNet (small: 32 features, 4 blocks) at x2 from one folder of HR/LR
tiles (scikit-image's colour photos, LR by MATLAB bicubic), batch 8, LR patch 48, Adam 2e-4, flips and
rotations, 2 data workers, one intra-op thread each (`OMP_NUM_THREADS=1`). Each run is a fresh process;
the two loops alternate in `--pairs` pairs so both meet the same machine load. Per run: iterations/s
after the first logging interval (warm-up excluded; BasicSR timed per iteration by a subclass of its
SRModel, restore from its log lines), and the whole process's wall and CPU seconds.

    python benchmarks/bench_train_loop.py [--pairs 5] [--iterations 60] [--set train.channels_last=false]

`--set` passes an override to restore's runs only (e.g. the NCHW layout BasicSR uses, to compare the
loops alone; by default MSRResNet trains channels-last, which its ArchInfo declares faster).

The processes are `gpu_check.py`'s children (one definition of both loops for the CPU and GPU checks).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from gpu_check import (  # noqa: E402 - benchmarks/ is not a package
    LOG_LINE,
    REPO,
    Sizes,
    basicsr_options,
    child_result,
    make_training_folder,
    restore_options,
    steady_rate,
)
from machine import cpu_description  # noqa: E402


def timed(cmd: list[str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run `cmd`; (result, wall seconds, CPU seconds of the process and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=3600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
                               "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"{cmd[2:5]} failed:\n{(done.stderr + done.stdout)[-3000:]}")
    return done, wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for restore's runs")
    args = parser.parse_args()
    sizes = Sizes(iterations=args.iterations, print_freq=10, batch=8, lq_patch=48, tile=192, workers=2,
                  network={"type": "MSRResNet", "num_feat": 32, "num_block": 4})
    work = Path(tempfile.mkdtemp(prefix="bench_train_loop_"))
    hr, lr = make_training_folder(work / "data", sizes.tile)
    restore_file, basicsr_file = restore_options(work, sizes, hr, lr), basicsr_options(work, sizes, hr, lr)
    script = str(HERE / "gpu_check.py")
    rows: dict[str, list[tuple[float, float, float]]] = {"BasicSR": [], "restore": []}
    print(f"# {cpu_description()}; load average {', '.join(f'{v:.1f}' for v in os.getloadavg())}; "
          f"{len(list(hr.iterdir()))} HR tiles of {sizes.tile}px; {args.pairs} pairs; restore overrides: "
          f"{', '.join(args.set) or 'none'}")
    for pair in range(args.pairs):
        done, wall, cpu = timed([sys.executable, script, "child-basicsr", str(basicsr_file), str(work / f"b{pair}")])
        stamps, window = child_result(done)["stamps"], sizes.print_freq
        rows["BasicSR"].append(((len(stamps) - window) / (stamps[-1] - stamps[window - 1]), wall, cpu))
        overrides = [arg for item in args.set for arg in ("--set", item)]
        done, wall, cpu = timed([sys.executable, script, "child-restore", "train", "-opt", str(restore_file),
                                 "--no-progress", "--set", f"name=r{pair}", *overrides])
        rates = [float(m[3]) for m in LOG_LINE.finditer(done.stderr + done.stdout)]
        rows["restore"].append((steady_rate(rates), wall, cpu))
        ratio = rows["restore"][-1][0] / rows["BasicSR"][-1][0]
        print(f"pair {pair + 1}: BasicSR {rows['BasicSR'][-1][0]:.2f} it/s, restore {rows['restore'][-1][0]:.2f} "
              f"it/s ({ratio:.2f}x)", flush=True)

    print("\n| loop | it/s (median) | whole process wall s | whole process CPU s |")
    print("|---|---:|---:|---:|")
    medians = {}
    for loop, runs in rows.items():
        medians[loop] = [statistics.median(r[i] for r in runs) for i in range(3)]
        rate, wall, cpu = medians[loop]
        print(f"| {loop} | {rate:.2f} | {wall:.1f} | {cpu:.1f} |")
    ratios = [r[0] / b[0] for r, b in zip(rows["restore"], rows["BasicSR"])]
    faster = sum(x > 1 for x in ratios)
    print(f"\nrestore / BasicSR iteration rate: median {statistics.median(ratios):.2f}x "
          f"(range {min(ratios):.2f}-{max(ratios):.2f}; restore faster in {faster} of {len(ratios)} pairs); "
          f"whole process wall {medians['restore'][1] / medians['BasicSR'][1]:.2f}x, "
          f"CPU {medians['restore'][2] / medians['BasicSR'][2]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
