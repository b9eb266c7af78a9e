"""PS inference against the authors' own code: same released weights, same inputs, one run.

Two comparisons, each as alternating rounds with the ratio taken from the same run:

* **whole process** (DRRN-PS, Set5 x4): the authors' ``carn/sample.py`` (model build, load, inference,
  PNG writing) against ``restore infer`` on the same LR images; CPU time (user + system) and wall time
  of each child process. Both write 8-bit PNGs by truncation, which are compared pixel by pixel, and
  the PSNR (Y, crop 4, basicsr) of both folders is printed to 4 decimals.
* **in one process** (network calls only): the authors' ``Net`` (DRRN-PS, Set5 x4) and ``SRFBN``
  (SRFBN-S-PS, Set5 x2, no chop) against ours, loaded from the same files, on the same tensors;
  process CPU time per pass over Set5 and the largest output difference.

The authors' code (``saturnian77/CARN_DRRN-PS`` and ``saturnian77/SRFBN-PS``, cloned by you, never
part of this project) is looked for in ``--authors`` / ``$RESTORE_PS_AUTHORS``, else beside the
project (``../CARN_DRRN-PS``, ``../SRFBN-PS``); it needs ``einops``. Its scripts are run unmodified:
the DRRN checkpoint is handed to ``sample.py`` as a CPU copy (the released file holds CUDA tensors),
and SRFBN's ``.cuda()`` call is answered with the CPU tensor while it runs. Without the authors' code
the in-process part compares against the same network with our fused CPU path switched off
(``restore_ps.common.fused_inference(False)``: one PyTorch op per layer, as the authors' code runs).

    OMP_NUM_THREADS=1 python benchmarks/bench_ps_vs_authors.py [--rounds 3] [--authors DIR] [--weights DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from machine import cpu_description  # benchmarks/machine.py (this script's folder is on sys.path)

from restore.api import build_network
from restore.build import load_pretrained

REPO = Path(__file__).resolve().parents[1]
SET5 = REPO / "datasets" / "Set5"
STEMS = ("baby", "bird", "butterfly", "head", "woman")


def authors_folder(flag: str | None) -> Path | None:
    """The folder holding the authors' CARN_DRRN-PS and SRFBN-PS checkouts, or None."""
    for candidate in (flag, os.environ.get("RESTORE_PS_AUTHORS"), REPO.parent):
        if candidate and (Path(candidate) / "CARN_DRRN-PS" / "carn" / "sample.py").is_file():
            return Path(candidate)
    return None


