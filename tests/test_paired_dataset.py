"""Paired dataset and the resumable sampler: determinism, sharding, resume, folder == LMDB."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from restore.build import build_task
from restore.cli import main as restore_main
from restore.data.io import read_array, write_image
from restore.data.paired import (
    PairedImageDataset,
    SampleKey,
    TrainBatchSampler,
    batch_to_device,
    to_unit_float,
)
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

    gt, lq = to_unit_float(one["gt"]), to_unit_float(one["lq"])
    remade = imresize(gt, 1 / 2)
    assert (remade[:, 2:-2, 2:-2] - lq[:, 2:-2, 2:-2]).abs().max() < 3 / 255


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


def whole_image_twin(dataset: PairedImageDataset) -> PairedImageDataset:
    """The same dataset on a copy of its task that declares no unit range: every sample goes the whole-image
    float path (read, `Task.prepare`, crop, flip), as all samples did before integer patches."""
    twin = copy.copy(dataset)
    twin.task = copy.copy(dataset.task)
    twin.task.unit_range = False
    twin._tasks = {}
    return twin


def float_batches(dataset: PairedImageDataset, count: int, batch_size: int = 4) -> list[dict]:
    sampler = TrainBatchSampler(len(dataset), batch_size, seed=dataset.seed, scales=dataset.scales)
    return [batch_to_device(default_collate(dataset.__getitems__(sampler.batch(i))), torch.device("cpu"))
            for i in range(count)]


@pytest.fixture(scope="module")
def depth_maps(tmp_path_factory):
    """Five 16-bit depth maps of different sizes and value ranges (per-image min/max normalisation)."""
    folder = tmp_path_factory.mktemp("depth")
    rng = np.random.default_rng(3)
    for i in range(5):
        depth = rng.integers(500 * i, 4000 + 3000 * i, (70 + 3 * i, 66), dtype=np.uint16)
        write_image(folder / f"map{i}.png", depth[:, :, None])
    return folder


@pytest.fixture(scope="module")
def mixed_bit_depth_folder(tmp_path_factory):
    """Set5's photographs, two of them as 16-bit PNGs (the same pictures x257)."""
    folder = tmp_path_factory.mktemp("mixed")
    for i, file in enumerate(sorted((DATASETS / "Set5/HR").iterdir())):
        img = read_array(file)
        write_image(folder / file.name, img.astype(np.uint16) * 257 if i % 2 else img)
    return folder


