"""Every GPU-side check of restore in one run, printed as tables (run by ``benchmarks/gpu_check.sh``).

    bash benchmarks/gpu_check.sh                 # on a CUDA machine; under 8 minutes on one H100/H200
    bash benchmarks/gpu_check.sh --cpu --quick   # every step with tiny sizes on the CPU (what CI runs)

Steps (``--steps`` picks some):

``train``    UPS-S x2 trained for 200 iterations (batch 16, LR patch 64, flips/rot90, L1, Adam 2e-4)
             from one folder of bundled photos (scikit-image's, cut into tiles, LR by MATLAB bicubic):
             ``restore train`` in fp32, bf16 and bf16 + channels_last + torch.compile (passed with
             ``--set``) against BasicSR's own loop (``basicsr.train.train_pipeline``, SRModel) on the
             same network, data, batch and optimizer. Iterations/s after the first logging interval
             (warm-up and compilation excluded), peak memory (CUDA: max allocated; CPU: peak RSS), the
             final loss (mean over the last interval) and the achieved TFLOP/s (2 x 3 x fvcore forward
             MACs per iteration: forward plus a backward of twice its cost).
``latency``  UPS vs SwinIR-light at a 1280x720 output (x2), fp32 and bf16 autocast; TFLOP/s from fvcore.
``ps``       ``restore test`` of the PS authors' released weights (DRRN-PS x2/x3/x4, SRFBN-S-PS x2, from
             ../shared/weights/ps or ``$RESTORE_WEIGHTS_DIR``) on the GPU and on the CPU: PSNR equal
             within 0.001 dB.
``multi``    two processes on the one device (``torchrun --nproc_per_node 2 restore train``), or the
             reason it cannot run.

Everything comes from the working tree (datasets/, scikit-image's photos) plus the PS weights when
present. Options the installed restore does not know yet (``train.channels_last``,
``train.compile``) make their row say so instead of failing. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
# Check this checkout's code (core and plugins), whichever copy of restore is installed; the
# installed metadata only names the plugins. Child processes get the same path.
CHECKOUT_PATH = [str(REPO), str(REPO / "plugins")]
sys.path[:0] = CHECKOUT_PATH
STEPS = ("train", "latency", "ps", "multi")
RESULT_TAG = "GPU_CHECK_RESULT "  # children print one JSON line after this tag


@dataclass
class Sizes:
    """What one run of the check costs; `--quick` shrinks everything to seconds on a CPU."""

    iterations: int = 200
    print_freq: int = 50
    batch: int = 16
    lq_patch: int = 64
    tile: int = 256
    workers: int = 6
    network: dict[str, Any] = field(default_factory=lambda: {"type": "UPS_S"})
    latency_output: tuple[int, int] = (720, 1280)
    latency_runs: int = 10
    ps_options: tuple[str, ...] = ("ps_drrn_released_test.yml", "ps_srfbn_x2_released_test.yml")
    multi_iterations: int = 20

    @classmethod
    def quick(cls) -> Sizes:
        return cls(iterations=4, print_freq=2, batch=2, lq_patch=16, workers=0,
                   network={"type": "UPS_S", "depths": [2], "embed_dim": 16},
                   latency_output=(64, 64), latency_runs=1, ps_options=("ps_srfbn_x2_released_test.yml",),
                   multi_iterations=2)


@dataclass
class Row:
    cells: list[str]
    ok: bool = True  # False: a check failed (a step that cannot run here is ok, and says why)


def print_table(title: str, header: list[str], rows: list[Row]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row.cells) + " |")
    sys.stdout.flush()


def run(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 1200) -> subprocess.CompletedProcess:
    python_path = os.pathsep.join([*CHECKOUT_PATH, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": python_path, **(env or {})})


def child_result(done: subprocess.CompletedProcess) -> dict[str, Any]:
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_TAG)]
    return json.loads(lines[-1][len(RESULT_TAG):]) if lines else {}


def failure(done: subprocess.CompletedProcess) -> str:
    """The last informative line a failed command printed."""
    lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    text = (errors or lines or [f"exit status {done.returncode}"])[-1]
    return text.replace("|", "/")[:200]


def peak_memory() -> dict[str, Any]:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return {"peak_mib": torch.cuda.max_memory_allocated() / 2**20, "memory": "CUDA max allocated"}
    return {"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "memory": "peak RSS"}


# -- children: one fresh process per training run, as a user would start it ---------------------

def child_restore(args: list[str]) -> int:
    """`restore <args>` in this process, then its peak memory as a result line."""
    from restore.cli import main

    code = main(args)
    print(RESULT_TAG + json.dumps(peak_memory()), flush=True)
    return code


def child_basicsr(option_file: str, root: str) -> int:
    """BasicSR's own training loop on a restore arch (registered with BasicSR as ``RestoreArch``),
    timed per iteration by a subclass of its SRModel."""
    from basicsr.models.sr_model import SRModel
    from basicsr.train import train_pipeline
    from basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY

    from restore.api import build_network

    @ARCH_REGISTRY.register()
    def RestoreArch(arch: str, scale: int, **options: Any) -> torch.nn.Module:  # noqa: N802 (BasicSR's names)
        return build_network({"type": arch, **options}, scale=scale)

    stamps: list[float] = []
    losses: list[float] = []

    @MODEL_REGISTRY.register()
    class TimedSRModel(SRModel):
        def optimize_parameters(self, current_iter: int) -> None:
            super().optimize_parameters(current_iter)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())
            losses.append(float(self.log_dict["l_pix"]))

    sys.argv = [sys.argv[0], "-opt", option_file]
    train_pipeline(root)
    print(RESULT_TAG + json.dumps({"stamps": stamps, "losses": losses, **peak_memory()}), flush=True)
    return 0


# -- data -----------------------------------------------------------------------------------------

def make_training_folder(root: Path, tile: int, scale: int = 2) -> tuple[Path, Path]:
    """HR tiles of scikit-image's colour photos and their MATLAB-bicubic LR (8-bit), as PNG folders."""
    import cv2
    from basicsr.utils.matlab_functions import imresize

    from restore.data.sources import SkimageSource

    source = SkimageSource("skimage:rgb")
    hr_dir, lr_dir = root / "HR", root / "LR"
    hr_dir.mkdir(parents=True)
    lr_dir.mkdir()
    for key in source.keys():
        photo = source.read(key)
        for y in range(0, photo.shape[0] - tile + 1, tile):
            for x in range(0, photo.shape[1] - tile + 1, tile):
                hr = photo[y:y + tile, x:x + tile]
                lr = (imresize(hr.astype(np.float32) / 255.0, 1 / scale).clip(0, 1) * 255.0).round().astype(np.uint8)
                name = f"{key}_{y}_{x}.png"
                cv2.imwrite(str(hr_dir / name), hr[..., ::-1])
                cv2.imwrite(str(lr_dir / name), lr[..., ::-1])
    return hr_dir, lr_dir


