"""The ``Bicubic`` arch: the baseline row of every SR results table (no parameters)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restore.api import ArchInfo, register_arch

from .resize import ResizeMethod, resize


@register_arch(info=ArchInfo(supports_half=False))
class Bicubic(nn.Module):
    """Bicubic upsampling by `scale`: ``matlab`` (basicsr ``imresize``), ``pil`` (float maps) or ``torch``."""

    def __init__(self, scale: int = 2, method: ResizeMethod = "matlab") -> None:
        super().__init__()
        self.scale = scale
        self.method = method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.method == "torch":
            return F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        # MATLAB and Pillow resizers work image by image on the CPU.
        outputs = [
            torch.from_numpy(resize(sample.permute(1, 2, 0).float().cpu().numpy(), self.scale, self.method))
            for sample in x
        ]
        return torch.stack(outputs).permute(0, 3, 1, 2).to(x)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, method={self.method!r}"
