"""DRRN (B1U9/B1U25, multi-scale, Y channel) and DRRN-PS, from one module written against the
sharing API.

The residual units request their two convs under the slots ``conv1``/``conv2``, so the scheme
decides the structure: ``recursive`` is the original weight-tied DRRN (one pair of convs for every
unit and scale), ``partial_filter`` is DRRN-PS (every unit and scale has its own coefficients over
one bank of 18 tap filters), ``none`` gives every unit and scale independent convs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restore.api import ArchInfo, build_sharing, register_arch
from restore_ps.common import SharingOption, check_scale, conv_act, ps_sharing, require_rgb

MULTI_SCALE_Y = ArchInfo(multi_scale=True, shares_parameters=True, supports_half=False)


def rgb_to_ycbcr_normalised(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 YCbCr (MATLAB constants) of [0, 1] RGB, each channel mapped by (v - 16) / 219 to [-1, 1]."""
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    y = 16.0 + 65.481 * r + 128.553 * g + 24.966 * b
    cb = 128.0 - 37.797 * r - 74.203 * g + 112.0 * b
    cr = 128.0 + 112.0 * r - 93.786 * g - 18.214 * b
    return ((torch.cat([y, cb, cr], 1) - 16.0) / 219.0 - 0.5) * 2.0


def ycbcr_normalised_to_rgb(ycc: torch.Tensor) -> torch.Tensor:
    """Inverse of `rgb_to_ycbcr_normalised` with the rounded inverse constants the authors use."""
    ycc = (ycc + 1.0) * 219.0 / 2.0 + 16.0
    y, cb, cr = ycc[:, 0:1], ycc[:, 1:2], ycc[:, 2:3]
    r = 1.16438355 * y + 1.59602715 * cr - 222.921
    g = 1.16438355 * y - 0.39176160 * cb - 0.81296805 * cr + 135.576
    b = 1.16438355 * y + 2.01723105 * cb - 276.836
    return torch.cat([r, g, b], 1) / 255.0


class PreActUnit(nn.Module):
    """DRRN's pre-activation residual unit (no BN), ``h -> conv2(relu(conv1(relu(h)))) + h0``.

    It takes and returns the *activated* state: ``relu(h) -> relu(conv2(relu(conv1(relu(h)))) + h0)``.
    Every consumer of the state (the next unit, the exit) applies ReLU first, so this is the same
    network with each ReLU moved into the op that produces its input, where it fuses (`conv_act`).
    """

    def __init__(self, sharing: nn.Module, channels: int, bias: bool) -> None:
        super().__init__()
        self.conv1 = sharing.conv2d("conv1", channels, channels, 3, 1, 1, bias=bias)
        self.conv2 = sharing.conv2d("conv2", channels, channels, 3, 1, 1, bias=bias)

    def forward(self, state: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        return conv_act(conv_act(state, self.conv1, "relu"), self.conv2, "relu", residual=h0)


class ScaleUnits(nn.Module):
    """One recursion of DRRN, with a unit per scale (``b1_x2``, ``b1_x3``, ...: the authors' names)."""

    def __init__(self, sharing: nn.Module, channels: int, scales: tuple[int, ...], bias: bool) -> None:
        super().__init__()
        for s in scales:
            self.add_module(f"b1_x{s}", PreActUnit(sharing, channels, bias))

    def forward(self, state: torch.Tensor, h0: torch.Tensor, scale: int) -> torch.Tensor:
        return self.get_submodule(f"b1_x{scale}")(state, h0)


class DRRNet(nn.Module):
    """Multi-scale DRRN on the Y channel: RGB [0, 1] LR in, RGB HR out (chroma = bicubic chroma).

    The LR image is upsampled with torch bicubic, converted to normalised YCbCr, and the Y channel
    goes through ``num_units`` recursions, each adding the entry features back (DRRN's multi-path
    structure), with a global residual on Y.
    """

    def __init__(self, in_chans: int = 3, out_chans: int = 3, num_features: int = 128, num_units: int = 9,
                 scales: tuple[int, ...] = (2, 3, 4), sharing: SharingOption = "recursive", bias: bool = False) -> None:
        super().__init__()
        require_rgb("DRRN", in_chans, out_chans)
        self.scales = tuple(scales)
        self.sharing = build_sharing(sharing)
        self.entry = nn.Conv2d(1, num_features, 3, 1, 1)
        for n in range(1, num_units + 1):
            self.add_module(f"b{n}", ScaleUnits(self.sharing, num_features, self.scales, bias))
        self.exit = nn.Conv2d(num_features, 1, 3, 1, 1)
        self.num_units = num_units
        self.sharing.finalize()

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        check_scale("DRRN", scale, self.scales)
        up = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0.0, 1.0)
        ycc = rgb_to_ycbcr_normalised(up)
        y = ycc[:, :1]
        h0 = conv_act(y, self.entry)
        state = F.relu(h0)  # relu(h), h = h0 + the units so far (see PreActUnit)
        for n in range(1, self.num_units + 1):
            state = self.get_submodule(f"b{n}")(state, h0, scale)
        y_sr = conv_act(state, self.exit) + y
        return ycbcr_normalised_to_rgb(torch.cat([y_sr, ycc[:, 1:]], 1))


@register_arch(name="DRRN_PS", info=MULTI_SCALE_Y)
def drrn_ps(in_chans: int = 3, out_chans: int = 3, num_features: int = 128, num_units: int = 9,
            scales: tuple[int, ...] = (2, 3, 4), gamma: float | str | None = None,
            num_partial_filters: int | None = None, sharing: SharingOption = None, bias: bool = False) -> DRRNet:
    """DRRN-PS (B1U9, multi-scale): per-unit, per-scale coefficients over one bank of tap filters.

    Default gamma 1 (N_p = 18 for B1U9), as released; `sharing` replaces the whole scheme."""
    spec = ps_sharing("DRRN_PS", sharing, gamma, num_partial_filters, default_gamma=1)
    return DRRNet(in_chans, out_chans, num_features, num_units, scales, spec, bias)


@register_arch(name="DRRN", info=MULTI_SCALE_Y)
def drrn(in_chans: int = 3, out_chans: int = 3, num_features: int = 128, num_units: int = 9,
         scales: tuple[int, ...] = (2, 3, 4), sharing: SharingOption = "recursive", bias: bool = False) -> DRRNet:
    """DRRN B1U9 (``num_units: 25`` for B1U25), multi-scale, weight-tied across units and scales."""
    return DRRNet(in_chans, out_chans, num_features, num_units, scales, sharing, bias)