# -- step 1: training -------------------------------------------------------------------------------

LOG_LINE = re.compile(r"\[iter (\d+)/\d+\] l_pix ([-+0-9.e]+)\s+lr \S+\s+([0-9.]+) it/s")


def restore_options(work: Path, sizes: Sizes, hr: Path, lr: Path) -> Path:
    options = {
        "name": "gpu_check", "task": {"type": "sisr", "scale": 2}, "manual_seed": 0,
        "datasets": {"train": {
            "name": "skimage_tiles", "dataroot_gt": str(hr), "dataroot_lq": str(lr), "filename_tmpl": "{}",
            "lq_size": sizes.lq_patch, "use_hflip": True, "use_rot": True, "batch_size_per_gpu": sizes.batch,
            "num_worker_per_gpu": sizes.workers, "dataset_enlarge_ratio": 50}},
        "network_g": sizes.network,
        "path": {"experiments_root": str(work / "experiments"), "results_root": str(work / "results")},
        "train": {"total_iter": sizes.iterations, "optim_g": {"type": "Adam", "lr": 2e-4, "betas": [0.9, 0.99]},
                  "scheduler": {"type": "MultiStepLR", "milestones": [10 * sizes.iterations], "gamma": 0.5},
                  "pixel_opt": {"type": "L1Loss"}},
        "logger": {"print_freq": sizes.print_freq, "save_checkpoint_freq": sizes.iterations, "use_tb_logger": False},
    }
    path = work / "restore_train.yml"
    path.write_text(yaml.safe_dump(options, sort_keys=False))
    return path


