"""Bad data on disk is refused before it costs memory or output: image sizes come from headers, a pixel
limit (option `max_image_pixels`, flag `--max-pixels`) refuses decompression bombs before decoding,
an empty file is named, and `restore test` checks every pair before it writes anything."""

from __future__ import annotations

import pickle
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from restore.build import build_network, build_task
from restore.checkpoint import save_weights
from restore.cli import main
from restore.data.headers import header_size
from restore.data.io import (
    DEFAULT_MAX_IMAGE_PIXELS,
    encode_image,
    file_header_size,
    max_image_pixels,
    read_array,
    set_max_image_pixels,
    write_image,
)
from restore.data.lmdb import write_lmdb
from restore.data.paired import PairedImageDataset, SampleKey, TrainBatchSampler
from restore.data.sources import open_source
from restore.errors import DataError
from restore.schema import Options
from tests.conftest import DATASETS, REPO

SET5_HR, SET5_X2 = DATASETS / "Set5/HR", DATASETS / "Set5/LR_bicubic/X2"


@pytest.fixture(autouse=True)
def default_pixel_limit():
    """Every test starts and ends with the default limit (the setting is process-wide)."""
    set_max_image_pixels(DEFAULT_MAX_IMAGE_PIXELS)
    yield
    set_max_image_pixels(DEFAULT_MAX_IMAGE_PIXELS)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height RGB pixels but whose data holds one blank row."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * (1 + 3 * width), 9)) + png_chunk(b"IEND", b""))


