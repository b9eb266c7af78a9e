"""How depth maps look in test reports: every map colour-mapped on the GT's valid range (invalid
GT pixels grey), the LR input at its own size, the RGB guide as a photo, and each output's
|error| in the reported units with the pixels the metrics do not score left out (NaN)."""

from __future__ import annotations

import numpy as np

from restore.api import Display, Legend


def _plane(img: np.ndarray) -> np.ndarray:
    return (img[..., 0] if img.ndim == 3 else img).astype(np.float32)


def scored_mask(valid: np.ndarray | None, shape: tuple[int, int], crop_border: int) -> np.ndarray:
    """Pixels the metrics score: valid GT pixels outside the border crop."""
    mask = np.ones(shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool).copy()
    if crop_border:
        mask[:crop_border], mask[-crop_border:] = False, False
        mask[:, :crop_border], mask[:, -crop_border:] = False, False
    return mask


def depth_display(panels: dict[str, np.ndarray], *, valid: np.ndarray | None, unit_scale: float, units: str,
                  quantity: str) -> Display:
    """`panels` (data units) as maps in reported units on one colour scale, the GT's valid range."""
    maps = {label: _plane(img) * np.float32(unit_scale) for label, img in panels.items() if label != "Guide"}
    gt = maps["GT"]
    mask = np.isfinite(gt) if valid is None else np.asarray(valid, dtype=bool) & np.isfinite(gt)
    for label, plane in maps.items():
        if plane.shape == gt.shape:
            maps[label] = np.where(mask, plane, np.nan)
    shown = gt[mask] if mask.any() else np.zeros(1, np.float32)
    legend = Legend(float(shown.min()), float(shown.max()), "turbo", f"{quantity}{f' ({units})' if units else ''}, "
                    "GT's range in this image")
    images = {"Guide": panels["Guide"]} if "Guide" in panels else {}
    return Display(images=images, maps=maps, legend=legend)


def depth_error(output: np.ndarray, gt: np.ndarray, *, valid: np.ndarray | None, unit_scale: float,
                crop_border: int) -> np.ndarray:
    """|output - GT| in reported units; NaN where the metrics do not look."""
    error = np.abs(_plane(output) - _plane(gt)) * np.float32(unit_scale)
    return np.where(scored_mask(valid, error.shape, crop_border), error, np.nan)
