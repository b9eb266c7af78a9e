"""Additive white Gaussian noise removal, noise level `sigma` on the [0, 255] scale.

The noise is drawn from the generator the core passes: fresh per sample in training, derived
from the image name at test time (so a test set's noisy inputs are the same in every run,
without touching global RNG state). Noisy values are not clipped or rounded, as in KAIR/SwinIR.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from restore.api import OptionError, register_task

from .images import Color, ImageTask, check_positive


@register_task(name="denoise", aliases=("denoising",))
class Denoise(ImageTask):
    """Gaussian denoising at `sigma` (15/25/50 in the papers). With `sigma_range` training draws
    a level uniformly per sample (a blind model); tests use `sigma`. `clip` clips the noisy input
    to [0, 1] (off in the papers)."""

    baseline_label = "noisy input"

    def __init__(self, sigma: float | None = 25.0, sigma_range: tuple[float, float] | None = None,
                 color: Color = "rgb", clip: bool = False) -> None:
        if sigma is None and sigma_range is None:
            raise OptionError("task: set sigma (the noise level) or sigma_range (a blind model).")
        if sigma is not None:
            check_positive(sigma, "sigma")
        if sigma_range is not None and not 0 <= sigma_range[0] <= sigma_range[1]:
            raise OptionError(f"task.sigma_range: needs 0 <= low <= high, got {list(sigma_range)}.")
        super().__init__(color)
        self.sigma = sigma
        self.sigma_range = sigma_range
        self.clip = clip

    def noise_level(self, rng: np.random.Generator, train: bool) -> float:
        if train and self.sigma_range is not None:
            return float(rng.uniform(*self.sigma_range))
        if self.sigma is None:
            raise OptionError("task.sigma: a blind model (sigma_range only) needs sigma to say the test noise level.")
        return self.sigma

    def degrade(self, gt: np.ndarray, *, rng: np.random.Generator, train: bool, scale: int | None = None) -> np.ndarray:
        sigma = self.noise_level(rng, train) / 255.0
        noisy = gt + rng.standard_normal(gt.shape, dtype=np.float32) * np.float32(sigma)
        return np.clip(noisy, 0.0, 1.0) if self.clip else noisy.astype(np.float32, copy=False)

    def default_metrics(self) -> dict[str, dict[str, Any]]:
        return self.restoration_metrics()

    def describe(self) -> str:
        blind = f", training sigma in {list(self.sigma_range)}" if self.sigma_range else ""
        return f"Gaussian denoising sigma={self.sigma} ({self.color}{blind})"
