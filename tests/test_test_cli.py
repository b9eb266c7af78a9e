"""`restore test` as a user meets it: what the report is called and where it goes, which overrides
apply, how columns are labelled, what figures show, and that nothing is written before every set
has been checked."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from restore.api import build_network, read_array, write_image
from restore.checkpoint import save_weights
from restore.cli import main
from restore.report.figures import nice_ceiling
from tests.conftest import DATASETS, REPO, run_restore
from tests.tasks_helpers import mean_row

SET5_X2 = ["--dataset", str(DATASETS / "Set5/HR"), "--lq", str(DATASETS / "Set5/LR_bicubic/X2"),
           "--filename-tmpl", "{}x2"]


@pytest.fixture(scope="module")
def motorcycle_maps(tmp_path_factory) -> Path:
    """Three 200x240 crops of Middlebury's Motorcycle disparity (float32 .npy, inf = unknown)."""
    import skimage.data

    folder = tmp_path_factory.mktemp("maps") / "Motorcycle"
    folder.mkdir()
    disparity = skimage.data.stereo_motorcycle()[2]
    for i, (top, left) in enumerate(((0, 0), (200, 300), (280, 480))):
        np.save(folder / f"crop{i}.npy", disparity[top : top + 200, left : left + 240])
    return folder


def _weights(path: Path, network: dict, task: dict, scale: int = 2) -> Path:
    torch.manual_seed(0)
    net = build_network(network, in_chans=3 if task["type"] == "sisr" else 1, scale=scale)
    return save_weights(path, net.state_dict(), network=network, task=task)


