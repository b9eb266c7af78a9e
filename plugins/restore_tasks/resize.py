"""Bicubic resizing of float HWC arrays, the three ways the literature does it.

``matlab``: MATLAB's ``imresize`` (basicsr's port; antialiased when shrinking), which made the
SR benchmarks' ``LR_bicubic`` folders. ``pil``: Pillow's bicubic on float maps (mode ``F``),
the depth-SR literature's choice. ``torch``: ``F.interpolate`` (antialiased when shrinking).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

ResizeMethod = Literal["matlab", "pil", "torch"]


def resize(img: np.ndarray, factor: float, method: ResizeMethod) -> np.ndarray:
    """Resize an HWC float array by `factor` (output size ``round(size * factor)``) with bicubic."""
    h, w = img.shape[:2]
    out_h, out_w = round(h * factor), round(w * factor)
    img = np.ascontiguousarray(img, dtype=np.float32)
    if method == "matlab":
        from basicsr.utils.matlab_functions import imresize

        out = imresize(img, factor)
        out = out[:, :, None] if out.ndim == 2 else out
    elif method == "pil":
        from PIL import Image

        out = np.stack(
            [np.asarray(Image.fromarray(img[:, :, c]).resize((out_w, out_h), Image.Resampling.BICUBIC))
             for c in range(img.shape[2])],
            axis=2,
        )
    elif method == "torch":
        x = torch.from_numpy(img).permute(2, 0, 1)[None]
        out = F.interpolate(x, size=(out_h, out_w), mode="bicubic", align_corners=False, antialias=factor < 1)
        out = out[0].permute(1, 2, 0).numpy()
    else:
        raise ValueError(f"unknown resize method {method!r}; use matlab, pil or torch")
    return np.ascontiguousarray(out, dtype=np.float32)


def quantize_8bit(img: np.ndarray) -> np.ndarray:
    """Round [0, 1] floats to the 256 levels an 8-bit file would hold (LR made on the fly then
    matches LR read from PNG folders)."""
    return (np.round(np.clip(img, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)
