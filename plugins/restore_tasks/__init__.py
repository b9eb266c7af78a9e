"""Built-in task plugins: SISR, JPEG deblocking, Gaussian denoising and depth-map SR, with the
``Bicubic`` baseline arch, the guided depth-SR arch ``DJF``, the metrics these tasks report
(PSNR-B, depth RMSE/PSNR/SSIM) and readers for depth formats (.npy, .mat, .h5, .pfm).

Registered through the ``restore.plugins`` entry point ``tasks``, like any third-party plugin,
and importing only ``restore.api``.
"""

from . import baseline, denoise, depth, depth_metrics, guided, jpeg, sisr  # noqa: F401  (importing registers)