def test_a_report_is_named_after_the_experiment_and_scale_and_says_where_it_went(tmp_path):
    weights = _weights(tmp_path / "exp1" / "models" / "net_g_latest.safetensors",
                       {"type": "MSRResNet", "num_block": 1, "num_feat": 8}, {"type": "sisr", "scale": 2})
    result = run_restore("test", "--weights", str(weights), *SET5_X2, "--figures", "none", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "report: results/exp1_x2/Set5/index.html" in result.stdout
    assert (tmp_path / "results/exp1_x2/Set5/metrics.csv").is_file()
    assert (tmp_path / "results/exp1_x2/index.html").is_file()


def test_dataset_overrides_apply_to_the_dataset_set_or_are_refused(tmp_path, capsys):
    lq = ["--dataset", str(DATASETS / "Set5/HR"), "--lq", str(DATASETS / "Set5/LR_bicubic/X2")]
    common = ["-opt", str(REPO / "options/test_bicubic_set5.yml"), "--model", "baseline", "--figures", "none"]
    assert main(["test", *common, *lq, "--set", "datasets.test.dataroot_gt=/nonexistent",
                 "--out", str(tmp_path / "a")]) == 2
    assert "conflicts with --dataset" in " ".join(capsys.readouterr().err.split()) and not (tmp_path / "a").exists()
    # The template comes only from --set here, and the scores are Set5 x2's.
    assert main(["test", *common, *lq, "--scale", "2", "--set", "datasets.test.filename_tmpl='{}x2'",
                 "--out", str(tmp_path / "b")]) == 0
    assert mean_row(tmp_path / "b" / "Set5", "Bicubic")["psnr"] == pytest.approx(33.68, abs=0.01)


def test_lq_names_made_by_a_replacement_pair_with_their_gt(tmp_path):
    hr, lr = tmp_path / "Set5" / "HR", tmp_path / "Set5" / "LR"
    hr.mkdir(parents=True)
    lr.mkdir()
    for name in ("baby", "bird"):  # SelfExSR's naming
        shutil.copy(DATASETS / f"Set5/HR/{name}.png", hr / f"{name}_SRF_4_HR.png")
        shutil.copy(DATASETS / f"Set5/LR_bicubic/X4/{name}x4.png", lr / f"{name}_SRF_4_LR.png")
    args = ["test", "-opt", str(REPO / "options/test_bicubic_set5.yml"), "--model", "baseline", "--scale", "4",
            "--figures", "none"]
    assert main([*args, "--dataset", str(hr), "--lq", str(lr), "--lq-replace", "_HR=_LR",
                 "--out", str(tmp_path / "replaced")]) == 0
    assert main([*args, "--dataset", str(DATASETS / "Set5/HR"), "--lq", str(DATASETS / "Set5/LR_bicubic/X4"),
                 "--filename-tmpl", "{}x4", "--out", str(tmp_path / "set5")]) == 0
    rows = (tmp_path / "replaced/Set5/metrics.csv").read_text().splitlines()
    reference = {r.split(",")[1]: r for r in (tmp_path / "set5/Set5/metrics.csv").read_text().splitlines()}
    for row in rows[1:3]:
        name = row.split(",")[1].removesuffix("_SRF_4_HR")
        assert row.split(",")[2:] == reference[name].split(",")[2:]


def test_a_set_name_never_leaves_the_results_folder(tmp_path, write_options):
    path = write_options({"name": "esc", "task": {"type": "denoise", "sigma": 25, "color": "gray"},
                          "network_g": {"type": "Identity"},
                          "path": {"results_root": str(tmp_path / "root" / "results")},
                          "datasets": {"test": {"name": "../../escaped_set", "dataroot_gt": str(DATASETS / "Set12")}}})
    result = run_restore("test", "-opt", str(path), "--model", "baseline", cwd=tmp_path)
    error = " ".join(result.stderr.split())  # the CLI wraps at 100 columns
    assert result.returncode == 2 and "Traceback" not in error
    assert "datasets.test.name" in error and "'../../escaped_set' is not a plain name" in error
    assert not (tmp_path / "root").exists() and not (tmp_path / "escaped_set").exists()


def test_nothing_is_written_until_every_set_is_built_and_checked(tmp_path, write_options):
    path = write_options({
        "name": "two_sets", "task": {"type": "sisr", "scale": 2}, "network_g": {"type": "Bicubic"},
        "path": {"results_root": str(tmp_path / "results")},
        "datasets": {"test_1": {"name": "good", "dataroot_gt": str(DATASETS / "Set5/HR")},
                     "test_2": {"name": "bad", "dataroot_gt": str(DATASETS / "Set5/HR"),
                                "dataroot_lq": str(DATASETS / "Set5/LR_bicubic/X2"), "filename_tmpl": "{}x3"}}})
    result = run_restore("test", "-opt", str(path), "--model", "baseline", cwd=tmp_path)
    assert result.returncode == 2 and "no LQ image for GT" in " ".join(result.stderr.split())
    assert not (tmp_path / "results").exists()


def test_a_network_that_outputs_nan_is_an_error_not_a_score(tmp_path):
    network = {"type": "MSRResNet", "num_block": 1, "num_feat": 8}
    net = build_network(network, in_chans=3, out_chans=3, scale=2)
    state = {k: torch.full_like(v, 1e38) if k == "conv_first.weight" else v for k, v in net.state_dict().items()}
    weights = save_weights(tmp_path / "overflow.safetensors", state, network=network, task={"type": "sisr", "scale": 2})
    result = run_restore("test", "--weights", str(weights), *SET5_X2, "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "non-finite value(s) (NaN or inf)" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr and not (tmp_path / "out" / "Set5" / "metrics.csv").exists()


def test_large_sets_get_sorted_curves_and_the_baseline_is_named_for_what_it_is(tmp_path):
    import skimage.data

    folder = tmp_path / "crops"
    folder.mkdir()
    camera = skimage.data.camera()
    for i in range(45):
        write_image(folder / f"c{i:02d}.png", camera[(i // 9) * 64 : (i // 9) * 64 + 48,
                                                    (i % 9) * 48 : (i % 9) * 48 + 48, None])
    weights = _weights(tmp_path / "id.safetensors", {"type": "Identity"},
                       {"type": "denoise", "sigma": 25, "color": "gray"}, scale=1)
    assert main(["test", "--weights", str(weights), "--dataset", str(folder), "--model", "baseline",
                 "--figures", "worst", "3", "--out", str(tmp_path / "out")]) == 0
    report = tmp_path / "out" / "crops"
    assert "psnr (dB) noisy input" in (report / "metrics.md").read_text()
    chart = read_array(report / "psnr.png")
    assert chart.shape[1] == 700  # one sorted curve per model, not 45 bars
    page = (report / "index.html").read_text()
    assert page.count('<div class="figure"') == 3
    worst = sorted((float(r.split(",")[2]), r.split(",")[1]) for r in
                    (report / "metrics.csv").read_text().splitlines()[1:-1])[:3]
    assert re.findall(r"<h3>\d+\. (\w+)</h3>", page) == [name for _, name in worst]


def test_jpeg_baseline_is_the_jpeg_input(tmp_path):
    assert main(["test", "-opt", str(REPO / "options/test_jpeg_classic5.yml"), "--model", "baseline",
                 "--figures", "none", "--out", str(tmp_path)]) == 0
    header = (tmp_path / "classic5" / "metrics.md").read_text().splitlines()[2]
    assert "psnr (dB) JPEG input" in header and "Identity" not in header


def test_listed_metrics_keep_the_tasks_units_and_saved_depth_reproduces_the_table(motorcycle_maps, tmp_path,
                                                                                  write_options):
    path = write_options({"name": "moto", "task": {"type": "depth_sr", "scale": 4, "units": "px"},
                          "network_g": {"type": "Bicubic", "method": "pil"},
                          "val": {"metrics": {"rmse": {"type": "rmse"}}},
                          "datasets": {"test": {"name": "Motorcycle", "dataroot_gt": str(motorcycle_maps)}}})
    assert main(["test", "-opt", str(path), "--model", "baseline", "--out", str(tmp_path / "out")]) == 0
    report = tmp_path / "out" / "Motorcycle"
    assert "rmse (px) Bicubic" in (report / "metrics.md").read_text()
    rows = {r.split(",")[1]: float(r.split(",")[2]) for r in (report / "metrics.csv").read_text().splitlines()[1:]}
    for name in ("crop0", "crop1", "crop2"):
        gt, out = np.load(motorcycle_maps / f"{name}.npy"), np.load(report / "Bicubic" / f"{name}.npy")
        assert out.dtype == np.float32
        valid = np.isfinite(gt)
        assert np.sqrt(np.mean((out[valid].astype(np.float64) - gt[valid]) ** 2)) == pytest.approx(rows[name],
                                                                                                    abs=2e-6)


def _error_scales(page: str) -> list[float]:
    return [float(x) for x in re.findall(r"error maps: \|error\| \(px\), 0 to ([\d.e+-]+):", page)]


def test_error_maps_share_one_scale_per_set_unless_asked_per_image(motorcycle_maps, tmp_path):
    weights = _weights(tmp_path / "b.safetensors", {"type": "Bicubic", "method": "pil"},
                       {"type": "depth_sr", "scale": 4, "units": "px"}, scale=4)
    run = ["test", "--weights", str(weights), "--dataset", str(motorcycle_maps), "--model", "baseline"]
    assert main([*run, "--out", str(tmp_path / "set")]) == 0
    page = (tmp_path / "set" / "Motorcycle" / "index.html").read_text()
    scales = _error_scales(page)
    assert len(scales) == 3 and len(set(scales)) == 1 and "(one scale for every image)" in page
    errors = []
    for name in ("crop0", "crop1", "crop2"):
        gt = np.load(motorcycle_maps / f"{name}.npy")
        out = np.load(tmp_path / "set" / "Motorcycle" / "Bicubic" / f"{name}.npy")
        errors.append(np.abs(out - gt)[np.isfinite(gt)])
    expected = nice_ceiling(float(np.percentile(np.concatenate(errors), 99)))
    assert scales[0] == pytest.approx(expected, rel=0.15)
    assert main([*run, "--error-scale", "image", "--out", str(tmp_path / "image")]) == 0
    assert len(set(_error_scales((tmp_path / "image" / "Motorcycle" / "index.html").read_text()))) == 3


def test_a_large_map_is_shown_as_a_crop_of_its_worst_region(tmp_path):
    import skimage.data

    folder = tmp_path / "big"
    folder.mkdir()
    np.save(folder / "tiled.npy", np.tile(skimage.data.stereo_motorcycle()[2], (3, 2))[:1200, :1400])
    weights = _weights(tmp_path / "b.safetensors", {"type": "Bicubic", "method": "pil"},
                       {"type": "depth_sr", "scale": 4, "units": "px"}, scale=4)
    assert main(["test", "--weights", str(weights), "--dataset", str(folder), "--model", "baseline",
                 "--out", str(tmp_path / "out")]) == 0
    page = (tmp_path / "out" / "big" / "index.html").read_text()
    assert "crop 512x512 at x=" in page and "of the 1400x1200 map" in page
    figure = read_array(tmp_path / "out" / "big" / "figures" / "tiled.png")
    assert figure.shape[1] < 4 * 512 + 200  # LQ, Bicubic, GT and a colour bar, at full resolution


def test_depth_psnr_has_one_peak_whichever_way_the_set_is_given(shared, tmp_path):
    maps = shared / "data/depth/Middlebury/Depth"
    options = yaml.safe_load((REPO / "options/test_depth_middlebury.yml").read_text())
    weights = save_weights(tmp_path / "bicubic.safetensors", {}, network=options["network_g"], task=options["task"])
    assert main(["test", "-opt", str(REPO / "options/test_depth_middlebury.yml"), "--model", "baseline",
                 "--no-save-img", "--out", str(tmp_path / "file")]) == 0
    assert main(["test", "--weights", str(weights), "--dataset", str(maps), "--model", "baseline", "--no-save-img",
                 "--out", str(tmp_path / "weights")]) == 0
    by_file = mean_row(tmp_path / "file" / "Middlebury", "Bicubic")
    by_weights = mean_row(tmp_path / "weights" / "Middlebury", "Bicubic")
    assert by_file["psnr"] == pytest.approx(by_weights["psnr"], abs=1e-9) and by_file["rmse"] == pytest.approx(2.28,
                                                                                                             abs=0.01)
