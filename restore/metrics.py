"""Metric registry entries and the calling convention for metrics.

A metric is ``fn(output, gt, *, <options>, context) -> float`` where `output` and `gt` are HWC
arrays in data units (RGB uint8 for images) and `context` is what the task adds (e.g. a
validity mask). Options come from ``val.metrics.<name>`` and are validated against `fn`'s
signature; ``unit:`` in a block only labels tables and plots (e.g. ``cm`` for depth RMSE).
PSNR and SSIM are basicsr's implementations (Y channel of BT.601 with MATLAB coefficients,
border crop, 8-bit data), so numbers match the papers that use them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np

from restore.registry import METRICS
from restore.validation import check_options

T = TypeVar("T")


def register_metric(obj: T | None = None, *, name: str | None = None, aliases: tuple[str, ...] = (),
                    higher_is_better: bool = True, unit: str = "") -> Any:
    """Register a metric function; `higher_is_better` drives best-checkpoint tracking and plots."""
    return METRICS.register(obj, name=name, aliases=aliases, higher_is_better=higher_is_better, unit=unit)


def _to_bgr(img: np.ndarray) -> np.ndarray:
    # basicsr's Y conversion expects OpenCV channel order.
    return img[:, :, ::-1] if img.ndim == 3 and img.shape[2] == 3 else img


@register_metric(name="psnr", aliases=("calculate_psnr",), unit="dB")
def psnr(output: np.ndarray, gt: np.ndarray, *, crop_border: int = 0, test_y_channel: bool = False,
         context: Mapping[str, Any] | None = None) -> float:
    """PSNR (dB, peak 255) of 8-bit images; on the Y channel if `test_y_channel`."""
    from basicsr.metrics.psnr_ssim import calculate_psnr

    return float(calculate_psnr(_to_bgr(output), _to_bgr(gt), crop_border, test_y_channel=test_y_channel))


@register_metric(name="ssim", aliases=("calculate_ssim",))
def ssim(output: np.ndarray, gt: np.ndarray, *, crop_border: int = 0, test_y_channel: bool = False,
         context: Mapping[str, Any] | None = None) -> float:
    """SSIM (Wang et al., Gaussian 11x11, sigma 1.5) of 8-bit images; on Y if `test_y_channel`."""
    from basicsr.metrics.psnr_ssim import calculate_ssim

    return float(calculate_ssim(_to_bgr(output), _to_bgr(gt), crop_border, test_y_channel=test_y_channel))


class MetricSet:
    """The metrics of one validation/test run, built and validated from their option blocks."""

    def __init__(self, options: Mapping[str, Mapping[str, Any]], path: str = "val.metrics") -> None:
        self.items: list[tuple[str, Any, dict[str, Any], bool, str]] = []
        for label, block in options.items():
            block = dict(block)
            entry = METRICS.entry(block.pop("type", label), f"{path}.{label}.type")
            unit = str(block.pop("unit", entry.meta.get("unit", "")))  # display only, e.g. a task's "cm"
            kwargs = check_options(entry.obj, block, f"{path}.{label}", provided={"output": 0, "gt": 0},
                                   sibling_keys=("type", "unit"))
            self.items.append((label, entry.obj, kwargs, bool(entry.meta.get("higher_is_better", True)), unit))

    @property
    def names(self) -> list[str]:
        return [label for label, *_ in self.items]

    def higher_is_better(self, label: str) -> bool:
        return next(h for name, _, _, h, _ in self.items if name == label)

    def unit(self, label: str) -> str:
        return next(u for name, _, _, _, u in self.items if name == label)

    def __call__(self, output: np.ndarray, gt: np.ndarray,
                 context: Mapping[str, Any] | None = None) -> dict[str, float]:
        return {label: fn(output, gt, **kwargs, context=context or {}) for label, fn, kwargs, _, _ in self.items}
