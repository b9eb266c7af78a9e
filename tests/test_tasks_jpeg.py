"""JPEG deblocking: LQ is a real OpenCV JPEG encoding; PSNR-B follows the SwinIR/KAIR test code;
the compressed classic5 input scores what the deblocking tables list for 'JPEG'."""

from __future__ import annotations

import numpy as np
import pytest

from restore.api import METRICS, OptionError, read_array
from restore.metrics import psnr
from tests.conftest import DATASETS
from tests.tasks_helpers import mean_row, prepared, restore_test, task

CLASSIC5 = DATASETS / "classic5"


def test_restore_test_scores_the_classic5_q10_input_as_the_literature(tmp_path):
    assert restore_test("-opt", "options/test_jpeg_classic5.yml", "--model", "baseline", "--no-save-img",
                        out=tmp_path) == 0
    scores = mean_row(tmp_path / "classic5", "JPEG input")
    assert scores["psnr"] == pytest.approx(27.82, abs=0.1)
    assert scores["ssim"] == pytest.approx(0.7595, abs=0.002)
    assert scores["psnrb"] == pytest.approx(25.21, abs=0.1)


@pytest.mark.parametrize(("quality", "psnr_db", "psnrb_db"), [(20, 30.12, 27.50), (40, 32.43, 29.92)])
def test_classic5_input_at_other_qualities_matches_the_literature(quality, psnr_db, psnrb_db):
    jpeg = task(type="jpeg", quality=quality)
    scores, scores_b = [], []
    for path in sorted(CLASSIC5.glob("*.bmp")):
        sample = prepared(jpeg, path)
        lq = jpeg.to_data(jpeg.degrade(sample.gt, rng=np.random.default_rng(0), train=False), sample.meta)
        gt = jpeg.to_data(sample.gt, sample.meta)
        scores.append(psnr(lq, gt))
        scores_b.append(METRICS.get("psnrb")(lq, gt))
    assert np.mean(scores) == pytest.approx(psnr_db, abs=0.1)
    assert np.mean(scores_b) == pytest.approx(psnrb_db, abs=0.1)


def test_psnrb_adds_the_blocking_effect_factor_of_a_hand_computed_image():
    # Left half 0, right half 255 on a 16x16 image: one vertical block boundary carries every jump.
    # Boundary pairs: 16 x (16/8 - 1) horizontal + the same vertical = 32; squared jumps sum to 16
    # (in [0, 1] units), so D_B = 0.5 and D_B^c = 0; BEF = log2(8) / log2(16) * 0.5 = 0.375.
    img = np.zeros((16, 16, 1), np.uint8)
    img[:, 8:] = 255
    psnrb = METRICS.get("psnrb")
    assert psnrb(img, img) == pytest.approx(10 * np.log10(1 / 0.375))
    shifted = np.roll(img, 3, axis=1)  # the edge is now inside a block: no blocking effect
    assert psnrb(shifted, img) == pytest.approx(psnr(shifted, img))


def test_psnrb_penalises_the_blocking_of_a_jpeg_output_far_more_than_a_plain_error():
    gt = read_array(CLASSIC5 / "lena.bmp")
    jpeg = task(type="jpeg", quality=10)
    lq = jpeg.to_data(jpeg.degrade(gt.astype(np.float32) / 255, rng=np.random.default_rng(0), train=False), {})
    brighter = np.clip(gt.astype(np.int16) + 6, 0, 255).astype(np.uint8)  # an error with no block structure
    psnrb = METRICS.get("psnrb")
    jpeg_gap, plain_gap = psnr(lq, gt) - psnrb(lq, gt), psnr(brighter, gt) - psnrb(brighter, gt)
    assert jpeg_gap > 1.5
    assert 0 <= plain_gap < 0.5


def test_colour_jpeg_round_trip_keeps_rgb_and_training_draws_qualities_from_the_range():
    rgb = read_array(DATASETS / "Set5/HR/baby.png")[:128, :128]
    blind = task(type="jpeg", quality=40, color="rgb", quality_range=(10, 50))
    gt = blind.to_network(rgb, name="baby")
    assert blind.in_chans == 3
    test_lq = blind.degrade(gt, rng=np.random.default_rng(0), train=False)
    assert test_lq.shape == gt.shape
    assert np.array_equal(test_lq, blind.degrade(gt, rng=np.random.default_rng(1), train=False))  # q fixed
    seen = {round(psnr(blind.to_data(blind.degrade(gt, rng=np.random.default_rng(seed), train=True), {}), rgb), 2)
            for seed in range(8)}
    assert len(seen) > 3  # several qualities were drawn


def test_jpeg_quality_is_checked():
    with pytest.raises(OptionError, match="task.quality"):
        task(type="jpeg", quality=0)
    with pytest.raises(OptionError, match="task.quality_range"):
        task(type="jpeg", quality=40, quality_range=(50, 10))
