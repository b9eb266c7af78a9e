"""Gaussian denoising: noise on the [0, 255] scale, the same noisy test image in every run (seeded
by the image's name), fresh noise for every training sample, and blind training ranges."""

from __future__ import annotations

import numpy as np
import pytest

from restore.api import OptionError, read_array
from restore.data.paired import PairedImageDataset, SampleKey, to_unit_float
from tests.conftest import DATASETS
from tests.tasks_helpers import task

SET12 = DATASETS / "Set12"


def _dataset(denoise, phase: str, **kwargs) -> PairedImageDataset:
    return PairedImageDataset(denoise, phase, seed=0, dataroot_gt=str(SET12), **kwargs)


def test_noise_has_the_requested_level_on_the_255_scale():
    denoise = task(type="denoise", sigma=25, color="gray")
    gt = denoise.to_network(read_array(SET12 / "08.png"), name="08")
    noise = (denoise.degrade(gt, rng=np.random.default_rng(0), train=False) - gt) * 255
    assert noise.std() == pytest.approx(25, rel=0.01)
    assert abs(noise.mean()) < 0.1
    assert noise.min() < -50  # not clipped: the papers add noise to floats and keep them


def test_test_noise_is_the_same_in_every_run_and_differs_between_images():
    first, second = _dataset(task(type="denoise", sigma=50, color="gray"), "test"), _dataset(
        task(type="denoise", sigma=50, color="gray"), "test")
    a, b = first[0], second[0]
    assert np.array_equal(a["lq"], b["lq"])
    noise_0, noise_1 = (first[0]["lq"] - first[0]["gt"])[:64, :64], (first[1]["lq"] - first[1]["gt"])[:64, :64]
    assert not np.allclose(noise_0, noise_1)


def test_training_noise_is_fresh_for_every_sample():
    train = _dataset(task(type="denoise", sigma=25, color="gray"), "train", gt_size=32, use_hflip=False,
                     use_rot=False)
    a, b = train[SampleKey(0, 0, None)], train[SampleKey(0, 1, None)]
    noise_a, noise_b = a["lq"] - to_unit_float(a["gt"]), b["lq"] - to_unit_float(b["gt"])  # GT comes as uint8
    assert noise_a.std() * 255 == pytest.approx(25, rel=0.2) and not np.allclose(noise_a, noise_b)
    again = train[SampleKey(0, 0, None)]  # a sample is a function of its stream position (resumable)
    assert np.array_equal(again["lq"], a["lq"])


def test_blind_training_draws_levels_from_the_range_and_tests_at_sigma():
    blind = task(type="denoise", sigma=30, sigma_range=(0, 50), color="gray")
    levels = [blind.noise_level(np.random.default_rng(seed), train=True) for seed in range(200)]
    assert 0 <= min(levels) < 5 and 45 < max(levels) <= 50
    assert blind.noise_level(np.random.default_rng(0), train=False) == 30


def test_a_blind_task_without_test_sigma_says_so_when_testing():
    blind = task(type="denoise", sigma=None, sigma_range=(0, 50))
    blind.degrade(np.zeros((8, 8, 3), np.float32), rng=np.random.default_rng(0), train=True)
    with pytest.raises(OptionError, match="task.sigma"):
        blind.degrade(np.zeros((8, 8, 3), np.float32), rng=np.random.default_rng(0), train=False)
    with pytest.raises(OptionError, match="sigma"):
        task(type="denoise", sigma=None)


def test_colour_denoising_scores_rgb_psnr_on_the_whole_image():
    denoise = task(type="denoising", sigma=50)  # the alias used by KAIR-style files
    assert denoise.in_chans == 3 and denoise.baseline == {"type": "Identity"}
    assert denoise.default_metrics()["psnr"] == {"type": "psnr", "crop_border": 0, "test_y_channel": False}
