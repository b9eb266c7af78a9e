"""`restore test` with the PS authors' released weights reproduces Table 1 of Park & Cho
(WACV 2025) on Set5 (Y channel, border crop = scale), each within 0.02 dB, and a small PS
network trains from scratch through `restore train`."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from restore.cli import main
from tests.conftest import REPO, run_restore

# The option files name the released weights as ../shared/weights/ps/...; `released` skips without them.
pytestmark = pytest.mark.slow

PAPER_SET5_PSNR = {  # Table 1
    ("drrn", 2): 37.79, ("drrn", 3): 34.12, ("drrn", 4): 31.85,
    ("srfbn", 2): 37.74,
}


def mean_scores(report: Path) -> dict[str, dict[str, float]]:
    """model -> metric -> mean, from a report's metrics.csv."""
    with (report / "metrics.csv").open() as f:
        rows = [row for row in csv.DictReader(f) if row["image"] == "mean"]
    return {row["model"]: {k: float(v) for k, v in row.items() if k not in ("model", "image")} for row in rows}


def released_test(option_file: str, out: Path, *extra: str) -> None:
    assert main(["test", "-opt", str(REPO / "options" / option_file), "--model", "net", "--no-save-img",
                 "--out", str(out), "--device", "cpu", *extra]) == 0


@pytest.mark.usefixtures("released")
def test_drrn_ps_released_weights_reproduce_set5_x2_x3_x4_with_truncated_outputs(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    released_test("ps_drrn_released_test.yml", tmp_path)
    for scale in (2, 3, 4):
        psnr = mean_scores(tmp_path / f"Set5_x{scale}")["DRRN_PS"]["psnr"]
        assert abs(psnr - PAPER_SET5_PSNR["drrn", scale]) <= 0.02, (scale, psnr)


@pytest.mark.usefixtures("released")
def test_srfbn_s_ps_released_weights_reproduce_set5_x2_with_rounded_outputs(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    released_test("ps_srfbn_x2_released_test.yml", tmp_path)
    psnr = mean_scores(tmp_path / "Set5")["SRFBN_S_PS"]["psnr"]
    assert abs(psnr - PAPER_SET5_PSNR["srfbn", 2]) <= 0.02, psnr


@pytest.mark.usefixtures("released")
def test_truncating_costs_srfbn_s_ps_about_a_tenth_of_a_db(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    released_test("ps_srfbn_x2_released_test.yml", tmp_path, "--quantize", "truncate")
    psnr = mean_scores(tmp_path / "Set5")["SRFBN_S_PS"]["psnr"]
    assert 0.05 <= PAPER_SET5_PSNR["srfbn", 2] - psnr <= 0.15, psnr


def test_small_drrn_ps_trains_from_scratch_past_bicubic_on_set5(tmp_path):
    args = ["--set", f"path.experiments_root={tmp_path / 'experiments'}",
            "--set", f"path.results_root={tmp_path / 'results'}"]
    trained = run_restore("train", "-opt", "options/ps_drrn_quick_x2.yml", "--no-progress", *args)
    assert trained.returncode == 0, trained.stderr
    log = next((tmp_path / "experiments/ps_drrn_quick_x2/logs").glob("train_*.log")).read_text()
    losses = [float(v) for v in re.findall(r"l_pix ([0-9.e+-]+)", log)]
    val_psnr = [float(v) for v in re.findall(r"\[val Set5 @ \d+\] psnr ([0-9.]+)", log)]
    assert len(losses) == 15 and max(losses[-5:]) < 0.8 * losses[0], losses
    assert len(val_psnr) == 3 and val_psnr[-1] > val_psnr[0], val_psnr

    tested = run_restore("test", "-opt", "options/ps_drrn_quick_x2.yml", "--no-save-img", *args)
    assert tested.returncode == 0, tested.stderr
    scores = mean_scores(tmp_path / "results/ps_drrn_quick_x2/Set5")
    assert scores["DRRN_PS"]["psnr"] > scores["Bicubic"]["psnr"], scores

