"""Reading every image of a PNG folder vs the LMDB made from it (`restore data lmdb`), in one run.

Two data sets, both made here from scikit-image's photographs (no download):
- photos: the 19 photographs of skimage:rgb and skimage:gray, one PNG each;
- tiles: the same photographs cut into 128x128 tiles (BasicSR's ``*_sub`` layout for DIV2K), where
  opening one small file per sample is what an LMDB saves.
For each, the time to read all images in a shuffled order (as a training sampler does) is the median
of `--rounds` rounds, interleaving the backends. `warm`: files already in the page cache; `cold`: the
benchmark's own files are evicted from it (posix_fadvise) before each round. `bytes` reads only the
stored bytes, `decoded` also decodes them into arrays (what a dataset does).

    python benchmarks/bench_lmdb.py [--rounds 5] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import cv2
from machine import cpu_description  # benchmarks/machine.py (this script's folder is on sys.path)

from restore.data.io import decode_image, encode_image, write_image
from restore.data.lmdb import png_params, write_lmdb
from restore.data.sources import FolderSource, LmdbSource, close_read_handle, open_source

TILE = 128


def make_folders(workdir: Path) -> dict[str, Path]:
    photos, tiles = workdir / "photos", workdir / "tiles"
    photos.mkdir()
    tiles.mkdir()
    for spec in ("skimage:rgb", "skimage:gray"):
        source = open_source(spec)
        for key in source.keys():
            img = source.read(key)
            write_image(photos / f"{key}.png", img)
            for y in range(0, img.shape[0] - TILE + 1, TILE):
                for x in range(0, img.shape[1] - TILE + 1, TILE):
                    write_image(tiles / f"{key}_{y:04d}_{x:04d}.png", img[y:y + TILE, x:x + TILE])
    return {"photos": photos, "tiles": tiles}


def evict(paths: list[Path]) -> None:
    """Drop these files (only these: the machine is shared) from the page cache."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def time_round(read, keys: list[str], before=None) -> float:
    if before is not None:
        before()
    start = time.perf_counter()
    for key in keys:
        read(key)
    return time.perf_counter() - start


class Backend:
    """How to read a key's stored bytes, its decoded array, and how to evict it from the page cache."""

    def __init__(self, source: FolderSource | LmdbSource) -> None:
        self.source = source
        if isinstance(source, FolderSource):
            self.read_bytes = lambda key: source.path(key).read_bytes()
        else:
            self.read_bytes = source.read_bytes
        self.read = source.read

    def evict(self) -> None:
        if isinstance(self.source, FolderSource):
            evict([self.source.path(key) for key in self.source.keys()])
        else:
            close_read_handle(self.source.root)  # its memory map would keep the pages
            evict([Path(self.source.root) / "data.mdb"])


def bench(backends: dict[str, Backend], keys: list[str], rounds: int) -> dict[tuple[str, str], dict[str, float]]:
    """Median seconds per round of reading all `keys`, per (cache, read) and backend."""
    results = {}
    for cache in ("warm", "cold"):
        for what in ("bytes", "decoded"):
            readers = {name: b.read if what == "decoded" else b.read_bytes for name, b in backends.items()}
            times: dict[str, list[float]] = {name: [] for name in backends}
            for read in readers.values():
                time_round(read, keys)  # first touch: opens LMDB handles
            for _ in range(rounds):  # interleaved, so load from other processes hits all alike
                for name, read in readers.items():
                    times[name].append(time_round(read, keys, backends[name].evict if cache == "cold" else None))
            results[cache, what] = {name: statistics.median(t) for name, t in times.items()}
    return results


def bench_png_settings(folder: FolderSource, rounds: int) -> dict[str, tuple[float, float]]:
    """(MiB, median decode seconds) of the folder's images as PNG: libpng's level 1 vs what we store."""
    images = [folder.read(key) for key in folder.keys()]
    variants = {"level 1, libpng filters (BasicSR)": [cv2.IMWRITE_PNG_COMPRESSION, 1], "level 1, ours": png_params(1)}
    encoded = {name: [encode_image(img, ".png", params) for img in images] for name, params in variants.items()}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, blobs in encoded.items():
            times[name].append(time_round(lambda b: decode_image(b, "bench"), blobs))
    return {name: (sum(map(len, encoded[name])) / 2**20, statistics.median(times[name])) for name in variants}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the data (default: a temp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        print(f"machine: {cpu_description()}, {platform.system()}")
        print("ms per image; ratios > 1 mean the LMDB is faster than the folder.")
        print("| data | images | folder MiB | LMDB MiB | cache | read | folder | LMDB | LMDB, readahead off "
              "| folder/LMDB | folder/LMDB readahead off |")
        print("|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|")
        for name, path in make_folders(Path(tmp)).items():
            folder = FolderSource(path)
            report = write_lmdb(folder, Path(tmp) / f"{name}.lmdb", progress=False)
            # The same database under another path, so that its handle can have readahead off (BasicSR's way).
            shutil.copytree(report.path, Path(tmp) / f"{name}_noreadahead.lmdb")
            backends = {
                "folder": Backend(folder),
                "lmdb": Backend(LmdbSource(report.path)),
                "lmdb_off": Backend(LmdbSource(Path(tmp) / f"{name}_noreadahead.lmdb", readahead=False)),
            }
            keys = list(folder.keys())
            random.Random(0).shuffle(keys)
            folder_mib = sum(p.stat().st_size for p in path.iterdir()) / 2**20
            n = len(keys)
            for (cache, what), t in bench(backends, keys, args.rounds).items():
                print(
                    f"| {name} | {n} | {folder_mib:.1f} | {report.file_bytes / 2**20:.1f} | {cache} | {what} | "
                    f"{1e3 * t['folder'] / n:.3f} | {1e3 * t['lmdb'] / n:.3f} | {1e3 * t['lmdb_off'] / n:.3f} | "
                    f"{t['folder'] / t['lmdb']:.2f}x | {t['folder'] / t['lmdb_off']:.2f}x |"
                )
            print(f"  (writing and verifying {name}.lmdb took {report.seconds:.1f} s)")
            if name == "photos":
                png = bench_png_settings(folder, args.rounds)
                (base_mib, base_s), (ours_mib, ours_s) = png.values()
                print(f"  PNG settings, decoding the {n} photos: " + "; ".join(
                    f"{k}: {mib:.2f} MiB, {1e3 * sec / n:.2f} ms/img" for k, (mib, sec) in png.items()
                ) + f"; ratio {base_s / ours_s:.2f}x")


if __name__ == "__main__":
    main()
