"""What the photographic tasks (SISR, JPEG, denoising) share: 8/16-bit images in [0, 1] as
RGB, gray or the Y channel.

``gray`` converts colour files with OpenCV's BT.601 weights (what KAIR's ``imread(path, 0)``
gives); ``y`` is MATLAB's ``rgb2ycbcr`` luma in [16, 235] (basicsr; what SwinIR's JPEG and the
Y-channel SR nets use). Files that are already single-channel are taken as they are.
"""

from __future__ import annotations

from typing import Any, Literal

import cv2
import numpy as np

from restore.api import DataError, OptionError, Task

Color = Literal["rgb", "gray", "y"]


def convert_color(img: np.ndarray, color: Color, name: str) -> np.ndarray:
    """A raw HWC array (as read) in the requested colour representation, same dtype family."""
    channels = img.shape[2]
    if channels == 1 or color == "rgb":
        return img  # gray stays gray; RGB is kept (the base class repeats gray to 3 channels)
    if channels != 3:
        raise DataError(f"{name}: has {channels} channels; expected a gray or RGB image.")
    if color == "gray":
        return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[:, :, None]
    from basicsr.utils.color_util import rgb2ycbcr

    if img.dtype == np.uint8:
        return rgb2ycbcr(img, y_only=True)[:, :, None]  # rounded to uint8, as MATLAB does
    scaled = img.astype(np.float32) / (np.iinfo(img.dtype).max if img.dtype.kind in "ui" else 1.0)
    return rgb2ycbcr(scaled, y_only=True)[:, :, None]


def check_positive(value: float, key: str) -> None:
    if value <= 0:
        raise OptionError(f"task.{key}: must be positive, got {value!r}.")


class ImageTask(Task):
    """An 8-bit image task; `color` sets the channels the network sees (3 for rgb, else 1)."""

    def __init__(self, color: Color = "rgb") -> None:
        self.color = color
        self.in_chans = self.out_chans = 3 if color == "rgb" else 1

    def to_pixels(self, img: np.ndarray, *, name: str) -> np.ndarray:
        return super().to_pixels(convert_color(img, self.color, name), name=name)

    def restoration_metrics(self) -> dict[str, dict[str, Any]]:
        """PSNR/SSIM on the full image in the task's own channels (RGB PSNR for colour, as the
        denoising and deblocking papers report)."""
        return {
            "psnr": {"type": "psnr", "crop_border": 0, "test_y_channel": False},
            "ssim": {"type": "ssim", "crop_border": 0, "test_y_channel": False},
        }
