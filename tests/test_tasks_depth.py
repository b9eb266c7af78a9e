"""Depth-map SR: the literature's protocol (PIL bicubic, HR min/max normalisation, RMSE in the
data's units), masking of invalid pixels, depth file formats in and out, and the per-map figure."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from restore.api import METRICS, DataError, read_array, write_image
from tests.tasks_helpers import baseline_output, mean_row, restore_test, task

RMSE, DEPTH_PSNR, DEPTH_SSIM = METRICS.get("rmse"), METRICS.get("depth_psnr"), METRICS.get("depth_ssim")


@pytest.fixture(scope="module")
def motorcycle() -> np.ndarray:
    """Middlebury 2014 Motorcycle ground-truth disparity (float32, inf = unknown), from scikit-image."""
    import skimage.data

    return skimage.data.stereo_motorcycle()[2]


@pytest.mark.parametrize(("scale", "literature"), [(4, 2.28), (16, 6.37)])
def test_bicubic_on_middlebury_gives_the_literature_rmse(shared, tmp_path, scale, literature):
    assert restore_test("-opt", "options/test_depth_middlebury.yml", "--model", "baseline", "--no-save-img",
                        "--set", f"task.scale={scale}", out=tmp_path) == 0
    assert mean_row(tmp_path / "Middlebury", "Bicubic")["rmse"] == pytest.approx(literature, abs=0.05)


def test_restore_test_on_a_depth_folder_writes_scores_maps_in_their_format_and_figures(shared, tmp_path):
    folder = tmp_path / "maps"
    folder.mkdir()
    shutil.copy(shared / "data/depth/NYUv2_samples/Depth/1000.npy", folder)  # float32 metres
    shutil.copy(shared / "data/depth/MSGNet_Middlebury/C/Depth/venus_2.mat", folder)  # MATLAB v5
    disparity = read_array(shared / "data/depth/Middlebury/Depth/Middlebury_05_output_depth.png")
    write_image(folder / "mm16.png", (disparity.astype(np.uint16) * 40))  # a 16-bit PNG
    out = tmp_path / "report"
    assert restore_test("-opt", "options/ups_depth_x16.yml", "--dataset", str(folder), "--model", "baseline",
                        out=out) == 0
    report = out / "maps"
    text = (report / "metrics.csv").read_bytes().decode()  # bytes: no newline translation hides a "\r"
    rows = text.split("\n")[:-1]
    assert "\r" not in text and rows[0] == "model,image,rmse,psnr,ssim"  # the option file's val.metrics
    assert {r.split(",")[1] for r in rows[1:]} == {"1000", "mm16", "venus_2", "mean"}
    saved = report / "Bicubic"
    npy = np.load(saved / "1000.npy")
    assert npy.dtype == np.float32 and npy.shape == (480, 640) and 0.5 < npy.mean() < 7  # metres, x16-cropped
    tiff = read_array(saved / "mm16.tiff")  # a 16-bit source: float32, not rounded back to integers
    assert tiff.dtype == np.float32 and tiff.max() > 255 and not np.array_equal(tiff, np.round(tiff))
    assert (saved / "venus_2.mat").is_file() and read_array(saved / "venus_2.mat").shape[:2] == (368, 432)
    for name in ("1000", "mm16", "venus_2"):
        figure = read_array(report / "figures" / f"{name}.png")  # LQ, Bicubic, GT over |Bicubic - GT|
        assert figure.dtype == np.uint8 and figure.shape[2] == 3 and figure.shape[1] > figure.shape[0]


def test_denormalising_restores_the_data_units_without_swapping_min_and_max():
    depth = np.linspace(2.0, 7.0, 64 * 64, dtype=np.float32).reshape(64, 64, 1)  # metres
    depth_sr = task(type="depth_sr", scale=4)
    sample = depth_sr.prepare(depth, None, name="ramp")
    assert (sample.meta["depth_min"], sample.meta["depth_max"]) == (2.0, 7.0)
    assert sample.gt[0, 0, 0] == 0.0 and sample.gt[-1, -1, 0] == 1.0
    np.testing.assert_allclose(depth_sr.to_data(sample.gt, sample.meta), depth, rtol=1e-6)


def test_lr_from_disk_is_normalised_with_the_hr_range():
    hr = np.full((16, 16, 1), 10.0, np.float32)
    hr[0, 0] = 0.5
    hr[-1, -1] = 20.0
    lr = np.full((4, 4, 1), 10.0, np.float32)
    sample = task(type="depth_sr", scale=4, zero_is_invalid=False).prepare(hr, lr, name="x")
    np.testing.assert_allclose(sample.lq, (10.0 - 0.5) / 19.5)


def test_invalid_pixels_are_filled_for_the_network_and_masked_out_of_every_metric(motorcycle):
    depth_sr = task(type="depth_sr", scale=4, units="px")
    sample = depth_sr.prepare(motorcycle, None, name="motorcycle")
    valid = sample.meta["valid"]
    assert np.isfinite(sample.gt).all() and not valid.all()
    assert sample.meta["depth_max"] == pytest.approx(np.nanmax(np.where(np.isinf(motorcycle), np.nan, motorcycle)))
    context = depth_sr.metric_context(sample.meta)
    gt = depth_sr.to_data(sample.gt, sample.meta)
    out = depth_sr.to_data(baseline_output(depth_sr, depth_sr.degrade(sample.gt, rng=None, train=False)),
                           sample.meta)
    spoiled = out.copy()
    spoiled[~valid] = 1e6  # whatever the network says where the truth is unknown does not count
    assert RMSE(spoiled, gt, context=context) == RMSE(out, gt, context=context) > 0
    assert DEPTH_SSIM(spoiled, gt, context=context) == pytest.approx(DEPTH_SSIM(out, gt, context=context))
    share = METRICS.get("invalid_pixels")(out, gt, context=context)
    assert share == pytest.approx(100 * np.isinf(motorcycle[:, :740]).mean())
    assert 5 < share < 10


def test_zero_depth_counts_as_missing_unless_the_protocol_keeps_it():
    depth = np.arange(1, 65, dtype=np.float32).reshape(8, 8, 1)
    depth[2, 3] = 0
    assert not task(type="depth_sr", scale=2).prepare(depth, None, name="z").meta["valid"][2, 3]
    kept = task(type="depth_sr", scale=2, zero_is_invalid=False).prepare(depth, None, name="z")
    assert kept.meta["valid"].all() and kept.meta["depth_min"] == 0


def test_a_map_with_no_valid_pixel_is_refused_by_name():
    with pytest.raises(DataError, match="empty_map: has no valid depth"):
        task(type="depth_sr", scale=2).prepare(np.zeros((8, 8, 1), np.uint16), None, name="empty_map")


def test_nyu_rmse_is_in_centimetres_after_the_six_pixel_border_crop():
    gt = np.full((48, 64, 1), 3.0, np.float32)
    context = {"valid": np.ones((48, 64), bool), "unit_scale": 100.0}
    off_by_a_centimetre = gt + 0.01
    assert RMSE(off_by_a_centimetre, gt, crop_border=6, context=context) == pytest.approx(1.0, rel=1e-4)
    wrong_border = gt.copy()
    wrong_border[:6] += 1.0
    assert RMSE(wrong_border, gt, crop_border=6, context=context) == 0.0
    assert RMSE(wrong_border, gt, crop_border=0, context=context) > 30


def test_the_rmse_column_is_labelled_with_the_tasks_units():
    from restore.metrics import MetricSet

    metrics = MetricSet(task(type="depth_sr", scale=4, units="8-bit levels", data_peak=255).default_metrics())
    assert metrics.unit("rmse") == "8-bit levels" and metrics.unit("psnr") == "dB"


def test_depth_psnr_is_reported_only_with_the_datas_own_peak():
    assert "psnr" not in task(type="depth_sr", scale=4, units="cm", unit_scale=100).default_metrics()
    with_peak = task(type="depth_sr", scale=4, data_peak=255).default_metrics()
    assert with_peak["psnr"]["data_range"] == 255 and with_peak["ssim"]["data_range"] == 255


def test_depth_psnr_and_ssim_use_an_explicit_peak():
    gt = np.linspace(100.0, 600.0, 32 * 32).reshape(32, 32, 1)
    out = gt + 5.0
    assert DEPTH_PSNR(out, gt, data_range="gt_range") == pytest.approx(20 * np.log10(500 / 5))
    assert DEPTH_PSNR(out, gt, data_range="gt_max") == pytest.approx(20 * np.log10(600 / 5))
    assert DEPTH_PSNR(out, gt, data_range=255.0) == pytest.approx(20 * np.log10(255 / 5))
    assert DEPTH_SSIM(gt, gt) == pytest.approx(1.0)
    assert DEPTH_SSIM(out, gt, data_range="gt_range") < 1.0


def test_reports_show_maps_in_reported_units_and_errors_only_where_metrics_look(motorcycle):
    depth_sr = task(type="depth_sr", scale=4, units="cm", unit_scale=0.1, border_crop=6)
    sample = depth_sr.prepare(motorcycle[:200, :300], None, name="crop")
    lq = depth_sr.degrade(sample.gt, rng=None, train=False)
    data = {"LQ": depth_sr.to_data(lq, sample.meta), "Bicubic": depth_sr.to_data(baseline_output(depth_sr, lq),
                                                                                sample.meta)}
    data["GT"] = depth_sr.to_data(sample.gt, sample.meta)
    shown = depth_sr.display(data, sample.meta)
    valid = sample.meta["valid"]
    assert shown.maps["LQ"].shape == (50, 75) and np.isnan(shown.maps["GT"][~valid]).all()  # unknown: no data
    np.testing.assert_allclose(shown.maps["GT"][valid], data["GT"][..., 0][valid] * 0.1, rtol=1e-6)
    assert shown.legend.low == pytest.approx(np.nanmin(shown.maps["GT"]))
    assert shown.legend.label.startswith("depth (cm)")
    error, units = depth_sr.error_map(data["Bicubic"], data["GT"], sample.meta)
    assert units == "cm" and np.isnan(error[:6]).all() and np.isnan(error[:, -6:]).all()  # the cropped border
    scored = np.isfinite(error)
    assert np.sqrt(np.mean(error[scored] ** 2)) == pytest.approx(
        RMSE(data["Bicubic"], data["GT"], crop_border=6, context=depth_sr.metric_context(sample.meta)), rel=1e-5)


def test_an_lr_map_of_the_wrong_size_is_named():
    with pytest.raises(DataError, match="scene: LQ is 5x5 but GT 16x16 at scale 4 needs LQ 4x4"):
        task(type="depth_sr", scale=4).prepare(np.ones((16, 16, 1)), np.ones((5, 5, 1)), name="scene")