def basicsr_options(work: Path, sizes: Sizes, hr: Path, lr: Path) -> Path:
    network = {k: v for k, v in sizes.network.items() if k != "type"}
    options = {
        "name": "gpu_check_basicsr", "model_type": "TimedSRModel", "scale": 2, "num_gpu": "auto", "manual_seed": 0,
        "datasets": {"train": {
            "name": "skimage_tiles", "type": "PairedImageDataset", "dataroot_gt": str(hr), "dataroot_lq": str(lr),
            "filename_tmpl": "{}", "io_backend": {"type": "disk"}, "gt_size": 2 * sizes.lq_patch,
            "use_hflip": True, "use_rot": True, "num_worker_per_gpu": sizes.workers,
            "batch_size_per_gpu": sizes.batch, "dataset_enlarge_ratio": 50, "prefetch_mode": None}},
        "network_g": {"type": "RestoreArch", "arch": sizes.network["type"], "scale": 2, **network},
        "path": {"pretrain_network_g": None, "strict_load_g": True, "resume_state": None},
        "train": {"ema_decay": 0, "optim_g": {"type": "Adam", "lr": 2e-4, "weight_decay": 0, "betas": [0.9, 0.99]},
                  "scheduler": {"type": "MultiStepLR", "milestones": [10 * sizes.iterations], "gamma": 0.5},
                  "total_iter": sizes.iterations, "warmup_iter": -1,
                  "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0, "reduction": "mean"}},
        "logger": {"print_freq": sizes.print_freq, "save_checkpoint_freq": 10 * sizes.iterations,
                   "use_tb_logger": False, "wandb": {"project": None}},
        "dist_params": {"backend": "nccl", "port": 29500},
    }
    path = work / "basicsr_train.yml"
    path.write_text(yaml.safe_dump(options, sort_keys=False))
    return path


def known_train_options() -> set[str]:
    from restore.schema import TrainOptions

    return set(TrainOptions.model_fields)


def training_flops(sizes: Sizes) -> float:
    """FLOPs of one training iteration: 3 x forward (the backward costs about twice the forward),
    2 FLOPs per fvcore multiply-accumulate."""
    from restore.api import build_network
    from restore.profile import count_flops

    net = build_network(sizes.network, scale=2)
    macs, _ = count_flops(net, torch.rand(1, 3, sizes.lq_patch, sizes.lq_patch), scale=2)
    return 2 * 3 * macs * sizes.batch


def steady_rate(rates: list[float]) -> float:
    """Iterations/s over the logging intervals after the first (equal intervals: harmonic mean)."""
    steady = rates[1:] or rates
    return len(steady) / sum(1 / r for r in steady)


def step_train(work: Path, sizes: Sizes, device: str) -> list[Row]:
    hr, lr = make_training_folder(work / "data", sizes.tile)
    restore_file, basicsr_file = restore_options(work, sizes, hr, lr), basicsr_options(work, sizes, hr, lr)
    flops = training_flops(sizes)
    env = {"CUDA_VISIBLE_DEVICES": ""} if device == "cpu" else {}
    known = known_train_options()
    configs = {
        "fp32": [],  # the default (train.mixed_precision: no)
        "bf16": ["train.mixed_precision=bf16"],
        "bf16 + channels_last + compile": ["train.mixed_precision=bf16", "train.channels_last=true",
                                           "train.compile=true"],
    }
    results: dict[str, dict[str, Any]] = {}

    done = run([sys.executable, __file__, "child-basicsr", str(basicsr_file), str(work / "basicsr")], env=env)
    if done.returncode == 0:
        out = child_result(done)
        stamps, window = out["stamps"], sizes.print_freq
        rate = (len(stamps) - window) / (stamps[-1] - stamps[window - 1])
        results["BasicSR fp32"] = {"rate": rate, "loss": statistics.fmean(out["losses"][-window:]), **out}
    else:
        results["BasicSR fp32"] = {"error": failure(done)}

    for label, settings in configs.items():
        missing = [s.split("=")[0] for s in settings if s.split("=")[0].split(".")[1] not in known]
        if missing:
            results[f"restore {label}"] = {"skipped": f"this restore has no option {', '.join(missing)}"}
            continue
        sets = [arg for s in settings for arg in ("--set", s)]
        done = run([sys.executable, __file__, "child-restore", "train", "-opt", str(restore_file), "--no-progress",
                    "--set", f"name=gpu_check_{len(results)}", *sets], env=env)
        logged = [(int(m[1]), float(m[2]), float(m[3])) for m in LOG_LINE.finditer(done.stderr + done.stdout)]
        if done.returncode != 0 or not logged:
            results[f"restore {label}"] = {"error": failure(done)}
            continue
        results[f"restore {label}"] = {"rate": steady_rate([r for _, _, r in logged]), "loss": logged[-1][1],
                                       **child_result(done)}

    base = results["BasicSR fp32"].get("rate")
    rows = []
    for label, r in results.items():
        if "skipped" in r:
            rows.append(Row([label, "-", "-", "-", "-", "-", f"skipped: {r['skipped']}"]))
            continue
        if "error" in r:
            rows.append(Row([label, "-", "-", "-", "-", "-", f"FAILED: {r['error']}"], ok=False))
            continue
        versus = f"{r['rate'] / base:.2f}x" if base else "-"
        rows.append(Row([label, f"{r['rate']:.2f}", versus, f"{r['peak_mib']:.0f} MiB ({r['memory']})",
                         f"{r['loss']:.4e}", f"{flops * r['rate'] / 1e12:.3f}", "ok"]))
    network = ", ".join(f"{k}: {v}" for k, v in sizes.network.items())
    print_table(f"Training {{{network}}} x2: {sizes.iterations} iterations, batch {sizes.batch}, LR patch "
                f"{sizes.lq_patch}, on {device_name(device)}",
                ["loop", "it/s", "vs BasicSR", "peak memory", "final loss", "TFLOP/s", "status"], rows)
    return rows


# -- step 2: latency --------------------------------------------------------------------------------

def step_latency(sizes: Sizes, device: str) -> list[Row]:
    from restore.api import build_network
    from restore.inference import run_network
    from restore.profile import lr_input_size, profile_network

    h, w = sizes.latency_output
    rows = []
    timings: dict[tuple[str, str], float] = {}
    for arch in ("UPS", "SwinIR_light"):
        torch.manual_seed(0)
        net = build_network({"type": arch}, scale=2).to(device).eval()
        macs = profile_network(net, name=arch, scale=2, in_chans=3, output_size=(h, w), device=device).flops
        lq = torch.rand(1, 3, *lr_input_size((h, w), 2), device=device)
        for precision in ("fp32", "bf16"):
            dtype = torch.bfloat16 if precision == "bf16" else torch.float32
            times = []
            with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=dtype != torch.float32):
                for i in range(sizes.latency_runs + 2):
                    sync(device)
                    start = time.perf_counter()
                    run_network(net, lq, 2)
                    sync(device)
                    if i >= 2:  # two warm-up calls (kernel selection, autotuning)
                        times.append(time.perf_counter() - start)
            seconds = statistics.median(times)
            timings[(arch, precision)] = seconds
            rows.append(Row([arch, precision, f"{seconds * 1000:.1f}", "", f"{macs / 1e9:.1f}",
                             f"{2 * macs / seconds / 1e12:.3f}"]))
        del net
    for row in rows:
        row.cells[3] = f"{timings[(row.cells[0], row.cells[1])] / timings[('SwinIR_light', row.cells[1])]:.2f}x"
    print_table(f"Latency at a {w}x{h} output (x2, batch 1), median of {sizes.latency_runs}, on {device_name(device)}",
                ["model", "precision", "ms", "vs SwinIR-light", "fvcore GMACs", "TFLOP/s"], rows)
    return rows


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    sys.path.insert(0, str(Path(__file__).parent))
    from machine import cpu_description

    return cpu_description()


