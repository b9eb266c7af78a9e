"""Single-image super-resolution: LR by bicubic downsampling of HR (or read from disk)."""

from __future__ import annotations

from typing import Any

import numpy as np

from restore.api import DataError, OptionError, register_task

from .images import Color, ImageTask
from .resize import ResizeMethod, quantize_8bit, resize


def check_divisible(gt: np.ndarray, scale: int, task: str) -> None:
    h, w = gt.shape[:2]
    if h % scale or w % scale:
        raise DataError(f"{task}: a {w}x{h} GT patch is not divisible by scale {scale}; "
                        "use a gt_size that is a multiple of the scale.")


@register_task(name="sisr", aliases=("sr",))
class SISR(ImageTask):
    """Super-resolution by `scale`. LR made on the fly uses `resize` (``matlab`` = the benchmarks'
    MATLAB bicubic) and is rounded to 8 bits like the ``LR_bicubic`` PNGs unless `quantize_lq` is
    false. Scored by PSNR/SSIM on Y with the border cropped by the scale."""

    baseline: dict[str, Any] = {"type": "Bicubic", "method": "matlab"}

    def __init__(self, scale: int = 4, resize: ResizeMethod = "matlab", color: Color = "rgb",
                 quantize_lq: bool = True) -> None:
        if scale < 1:
            raise OptionError(f"task.scale: must be 1 or more, got {scale}.")
        super().__init__(color)
        self.scale = scale
        self.resize = resize
        self.quantize_lq = quantize_lq

    def degrade(self, gt: np.ndarray, *, rng: np.random.Generator, train: bool, scale: int | None = None) -> np.ndarray:
        scale = scale or self.scale
        check_divisible(gt, scale, "sisr")
        lq = resize(gt, 1.0 / scale, self.resize)
        return quantize_8bit(lq) if self.quantize_lq else lq

    def describe(self) -> str:
        return f"SISR x{self.scale} ({self.color}, LR by {self.resize} bicubic)"