CASES = {
    "sr_lq_from_disk": ({"type": "sisr", "scale": 2},
                        {"dataroot_gt": "Set5/HR", "dataroot_lq": "Set5/LR_bicubic/X2", "filename_tmpl": "{}x2",
                         "gt_size": 48}),
    "sr_lq_made_on_the_fly": ({"type": "sisr", "scale": 3}, {"dataroot_gt": "Set5/HR", "gt_size": 48}),
    "jpeg_y": ({"type": "jpeg", "quality": 20}, {"dataroot_gt": "Set5/HR", "gt_size": 64}),
    "denoise_gray": ({"type": "denoise", "sigma": 25, "color": "gray"}, {"dataroot_gt": "Set5/HR", "gt_size": 64}),
    "denoise_rgb_from_gray_files": ({"type": "denoise", "sigma": 15}, {"dataroot_gt": "Set12", "gt_size": 64}),
    "multi_scale_sr": ({"type": "sisr", "scale": 2}, {"dataroot_gt": "Set5/HR", "lq_size": 16, "scales": [2, 3, 4]}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_float_batches_equal_the_whole_image_float_path_to_the_bit(case):
    task_options, kwargs = CASES[case]
    kwargs = {k: str(DATASETS / v) if k.startswith("dataroot") else v for k, v in kwargs.items()}
    dataset = PairedImageDataset(build_task(task_options), "train", 7, **kwargs)
    item = dataset[SampleKey(0, 0, None)]
    assert item["gt"].dtype == torch.uint8  # handed over as read, converted on the device
    if "dataroot_lq" in kwargs:
        assert item["lq"].dtype == torch.uint8
    for new, old in zip(float_batches(dataset, 6), float_batches(whole_image_twin(dataset), 6), strict=True):
        for name in ("gt", "lq"):
            assert new[name].dtype == old[name].dtype == torch.float32
            assert torch.equal(new[name], old[name]), f"{case}: {name} differs"


def test_depth_keeps_its_per_image_normalisation_and_float_samples(depth_maps):
    depth = build_task({"type": "depth_sr", "scale": 4})
    assert depth.unit_range is False
    dataset = PairedImageDataset(depth, "train", 1, dataroot_gt=str(depth_maps), gt_size=32)
    batches = float_batches(dataset, 5)
    for batch in batches:
        assert batch["gt"].dtype == torch.float32 and batch["lq"].dtype == torch.float32
    # per-image min/max: each map's full range is [0, 1], whatever its units
    sample = dataset.load(3, depth)
    assert sample.gt.min() == 0 and sample.gt.max() == 1
    forced = whole_image_twin(dataset)
    for new, old in zip(batches, float_batches(forced, 5), strict=True):
        assert torch.equal(new["gt"], old["gt"]) and torch.equal(new["lq"], old["lq"])


def test_16_bit_images_come_as_uint16_and_a_mixed_folder_collates_to_the_same_floats(mixed_bit_depth_folder):
    dataset = PairedImageDataset(sisr_task(2), "train", 5, dataroot_gt=str(mixed_bit_depth_folder), gt_size=32)
    dtypes = {dataset[SampleKey(i, i, None)]["gt"].dtype for i in range(len(dataset))}
    assert dtypes == {torch.uint8, torch.uint16}
    for new, old in zip(float_batches(dataset, 6), float_batches(whole_image_twin(dataset), 6), strict=True):
        assert torch.equal(new["gt"], old["gt"]) and torch.equal(new["lq"], old["lq"])


def test_batch_to_device_divides_integer_images_and_leaves_the_rest():
    images = torch.tensor([0, 1, 128, 255], dtype=torch.uint8).reshape(1, 1, 2, 2)
    deep = torch.tensor([0, 1, 65535, 257], dtype=torch.uint16).reshape(1, 1, 2, 2)
    noisy = torch.rand(1, 1, 2, 2)
    batch = batch_to_device({"gt": images, "lq": noisy, "guide": deep, "scale": torch.tensor([2])}, "cpu")
    expected = np.array([0, 1, 128, 255], np.float32).reshape(1, 1, 2, 2) / 255.0  # what to_unit_range gives
    assert np.array_equal(batch["gt"].numpy(), expected)
    assert np.array_equal(batch["guide"].numpy(), np.array([0, 1, 65535, 257], np.float32).reshape(1, 1, 2, 2)
                          / 65535.0)
    assert batch["lq"] is noisy and batch["scale"].dtype == torch.int64


def test_a_task_that_maps_data_its_own_way_gets_whole_images_unless_it_declares_otherwise():
    from restore.tasks import Task

    class Normalised(Task):
        def to_network(self, img, *, name):
            return (img - img.mean()).astype(np.float32)

    class Declared(Normalised):
        unit_range = True

    class Renamed(Task):
        def to_pixels(self, img, *, name):
            return img

    assert Task.unit_range and Renamed.unit_range and Declared.unit_range
    assert Normalised.unit_range is False
    assert build_task({"type": "jpeg"}).unit_range and not build_task({"type": "depth_sr"}).unit_range


def test_a_resumed_loader_with_workers_gives_the_same_batches(tmp_path):
    dataset = PairedImageDataset(build_task({"type": "jpeg", "quality": 30}), "train", 11,
                                 dataroot_gt=str(DATASETS / "Set12"), gt_size=48)
    straight = batches(dataset, TrainBatchSampler(len(dataset), 3, seed=11), 7)
    resumed = batches(dataset, TrainBatchSampler(len(dataset), 3, seed=11, start_batch=4), 3, workers=2)
    for x, y in zip(straight[4:], resumed, strict=True):
        assert torch.equal(x["gt"], y["gt"]) and torch.equal(x["lq"], y["lq"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batch_to_device_on_cuda_gives_the_cpu_floats_to_the_bit():
    # CUDA multiplies by the reciprocal of a scalar divisor; batch_to_device must divide like to_unit_range
    values = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    deep = torch.arange(0, 65536, 97, dtype=torch.int64).to(torch.uint16).reshape(1, 1, -1, 1)
    on_gpu = batch_to_device({"gt": values, "lq": deep}, torch.device("cuda"))
    on_cpu = batch_to_device({"gt": values, "lq": deep}, torch.device("cpu"))
    assert torch.equal(on_gpu["gt"].cpu(), on_cpu["gt"]) and torch.equal(on_gpu["lq"].cpu(), on_cpu["lq"])
