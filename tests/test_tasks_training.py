"""Each task trains a small network for a few hundred iterations on bundled data with its quick-start
option file, and on held-out images beats the degraded input (or bicubic) in `restore test`'s report.

SR is covered by tests/test_train_e2e.py (a small MSRResNet trained on scikit-image photos beats
bicubic on Set5 through the same commands). Denoising and deblocking train a UPS of 2 x 2 layers of
width 16. Depth trains a small MSRResNet, as UPS has no bicubic skip connection and a few hundred
iterations do not bring it to bicubic quality (its recipe is 200k), and an L2 loss: under L1 a
short run settles on the network's bilinear skip (most residuals of a depth map are zero), under L2
the few large edge errors drive it past bicubic within 200 iterations. Guided depth SR trains the
DJF joint filter with the RGB photos as guides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from restore.api import read_array
from tests.conftest import run_restore
from tests.tasks_helpers import mean_row

pytestmark = pytest.mark.slow

# The option file's UPS (window, img_range...) at 2 x 2 layers of width 16; a small MSRResNet.
TINY_UPS = ("--set", "network_g.embed_dim=16", "--set", "network_g.depths=[2, 2]")
SMALL_MSRRESNET = ("--set", "network_g={type: MSRResNet, num_feat: 32, num_block: 4}")


def _train_and_test(tmp_path: Path, option_file: str, network: tuple[str, ...], iterations: int, *overrides: str,
                    test_args: tuple[str, ...] = ()) -> Path:
    """Train with the quick-start file, `network` and `overrides`; then `restore test` the weights."""
    common = ("-opt", f"options/{option_file}", *network, "--set", f"path.experiments_root={tmp_path / 'exp'}",
              *overrides)
    trained = run_restore("train", *common, "--set", f"train.total_iter={iterations}",
                          "--set", f"val.val_freq={iterations}", "--set", "logger.print_freq=50", "--no-progress")
    assert trained.returncode == 0, trained.stderr[-3000:]
    weights = next((tmp_path / "exp").glob("*/models/net_g_ema_latest.safetensors"))
    report = tmp_path / "report"
    tested = run_restore("test", *common, "--weights", str(weights), "--out", str(report), *test_args)
    assert tested.returncode == 0, tested.stderr[-3000:]
    return report


def test_denoising_ups_beats_the_noisy_input(tmp_path):
    report = _train_and_test(tmp_path, "quickstart_denoise_s50.yml", TINY_UPS, 150, "--set", "train.optim_g.lr=1e-3",
                             test_args=("--no-save-img",))
    net, noisy = mean_row(report / "Set5_small", "UPS"), mean_row(report / "Set5_small", "noisy input")
    assert net["psnr"] > noisy["psnr"] + 3.0
    assert net["ssim"] > noisy["ssim"]


def test_jpeg_ups_beats_the_compressed_input(tmp_path):
    report = _train_and_test(tmp_path, "quickstart_jpeg_q40.yml", TINY_UPS, 300, "--set", "task.quality=10",
                             "--set", "datasets.train.gt_size=42", "--set", "datasets.train.batch_size_per_gpu=4",
                             "--set", "train.optim_g.lr=1e-3", "--set", "train.scheduler.milestones=[200]",
                             test_args=("--dataset", "datasets/Set5/LR_bicubic/X4", "--no-save-img"))
    net, jpeg = mean_row(report / "X4", "UPS"), mean_row(report / "X4", "JPEG input")
    assert net["psnr"] > jpeg["psnr"] + 0.1
    assert net["psnrb"] > jpeg["psnrb"]


def test_depth_network_beats_bicubic_and_writes_maps_in_their_format(shared, tmp_path):
    report = _train_and_test(tmp_path, "quickstart_depth_x4.yml", SMALL_MSRRESNET, 300,
                             "--set", "datasets.train.gt_size=96", "--set", "datasets.train.batch_size_per_gpu=8",
                             "--set", "train.optim_g.lr=1e-3", "--set", "train.pixel_opt={type: MSELoss}")
    scores = report / "Middlebury_C"
    assert mean_row(scores, "MSRResNet")["rmse"] < mean_row(scores, "Bicubic")["rmse"]
    restored = scores / "MSRResNet" / "teddy_2.mat"
    source = scipy.io.loadmat(shared / "data/depth/MSGNet_Middlebury/C/Depth/teddy_2.mat")["img_double"]
    saved = scipy.io.loadmat(restored)["img_double"]  # same variable and (cropped) size, float32 in its units
    assert saved.dtype == np.float32 and saved.shape == (source.shape[0] // 4 * 4, source.shape[1] // 4 * 4)
    assert np.abs(saved.astype(float) - source[: saved.shape[0], : saved.shape[1]]).mean() < 5
    figure = read_array(scores / "figures" / "teddy_2.png")  # LQ, Bicubic, MSRResNet, GT in a row
    assert figure.shape[2] == 3 and figure.shape[1] > 3.5 * figure.shape[0]
    assert read_array(scores / "figures" / "errors" / "teddy_2.png").shape[1] == figure.shape[1]


def test_guided_depth_network_beats_bicubic_with_its_rgb_guides(shared, tmp_path):
    report = _train_and_test(tmp_path, "quick_djf_depth_x4.yml", (), 150, "--set", "train.scheduler.milestones=[100]")
    scores = report / "Middlebury_C"
    assert mean_row(scores, "DJF")["rmse"] < mean_row(scores, "Bicubic")["rmse"] - 0.03  # 4.22 vs 4.29 here
    figure = read_array(scores / "figures" / "cones_2.png")  # LQ, Bicubic, DJF, GT; the guide beside it
    assert figure.shape[1] > 3.5 * figure.shape[0] and (scores / "figures" / "Guide" / "cones_2.jpg").is_file()
