"""``DJF``: a guided depth-SR baseline, the deep joint filter of Li et al. (ECCV 2016 / TPAMI 2019).

Two small CNNs extract features from the bicubic-upsampled depth map (the target) and from the
RGB photo (the guide); a third fuses them and predicts the residual over the upsampled target
(the "DJFR" variant). Layer sizes are the paper's: 9x9/1x1/5x5 convs with 96/48/1 channels in the
target and guide branches and 64/32/1 in the fusion branch, about 56K parameters at one depth
channel. Two deviations, both for training on small patches: convs pad to keep the size (the
paper uses valid convs and crops the target), and the last fusion conv starts at zero so an
untrained network returns the upsampled target.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from restore.api import ArchInfo, register_arch


def _branch(in_chans: int, widths: Sequence[int], out_chans: int) -> nn.Sequential:
    """conv 9x9 -> ReLU -> conv 1x1 -> ReLU -> conv 5x5, with `widths` channels in between."""
    first, second = widths
    return nn.Sequential(
        nn.Conv2d(in_chans, first, 9, padding=4), nn.ReLU(inplace=True),
        nn.Conv2d(first, second, 1), nn.ReLU(inplace=True),
        nn.Conv2d(second, out_chans, 5, padding=2),
    )


@register_arch(info=ArchInfo(guided=True))
class DJF(nn.Module):
    """Deep joint filter for guided depth SR: ``net(lr_depth, guide=rgb)`` at `scale`."""

    def __init__(self, scale: int = 4, in_chans: int = 1, guide_chans: int = 3,
                 branch_widths: Sequence[int] = (96, 48), fusion_widths: Sequence[int] = (64, 32)) -> None:
        super().__init__()
        self.scale = scale
        self.target = _branch(in_chans, branch_widths, in_chans)
        self.guide = _branch(guide_chans, branch_widths, in_chans)
        self.fusion = _branch(2 * in_chans, fusion_widths, in_chans)
        nn.init.zeros_(self.fusion[-1].weight)
        nn.init.zeros_(self.fusion[-1].bias)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False) if self.scale > 1 else x
        features = torch.cat([self.target(up), self.guide(guide)], dim=1)
        return up + self.fusion(features)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"