def one_paragraph(capsys, argv: list[str]) -> str:
    """The error `restore ARGV` ends with (exit status 2), after any log lines, as one line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "\nerror: " in f"\n{err}"
    return " ".join(err[err.index("error: ") if err.startswith("error: ") else err.index("\nerror: ") + 1:].split())


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    network = {"type": "MSRResNet", "num_block": 1, "num_feat": 8}
    net = build_network(network, in_chans=3, out_chans=3, scale=2)
    path = tmp_path_factory.mktemp("weights") / "tiny_x2.safetensors"
    return save_weights(path, net.state_dict(), network=network, task={"type": "sisr", "scale": 2})


# -- sizes from headers ----------------------------------------------------------------------------
@pytest.mark.parametrize(("ext", "channels"), [(ext, c) for ext in (".png", ".jpg", ".bmp", ".tif", ".webp")
                                                for c in (1, 3)] + [(".ppm", 3), (".pgm", 1)])
def test_header_sizes_equal_the_decoded_sizes_in_every_format(ext, channels):
    img = np.random.default_rng(0).integers(0, 256, (37, 53, channels), dtype=np.uint8)
    data = encode_image(img, ext)
    assert header_size(data) == (37, 53) == cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).shape[:2]


def test_header_sizes_of_arrays_and_unknown_data(tmp_path):
    from restore_tasks.depth_io import pfm_bytes

    np.save(tmp_path / "map.npy", np.zeros((41, 29), np.float32))
    assert header_size((tmp_path / "map.npy").read_bytes()) == (41, 29)
    assert header_size(pfm_bytes(np.zeros((41, 29), np.float32))) == (41, 29)
    assert header_size(b"not an image at all") is None
    assert header_size(bomb_png(30000, 30000)) == (30000, 30000)


def test_a_frame_header_after_a_large_metadata_block_is_still_found(tmp_path):
    jpeg = encode_image(np.zeros((37, 53, 3), np.uint8), ".jpg")
    metadata = b"\xff\xe1" + struct.pack(">H", 60000) + bytes(59998)  # an APP1 (EXIF) block of 60 KB
    (tmp_path / "exif.jpg").write_bytes(jpeg[:2] + metadata + jpeg[2:])
    assert file_header_size(tmp_path / "exif.jpg") == (37, 53) == read_array(tmp_path / "exif.jpg").shape[:2]


# -- the pixel limit ----------------------------------------------------------------------------------
def test_a_header_only_bomb_is_refused_naming_file_and_size_without_allocating(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(30000, 30000))
    assert bomb.stat().st_size < 1000  # 2.7 GB of pixels claimed by a few hundred bytes
    script = textwrap.dedent(f"""
        import resource
        from restore.data.io import read_array
        from restore.errors import DataError
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            read_array({str(bomb)!r})
        except DataError as exc:
            print(exc)
        print("growth_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr
    message, growth = run.stdout.strip().rsplit("\n", 1)
    assert f"{bomb}: 30000x30000 pixels (900.0 Mpx) is above the limit of 100 Mpx" in message
    assert "--max-pixels" in message
    assert int(growth.split()[1]) < 32 * 1024  # KiB: nothing of the 2.7 GB was touched


def test_the_limit_applies_to_folders_lmdb_values_and_headers(tmp_path):
    write_lmdb(SET5_HR, tmp_path / "set5.lmdb", progress=False, verify=False)
    folder, lmdb = open_source(SET5_HR), open_source(tmp_path / "set5.lmdb")
    set_max_image_pixels(200_000)  # baby.png is 512x512 = 262,144 pixels
    for source, where in ((folder, str(SET5_HR / "baby.png")), (lmdb, f"{tmp_path / 'set5.lmdb'}[baby]")):
        with pytest.raises(DataError, match=re.escape(f"{where}: 512x512 pixels (0.3 Mpx) is above the limit of 0.2")):
            source.read("baby")
        with pytest.raises(DataError, match="above the limit"):
            source.size("baby")
        assert source.read("bird").shape == (288, 288, 3)  # 82,944 pixels: within
    set_max_image_pixels(0)  # no limit
    assert folder.read("baby").shape == (512, 512, 3)


def test_a_pickled_source_carries_the_limit_into_a_spawned_worker(tmp_path):
    set_max_image_pixels(200_000)
    dataset = PairedImageDataset(build_task({"type": "sisr", "scale": 2}), "train", 0, dataroot_gt=str(SET5_HR),
                                 gt_size=32)
    clone = pickle.loads(pickle.dumps(dataset.gt))
    assert max_image_pixels() == 200_000 and clone.root == dataset.gt.root
    set_max_image_pixels(DEFAULT_MAX_IMAGE_PIXELS)
    pickle.loads(pickle.dumps(clone))
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS  # what the pickling process had
    set_max_image_pixels(200_000)
    loader = DataLoader(dataset, batch_sampler=[[SampleKey(0, 0, None)]], num_workers=1,
                        multiprocessing_context="spawn")  # a fresh interpreter: the module default would pass
    with pytest.raises(DataError, match=r"baby.png: 512x512 pixels .* above the limit of 0.2 Mpx"):
        next(iter(loader))


def test_the_limit_is_a_flag_of_infer_and_data_lmdb(weights, tmp_path, capsys):
    bomb_dir = tmp_path / "in"
    bomb_dir.mkdir()
    (bomb_dir / "bomb.png").write_bytes(bomb_png(30000, 30000))
    err = one_paragraph(capsys, ["infer", "--weights", str(weights), str(bomb_dir), str(tmp_path / "out"),
                                 "--device", "cpu"])
    assert f"{bomb_dir / 'bomb.png'}: 30000x30000 pixels" in err and not (tmp_path / "out").exists()
    err = one_paragraph(capsys, ["infer", "--weights", str(weights), str(SET5_X2 / "babyx2.png"),
                                 str(tmp_path / "out"), "--device", "cpu", "--max-pixels", "10000"])
    assert "babyx2.png: 256x256 pixels (0.1 Mpx) is above the limit of 0.01 Mpx" in err
    err = one_paragraph(capsys, ["data", "lmdb", str(SET5_HR), str(tmp_path / "x.lmdb"), "--max-pixels", "100000",
                                 "--quiet"])
    assert "baby.png: 512x512 pixels" in err
    assert main(["data", "lmdb", str(SET5_HR), str(tmp_path / "x.lmdb"), "--max-pixels", "0", "--quiet"]) == 0


def test_the_limit_is_an_option_of_train_and_test(tmp_path, write_options, capsys):
    assert Options.model_fields["max_image_pixels"].default == DEFAULT_MAX_IMAGE_PIXELS
    options = {
        "name": "limited", "task": {"type": "sisr", "scale": 2}, "max_image_pixels": 50_000,
        "network_g": {"type": "MSRResNet", "num_feat": 8, "num_block": 1},
        "datasets": {
            "train": {"dataroot_gt": str(SET5_HR), "gt_size": 32, "batch_size_per_gpu": 2, "num_worker_per_gpu": 0},
            "test": {"name": "Set5", "dataroot_gt": str(SET5_HR)},
        },
        "path": {"experiments_root": str(tmp_path / "experiments"), "results_root": str(tmp_path / "results")},
        "train": {"total_iter": 1, "optim_g": {"type": "Adam", "lr": 1e-4}, "pixel_opt": {"type": "L1Loss"}},
        "logger": {"use_tb_logger": False},
    }
    path = write_options(options)
    err = one_paragraph(capsys, ["test", "-opt", str(path), "--model", "baseline", "--out", str(tmp_path / "rep")])
    assert "baby.png: 512x512 pixels (0.3 Mpx) is above the limit of 0.05 Mpx" in err  # every Set5 image is
    assert not (tmp_path / "rep").exists()
    err = one_paragraph(capsys, ["train", "-opt", str(path), "--no-progress"])
    assert "is above the limit of 0.05 Mpx" in err
    # the flag overrides the option
    assert main(["test", "-opt", str(path), "--model", "baseline", "--out", str(tmp_path / "rep"),
                 "--max-pixels", "300000", "--no-save-img"]) == 0


# -- empty files -------------------------------------------------------------------------------------
def test_an_empty_image_is_one_paragraph_naming_the_file(weights, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SET5_X2 / "birdx2.png", folder / "birdx2.png")
    (folder / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty.png: the file is empty \(0 bytes\)"):
        read_array(folder / "empty.png")
    err = one_paragraph(capsys, ["infer", "--weights", str(weights), str(folder / "empty.png"),
                                 str(tmp_path / "out"), "--device", "cpu"])
    assert f"{folder / 'empty.png'}: the file is empty (0 bytes)" in err


# -- every pair is checked before anything is written -------------------------------------------------
def _pair_set(tmp_path: Path) -> tuple[Path, Path]:
    hr, lq = tmp_path / "HR", tmp_path / "X2"
    shutil.copytree(SET5_HR, hr)
    shutil.copytree(SET5_X2, lq)
    return hr, lq


def test_restore_test_writes_nothing_when_the_second_lq_has_the_wrong_size(weights, tmp_path, capsys):
    hr, lq = _pair_set(tmp_path)
    write_image(lq / "birdx2.png", read_array(lq / "birdx2.png")[:100, :120])  # bird is the second pair
    out = tmp_path / "report"
    err = one_paragraph(capsys, ["test", "--weights", str(weights), "--dataset", str(hr), "--lq", str(lq),
                                 "--filename-tmpl", "{}x2", "--out", str(out), "--device", "cpu"])
    assert f"{lq / 'birdx2.png'}: LQ is 120x100 but its GT {hr / 'bird.png'} is 288x288" in err
    assert "the LQ must be 144x144" in err
    assert not out.exists()


def test_restore_test_writes_nothing_when_an_lmdb_misses_a_key(weights, tmp_path, capsys):
    gt_lmdb = tmp_path / "set5.lmdb"
    write_lmdb(SET5_HR, gt_lmdb, progress=False, verify=False)
    with open(gt_lmdb / "meta_info.txt", "a") as meta:  # listed, never written
        meta.write("zebra.png (288,288,3) 1\n")
    out = tmp_path / "report"
    err = one_paragraph(capsys, ["test", "--weights", str(weights), "--dataset", str(gt_lmdb), "--out", str(out),
                                 "--device", "cpu"])
    assert f"{gt_lmdb}[zebra]: listed in {gt_lmdb / 'meta_info.txt'} but missing from {gt_lmdb / 'data.mdb'}" in err
    assert not out.exists()


def test_check_pairs_reads_headers_only(tmp_path):
    hr = tmp_path / "HR"
    hr.mkdir()
    for name in ("a", "b"):
        (hr / f"{name}.png").write_bytes(bomb_png(64, 48))  # a valid header, then one row of data
    dataset = PairedImageDataset(build_task({"type": "sisr", "scale": 2}), "val", 0, dataroot_gt=str(hr))
    dataset.check_pairs()  # sizes are all it needs
    with pytest.raises(DataError, match="a.png: cannot decode this image"):
        dataset[0]


def test_check_pairs_names_a_guide_of_another_size_and_a_training_image_smaller_than_the_patch(tmp_path):
    depth, rgb = tmp_path / "Depth", tmp_path / "RGB"
    for i, (h, w) in enumerate([(64, 64), (48, 80)]):
        write_image(depth / f"s{i}_depth.png", np.zeros((h, w, 1), np.uint8))
        write_image(rgb / f"s{i}_color.png", np.zeros((h, w if i == 0 else w - 8, 3), np.uint8))
    common = {"dataroot_gt": str(depth), "dataroot_guide": str(rgb), "guide_replace": {"_depth": "_color"}}
    task = build_task({"type": "depth_sr", "scale": 4})
    with pytest.raises(DataError, match=r"s1_color.png: the guide is 72x48 but its depth map s1_depth is 80x48"):
        PairedImageDataset(task, "val", 0, **common).check_pairs()
    write_image(rgb / "s1_color.png", np.zeros((48, 80, 3), np.uint8))
    PairedImageDataset(task, "val", 0, **common).check_pairs()
    with pytest.raises(DataError, match=r"s1_depth.png: 80x48 is smaller than the training patch 64x64"):
        PairedImageDataset(task, "train", 0, gt_size=64, **common).check_pairs()


def test_a_training_sample_names_the_lq_file_of_a_wrong_size_pair(tmp_path):
    hr, lq = _pair_set(tmp_path)
    write_image(lq / "headx2.png", read_array(lq / "headx2.png")[:, :100])
    dataset = PairedImageDataset(build_task({"type": "sisr", "scale": 2}), "train", 0, dataroot_gt=str(hr),
                                 dataroot_lq=str(lq), filename_tmpl="{}x2", gt_size=32)
    sampler = TrainBatchSampler(len(dataset), 5, seed=0)
    with pytest.raises(DataError, match=rf"{lq / 'headx2.png'}: LQ is 100x140 but its GT"):
        [dataset[key] for key in sampler.batch(0)]
    assert torch.is_tensor(dataset[SampleKey(0, 0, None)]["gt"])


def test_a_corrupt_training_image_met_by_a_data_worker_is_one_paragraph_naming_it(tmp_path, write_options):
    """The header is fine (so checks before the run pass); the pixels are not, and a DataLoader worker
    decodes them: the worker's traceback must not reach the user."""
    from tests.conftest import run_restore, tiny_sisr_options

    folder = tmp_path / "HR"
    folder.mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / f"img{i}.png"), np.random.default_rng(i).integers(0, 255, (96, 96, 3), np.uint8))
    data = (folder / "img2.png").read_bytes()
    (folder / "img2.png").write_bytes(data[:200] + bytes(len(data) - 200))  # IHDR kept, pixels gone
    options = tiny_sisr_options(tmp_path, datasets__val=None, datasets__train__dataroot_gt=str(folder),
                                datasets__train__num_worker_per_gpu=2, datasets__train__gt_size=32,
                                train__total_iter=20)
    done = run_restore("train", "-opt", str(write_options(options)), "--no-progress")
    assert done.returncode == 2, done.stderr[-2000:]
    # libpng prints its own lines from the workers, which may land anywhere in ours
    stderr = re.sub(r"libpng (?:error|warning): [^\n]*\n?", "", done.stderr)
    ours = re.search(r"^error: .*", stderr, re.M | re.S)
    message = ours.group(0) if ours else stderr
    assert " ".join(message.split()) == (f"error: {folder / 'img2.png'}: cannot decode this image; the file is "
                                         "corrupt or not an image.")
    assert "Traceback" not in done.stderr
