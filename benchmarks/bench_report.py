"""What writing figures adds to a depth `restore test` run: the code on `main` against this tree,
each with and without figures, all measured in one run (interleaved rounds).

The set imitates the RGB-D-D x16 test (405 HR maps of 640x480 as 16-bit PNG in millimetres, each
with its photo): every map is one of the 33 real maps in ``../shared/data/depth`` (the 3 NYU-v2
samples and the 30 Middlebury maps with their photos), resized to 640x480, flipped and shifted in
depth so no two are equal, stored as 16-bit mm. The test is the bicubic baseline at x16, RMSE in
cm, with the photos as guides (`restore test --model baseline`, DCTNet's convention). Each run is
a fresh `python -m restore test` process; `main`'s code is exported with `git archive` and put
imported ahead of the installed tree. Times are wall seconds of the whole command (start-up included).

    python benchmarks/bench_report.py [--maps 405] [--rounds 1] [--base main] [--skip-before]

`--skip-before` measures this tree only (main's figure run alone takes 6-15 minutes here), so that
several interleaved rounds fit; the ratios are then this tree's alone.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import cpu_description  # benchmarks/machine.py (this script's folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RESTORE_SHARED_DIR", ROOT.parent / "shared"))


def make_set(folder: Path, count: int) -> None:
    """`count` 640x480 16-bit mm depth maps (Depth/) with their photos (RGB/), from the shared maps."""
    import cv2

    from restore.api import read_array, write_image

    depth_dir = SHARED / "data/depth"
    sources = []
    for path in sorted((depth_dir / "NYUv2_samples/Depth").glob("*.npy")):
        sources.append((np.load(path).astype(np.float64) * 1000.0,  # metres -> mm
                        read_array(depth_dir / "NYUv2_samples/RGB" / f"{path.stem}.jpg")))
    for path in sorted((depth_dir / "Middlebury/Depth").glob("*.png")):
        disparity = read_array(path)[..., 0].astype(np.float64)
        photo = read_array(depth_dir / "Middlebury/RGB" / path.name.replace("_depth", "_color"))
        sources.append((500.0 + 20.0 * disparity, photo))  # an 8-bit map as 0.5-5.6 m
    (folder / "Depth").mkdir(parents=True)
    (folder / "RGB").mkdir()
    for i in range(count):
        depth, photo = sources[i % len(sources)]
        depth = cv2.resize(depth, (640, 480), interpolation=cv2.INTER_LINEAR)
        photo = cv2.resize(photo, (640, 480), interpolation=cv2.INTER_AREA)
        if (i // len(sources)) % 2:
            depth, photo = depth[:, ::-1], photo[:, ::-1]
        depth = np.clip(depth + 37.0 * (i // (2 * len(sources))), 1, 65535)
        write_image(folder / "Depth" / f"{i:04d}.png", np.round(depth).astype(np.uint16)[:, :, None])
        write_image(folder / "RGB" / f"{i:04d}.jpg", np.ascontiguousarray(photo))


OPTIONS = """name: bench_report
task: {{type: depth_sr, scale: 16, downsample: pil, units: cm, unit_scale: 0.1, border_crop: 0,
       zero_is_invalid: false}}
network_g: {{type: Bicubic, method: pil}}
datasets:
  test: {{name: RGBDD_like, dataroot_gt: {data}/Depth, dataroot_guide: {data}/RGB}}
"""


def export(base: str, into: Path) -> Path:
    """`base`'s tree (e.g. main) in `into`, read from the repository without touching any work tree."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", base], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


# Imports `restore` from the tree given first on the command line, ahead of any editable install
# (whose import hook would otherwise serve the installed tree), then runs the CLI with the rest.
LAUNCHER = (
    "import sys; code = sys.argv[1]; "
    "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in getattr(f, '__module__', '')]; "
    "sys.path[:0] = [code, code + '/plugins']; import restore.cli; "
    "assert restore.cli.__file__.startswith(code), restore.cli.__file__; "
    "sys.argv = ['restore', *sys.argv[2:]]; sys.exit(restore.cli.main())"
)


def run(code: Path, options: Path, out: Path, extra: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", LAUNCHER, str(code), "test", "-opt", str(options), "--model",
                             "baseline", "--device", "cpu", "--out", str(out), *extra],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"restore test failed ({code}):\n{result.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--maps", type=int, default=405)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--base", default="main", help="the git revision measured as 'before'")
    parser.add_argument("--skip-before", action="store_true", help="measure this tree only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_report_") as tmp:
        tmp = Path(tmp)
        make_set(tmp / "data", args.maps)
        options = tmp / "options.yml"
        options.write_text(OPTIONS.format(data=tmp / "data"))
        (tmp / "before").mkdir()
        before = export(args.base, tmp / "before")
        # (code, tree, run, extra arguments, the run it is compared with)
        configs = [
            ("before", before, "no figures (--no-save-img)", ["--no-save-img"], 0),
            ("before", before, "outputs and figures (default)", [], 0),
            ("after", ROOT, "no outputs (--no-save-img)", ["--no-save-img"], 2),
            ("after", ROOT, "outputs, no figures (--figures none)", ["--figures", "none"], 3),
            ("after", ROOT, "outputs, figures and page (--figures all)", ["--figures", "all"], 3),
        ]
        measured = [i for i, config in enumerate(configs) if not (args.skip_before and config[0] == "before")]
        times: dict[int, list[float]] = {i: [] for i in measured}
        for round_ in range(args.rounds):
            for i in measured:
                code, extra = configs[i][1], configs[i][3]
                times[i].append(run(code, options, tmp / f"out{round_}_{i}", extra))
                print(f"round {round_ + 1}: {configs[i][0]} {configs[i][2]}: {times[i][-1]:.1f} s", flush=True)
        load = os.getloadavg()
        print(f"\n{args.maps} maps 640x480 (16-bit mm) with photos, bicubic x16, {args.rounds} round(s); "
              f"{cpu_description()}; load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}\n")
        median = {i: float(np.median(v)) for i, v in times.items()}
        print("| code | run | wall s | vs the same code without figures |")
        print("|---|---|---:|---:|")
        for i, (who, _, what, _, reference) in enumerate(configs):
            if i not in median:
                continue
            print(f"| {who} ({args.base if who == 'before' else 'this tree'}) | {what} | {median[i]:.1f} | "
                  f"{median[i] / median[reference]:.2f}x |")
        print(f"\nafter, figures and page vs no outputs: {median[4] / median[2]:.2f}x"
              + ("" if args.skip_before else f"; before, figures vs no figures: {median[1] / median[0]:.2f}x"))


if __name__ == "__main__":
    main()
