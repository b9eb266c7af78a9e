"""SRFBN-S and SRFBN-S-PS (feedback network, F=32, T=4 steps, G=3 groups), from one module
written against the sharing API.

The feedback block's down-projection at step t, group g requests its conv (and the PReLU after
it) under the slot ``down{g}``. So ``recursive`` is the original SRFBN-S (G down blocks reused at
every step), ``partial_filter`` is SRFBN-S-PS (a kernel per (step, group) rebuilt from one bank of
whole-filter partial filters) and ``none`` gives every (step, group) independent weights.

The network works on 0..255 data internally, as SRFBN does; its input and output are [0, 1].
In training mode it returns the T per-step outputs (for the curriculum loss), in eval mode the last.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restore.api import ArchInfo, OptionError, build_sharing, register_arch
from restore_ps.common import FusedSequential, SharingOption, mean_shift, ps_sharing, require_rgb

# scale -> (kernel size, stride, padding) of the projection (de)convs, as in SRFBN
GEOMETRY = {2: (6, 2, 2), 3: (7, 3, 2), 4: (8, 4, 2), 8: (12, 8, 2)}
# scale -> N_p / N_total of the released SRFBN-S-PS models
PS_GAMMA = {2: "18/24", 3: "19/24", 4: "20/24"}

SINGLE_SCALE = ArchInfo(shares_parameters=True)


def conv_prelu(conv: nn.Module) -> FusedSequential:
    """SRFBN's ConvBlock/DeconvBlock: a conv followed by a one-parameter PReLU (init 0.2)."""
    return FusedSequential(conv, nn.PReLU(num_parameters=1, init=0.2))


class FeedbackBlock(nn.Module):
    """The feedback block; its state (the previous step's output) is passed in explicitly."""

    def __init__(self, sharing: nn.Module, num_features: int, num_groups: int, num_steps: int,
                 geometry: tuple[int, int, int], down_bias: bool) -> None:
        super().__init__()
        f, (k, s, p) = num_features, geometry
        self.num_groups = num_groups
        self.compress_in = conv_prelu(nn.Conv2d(2 * f, f, 1))
        self.upBlocks = nn.ModuleList(conv_prelu(nn.ConvTranspose2d(f, f, k, s, p)) for _ in range(num_groups))
        # Index t*G + g is the down-projection used at step t, group g (the released layout).
        self.downBlocks = nn.ModuleList(
            FusedSequential(
                sharing.conv2d(f"down{g}", f, f, k, s, p, bias=down_bias),
                sharing.module(f"down{g}", lambda: nn.PReLU(num_parameters=1, init=0.2)),
            )
            for _t in range(num_steps)
            for g in range(num_groups)
        )
        self.uptranBlocks = nn.ModuleList(conv_prelu(nn.Conv2d(f * (g + 1), f, 1)) for g in range(1, num_groups))
        self.downtranBlocks = nn.ModuleList(conv_prelu(nn.Conv2d(f * (g + 1), f, 1)) for g in range(1, num_groups))
        self.compress_out = conv_prelu(nn.Conv2d(num_groups * f, f, 1))

    def forward(self, features: torch.Tensor, hidden: torch.Tensor, step: int) -> torch.Tensor:
        low = [self.compress_in(torch.cat([features, hidden], 1))]
        high: list[torch.Tensor] = []
        for g in range(self.num_groups):
            x = torch.cat(low, 1)
            high.append(self.upBlocks[g](self.uptranBlocks[g - 1](x) if g else x))
            x = torch.cat(high, 1)
            low.append(self.downBlocks[step * self.num_groups + g](self.downtranBlocks[g - 1](x) if g else x))
        return self.compress_out(torch.cat(low[1:], 1))


class FeedbackNetwork(nn.Module):
    """SRFBN: RGB [0, 1] in; per-step RGB outputs in training mode, the last one in eval mode."""

    def __init__(self, scale: int, in_chans: int = 3, out_chans: int = 3, num_features: int = 32,
                 num_steps: int = 4, num_groups: int = 3, sharing: SharingOption = "recursive",
                 down_bias: bool = True, data_range: float = 255.0) -> None:
        super().__init__()
        require_rgb("SRFBN", in_chans, out_chans)
        if scale not in GEOMETRY:
            raise OptionError(f"network_g: SRFBN has projection geometries for scales {sorted(GEOMETRY)}, not {scale}.")
        k, s, p = GEOMETRY[scale]
        f = num_features
        self.scale = scale
        self.num_steps = num_steps
        self.data_range = data_range
        self.sharing = build_sharing(sharing)
        self.sub_mean = mean_shift(-1, data_range)
        self.conv_in = conv_prelu(nn.Conv2d(in_chans, 4 * f, 3, 1, 1))
        self.feat_in = conv_prelu(nn.Conv2d(4 * f, f, 1))
        self.block = FeedbackBlock(self.sharing, f, num_groups, num_steps, (k, s, p), down_bias)
        self.out = conv_prelu(nn.ConvTranspose2d(f, f, k, s, p))
        self.conv_out = FusedSequential(nn.Conv2d(f, out_chans, 3, 1, 1))
        self.add_mean = mean_shift(+1, data_range)
        self.sharing.finalize()
        self._init_weights()

    def _init_weights(self) -> None:
        # SRFBN: kaiming (fan_in) on every trainable (de)conv, zero biases. PS banks stay N(0, 1)
        # and coefficients 1/N_p (they are not conv modules), as in the released code.
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and module.weight.requires_grad:
                nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        x = self.sub_mean(x * self.data_range)
        base = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        features = self.feat_in(self.conv_in(x))
        hidden = features
        outputs = []
        for step in range(self.num_steps):
            hidden = self.block(features, hidden, step)
            if self.training or step == self.num_steps - 1:
                outputs.append(self.add_mean(base + self.conv_out(self.out(hidden))) / self.data_range)
        return outputs if self.training else outputs[-1]


@register_arch(name="SRFBN_S_PS", info=SINGLE_SCALE)
def srfbn_s_ps(scale: int, in_chans: int = 3, out_chans: int = 3, num_features: int = 32, num_steps: int = 4,
               num_groups: int = 3, gamma: float | str | None = None, num_partial_filters: int | None = None,
               sharing: SharingOption = None, down_bias: bool = False) -> FeedbackNetwork:
    """SRFBN-S-PS: down-projections rebuilt from one bank of whole filters; gamma 18/24, 19/24,
    20/24 at x2/x3/x4 by default (N_p 72/76/80), as released. No bias on the down-projections."""
    default = PS_GAMMA.get(scale)
    if default is None and sharing is None and gamma is None and num_partial_filters is None:
        raise OptionError(f"network_g: SRFBN_S_PS has no released gamma for scale {scale}; set gamma.")
    spec = ps_sharing("SRFBN_S_PS", sharing, gamma, num_partial_filters, default_gamma=default)
    return FeedbackNetwork(scale, in_chans, out_chans, num_features, num_steps, num_groups, spec, down_bias)


@register_arch(name="SRFBN_S", info=SINGLE_SCALE)
def srfbn_s(scale: int, in_chans: int = 3, out_chans: int = 3, num_features: int = 32, num_steps: int = 4,
            num_groups: int = 3, sharing: SharingOption = "recursive", down_bias: bool = True) -> FeedbackNetwork:
    """SRFBN-S: the original feedback network, its G down-projections reused at every step."""
    return FeedbackNetwork(scale, in_chans, out_chans, num_features, num_steps, num_groups, sharing, down_bias)