# -- step 3: released PS weights, GPU vs CPU --------------------------------------------------------

def mean_psnr(report_root: Path) -> dict[str, float]:
    """Set -> mean PSNR of the network from the metrics.csv files `restore test` wrote."""
    found = {}
    for path in sorted(report_root.glob("*/metrics.csv")):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                lowered = {k.lower(): v for k, v in row.items()}
                if lowered.get("image") == "mean" and "psnr" in lowered:
                    found[path.parent.name] = float(lowered["psnr"])
    return found


def step_ps(work: Path, sizes: Sizes, device: str, weights: Path) -> list[Row]:
    if not (weights / "drrnps.pth").is_file():
        rows = [Row(["-", "-", "-", "-", f"skipped: the released PS weights are not in {weights}"])]
        print_table("Released PS weights", ["model / set", "GPU PSNR", "CPU PSNR", "difference", "status"], rows)
        return rows
    rows = []
    for option_file in sizes.ps_options:
        weight_file = "drrnps.pth" if "drrn" in option_file else "srfbnspsx2.pth"
        psnr = {}
        for where in (device, "cpu"):
            out = work / f"{option_file}-{where}-{len(psnr)}"
            done = run([sys.executable, "-m", "restore", "test", "-opt", f"options/{option_file}", "--model", "net",
                        "--device", where, "--out", str(out), "--no-save-img",
                        "--set", f"path.pretrain_network_g={weights / weight_file}"])
            psnr[len(psnr)] = mean_psnr(out) if done.returncode == 0 else failure(done)
        first, second = psnr[0], psnr[1]
        if isinstance(first, str) or isinstance(second, str) or not first:
            rows.append(Row([option_file, "-", "-", "-", f"failed: {first if isinstance(first, str) else second}"],
                            ok=False))
            continue
        for name in first:
            diff = abs(first[name] - second.get(name, math.nan))
            ok = diff <= 1e-3
            rows.append(Row([f"{option_file.split('_released')[0]} {name}", f"{first[name]:.4f}",
                             f"{second.get(name, math.nan):.4f}", f"{diff:.4f}", "ok" if ok else "DIFFERS"], ok=ok))
    print_table(f"Released PS weights: `restore test` on {device} and on the CPU (mean PSNR, dB)",
                ["model / set", f"{device} PSNR", "CPU PSNR", "difference", "status (<= 0.001 dB)"], rows)
    return rows