def child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed_process(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one child process; its failure stops the benchmark."""
    cpu, wall = child_cpu_seconds(), time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return child_cpu_seconds() - cpu, time.perf_counter() - wall


def y_psnr(folder: Path, name: Callable[[str], str]) -> float:
    from basicsr.metrics import calculate_psnr

    values = [calculate_psnr(cv2.imread(str(folder / name(s))), cv2.imread(str(SET5 / "HR" / f"{s}.png")),
                             crop_border=4, test_y_channel=True) for s in STEMS]
    return float(np.mean(values))


def whole_process(authors: Path, weights: Path, rounds: int, work: Path) -> None:
    """DRRN-PS x4 on Set5: the authors' sample.py against `restore infer`, alternating."""
    data = work / "Set5" / "x4"  # sample.py's layout: <set>/x<scale>/*HR*.png and *LR*.png
    data.mkdir(parents=True)
    for s in STEMS:
        shutil.copy(SET5 / "HR" / f"{s}.png", data / f"{s}_HR.png")
        shutil.copy(SET5 / "LR_bicubic" / "X4" / f"{s}x4.png", data / f"{s}_LR.png")
    cpu_copy = work / "drrnps.pth"  # the released file holds CUDA tensors; sample.py loads without map_location
    torch.save(torch.load(weights / "drrnps.pth", map_location="cpu", weights_only=True), cpu_copy)
    ours = work / "drrn_ps_x4.safetensors"
    python = sys.executable
    subprocess.run([python, "-m", "restore", "convert", str(weights / "drrnps.pth"), str(ours),
                    "--task", "{type: sisr, scale: 4}"], cwd=REPO, check=True, capture_output=True)
    commands = {
        "authors' sample.py": ([python, "sample.py", "--model", "drrn_ps", "--ckpt_path", str(cpu_copy),
                                "--sample_dir", str(work / "authors"), "--test_data_dir", str(work / "Set5"),
                                "--scale", "4"], authors / "CARN_DRRN-PS" / "carn"),
        "restore infer": ([python, "-m", "restore", "infer", str(SET5 / "LR_bicubic" / "X4"), str(work / "ours"),
                           "--weights", str(ours), "--device", "cpu", "--quantize", "truncate"], REPO),
    }
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for r in range(rounds):
        order = list(commands) if r % 2 == 0 else list(reversed(commands))
        for name in order:
            times[name].append(timed_process(*commands[name]))
    print("### Whole process: DRRN-PS x4, Set5 (5 images)\n")
    print("| program | CPU s (median) | wall s (median) | CPU, each round | CPU vs authors |")
    print("|---|---:|---:|---|---:|")
    base = statistics.median(c for c, _ in times["authors' sample.py"])
    for name, values in times.items():
        cpu = statistics.median(c for c, _ in values)
        wall = statistics.median(w for _, w in values)
        each = ", ".join(f"{c:.1f}" for c, _ in values)
        print(f"| {name} | {cpu:.1f} | {wall:.1f} | {each} | {cpu / base:.2f}x |")
    theirs = work / "authors" / "drrnps" / "Set5" / "x4" / "SR"
    diff = max(int(np.abs(cv2.imread(str(theirs / f"{s}_SR.png")).astype(int)
                          - cv2.imread(str(work / "ours" / f"{s}x4.png")).astype(int)).max()) for s in STEMS)
    print(f"\nOutputs: largest pixel difference between the two programs' PNGs {diff} (of 255); "
          f"PSNR (Y, crop 4) authors {y_psnr(theirs, lambda s: f'{s}_SR.png'):.4f} dB, "
          f"restore {y_psnr(work / 'ours', lambda s: f'{s}x4.png'):.4f} dB\n")


@contextlib.contextmanager
def cpu_for_cuda_calls() -> Iterator[None]:
    """SRFBN-PS allocates its hidden state with ``.cuda()``; on a CPU-only machine keep it on the CPU."""
    original = torch.Tensor.cuda
    if not torch.cuda.is_available():
        torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.cuda = original  # type: ignore[method-assign]


def import_from(root: Path, module: str):  # the authors' repositories import their packages top-level
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(root))


def lr_images(scale: int) -> list[torch.Tensor]:
    from restore.data.io import read_array

    return [torch.from_numpy(read_array(SET5 / "LR_bicubic" / f"X{scale}" / f"{s}x{scale}.png").astype(np.float32))
            .permute(2, 0, 1).unsqueeze(0).div(255).contiguous() for s in STEMS]


Variants = dict[str, Callable[[torch.Tensor], torch.Tensor]]


