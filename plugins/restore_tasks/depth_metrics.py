"""Depth metrics: RMSE, PSNR and SSIM in the task's units, over valid pixels only.

Inputs are HW1 maps in the file's units (``DepthSR.to_data``); the task's context supplies the
validity mask of the GT and `unit_scale` (e.g. 100 for metres -> cm). `crop_border` pixels are
dropped from each side first (6 in the NYU-v2 / RGB-D-D protocol).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from restore.api import register_metric

DataRange = float | Literal["gt_range", "gt_max"]


def _masked(output: np.ndarray, gt: np.ndarray, crop_border: int,
            context: Mapping[str, Any] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(output, gt, valid) as HW float64 in reported units, border-cropped."""
    context = context or {}
    scale = float(context.get("unit_scale", 1.0))
    out = output[..., 0] if output.ndim == 3 else output
    ref = gt[..., 0] if gt.ndim == 3 else gt
    out, ref = out.astype(np.float64) * scale, ref.astype(np.float64) * scale
    valid = np.isfinite(ref)
    if context.get("valid") is not None:
        valid &= np.asarray(context["valid"], dtype=bool)
    if crop_border:
        window = (slice(crop_border, -crop_border), slice(crop_border, -crop_border))
        out, ref, valid = out[window], ref[window], valid[window]
    return out, ref, valid


def _rmse(out: np.ndarray, ref: np.ndarray, valid: np.ndarray) -> float:
    if not valid.any():
        return float("nan")
    return float(np.sqrt(np.mean((out[valid] - ref[valid]) ** 2)))


def _peak(ref: np.ndarray, valid: np.ndarray, data_range: DataRange) -> float:
    if data_range == "gt_range":
        return float(ref[valid].max() - ref[valid].min())
    if data_range == "gt_max":
        return float(ref[valid].max())
    return float(data_range)


@register_metric(name="rmse", aliases=("depth_rmse",), higher_is_better=False)
def rmse(output: np.ndarray, gt: np.ndarray, *, crop_border: int = 0,
         context: Mapping[str, Any] | None = None) -> float:
    """Root-mean-square error over valid pixels, in the task's units (e.g. cm)."""
    return _rmse(*_masked(output, gt, crop_border, context))


@register_metric(name="depth_psnr", unit="dB")
def depth_psnr(output: np.ndarray, gt: np.ndarray, *, crop_border: int = 0, data_range: DataRange = "gt_range",
               context: Mapping[str, Any] | None = None) -> float:
    """PSNR over valid pixels with peak `data_range`: the GT's valid range (``gt_range``), its
    maximum (``gt_max``) or a number in the reported units (255 for 8-bit disparity)."""
    out, ref, valid = _masked(output, gt, crop_border, context)
    error = _rmse(out, ref, valid)
    if not np.isfinite(error):
        return error
    return float("inf") if error == 0 else float(20.0 * np.log10(_peak(ref, valid, data_range) / error))


@register_metric(name="depth_ssim")
def depth_ssim(output: np.ndarray, gt: np.ndarray, *, crop_border: int = 0, data_range: DataRange = "gt_range",
               context: Mapping[str, Any] | None = None) -> float:
    """SSIM (Gaussian window, sigma 1.5, as Wang et al.) averaged over valid pixels."""
    from skimage.metrics import structural_similarity

    out, ref, valid = _masked(output, gt, crop_border, context)
    if not valid.any():
        return float("nan")
    # Invalid pixels take the GT's (filled) value in both maps, so they sway no window either.
    ref = np.where(np.isfinite(ref), ref, ref[valid].mean())
    out = np.where(valid & np.isfinite(out), out, ref)
    _, ssim_map = structural_similarity(ref, out, data_range=_peak(ref, valid, data_range), gaussian_weights=True,
                                        sigma=1.5, use_sample_covariance=False, full=True)
    return float(ssim_map[valid].mean())


@register_metric(name="invalid_pixels", higher_is_better=False, unit="%")
def invalid_pixels(output: np.ndarray, gt: np.ndarray, *, crop_border: int = 0,
                   context: Mapping[str, Any] | None = None) -> float:
    """Share of GT pixels masked out of the depth metrics (zero or non-finite depth), in percent."""
    _, _, valid = _masked(output, gt, crop_border, context)
    return float(100.0 * (1.0 - valid.mean()))
