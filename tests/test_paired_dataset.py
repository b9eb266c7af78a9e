"""Paired dataset and the resumable sampler: determinism, sharding, resume, folder == LMDB."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from restore.build import build_task
from restore.cli import main as restore_main
from restore.data.paired import PairedImageDataset, SampleKey, TrainBatchSampler
from restore.errors import DataError
from tests.conftest import DATASETS


def sisr_task(scale: int = 2):
    return build_task({"type": "sisr", "scale": scale})


def batches(dataset, sampler, count: int, workers: int = 0) -> list[dict]:
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers, generator=torch.Generator())
    it = iter(loader)
    return [next(it) for _ in range(count)]


def test_sampler_is_a_pure_function_of_seed_and_batch_index():
    a = TrainBatchSampler(7, 3, seed=5)
    b = TrainBatchSampler(7, 3, seed=5, start_batch=4)
    first = [a.batch(i) for i in range(8)]
    assert [next(iter(b))] == [first[4]]
    assert first != [TrainBatchSampler(7, 3, seed=6).batch(i) for i in range(8)]


def test_every_image_is_seen_once_per_epoch():
    sampler = TrainBatchSampler(10, 5, seed=0, enlarge_ratio=2)
    keys = [k for i in range(4) for k in sampler.batch(i)]  # 20 samples = one enlarged epoch
    assert sorted(k.index for k in keys) == sorted(list(range(10)) * 2)
    assert [k.position for k in keys] == list(range(20))


def test_processes_split_each_global_batch_between_them():
    single = TrainBatchSampler(9, 4, seed=1)
    ranks = [TrainBatchSampler(9, 2, seed=1, num_replicas=2, rank=r) for r in range(2)]
    for i in range(5):
        assert ranks[0].batch(i) + ranks[1].batch(i) == single.batch(i)


def test_multi_scale_batches_share_one_scale_drawn_per_batch():
    sampler = TrainBatchSampler(9, 4, seed=1, scales=[2, 3, 4])
    drawn = [{k.scale for k in sampler.batch(i)} for i in range(30)]
    assert all(len(s) == 1 for s in drawn)
    assert set.union(*drawn) == {2, 3, 4}


def test_training_samples_are_reproducible_and_patch_aligned():
    dataset = PairedImageDataset(sisr_task(2), "train", 0, dataroot_gt=str(DATASETS / "Set5/HR"),
                                 dataroot_lq=str(DATASETS / "Set5/LR_bicubic/X2"), filename_tmpl="{}x2", gt_size=48)
    key = SampleKey(index=2, position=17, scale=None)
    one, two = dataset[key], dataset[key]
    assert torch.equal(one["lq"], two["lq"]) and torch.equal(one["gt"], two["gt"])
    assert one["gt"].shape == (3, 48, 48) and one["lq"].shape == (3, 24, 24)
    # LQ read from disk is the MATLAB-bicubic downscale of the same GT patch (within 8-bit rounding)
    from basicsr.utils.matlab_functions import imresize

    remade = imresize(one["gt"], 1 / 2)
    assert (remade[:, 2:-2, 2:-2] - one["lq"][:, 2:-2, 2:-2]).abs().max() < 3 / 255


def test_multi_scale_training_sample_uses_the_batch_scale():
    dataset = PairedImageDataset(sisr_task(2), "train", 0, dataroot_gt="skimage:rgb", lq_size=16, scales=[2, 3, 4])
    for scale in (2, 3, 4):
        item = dataset[SampleKey(0, 0, scale)]
        assert item["lq"].shape == (3, 16, 16) and item["gt"].shape == (3, 16 * scale, 16 * scale)


def test_patch_larger_than_image_names_the_image(tmp_path):
    dataset = PairedImageDataset(sisr_task(2), "train", 0, dataroot_gt=str(DATASETS / "Set5/HR"), gt_size=1024)
    with pytest.raises(DataError, match="baby.png: 512x512 is smaller than the training patch 1024x1024"):
        dataset[SampleKey(0, 0, None)]


def test_missing_lq_partner_names_it(tmp_path):
    with pytest.raises(DataError, match="no LQ image for GT baby"):
        PairedImageDataset(sisr_task(2), "val", 0, dataroot_gt=str(DATASETS / "Set5/HR"),
                           dataroot_lq=str(DATASETS / "Set5/LR_bicubic/X2"), filename_tmpl="{}_x2")


def test_evaluation_degradation_is_seeded_by_image_name():
    task = build_task({"type": "denoise", "sigma": 25, "color": "gray"})
    a = PairedImageDataset(task, "val", 0, dataroot_gt=str(DATASETS / "Set12"))
    b = PairedImageDataset(task, "val", 0, dataroot_gt=str(DATASETS / "Set12"))
    assert np.array_equal(a[3]["lq"], b[3]["lq"])
    assert not np.array_equal(a[3]["lq"] - a[3]["gt"], a[4]["lq"][:256, :256] - a[4]["gt"][:256, :256])


def test_lmdb_made_by_the_cli_gives_the_same_batches_as_the_folder(tmp_path):
    folder = DATASETS / "Set12"
    lmdb_path = tmp_path / "set12.lmdb"
    assert restore_main(["data", "lmdb", str(folder), str(lmdb_path)]) == 0
    task = build_task({"type": "denoise", "sigma": 25, "color": "gray"})
    common = {"gt_size": 64, "use_hflip": True, "use_rot": True}
    from_folder = PairedImageDataset(task, "train", 3, dataroot_gt=str(folder), **common)
    from_lmdb = PairedImageDataset(task, "train", 3, dataroot_gt=str(lmdb_path), io_backend={"type": "lmdb"},
                                   **common)
    assert from_folder.keys == from_lmdb.keys
    a = batches(from_folder, TrainBatchSampler(len(from_folder), 4, seed=3), 6)
    b = batches(from_lmdb, TrainBatchSampler(len(from_lmdb), 4, seed=3), 6, workers=2)  # forked LMDB readers
    for x, y in zip(a, b):
        assert torch.equal(x["gt"], y["gt"]) and torch.equal(x["lq"], y["lq"])
