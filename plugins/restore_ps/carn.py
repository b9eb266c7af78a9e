"""CARN (multi-scale) and CARN-PS, from one module written against the sharing API.

Each residual unit exists once per scale (``b{j}_x{s}``, the authors' names) and requests its
convs under the slot ``b{i}.b{j}.conv{c}``, which is the same for every scale. So ``recursive``
is the original multi-scale CARN (the body shared by all scales), ``partial_filter`` is CARN-PS
(every scale's unit has its own coefficients and biases over one bank), ``none`` gives every
scale an independent body.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from restore.api import ArchInfo, build_sharing, register_arch
from restore_ps.common import (
    FusedSequential,
    SharingOption,
    check_scale,
    conv_act,
    mean_shift,
    ps_sharing,
    require_rgb,
)

# channels_last: CARN trained 1.15-1.35x faster on channels-last tensors on the CPU (BENCHMARKS.md).
MULTI_SCALE = ArchInfo(multi_scale=True, shares_parameters=True, channels_last=True)


class MeanShift(nn.Module):
    """Frozen RGB mean shift; the conv sits under ``shifter`` as in the released CARN code."""

    def __init__(self, sign: int) -> None:
        super().__init__()
        self.shifter = mean_shift(sign)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shifter(x)


class Body(nn.Module):
    """A layer sequence kept under ``body`` (``c1.body.0``, ``up2.body.0``: the released names)."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.body = FusedSequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def fusion(in_channels: int, out_channels: int) -> Body:
    """A 1x1 cascading fusion conv followed by ReLU."""
    return Body(nn.Conv2d(in_channels, out_channels, 1), nn.ReLU(inplace=True))


class ResidualUnit(nn.Module):
    """relu(x + conv2(relu(conv1(x))))."""

    def __init__(self, sharing: nn.Module, slot: str, channels: int, bias: bool) -> None:
        super().__init__()
        self.conv1 = sharing.conv2d(f"{slot}.conv1", channels, channels, 3, 1, 1, bias=bias)
        self.conv2 = sharing.conv2d(f"{slot}.conv2", channels, channels, 3, 1, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_act(conv_act(x, self.conv1, "relu"), self.conv2, "relu", residual=x)


def cascade(x: torch.Tensor, stages: list[tuple[nn.Module, nn.Module]]) -> torch.Tensor:
    """CARN's cascading: each stage's output is concatenated to all previous ones and fused."""
    cat = out = x
    for stage, fuse in stages:
        cat = torch.cat([cat, stage(out)], 1)
        out = fuse(cat)
    return out


class CascadingBlock(nn.Module):
    """Three residual units (one copy per scale) with local cascading 1x1 fusions shared by all scales."""

    def __init__(self, sharing: nn.Module, index: int, channels: int, scales: tuple[int, ...], bias: bool) -> None:
        super().__init__()
        for j in (1, 2, 3):
            for s in scales:
                self.add_module(f"b{j}_x{s}", ResidualUnit(sharing, f"b{index}.b{j}", channels, bias))
        for j in (1, 2, 3):
            self.add_module(f"c{j}", fusion(channels * (j + 1), channels))

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        stages = [(self.get_submodule(f"b{j}_x{scale}"), self.get_submodule(f"c{j}")) for j in (1, 2, 3)]
        return cascade(x, stages)


def pixel_shuffle_stage(channels: int, factor: int) -> list[nn.Module]:
    return [nn.Conv2d(channels, channels * factor**2, 3, 1, 1), nn.ReLU(inplace=True), nn.PixelShuffle(factor)]


class Upsampler(nn.Module):
    """One sub-pixel upsampler per scale (``up2``, ``up3``, ``up4`` = two x2 stages)."""

    def __init__(self, channels: int, scales: tuple[int, ...]) -> None:
        super().__init__()
        for s in scales:
            if s not in (2, 3, 4, 8):
                raise ValueError(f"CARN upsamplers exist for scales 2, 3, 4 and 8, not {s}")
            stages = [3] if s == 3 else [2] * int(math.log2(s))
            self.add_module(f"up{s}", Body(*[m for f in stages for m in pixel_shuffle_stage(channels, f)]))

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        return self.get_submodule(f"up{scale}")(x)


class CARNet(nn.Module):
    """Multi-scale CARN: RGB [0, 1] in, RGB out (not clamped); called as ``net(x, scale)``."""

    def __init__(self, in_chans: int = 3, out_chans: int = 3, num_features: int = 64,
                 scales: tuple[int, ...] = (2, 3, 4), sharing: SharingOption = "recursive", bias: bool = True) -> None:
        super().__init__()
        require_rgb("CARN", in_chans, out_chans)
        self.scales = tuple(scales)
        self.sharing = build_sharing(sharing)
        self.sub_mean = MeanShift(-1)
        self.add_mean = MeanShift(+1)
        self.entry = nn.Conv2d(3, num_features, 3, 1, 1)
        for i in (1, 2, 3):
            self.add_module(f"b{i}", CascadingBlock(self.sharing, i, num_features, self.scales, bias))
        for i in (1, 2, 3):
            self.add_module(f"c{i}", fusion(num_features * (i + 1), num_features))
        self.upsample = Upsampler(num_features, self.scales)
        self.exit = nn.Conv2d(num_features, 3, 3, 1, 1)
        self.sharing.finalize()

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        check_scale("CARN", scale, self.scales)
        features = conv_act(self.sub_mean(x), self.entry)
        stages = [(partial(self.get_submodule(f"b{i}"), scale=scale), self.get_submodule(f"c{i}")) for i in (1, 2, 3)]
        out = cascade(features, stages)
        return self.add_mean(conv_act(self.upsample(out, scale), self.exit))


@register_arch(name="CARN_PS", info=MULTI_SCALE)
def carn_ps(in_chans: int = 3, out_chans: int = 3, num_features: int = 64, scales: tuple[int, ...] = (2, 3, 4),
            gamma: float | str | None = None, num_partial_filters: int | None = None,
            sharing: SharingOption = None, bias: bool = True) -> CARNet:
    """CARN-PS (multi-scale): gamma = N_p/162, 6/9 (N_p 108) or 8/9 (N_p 144, the default)."""
    spec = ps_sharing("CARN_PS", sharing, gamma, num_partial_filters, default_gamma="8/9")
    return CARNet(in_chans, out_chans, num_features, scales, spec, bias)


@register_arch(name="CARN", info=MULTI_SCALE)
def carn(in_chans: int = 3, out_chans: int = 3, num_features: int = 64, scales: tuple[int, ...] = (2, 3, 4),
         sharing: SharingOption = "recursive", bias: bool = True) -> CARNet:
    """CARN (multi-scale): one body shared by all scales, a sub-pixel upsampler per scale."""
    return CARNet(in_chans, out_chans, num_features, scales, sharing, bias)
