"""SISR: LR made with MATLAB bicubic like the benchmarks', Y-channel PSNR with crop = scale, and
the bicubic baseline reproducing the numbers every SR paper tabulates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from restore.api import DataError, OptionError, build_network, read_array
from tests.conftest import DATASETS
from tests.tasks_helpers import mean_row, prepared, restore_test, task

SET5 = DATASETS / "Set5"


def test_restore_test_bicubic_reports_the_literature_set5_numbers(tmp_path):
    assert restore_test("-opt", "options/test_bicubic_set5.yml", "--model", "baseline", "--no-save-img",
                        out=tmp_path) == 0
    for folder, literature in (("Set5_x2", 33.66), ("Set5_x3", 30.39), ("Set5_x4", 28.42), ("Set5_x8", 24.40)):
        assert mean_row(tmp_path / folder, "Bicubic")["psnr"] == pytest.approx(literature, abs=0.03)


def test_lr_made_on_the_fly_matches_the_benchmark_matlab_lr_files():
    sisr = task(type="sisr", scale=4)
    for gt_path in sorted((SET5 / "HR").glob("*.png")):
        sample = prepared(sisr, gt_path, SET5 / f"LR_bicubic/X4/{gt_path.stem}x4.png")
        made = sisr.degrade(sample.gt, rng=np.random.default_rng(0), train=False)
        assert made.shape == sample.lq.shape
        levels = np.abs(made - sample.lq) * 255
        assert levels.max() <= 2.01 and levels.mean() < 0.2  # MATLAB's uint8 arithmetic rounds slightly differently
        assert np.allclose(made * 255, np.round(made * 255), atol=1e-3)  # 8-bit like the PNG files


def test_gt_is_cropped_to_a_multiple_of_the_scale_and_a_wrong_lr_size_is_named():
    sisr = task(type="sisr", scale=3)
    sample = prepared(sisr, SET5 / "HR/bird.png")
    assert sample.gt.shape[0] % 3 == 0 and sample.gt.shape[1] % 3 == 0
    with pytest.raises(DataError, match="bird.*LQ is"):
        prepared(sisr, SET5 / "HR/bird.png", SET5 / "LR_bicubic/X2/birdx2.png")


def test_degrading_a_patch_that_is_not_a_multiple_of_the_scale_is_an_error():
    with pytest.raises(DataError, match="not divisible by scale 4"):
        task(type="sisr", scale=4).degrade(np.zeros((30, 32, 3), np.float32), rng=np.random.default_rng(0),
                                            train=True)


def test_y_and_gray_colour_modes_give_one_channel_networks():
    rgb = read_array(SET5 / "HR/baby.png")
    y_task, gray_task = task(type="sisr", scale=2, color="y"), task(type="sisr", scale=2, color="gray")
    assert (y_task.in_chans, gray_task.in_chans, task(type="sisr").in_chans) == (1, 1, 3)
    y = y_task.to_network(rgb, name="baby")
    assert y.shape == (*rgb.shape[:2], 1)
    assert 16 / 255 - 1e-6 <= y.min() and y.max() <= 235 / 255 + 1e-6  # MATLAB's studio-range luma
    assert y_task.default_metrics()["psnr"]["test_y_channel"] is False  # already Y
    assert task(type="sisr", scale=3).default_metrics()["psnr"] == {
        "type": "psnr", "crop_border": 3, "test_y_channel": True}


@pytest.mark.parametrize("method", ["matlab", "pil", "torch"])
def test_every_bicubic_method_upsamples_by_the_scale_and_agrees_with_matlab(method):
    lr = torch.from_numpy(read_array(SET5 / "LR_bicubic/X2/birdx2.png")).permute(2, 0, 1)[None].float() / 255
    reference = build_network({"type": "Bicubic", "method": "matlab"}, scale=2)(lr)
    out = build_network({"type": "Bicubic", "method": method}, scale=2)(lr)
    assert out.shape == (1, 3, lr.shape[2] * 2, lr.shape[3] * 2)
    assert (out - reference).abs().mean() < 0.01


def test_bad_task_options_are_named():
    with pytest.raises(OptionError, match="task.resize"):
        task(type="sisr", scale=2, resize="lanczos")
    with pytest.raises(OptionError, match="task.scale"):
        task(type="sisr", scale=0)
