"""Depth-map super-resolution: single-channel depth in its own units.

Protocol of the depth-SR literature (DKN, FDSR, DCTNet...): crop the HR map to a multiple of
the scale, make LR by bicubic downsampling of the float map (Pillow by default), normalise both
with the HR map's min/max, and report RMSE after de-normalising, in the data's units times
`unit_scale` (x100: metres -> cm for NYU-v2; x0.1: mm -> cm for RGB-D-D). Invalid pixels
(non-finite, and zeros unless `zero_is_invalid` is false) are filled with their nearest valid
neighbour for the network and masked out of every metric.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from restore.api import DataError, Display, OptionError, Sample, Task, mod_crop, register_task

from .depth_figure import depth_display, depth_error
from .depth_io import h5_variable, mat_variable, write_depth
from .resize import ResizeMethod, resize
from .sisr import check_divisible

# Formats whose depth variable name must be kept when writing results back.
_NAMED_FORMATS = {".mat": mat_variable, ".h5": h5_variable, ".hdf5": h5_variable}
# Formats that hold float32 maps; results from any other file (8/16-bit images) become float32 TIFF.
_FLOAT_FORMATS = (".npy", ".pfm", ".mat", ".h5", ".hdf5")


def depth_channel(raw: np.ndarray, name: str) -> np.ndarray:
    """One HW float64 map from an array as read (gray files saved as 3 equal channels accepted)."""
    if raw.ndim == 2:
        raw = raw[:, :, None]
    if raw.shape[2] > 1:
        if not all(np.array_equal(raw[:, :, 0], raw[:, :, c], equal_nan=True) for c in range(1, raw.shape[2])):
            raise DataError(f"{name}: has {raw.shape[2]} different channels; a depth map must have one.")
    return raw[:, :, 0].astype(np.float64)


def fill_invalid(depth: np.ndarray, valid: np.ndarray, name: str) -> np.ndarray:
    """`depth` with every invalid pixel replaced by its nearest valid neighbour."""
    if valid.all():
        return depth
    if not valid.any():
        raise DataError(f"{name}: has no valid depth pixel (all zero or non-finite).")
    from scipy.ndimage import distance_transform_edt

    nearest = distance_transform_edt(~valid, return_distances=False, return_indices=True)
    return depth[tuple(nearest)]


@register_task(name="depth_sr", aliases=("depth",))
class DepthSR(Task):
    """Depth-map SR by `scale` (x4/x8/x16). `downsample`: how LR is made (``pil`` = the
    literature's Pillow bicubic on float maps, ``matlab``, ``torch``); the bicubic baseline uses
    the same method. `normalize`: ``minmax`` (per-image HR min/max, the literature) or ``fixed``
    (`value_range`). Metrics are in `units` = file units x `unit_scale`, with `border_crop`
    pixels cropped from each side (6 in the FDSR/SGNet protocol). PSNR is reported only with a
    `data_peak` (the data's own peak in reported units, 255 for 8-bit maps); `quantity` says
    whether the maps hold depth or disparity (labels only)."""

    in_chans = 1
    out_chans = 1
    unit_range = False  # per-image min/max normalisation: datasets prepare whole maps

    def __init__(self, scale: int = 4, downsample: ResizeMethod = "pil",
                 normalize: Literal["minmax", "fixed"] = "minmax", value_range: tuple[float, float] | None = None,
                 border_crop: int = 0, units: str = "", unit_scale: float = 1.0, zero_is_invalid: bool = True,
                 data_peak: float | None = None, quantity: Literal["depth", "disparity"] = "depth") -> None:
        if scale < 1:
            raise OptionError(f"task.scale: must be 1 or more, got {scale}.")
        if normalize == "fixed" and (value_range is None or value_range[1] <= value_range[0]):
            raise OptionError("task.value_range: normalize 'fixed' needs value_range [low, high] with low < high.")
        if border_crop < 0 or unit_scale <= 0:
            raise OptionError("task: border_crop must be >= 0 and unit_scale > 0.")
        if data_peak is not None and not data_peak > 0:
            raise OptionError(f"task.data_peak: must be a positive number (255 for 8-bit maps), got {data_peak}.")
        self.scale = scale
        self.downsample = downsample
        self.normalize = normalize
        self.value_range = value_range
        self.border_crop = border_crop
        self.units = units
        self.unit_scale = unit_scale
        self.zero_is_invalid = zero_is_invalid
        self.data_peak = data_peak
        self.quantity = quantity
        self.baseline = {"type": "Bicubic", "method": downsample}
        self.saved_as = "float32 maps in the data's own units (the source's format for .npy/.mat/.h5/.pfm, else TIFF)"

    # -- network space ---------------------------------------------------------------------
    def valid_mask(self, depth: np.ndarray) -> np.ndarray:
        valid = np.isfinite(depth)
        return valid & (depth != 0) if self.zero_is_invalid else valid

    def bounds(self, depth: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
        """(low, high) mapped to (0, 1) in network space."""
        if self.normalize == "fixed":
            return float(self.value_range[0]), float(self.value_range[1])
        values = depth if valid.all() else depth[valid]  # (indexing copies: skip it when it can)
        return float(values.min()), float(values.max())

    @staticmethod
    def _scaled(depth: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
        low, high = bounds
        span = high - low or 1.0  # a constant map maps to 0
        return ((depth - low) / span).astype(np.float32)[:, :, None]

    def _filled(self, depth: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(map with invalid pixels filled, validity mask)."""
        valid = self.valid_mask(depth)
        return fill_invalid(depth, valid, name), valid

    def to_network(self, img: np.ndarray, *, name: str) -> np.ndarray:
        """One map on its own (no GT): normalised by its own valid min/max."""
        depth = depth_channel(img, name)
        filled, valid = self._filled(depth, name)
        return self._scaled(filled, self.bounds(depth, valid))

    def prepare(self, gt: np.ndarray | None, lq: np.ndarray | None, *, name: str,
                source: Path | None = None) -> Sample:
        if gt is None and lq is None:
            raise DataError(f"{name}: neither GT nor LQ was given.")
        gt_d = None if gt is None else depth_channel(mod_crop(gt, self.scale), name)
        lq_d = None if lq is None else depth_channel(lq, name)
        if gt_d is not None and lq_d is not None:
            self.check_lq_size(gt_d.shape, lq_d.shape, name)
        # The HR map (or, without one, the LR map) sets the normalisation of both.
        reference = gt_d if gt_d is not None else lq_d
        filled, valid = self._filled(reference, name)
        bounds = self.bounds(reference, valid)
        meta: dict[str, Any] = {"name": name, "depth_min": bounds[0], "depth_max": bounds[1],
                                "dtype": str((gt if gt is not None else lq).dtype), **self._source_format(source)}
        gt_n = lq_n = None
        if gt_d is not None:
            meta["valid"] = valid
            gt_n = self._scaled(filled, bounds)
        if lq_d is not None:
            lq_n = self._scaled(self._filled(lq_d, name)[0] if gt_d is not None else filled, bounds)
        return Sample(gt_n, lq_n, meta)

    def degrade(self, gt: np.ndarray, *, rng: np.random.Generator, train: bool, scale: int | None = None) -> np.ndarray:
        scale = scale or self.scale
        check_divisible(gt, scale, "depth_sr")
        return resize(gt, 1.0 / scale, self.downsample)

    # -- results ---------------------------------------------------------------------------
    def to_data(self, img: np.ndarray, meta: dict[str, Any], quantize: str = "round") -> np.ndarray:
        """Network space -> the file's units (float32; `quantize` does not apply to depth)."""
        low, high = meta["depth_min"], meta["depth_max"]
        span = high - low or 1.0
        return (img.astype(np.float64) * span + low).astype(np.float32)

    def metric_context(self, meta: dict[str, Any]) -> dict[str, Any]:
        return {"valid": meta.get("valid"), "unit_scale": self.unit_scale}

    def default_metrics(self) -> dict[str, dict[str, Any]]:
        """RMSE in `units`; PSNR only when the data have a peak (`data_peak`); SSIM with that peak,
        else with each GT's range; the share of invalid pixels."""
        crop = self.border_crop
        peak = self.data_peak
        metrics: dict[str, dict[str, Any]] = {
            "rmse": {"type": "rmse", "crop_border": crop, **({"unit": self.units} if self.units else {})},
        }
        if peak is not None:
            metrics["psnr"] = {"type": "depth_psnr", "crop_border": crop, "data_range": peak}
        metrics["ssim"] = {"type": "depth_ssim", "crop_border": crop, "data_range": peak or "gt_range"}
        metrics["invalid"] = {"type": "invalid_pixels", "crop_border": crop}
        return metrics

    def _source_format(self, source: Path | None) -> dict[str, Any]:
        if source is None:
            return {}
        suffix = Path(source).suffix.lower()
        found: dict[str, Any] = {"format": suffix if suffix in _FLOAT_FORMATS else ".tiff"}
        if suffix in _NAMED_FORMATS:  # the variable name is looked up when an output is saved
            found["source"] = Path(source)
        return found

    def save_output(self, data: np.ndarray, stem: Path, meta: dict[str, Any]) -> Path:
        """Write the map as float32 in the data's units, so that metrics recomputed from the file
        give the table's values: in the source's format and variable name for .npy/.mat/.h5/.pfm,
        as a float32 TIFF for 8/16-bit image sources (an integer file would round the output)."""
        suffix = meta.get("format", ".tiff")
        variable = _NAMED_FORMATS[suffix](meta["source"]) if "source" in meta else "depth"
        return write_depth(Path(f"{stem}{suffix}"), data, "float32", variable)

    def display(self, panels: dict[str, np.ndarray], meta: dict[str, Any]) -> Display:
        return depth_display(panels, valid=meta.get("valid"), unit_scale=self.unit_scale, units=self.units,
                             quantity=self.quantity)

    def error_map(self, output: np.ndarray, gt: np.ndarray, meta: dict[str, Any]) -> tuple[np.ndarray, str] | None:
        return depth_error(output, gt, valid=meta.get("valid"), unit_scale=self.unit_scale,
                           crop_border=self.border_crop), self.units

    def describe(self) -> str:
        units = f", RMSE in {self.units}" if self.units else ""
        return f"depth SR x{self.scale} (LR by {self.downsample} bicubic, {self.normalize} normalisation{units})"
