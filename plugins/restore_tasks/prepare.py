"""Data preparation the `restore data lmdb` step needs first (run as a module):

    python -m restore_tasks.prepare subimages SRC DST [--size 480 --step 240 --min-rest 0]
        Crop every image of SRC into overlapping size x size tiles (BasicSR's
        extract_subimages: DIV2K HR 480/240; tiles are named <stem>_s001.png ...), so
        training reads small files instead of decoding 2K images.

    python -m restore_tasks.prepare nyuv2 nyu_depth_v2_labeled.mat DST [--train 1000]
        Split NYU-v2's labelled set (MATLAB v7.3) into DST/{train,test}/Depth/<index>.npy
        (float32 metres) and DST/{train,test}/RGB/<index>.png: the first 1000 maps train,
        the other 449 test (the DKN / FDSR protocol).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from restore.api import DataError, RestoreError, list_files, read_array, write_image


def tile_starts(length: int, size: int, step: int, min_rest: int) -> list[int]:
    """Tile origins along one axis; a last tile flush with the edge covers a remainder > `min_rest`."""
    starts = list(range(0, length - size + 1, step))
    if starts and length - (starts[-1] + size) > min_rest:
        starts.append(length - size)
    return starts


def subimages(src: Path, dst: Path, size: int, step: int, min_rest: int = 0) -> int:
    """Write the tiles of every image in `src` to `dst`; returns how many were written."""
    from tqdm import tqdm

    dst.mkdir(parents=True, exist_ok=True)
    written = 0
    for path in tqdm(list_files(src), desc=f"tiles of {src}", unit="img"):
        img = read_array(path)
        h, w = img.shape[:2]
        index = 0
        for top in tile_starts(h, size, step, min_rest):
            for left in tile_starts(w, size, step, min_rest):
                index += 1
                write_image(dst / f"{path.stem}_s{index:03d}.png", img[top : top + size, left : left + size])
                written += 1
    return written


def nyuv2(mat: Path, dst: Path, train: int = 1000) -> tuple[int, int]:
    """Split the labelled NYU-v2 file into per-map .npy depth (metres) and .png RGB files."""
    import h5py

    if not mat.is_file():
        raise DataError(f"{mat}: no such file (download nyu_depth_v2_labeled.mat first).")
    with h5py.File(mat, "r") as f:
        if "depths" not in f or "images" not in f:
            raise DataError(f"{mat}: has no 'depths'/'images' arrays; is it nyu_depth_v2_labeled.mat?")
        depths, images = f["depths"], f["images"]
        count = depths.shape[0]
        for i in range(count):
            split = "train" if i < train else "test"
            # MATLAB stores column-major: h5py sees (W, H) maps and (C, W, H) images.
            depth = np.ascontiguousarray(depths[i].T, dtype=np.float32)
            rgb = np.ascontiguousarray(np.transpose(images[i], (2, 1, 0)))
            (dst / split / "Depth").mkdir(parents=True, exist_ok=True)
            np.save(dst / split / "Depth" / f"{i:04d}.npy", depth, allow_pickle=False)
            write_image(dst / split / "RGB" / f"{i:04d}.png", rgb)
    return min(train, count), max(count - train, 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m restore_tasks.prepare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("subimages", help="crop a folder of images into overlapping tiles")
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--size", type=int, default=480)
    p.add_argument("--step", type=int, default=240)
    p.add_argument("--min-rest", type=int, default=0, help="add an edge tile when more than this is left over")
    p = sub.add_parser("nyuv2", help="split nyu_depth_v2_labeled.mat into train/test .npy maps")
    p.add_argument("mat", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--train", type=int, default=1000, help="maps in the training split (the rest test)")
    args = parser.parse_args(argv)
    try:
        if args.command == "subimages":
            print(f"{subimages(args.src, args.dst, args.size, args.step, args.min_rest)} tiles in {args.dst}")
        else:
            n_train, n_test = nyuv2(args.mat, args.dst, args.train)
            print(f"{n_train} training and {n_test} test maps in {args.dst}")
    except RestoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
