"""Image sources: folders, BasicSR-layout LMDBs and scikit-image's photographs behind one interface."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from restore.data.io import read_array, write_image
from restore.data.lmdb import write_lmdb
from restore.data.sources import FolderSource, LmdbSource, SkimageSource, open_source
from restore.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
SET5_HR = ROOT / "datasets" / "Set5" / "HR"
SET12 = ROOT / "datasets" / "Set12"


def test_folder_keys_are_sorted_stems_and_describe_names_the_file_as_given(monkeypatch):
    monkeypatch.chdir(ROOT)
    source = open_source("datasets/Set5/HR")
    assert isinstance(source, FolderSource)
    assert source.keys() == ["baby", "bird", "butterfly", "head", "woman"]
    assert source.describe("baby") == os.path.join("datasets", "Set5", "HR", "baby.png")
    baby = source.read("baby")
    assert baby.shape == (512, 512, 3) and baby.dtype == np.uint8
    np.testing.assert_array_equal(baby, read_array(SET5_HR / "baby.png"))


def test_gray_folder_reads_hw1_arrays():
    source = open_source(SET12)
    assert source.keys() == [f"{i:02d}" for i in range(1, 13)]
    assert source.read("01").shape == (256, 256, 1)


def test_two_files_with_the_same_stem_are_refused_naming_both(tmp_path):
    shutil.copy(SET5_HR / "baby.png", tmp_path / "baby.png")
    write_image(tmp_path / "baby.bmp", read_array(SET5_HR / "baby.png"))
    with pytest.raises(DataError, match=r"baby\.(bmp|png) and .*baby\.(png|bmp) have the same key 'baby'"):
        open_source(tmp_path)


def test_corrupt_png_in_a_folder_names_the_file(tmp_path):
    shutil.copy(SET5_HR / "bird.png", tmp_path / "bird.png")
    data = (SET5_HR / "baby.png").read_bytes()
    (tmp_path / "baby.png").write_bytes(data[: len(data) // 2])  # truncated download
    source = open_source(tmp_path)
    assert source.read("bird").shape == (288, 288, 3)
    with pytest.raises(DataError, match=r"baby\.png: cannot decode this image; the file is corrupt"):
        source.read("baby")


def test_a_task_reader_error_still_names_the_file(tmp_path):
    shutil.copy(SET5_HR / "bird.png", tmp_path / "bird.png")

    def fussy_reader(path: Path) -> np.ndarray:
        raise ValueError("unsupported colour profile")

    source = open_source(tmp_path, read_file=fussy_reader)
    with pytest.raises(DataError, match=r"bird\.png: cannot read this file \(ValueError: unsupported colour profile"):
        source.read("bird")


def test_meta_info_file_restricts_a_folder_to_the_files_it_lists(tmp_path):
    meta = tmp_path / "meta_info.txt"
    meta.write_text("head.png (280,280,3) 1\nbaby.png (512,512,3) 1\n")
    source = open_source(SET5_HR, meta_info_file=meta)
    assert source.keys() == ["baby", "head"]  # sorted like every source, whatever the file order
    meta.write_text("baby.png (512,512,3) 1\nlena.png (512,512,3) 1\n")
    with pytest.raises(DataError, match=r"meta_info\.txt lists 'lena\.png', but .*lena\.png does not exist"):
        open_source(SET5_HR, meta_info_file=meta)


def test_unreadable_meta_info_line_names_file_and_line(tmp_path):
    meta = tmp_path / "meta.txt"
    meta.write_text("baby.png (512,512,3) 1\nbird.png (288,288 1\n")
    with pytest.raises(DataError, match=r"meta\.txt, line 2: cannot parse"):
        open_source(SET5_HR, meta_info_file=meta)


def test_missing_path_and_unknown_key_and_backend_errors():
    with pytest.raises(DataError, match=r"^datasets/DIV2K_missing: no such folder or LMDB\.$"):
        open_source("datasets/DIV2K_missing")
    with pytest.raises(DataError, match=r"no image with key 'babby'\. Did you mean 'baby'\?"):
        open_source(SET5_HR).read("babby")
    with pytest.raises(DataError, match=r"io_backend type 'memcached' is not supported"):
        open_source(SET5_HR, backend="memcached")
    with pytest.raises(DataError, match=r"not an LMDB \(no data\.mdb in it\)"):
        open_source(SET5_HR, backend="lmdb")


def test_backend_auto_picks_lmdb_by_suffix_or_data_mdb(tmp_path):
    write_lmdb(SET5_HR, tmp_path / "set5.lmdb", progress=False, verify=False)
    assert isinstance(open_source(tmp_path / "set5.lmdb"), LmdbSource)
    (tmp_path / "set5.lmdb").rename(tmp_path / "renamed")
    assert isinstance(open_source(tmp_path / "renamed"), LmdbSource)
    assert isinstance(open_source(tmp_path / "renamed", backend="lmdb"), LmdbSource)


def test_lmdb_without_meta_info_is_refused_as_unfinished(tmp_path):
    out = tmp_path / "set5.lmdb"
    write_lmdb(SET5_HR, out, progress=False, verify=False)
    (out / "meta_info.txt").unlink()
    with pytest.raises(DataError, match=r"set5\.lmdb: no meta_info\.txt.*rerun `restore data lmdb`"):
        open_source(out)


def test_key_listed_in_meta_info_but_missing_from_the_database_names_lmdb_and_key(tmp_path):
    out = tmp_path / "set5.lmdb"
    write_lmdb(SET5_HR, out, progress=False, verify=False)
    with open(out / "meta_info.txt", "a") as meta:
        meta.write("zebra.png (64,64,3) 1\n")
    source = open_source(out)
    assert "zebra" in source.keys()
    with pytest.raises(DataError, match=r"set5\.lmdb\[zebra\]: the key is listed in .*meta_info\.txt but missing"):
        source.read("zebra")


def test_skimage_sets_are_real_photographs_that_need_no_download():
    rgb, gray = open_source("skimage:rgb"), open_source("skimage:gray")
    assert isinstance(rgb, SkimageSource)
    assert "astronaut" in rgb.keys() and "camera" in gray.keys()
    assert not {"checkerboard", "logo", "colorwheel", "binary_blobs"} & set(rgb.keys() + gray.keys())
    for source, channels in ((rgb, 3), (gray, 1)):
        assert source.keys() == sorted(source.keys())
        for key in source.keys():
            img = source.read(key)
            assert img.dtype == np.uint8 and img.shape[2] == channels, key
            assert min(img.shape[:2]) >= 128, key  # large enough for training patches
            assert img.std() > 10, key  # real content, not a flat placeholder
    left, right = rgb.read("stereo_motorcycle_left"), rgb.read("stereo_motorcycle_right")
    assert left.shape == right.shape == (500, 741, 3) and not np.array_equal(left, right)
    assert rgb.describe("astronaut") == "skimage.data.astronaut()"


def test_skimage_reads_are_copies_and_unknown_sets_are_named():
    source = open_source("skimage:gray")
    source.read("camera")[:] = 0
    assert source.read("camera").max() > 0
    with pytest.raises(DataError, match=r"'skimage:grey': unknown scikit-image set\. Did you mean 'gray'\?"):
        open_source("skimage:grey")


class _KeyedArrays(torch.utils.data.Dataset):
    def __init__(self, source):
        self.source = source

    def __len__(self):
        return len(self.source.keys())

    def __getitem__(self, index):
        key = self.source.keys()[index]
        return key, torch.from_numpy(self.source.read(key)), os.getpid()


def test_lmdb_opened_before_fork_reads_correctly_in_dataloader_workers_and_parent(tmp_path):
    out = tmp_path / "set12.lmdb"
    write_lmdb(SET12, out, progress=False, verify=False)
    source = open_source(out)
    source.read("01")  # the parent holds an open environment when the workers fork
    loader = torch.utils.data.DataLoader(
        _KeyedArrays(source), batch_size=None, num_workers=2, multiprocessing_context="fork"
    )
    folder = open_source(SET12)
    seen, workers = [], set()
    for key, img, worker_pid in loader:
        np.testing.assert_array_equal(img.numpy(), folder.read(key))
        seen.append(key)
        workers.add(worker_pid)
    assert seen == folder.keys() and len(workers) == 2 and os.getpid() not in workers
    np.testing.assert_array_equal(source.read("12"), folder.read("12"))  # the parent's handle still works


def test_two_sources_on_one_lmdb_share_the_process_handle_and_pickle(tmp_path):
    out = tmp_path / "set5.lmdb"
    write_lmdb(SET5_HR, out, progress=False, verify=False)
    train, val = open_source(out), open_source(str(out) + "/")  # e.g. train and val on the same LMDB
    np.testing.assert_array_equal(train.read("head"), val.read("head"))
    clone = pickle.loads(pickle.dumps(train))
    np.testing.assert_array_equal(clone.read("woman"), read_array(SET5_HR / "woman.png"))
