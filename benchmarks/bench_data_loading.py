"""Training samples per CPU second: BasicSR's `PairedImageDataset` against restore's, in one run.

Both datasets read the same GT/LQ pairs (x2) from one PNG folder, then from the LMDBs that
`restore data lmdb` makes from it (BasicSR reads them too), with the same patch size, flips and
rotations. A sample is what the training step receives: BasicSR's float32 tensors; restore's batch
after `restore.data.paired.batch_to_device(batch, "cpu")` (restore hands integer patches over and
converts them where the batch lands, so on a CPU-only run that conversion is counted here).
Samples are collated into batches of `--batch` by torch's default collate for both.

The data are scikit-image's photographs (no download): the RGB and gray photographs cut into
overlapping `--tile` tiles with step `--tile // 2` (BasicSR's ``extract_subimages`` layout for
DIV2K: 480/240), or whole (``--tile 0``: 0.1-2 Mpx each), and their x2 downscales (OpenCV
INTER_AREA) as LQ. Each library runs in a process of its own (forked after the data are made), as
it would in training; each round draws `--samples` random positions, and the two processes time
them one after the other (alternating which goes first) with `time.process_time` (CPU time, one
thread). Rounds are short and many so that other work on a shared machine weighs on both alike;
the table gives the median of the per-round ratios and their quartiles.

    OMP_NUM_THREADS=1 python benchmarks/bench_data_loading.py [--rounds 40] [--samples 32] [--tile 0]
        [--cached-decode]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import cv2
import numpy as np
import torch
from machine import cpu_description  # benchmarks/machine.py (this script's folder is on sys.path)
from torch.utils.data import default_collate

from restore.build import build_task
from restore.cli import main as restore_main
from restore.data.io import write_image
from restore.data.paired import PairedImageDataset, SampleKey, batch_to_device
from restore.data.sources import open_source

SCALE = 2


def crops(img: np.ndarray, tile: int, min_side: int) -> list[tuple[str, np.ndarray]]:
    """(suffix, crop): overlapping tile x tile crops (step tile / 2), or the whole image (tile 0) cut to
    even sides, skipped when smaller than `min_side`."""
    h, w = img.shape[:2]
    if tile == 0:
        return [("", img[: h - h % SCALE, : w - w % SCALE])] if min(h, w) >= min_side else []
    return [(f"_{top:04d}_{left:04d}", img[top:top + tile, left:left + tile])
            for top in range(0, h - tile + 1, tile // 2) for left in range(0, w - tile + 1, tile // 2)]


def make_pairs(root: Path, tile: int, gt_size: int) -> tuple[Path, Path, int]:
    """GT images made from the scikit-image photographs and their x2 LQ, as PNG folders: (gt, lq, count)."""
    gt_dir, lq_dir = root / "gt", root / "lq"
    gt_dir.mkdir()
    lq_dir.mkdir()
    count = 0
    for spec in ("skimage:rgb", "skimage:gray"):
        source = open_source(spec)
        for key in source.keys():
            for suffix, gt in crops(source.read(key), tile, gt_size):
                h, w = gt.shape[:2]
                lq = cv2.resize(gt, (w // SCALE, h // SCALE), interpolation=cv2.INTER_AREA)
                write_image(gt_dir / f"{key}{suffix}.png", gt)
                write_image(lq_dir / f"{key}{suffix}.png", lq.reshape(h // SCALE, w // SCALE, -1))
                count += 1
    return gt_dir, lq_dir, count


def make_lmdbs(gt_dir: Path, lq_dir: Path) -> tuple[Path, Path]:
    out = []
    for folder in (gt_dir, lq_dir):
        path = folder.with_suffix(".lmdb")
        if restore_main(["data", "lmdb", str(folder), str(path), "--quiet"]) != 0:
            raise SystemExit(f"restore data lmdb {folder} failed")
        out.append(path)
    return out[0], out[1]


def basicsr_reader(gt: Path, lq: Path, backend: str, gt_size: int) -> tuple[Callable[[int], dict], list[str]]:
    """(sample at a position, image keys in position order). BasicSR lists a folder in directory order,
    so its indices are mapped through the keys: both libraries read the same image at a position.
    (Its LMDB handle is opened in this process only: py-lmdb opens an environment once per process.)"""
    from basicsr.data.paired_image_dataset import PairedImageDataset as BasicsrPaired

    dataset = BasicsrPaired({
        "dataroot_gt": str(gt), "dataroot_lq": str(lq), "io_backend": {"type": backend}, "filename_tmpl": "{}",
        "gt_size": gt_size, "use_hflip": True, "use_rot": True, "scale": SCALE, "phase": "train",
    })
    keys = sorted(Path(path["gt_path"]).stem for path in dataset.paths)
    index = {Path(path["gt_path"]).stem: i for i, path in enumerate(dataset.paths)}

    def sample(position: int) -> dict:
        item = dataset[index[keys[position % len(keys)]]]
        return {"lq": item["lq"], "gt": item["gt"]}

    return sample, keys


def restore_reader(gt: Path, lq: Path, backend: str, gt_size: int) -> tuple[Callable[[int], dict], list[str]]:
    dataset = PairedImageDataset(build_task({"type": "sisr", "scale": SCALE}), "train", 0, dataroot_gt=str(gt),
                                 dataroot_lq=str(lq), io_backend={"type": backend}, gt_size=gt_size)

    def sample(position: int) -> dict:
        item = dataset[SampleKey(position % len(dataset), position, None)]
        return {"lq": item["lq"], "gt": item["gt"]}

    return sample, dataset.keys


def to_float_batch(samples: list[dict], convert: bool) -> dict:
    batch = default_collate(samples)
    return batch_to_device(batch, torch.device("cpu")) if convert else batch


READERS = {"basicsr": basicsr_reader, "restore": restore_reader}


def cache_decoder() -> None:
    """Make OpenCV's `imdecode`, as both libraries call it, return a cached array after the first call
    (arrays are not written to by either): what is left is what each library does around decoding."""
    import basicsr.utils.img_util

    import restore.data.io

    decode, decoded = cv2.imdecode, {}

    def cached(buffer: np.ndarray, flags: int) -> np.ndarray:
        key = (len(buffer), buffer[:256].tobytes(), buffer[-256:].tobytes(), flags)  # cheap, unique for these files
        if key not in decoded:
            decoded[key] = decode(buffer, flags)
        return decoded[key]

    shim = type("CachedCv2", (), {"__getattr__": lambda self, name: getattr(cv2, name),
                                  "imdecode": staticmethod(cached)})()
    basicsr.utils.img_util.cv2 = restore.data.io.cv2 = shim


def serve(conn: Connection, library: str, gt: Path, lq: Path, backend: str, gt_size: int, batch: int,
          cached: bool) -> None:
    """One library in its own process (as in training: nothing of the other one's allocations or caches):
    sends its keys, then for each list of positions received, the samples per CPU second it made of them."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    if cached:
        cache_decoder()
    sample, keys = READERS[library](gt, lq, backend, gt_size)
    conn.send(keys)
    while (positions := conn.recv()) is not None:
        start = time.process_time()
        for first in range(0, len(positions), batch):
            out = to_float_batch([sample(p) for p in positions[first:first + batch]], library == "restore")
            assert out["gt"].dtype == torch.float32 and out["lq"].dtype == torch.float32
        conn.send(len(positions) / (time.process_time() - start))


def run(args: argparse.Namespace, gt: Path, lq: Path, backend: str) -> dict[str, object]:
    context = multiprocessing.get_context("fork")
    conns, workers = {}, []
    for library in READERS:
        conns[library], child = context.Pipe()
        workers.append(context.Process(target=serve, args=(child, library, gt, lq, backend, args.gt_size,
                                                            args.batch, args.cached_decode)))
        workers[-1].start()
    keys = {library: conn.recv() for library, conn in conns.items()}
    assert keys["basicsr"] == keys["restore"]  # the same image at every position
    rng = random.Random(0)
    rates: dict[str, list[float]] = {"basicsr": [], "restore": []}
    for r in range(-1, args.rounds):  # round -1 warms the page cache, LMDB handles and lazy imports
        count = len(keys["restore"])
        positions = list(range(count)) if r < 0 else [rng.randrange(10**6) for _ in range(args.samples)]
        for library in ("basicsr", "restore") if r % 2 else ("restore", "basicsr"):  # one at a time, in turn
            conns[library].send(positions)
            rate = conns[library].recv()
            if r >= 0:
                rates[library].append(rate)
    for conn, worker in zip(conns.values(), workers):
        conn.send(None)
        worker.join()
    ratios = [ours / theirs for ours, theirs in zip(rates["restore"], rates["basicsr"])]
    quartiles = statistics.quantiles(ratios, n=4)
    return {
        "backend": "folder" if backend == "disk" else "LMDB",
        "basicsr": statistics.median(rates["basicsr"]),
        "restore": statistics.median(rates["restore"]),
        "ratio": statistics.median(ratios),
        "low": quartiles[0],
        "high": quartiles[2],
        "faster": sum(r > 1 for r in ratios),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--samples", type=int, default=32, help="samples per library per round")
    parser.add_argument("--batch", type=int, default=16, help="samples per collated batch")
    parser.add_argument("--tile", type=int, default=480,
                        help="GT tile size (BasicSR's DIV2K layout: 480); 0: the whole photographs (0.1-2 Mpx)")
    parser.add_argument("--gt-size", type=int, default=128, help="training patch (GT pixels)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the data (default: a temp dir)")
    parser.add_argument("--cached-decode", action="store_true",
                        help="decode each file once and reuse the array: times what each library adds to decoding")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        gt, lq, count = make_pairs(Path(tmp), args.tile, args.gt_size)
        gt_lmdb, lq_lmdb = make_lmdbs(gt, lq)
        print(f"machine: {cpu_description()}, {platform.system()}; load average "
              f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}; torch {torch.__version__}, OpenCV {cv2.__version__}")
        layout = f"tiles {args.tile}x{args.tile}" if args.tile else "photographs, whole"
        print(f"data: {count} GT images ({layout}, + x{SCALE} LQ) from scikit-image's photographs; "
              f"patch {args.gt_size}; batches of {args.batch}; {args.rounds} rounds of {args.samples} samples")
        rows = [run(args, gt, lq, "disk"), run(args, gt_lmdb, lq_lmdb, "lmdb")]
        print(f"load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")

    goals = {"folder": 1.2, "LMDB": 1.0}
    print("\n| source | BasicSR samples/CPU s | restore samples/CPU s | restore / BasicSR (median) | quartiles "
          "| rounds restore faster | goal | |")
    print("|---|---:|---:|---:|---|---:|---:|---|")
    for row in rows:
        goal = goals[row["backend"]]
        met = "met" if row["ratio"] >= goal else "not met"
        print(f"| {row['backend']} | {row['basicsr']:.1f} | {row['restore']:.1f} | {row['ratio']:.2f}x "
              f"| {row['low']:.2f}-{row['high']:.2f} | {row['faster']}/{args.rounds} | >= {goal:.1f}x | {met} |")


if __name__ == "__main__":
    main()