def in_process_pairs(authors: Path | None, weights: Path) -> dict[str, Variants]:
    """label -> {variant -> callable on an LR image in [0, 1]}; the first variant is the baseline."""
    from restore_ps.common import fused_inference

    drrn = build_network({"type": "DRRN_PS"}, scale=4).eval()
    load_pretrained(drrn, weights / "drrnps.pth")
    srfbn = build_network({"type": "SRFBN_S_PS"}, scale=2).eval()
    load_pretrained(srfbn, weights / "srfbnspsx2.pth")
    if authors is None:
        def plain(net, *args):
            def call(x):
                with fused_inference(False):
                    return net(x, *args)
            return call

        return {"DRRN-PS x4": {"same net, plain ops": plain(drrn, 4), "restore": lambda x: drrn(x, 4)},
                "SRFBN-S-PS x2": {"same net, plain ops": plain(srfbn), "restore": srfbn}}
    theirs_drrn = import_from(authors / "CARN_DRRN-PS" / "carn", "model.drrn_ps").Net(multi_scale=True, group=1)
    theirs_drrn.load_state_dict(torch.load(weights / "drrnps.pth", map_location="cpu", weights_only=True))
    arch = import_from(authors / "SRFBN-PS", "networks.srfbnps_arch")
    theirs_srfbn = arch.SRFBN(in_channels=3, out_channels=3, num_features=32, num_steps=4, num_groups=3,
                              upscale_factor=2, act_type="prelu", norm_type=None)
    from restore.checkpoint import safe_torch_load

    state = safe_torch_load(weights / "srfbnspsx2.pth", allow_numpy=True)["state_dict"]
    theirs_srfbn.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    theirs_drrn.eval(), theirs_srfbn.eval()

    def authors_srfbn(x: torch.Tensor) -> torch.Tensor:  # their solver: RGB 0..255 in, last step out
        with cpu_for_cuda_calls():
            return theirs_srfbn(x * 255.0)[-1] / 255.0

    return {"DRRN-PS x4": {"authors' Net": lambda x: theirs_drrn(x, 4), "restore": lambda x: drrn(x, 4)},
            "SRFBN-S-PS x2": {"authors' SRFBN": authors_srfbn, "restore": srfbn}}


def in_process(authors: Path | None, weights: Path, rounds: int) -> None:
    pairs = in_process_pairs(authors, weights)
    print("### In one process: network calls over Set5 (5 images), CPU s per pass\n")
    print("| network | baseline | baseline CPU s | restore CPU s | restore vs baseline | max \\|diff\\| |")
    print("|---|---|---:|---:|---:|---:|")
    for label, variants in pairs.items():
        images = lr_images(4 if "x4" in label else 2)
        times: dict[str, list[float]] = {name: [] for name in variants}
        with torch.no_grad():  # sample.py and SRFBN's solver run under no_grad; `restore infer` too
            outputs = {name: [fn(x) for x in images] for name, fn in variants.items()}  # warm-up
            for r in range(rounds):
                names = list(variants) if r % 2 == 0 else list(reversed(variants))
                for name in names:
                    start = self_cpu_seconds()
                    for x in images:
                        variants[name](x)
                    times[name].append(self_cpu_seconds() - start)
        baseline, ours = list(variants)
        diff = max((a - b).abs().max().item() for a, b in zip(outputs[baseline], outputs[ours], strict=True))
        t_base, t_ours = statistics.median(times[baseline]), statistics.median(times[ours])
        print(f"| {label} | {baseline} | {t_base:.2f} | {t_ours:.2f} | {t_ours / t_base:.2f}x | {diff:.1e} |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--authors", help="folder holding the CARN_DRRN-PS and SRFBN-PS checkouts")
    parser.add_argument("--weights", type=Path,
                        default=Path(os.environ.get("RESTORE_WEIGHTS_DIR", REPO.parent / "shared/weights/ps")),
                        help="folder with drrnps.pth and srfbnspsx2.pth (default ../shared/weights/ps)")
    parser.add_argument("--in-process-only", action="store_true", help="skip the whole-process comparison")
    args = parser.parse_args()
    if not (args.weights / "drrnps.pth").is_file() or not (args.weights / "srfbnspsx2.pth").is_file():
        sys.exit(f"the released PS weights are not in {args.weights} (use --weights or RESTORE_WEIGHTS_DIR)")
    authors = authors_folder(args.authors)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"machine: {cpu_description()}; torch {torch.__version__}, {torch.get_num_threads()} thread(s) "
          f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}); load average {load}; "
          f"{args.rounds} alternating rounds")
    print(f"authors' code: {authors if authors else 'not found: comparing with our plain-op path instead'}\n")
    if authors is not None and not args.in_process_only:
        with tempfile.TemporaryDirectory() as work:
            whole_process(authors, args.weights, args.rounds, Path(work))
    in_process(authors, args.weights, args.rounds)
    print(f"load average after: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
