"""UPS-S trains from scratch through `restore train` on bundled data (scikit-image photos, Set5)."""

from __future__ import annotations

import re

import pytest
import torch

from restore import tester
from restore.build import build_task, network_for_task
from restore.checkpoint import save_weights
from restore.options import load_options
from restore.trainer import train

ITERATIONS = 100


def set5_psnr(options, weights, out):
    """(network, bicubic) PSNR on Set5 x2 as `restore test` computes them."""
    sets = tester.test_sets(options, None, None, "{}", None)  # the option file's val set: Set5 x2
    runs = tester.run_tests(options, weights=str(weights), models="both", sets=sets, out_root=out,
                            save_images=False, progress=False)
    scores = tester.summarize(runs)["Set5"]
    return scores[options.network_g["type"]]["psnr"], scores["Bicubic"]["psnr"]


@pytest.mark.slow
def test_ups_s_learns_from_scratch_on_bundled_photos(tmp_path):
    options = load_options("options/quick_ups_s_sr_x2.yml", [
        f"path.experiments_root={tmp_path / 'experiments'}", f"train.total_iter={ITERATIONS}",
        f"val.val_freq={ITERATIONS}", "logger.print_freq=20", f"logger.save_checkpoint_freq={ITERATIONS}",
    ])
    torch.manual_seed(options.manual_seed)
    untrained = network_for_task(options.network_g, build_task(options.task, options.scale))
    save_weights(tmp_path / "untrained.safetensors", untrained.state_dict(), network=options.network_g)
    psnr_before, psnr_bicubic = set5_psnr(options, tmp_path / "untrained.safetensors", tmp_path / "before")

    result = train(options, progress=False)

    log = next((result.experiment_dir / "logs").glob("train_*.log")).read_text()
    losses = [float(v) for v in re.findall(r"l_pix ([0-9.e+-]+)", log)]
    assert len(losses) == ITERATIONS // 20
    assert losses[-1] < 0.6 * losses[0], f"the L1 loss did not fall: {losses}"
    psnr_after = result.last_validation["Set5/psnr"]
    assert psnr_after > psnr_before + 10, f"Set5 x2 PSNR {psnr_before:.2f} -> {psnr_after:.2f} dB"
    print(f"UPS-S, {ITERATIONS} iterations: Set5 x2 {psnr_before:.2f} -> {psnr_after:.2f} dB "
          f"(bicubic {psnr_bicubic:.2f}); L1 {losses}")
