"""JPEG deblocking: LQ is the GT after a real JPEG round trip (OpenCV's libjpeg, as SwinIR and
KAIR encode), scored by PSNR, SSIM and PSNR-B."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from restore.api import OptionError, decode_image, quantize_uint8, register_metric, register_task

from .images import Color, ImageTask

BLOCK = 8  # JPEG's DCT block size


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode a [0, 1] HWC image as 8-bit JPEG at `quality` and decode it again."""
    pixels = quantize_uint8(img)
    if pixels.shape[2] == 3:
        pixels = pixels[:, :, ::-1]  # OpenCV encodes BGR
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(pixels), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"OpenCV could not JPEG-encode an array of shape {img.shape}")
    return decode_image(buf.tobytes(), "JPEG round trip").astype(np.float32) / 255.0


def _check_quality(value: int, key: str) -> None:
    if not 1 <= value <= 100:
        raise OptionError(f"task.{key}: JPEG quality must be in 1..100, got {value}.")


@register_task(name="jpeg", aliases=("deblocking", "jpeg_car"))
class JPEG(ImageTask):
    """JPEG artefact removal at `quality` (10/20/30/40 in the papers). Training draws the quality
    uniformly from `quality_range` when it is set (a blind model); tests use `quality`. `color`
    ``y`` (default) gives the gray/Y-channel models of the papers; ``rgb`` colour JPEG."""

    baseline_label = "JPEG input"

    def __init__(self, quality: int = 40, color: Color = "y", quality_range: tuple[int, int] | None = None) -> None:
        _check_quality(quality, "quality")
        if quality_range is not None:
            for bound in quality_range:
                _check_quality(bound, "quality_range")
            if quality_range[0] > quality_range[1]:
                raise OptionError(f"task.quality_range: low > high in {list(quality_range)}.")
        super().__init__(color)
        self.quality = quality
        self.quality_range = quality_range

    def degrade(self, gt: np.ndarray, *, rng: np.random.Generator, train: bool, scale: int | None = None) -> np.ndarray:
        quality = self.quality
        if train and self.quality_range is not None:
            quality = int(rng.integers(self.quality_range[0], self.quality_range[1] + 1))
        return jpeg_roundtrip(gt, quality)

    def default_metrics(self) -> dict[str, dict[str, Any]]:
        return {**self.restoration_metrics(), "psnrb": {"type": "psnrb", "crop_border": 0, "test_y_channel": False}}

    def describe(self) -> str:
        blind = f", training q in {list(self.quality_range)}" if self.quality_range else ""
        return f"JPEG deblocking q={self.quality} ({self.color}{blind})"


def blocking_effect_factor(channel: np.ndarray, block: int = BLOCK) -> float:
    """Yim & Bovik's blocking effect factor of one channel (values in [0, 1]).

    The mean squared difference across block boundaries minus the one inside blocks (zero when
    not larger), weighted by log2(block) / log2(min(H, W)). The pair counts follow the SwinIR/KAIR
    test code (exact for sizes that are multiples of the block), so LIVE1 numbers match theirs.
    """
    h, w = channel.shape
    across_cols = np.diff(channel, axis=1) ** 2  # pair (j, j+1) in column j
    across_rows = np.diff(channel, axis=0) ** 2
    col_edge = np.zeros(w - 1, dtype=bool)
    col_edge[block - 1 :: block] = True
    row_edge = np.zeros(h - 1, dtype=bool)
    row_edge[block - 1 :: block] = True
    n_boundary = h * (w // block - 1) + w * (h // block - 1)
    n_inner = h * (w - 1) + w * (h - 1) - n_boundary
    if n_boundary <= 0 or n_inner <= 0:
        return 0.0
    boundary = (across_cols[:, col_edge].sum() + across_rows[row_edge, :].sum()) / n_boundary
    inner = (across_cols[:, ~col_edge].sum() + across_rows[~row_edge, :].sum()) / n_inner
    if boundary <= inner:
        return 0.0
    return float(np.log2(block) / np.log2(min(h, w)) * (boundary - inner))


@register_metric(name="psnrb", aliases=("psnr_b", "calculate_psnrb"), unit="dB")
def psnrb(output: np.ndarray, gt: np.ndarray, *, crop_border: int = 0, test_y_channel: bool = False,
          context: Mapping[str, Any] | None = None) -> float:
    """PSNR-B (dB): PSNR with the output's blocking effect factor added to the MSE, per channel
    and averaged (8-bit images; on Y if `test_y_channel`)."""
    from basicsr.metrics.metric_util import to_y_channel

    out = output.astype(np.float64)
    ref = gt.astype(np.float64)
    if crop_border:
        out = out[crop_border:-crop_border, crop_border:-crop_border]
        ref = ref[crop_border:-crop_border, crop_border:-crop_border]
    if test_y_channel and out.shape[2] == 3:
        out, ref = to_y_channel(out[:, :, ::-1]), to_y_channel(ref[:, :, ::-1])  # basicsr expects BGR
    out, ref = out / 255.0, ref / 255.0
    scores = []
    for c in range(out.shape[2]):
        distortion = np.mean((out[:, :, c] - ref[:, :, c]) ** 2) + blocking_effect_factor(out[:, :, c])
        scores.append(np.inf if distortion == 0 else 10.0 * np.log10(1.0 / distortion))
    return float(np.mean(scores))
