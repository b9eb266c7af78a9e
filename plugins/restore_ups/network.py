"""UPS and UPS-S: SwinIR-light's frame with decoupled attention layers that share one projection.

Network (docs/ups.md, design note section 4.3)::

    F0 = conv_first(x - mean)                       3x3, in_chans -> C
    T  = LN(F0);  T = T + group_k(T) for each group  (every attention layer gets its U from the
                                                     sharing scheme: one U network-wide by default)
    F  = conv_after_body(LN(T)) + F0
    SR (upscale > 1):  y = PixelShuffle(conv(F))    ('pixelshuffledirect', as SwinIR-light)
    restoration (1):   y = x + conv_last(F)

``variant: ref`` is the design note's reading of the paper (conv + shared-projection attention, no
MLP, no group conv); ``variant: alt`` keeps every SwinIR-light component but ``qkv`` (replaced by a
grouped conv and U). Each of the variant's choices can also be set on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

import torch
from torch import nn

from restore.api import ArchInfo, OptionError, SharingScheme, build_sharing, pad_to_multiple

from .attention import Activation, AttentionNorm, DecoupledWindowAttention, Similarity

LayerConv = Literal["conv3x3", "conv1x1", "grouped3x3", "depthwise3x3", "dwsep3x3"]
# Initialisation of the shared projection U and of the layer-specific convs: the paper says nothing.
ProjInit = Literal["trunc_normal", "orthogonal"]
ConvInit = Literal["pytorch", "trunc_normal", "zeros"]

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)

# One projection U for every attention layer: the paper's design.
DEFAULT_SHARING: Mapping[str, Any] = MappingProxyType({"type": "unified_projection", "n_share": 1})

# What `variant` sets for the choices left unset (None). 'ref': the design note's section 4.1;
# 'alt': section 4.7 (SwinIR-light minus qkv, plus a 4-group conv and U).
VARIANTS: dict[str, dict[str, Any]] = {
    "ref": {"proj_groups": 1, "layer_conv": "conv3x3", "out_proj": False, "mlp_ratio": 0.0, "group_conv": False},
    "alt": {"proj_groups": 2, "layer_conv": "grouped3x3", "out_proj": True, "mlp_ratio": 2.0, "group_conv": True},
}

UPS_INFO = ArchInfo(size_multiple="window_size", pad_mode="symmetric", shares_parameters=True)


def feature_conv(scheme: SharingScheme, slot: str, kind: LayerConv, dim: int, conv_groups: int) -> nn.Module:
    """The layer-specific feature extraction, requested from the sharing scheme under `slot`
    (``dwsep3x3``: its depthwise and pointwise convs under ``<slot>.depthwise`` / ``<slot>.pointwise``)."""
    if kind == "conv1x1":
        return scheme.conv2d(slot, dim, dim, 1)
    groups = {"conv3x3": 1, "grouped3x3": conv_groups, "depthwise3x3": dim, "dwsep3x3": dim}[kind]
    if dim % groups:
        raise OptionError(f"network_g.conv_groups: layer_conv {kind} needs the width ({dim}) to be divisible by "
                          f"its {groups} groups.")
    if kind == "dwsep3x3":
        return nn.Sequential(scheme.conv2d(f"{slot}.depthwise", dim, dim, 3, padding=1, groups=groups),
                             scheme.conv2d(f"{slot}.pointwise", dim, dim, 1))
    return scheme.conv2d(slot, dim, dim, 3, padding=1, groups=groups)


class ResidualGroup(nn.Module):
    """Consecutive attention layers with a residual around them (and SwinIR's 3x3 conv if asked)."""

    def __init__(self, layers: list[nn.Module], dim: int, conv: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.conv = nn.Conv2d(dim, dim, 3, padding=1) if conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for layer in self.layers:
            y = layer(y)
        if self.conv is not None:
            y = self.conv(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + y


class UPS(nn.Module):
    """UPS (NeurIPS 2024): window attention whose similarity is computed in one shared projection.

    Width 60, 4 groups x 6 layers, window 8, d = 32 (823K parameters at x2; the paper: 824K).
    Defaults: ``variant: alt`` (SwinIR-light's layer with the qkv linear replaced by a grouped conv
    and the shared U) and ``attn_norm: tokens`` (S / N), the combination that learned faster than
    SwinIR-S in the UPS-S study of docs/ups.md, as the paper reports; ``variant: ref, attn_norm: none``
    is the poster's layer read literally.
    `sharing` chooses how the layers' projections are shared: ``unified_projection`` (``n_share``
    projections, 1 = the paper), ``none`` (layer-specific) or ``recursive`` (one); a mapping
    without ``type`` (``{n_share: 24}``) adjusts the default ``unified_projection``.

    Initialisation (not published): every linear, U included, is truncated normal with std 0.02 as in
    SwinIR; ``proj_init: orthogonal`` gives U orthonormal rows instead (cosines in the projection then
    start close to those of the features). The layer convs keep PyTorch's default (``conv_init:
    pytorch``), or are truncated normal with std 0.02 like the SwinIR ``qkv`` linear they replace
    (``trunc_normal``), or start at zero (``zeros``: every layer starts as the identity).
    """

    def __init__(
        self,
        in_chans: int = 3,
        upscale: int = 2,
        embed_dim: int = 60,
        depths: tuple[int, ...] = (6, 6, 6, 6),
        window_size: int = 8,
        proj_dim: int = 32,
        proj_groups: int | None = None,
        similarity: Similarity = "cosine",
        activation: Activation = "relu",
        attn_norm: AttentionNorm = "tokens",
        layer_conv: LayerConv | None = None,
        conv_groups: int = 4,
        value_proj: bool = False,
        out_proj: bool | None = None,
        mlp_ratio: float | None = None,
        group_conv: bool | None = None,
        variant: Literal["ref", "alt"] = "alt",
        img_range: float = 1.0,
        drop_path_rate: float = 0.0,
        proj_init: ProjInit = "trunc_normal",
        conv_init: ConvInit = "pytorch",
        sharing: str | Mapping[str, Any] | SharingScheme | None = DEFAULT_SHARING,
    ) -> None:
        super().__init__()
        chosen = {"proj_groups": proj_groups, "layer_conv": layer_conv, "out_proj": out_proj,
                  "mlp_ratio": mlp_ratio, "group_conv": group_conv}
        resolved = {k: VARIANTS[variant][k] if v is None else v for k, v in chosen.items()}
        self.config = {"variant": variant, **resolved}
        self.upscale, self.window_size, self.img_range = upscale, window_size, img_range
        mean = DIV2K_RGB_MEAN if in_chans == 3 else (0.0,) * in_chans
        self.register_buffer("mean", torch.tensor(mean).view(1, in_chans, 1, 1), persistent=False)

        if isinstance(sharing, Mapping) and "type" not in sharing:  # `sharing: {n_share: 24}` adjusts the default
            sharing = {**DEFAULT_SHARING, **sharing}
        self.sharing = build_sharing(sharing, default=DEFAULT_SHARING)
        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, padding=1)
        self.embed_norm = nn.LayerNorm(embed_dim)
        layer_options = {
            "window": window_size, "proj_dim": proj_dim, "groups": resolved["proj_groups"], "similarity": similarity,
            "activation": activation, "attn_norm": attn_norm, "value_proj": value_proj,
            "out_proj": resolved["out_proj"], "mlp_ratio": resolved["mlp_ratio"],
        }
        drop_rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        starts = [sum(depths[:k]) for k in range(len(depths))]
        self.groups = nn.ModuleList(
            ResidualGroup([self._attention_layer(start + i, i % 2 == 1, embed_dim, resolved["layer_conv"],
                                                 conv_groups, drop_rates[start + i], layer_options)
                           for i in range(depth)],
                          embed_dim, resolved["group_conv"])
            for start, depth in zip(starts, depths, strict=True)
        )
        self.sharing.finalize()
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, padding=1)
        if upscale > 1:
            self.tail = nn.Sequential(nn.Conv2d(embed_dim, in_chans * upscale**2, 3, padding=1),
                                      nn.PixelShuffle(upscale))
        else:
            self.tail = nn.Conv2d(embed_dim, in_chans, 3, padding=1)
        self.apply(init_like_swinir)
        _init_layers([layer for group in self.groups for layer in group.layers], proj_init, conv_init)

    def _attention_layer(self, index: int, shifted: bool, dim: int, layer_conv: LayerConv, conv_groups: int,
                         drop_path: float, options: dict[str, Any]) -> DecoupledWindowAttention:
        """Layer `index` of the network: its own conv (slot ``layer<i>.feature``), the shared projection;
        as in SwinIR, every second layer of a group is shifted."""
        return DecoupledWindowAttention(
            dim, shift=options["window"] // 2 if shifted else 0,
            feature=feature_conv(self.sharing, f"layer{index}.feature", layer_conv, dim, conv_groups),
            projection=self.sharing.linear("projection", dim, options["proj_dim"], bias=False),
            drop_path=drop_path, **options,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, in_chans, H, W) in [0, 1], any H and W (padded inside, output cropped)."""
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.window_size, "symmetric")
        x = (x - self.mean) * self.img_range
        first = self.conv_first(x)
        tokens = self.embed_norm(first.permute(0, 2, 3, 1))
        for group in self.groups:
            tokens = group(tokens)
        body = self.conv_after_body(self.norm(tokens).permute(0, 3, 1, 2)) + first
        y = self.tail(body) if self.upscale > 1 else x + self.tail(body)
        y = y / self.img_range + self.mean
        return y[..., : h * self.upscale, : w * self.upscale]


def _init_layers(layers: list[nn.Module], proj_init: ProjInit, conv_init: ConvInit) -> None:
    """Re-initialise the projections and layer convs when asked for something other than the default.

    Shared modules are reached through their `SharedRef` and initialised once. Only ``nn.Linear``
    projections and ``nn.Conv2d`` convs are touched: a plugin scheme that builds its weights
    another way (banks, templates) keeps its own initialisation.
    """
    chosen = [(layer.projection, nn.Linear, proj_init) for layer in layers if proj_init != "trunc_normal"]
    chosen += [(layer.feature, nn.Conv2d, conv_init) for layer in layers if conv_init != "pytorch"]
    done: set[int] = set()
    for module, kind, how in chosen:
        for sub in getattr(module, "target", module).modules():
            if isinstance(sub, kind) and id(sub) not in done:
                done.add(id(sub))
                _initialise(sub, how)


def _initialise(module: nn.Linear | nn.Conv2d, how: str) -> None:
    init = {"orthogonal": nn.init.orthogonal_, "zeros": nn.init.zeros_,
            "trunc_normal": lambda w: nn.init.trunc_normal_(w, std=0.02)}[how]
    init(module.weight)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def init_like_swinir(module: nn.Module) -> None:
    """SwinIR's initialisation: truncated-normal linears (U included), unit LayerNorms, default convs."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