# -- step 4: two processes on one device ------------------------------------------------------------

def step_multi(work: Path, sizes: Sizes, device: str) -> list[Row]:
    path = work / "restore_train.yml"  # written by the train step when it ran
    if not path.is_file():
        path = restore_options(work, sizes, *make_training_folder(work / "data", sizes.tile))
    env = {"CUDA_VISIBLE_DEVICES": "" if device == "cpu" else os.environ.get("CUDA_VISIBLE_DEVICES", "0")}
    if device == "cuda":
        env["CUDA_VISIBLE_DEVICES"] = env["CUDA_VISIBLE_DEVICES"].split(",")[0]  # both processes, one GPU
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "restore", "train", "-opt", str(path), "--no-progress", "--set", "name=gpu_check_two", "--set",
           f"train.total_iter={sizes.multi_iterations}", "--set", f"logger.print_freq={sizes.multi_iterations}",
           "--set", f"logger.save_checkpoint_freq={sizes.multi_iterations}"]
    start = time.perf_counter()
    done = run(cmd, env=env, timeout=600)
    seconds = time.perf_counter() - start
    if done.returncode == 0 and "2 process(es)" in done.stderr + done.stdout:
        row = Row(["2 processes, 1 device", "yes", f"{sizes.multi_iterations} iterations in {seconds:.0f} s"])
    else:
        # On a GPU the reason it cannot run is the result (e.g. NCCL refuses two ranks on one GPU).
        row = Row(["2 processes, 1 device", "no", failure(done)], ok=device == "cuda")
    print_table(f"Two processes on one {device} device", ["run", "possible", "result or reason"], [row])
    return [row]


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "child-restore":
        return child_restore(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "child-basicsr":
        return child_basicsr(sys.argv[2], sys.argv[3])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even where CUDA exists")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: every step in seconds (CI)")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    parser.add_argument("--weights", type=Path,
                        default=Path(os.environ.get("RESTORE_WEIGHTS_DIR", REPO.parent / "shared/weights/ps")),
                        help="folder with the PS authors' drrnps.pth and srfbnspsx2.pth")
    parser.add_argument("--keep", type=Path, help="keep the work folder here (default: a temporary one)")
    args = parser.parse_args()
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        parser.error(f"unknown step(s) {unknown}; choose from {', '.join(STEPS)}")
    device = "cpu" if args.cpu or not torch.cuda.is_available() else "cuda"
    if device == "cpu" and not args.cpu:
        print("no CUDA device here: running on the CPU (use --cpu --quick for the quick CPU run)")
    sizes = Sizes.quick() if args.quick else Sizes()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"# GPU check: {device_name(device)}; torch {torch.__version__}; load average {load}; "
          f"{'quick sizes' if args.quick else 'full sizes'}")
    start = time.perf_counter()
    work = args.keep or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    try:
        for step in steps:
            if step == "train":
                rows += step_train(work, sizes, device)
            elif step == "latency":
                rows += step_latency(sizes, device)
            elif step == "ps":
                rows += step_ps(work, sizes, device, args.weights)
            else:
                rows += step_multi(work, sizes, device)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    failed = sum(not r.ok for r in rows)
    print(f"\n{len(rows) - failed} of {len(rows)} rows ok; {time.perf_counter() - start:.0f} s in all")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
