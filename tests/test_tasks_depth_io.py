"""Depth file formats: .npy, .mat (v5 and v7.3), .h5 and .pfm are read as HWC maps and written
back in the same format, and NYU-v2's labelled file is split into per-map files."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from restore_tasks.depth_io import write_depth
from restore_tasks.prepare import nyuv2, subimages, tile_starts

from restore.api import DataError, read_array, write_image

RNG = np.random.default_rng(0)
DEPTH = (RNG.random((30, 41)) * 9 + 0.5).astype(np.float32)


@pytest.mark.parametrize("suffix", [".npy", ".pfm", ".mat", ".h5"])
def test_float_maps_survive_a_write_and_read_in_every_format(tmp_path, suffix):
    path = write_depth(tmp_path / f"map{suffix}", DEPTH, "float32")
    back = read_array(path)
    assert back.shape == (30, 41, 1) and back.dtype == np.float32
    np.testing.assert_array_equal(back[:, :, 0], DEPTH)


def test_integer_maps_are_rounded_and_clipped_to_their_dtype(tmp_path):
    path = write_depth(tmp_path / "map.png", np.array([[-3.0, 1.4], [1.6, 70000.0]]), "uint16")
    np.testing.assert_array_equal(read_array(path)[:, :, 0], [[0, 1], [2, 65535]])
    assert read_array(path).dtype == np.uint16


def test_a_matlab_v73_file_is_read_through_h5py_in_matlab_orientation(tmp_path):
    import h5py

    path = tmp_path / "v73.mat"
    # MATLAB v7.3: HDF5 behind a 512-byte MATLAB header, arrays stored column-major (transposed).
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset("depth", data=DEPTH.T)
    with open(path, "r+b") as f:
        text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
        f.write(text.ljust(116) + b" " * 8 + b"\x00\x02IM")  # version 2.0 (v7.3), little-endian
    assert scipy.io.matlab.matfile_version(str(path))[0] == 2  # scipy sees a v7.3 file and would refuse it
    np.testing.assert_array_equal(read_array(path)[:, :, 0], DEPTH)


def test_the_msgnet_mat_maps_are_read_from_their_variable(shared):
    venus = read_array(shared / "data/depth/MSGNet_Middlebury/C/Depth/venus_2.mat")
    assert venus.shape == (382, 434, 1) and venus.min() == 24 and venus.max() == 157


def test_a_pfm_is_read_bottom_up_and_colour_pfms_keep_three_channels(tmp_path):
    rows = np.arange(6, dtype="<f4").reshape(2, 3)
    path = tmp_path / "gray.pfm"
    path.write_bytes(b"Pf\n3 2\n-1.0\n" + rows[::-1].tobytes())  # the file stores the bottom row first
    np.testing.assert_array_equal(read_array(path)[:, :, 0], rows)
    colour = tmp_path / "colour.pfm"
    colour.write_bytes(b"PF\n1 1\n1.0\n" + np.array([1, 2, 3], ">f4").tobytes())  # big-endian
    np.testing.assert_array_equal(read_array(colour)[0, 0], [1, 2, 3])


def test_unreadable_depth_files_are_named(tmp_path):
    bad = tmp_path / "bad.pfm"
    bad.write_bytes(b"P6\n1 1\n255\n\x00\x00\x00")
    with pytest.raises(DataError, match="bad.pfm: not a PFM"):
        read_array(bad)
    two = tmp_path / "two.mat"
    scipy.io.savemat(two, {"left": DEPTH, "right": DEPTH})
    with pytest.raises(DataError, match="two.mat: cannot tell which array.*left, right"):
        read_array(two)
    stack = tmp_path / "stack.npy"
    np.save(stack, np.zeros((4, 5, 6), np.float32))
    with pytest.raises(DataError, match="stack.npy.*stack of maps"):
        read_array(stack)


def test_nyuv2_labelled_file_is_split_into_train_and_test_maps(tmp_path):
    import h5py

    depths = (RNG.random((5, 12, 9)) * 5).astype(np.float32)  # (maps, H, W) as a user sees them
    images = RNG.integers(0, 255, (5, 12, 9, 3), dtype=np.uint8)
    mat = tmp_path / "nyu_depth_v2_labeled.mat"
    with h5py.File(mat, "w") as f:  # MATLAB layout: (N, W, H) and (N, C, W, H)
        f.create_dataset("depths", data=depths.transpose(0, 2, 1))
        f.create_dataset("images", data=images.transpose(0, 3, 2, 1))
    assert nyuv2(mat, tmp_path / "NYUv2", train=3) == (3, 2)
    assert sorted(p.name for p in (tmp_path / "NYUv2/test/Depth").iterdir()) == ["0003.npy", "0004.npy"]
    np.testing.assert_array_equal(np.load(tmp_path / "NYUv2/train/Depth/0001.npy"), depths[1])
    np.testing.assert_array_equal(read_array(tmp_path / "NYUv2/test/RGB/0004.png"), images[4])


def test_subimages_tile_like_basicsr(tmp_path):
    assert tile_starts(1000, 480, 240, 0) == [0, 240, 480, 520]
    assert tile_starts(960, 480, 240, 0) == [0, 240, 480]
    src = tmp_path / "src"
    src.mkdir()
    img = RNG.integers(0, 255, (100, 130, 3), dtype=np.uint8)
    write_image(src / "a.png", img)
    assert subimages(src, tmp_path / "dst", size=64, step=32) == 3 * 4  # rows 0, 32, 36; columns 0, 32, 64, 66
    np.testing.assert_array_equal(read_array(tmp_path / "dst/a_s012.png"), img[36:100, 66:130])
