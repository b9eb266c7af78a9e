"""SwinIR-light and SwinIR-S written on the sharing API.

With ``sharing: none`` the network is SwinIR (Liang et al., ICCVW 2021) exactly as basicsr and
the official repository build it: the same module paths and state_dict keys (buffers included),
so their checkpoints load strictly, and the same operations in the same order, so the outputs
are bit-identical. Inputs are mirror-padded to a multiple of the window and the output cropped,
as the official test code does (basicsr's class does not pad; it stays registered as ``SwinIR``).

Every body layer is requested from the sharing scheme under its own slot, so any scheme applies:

* ``layer<k>.attn.qkv``, ``layer<k>.attn.proj``, ``layer<k>.mlp.fc1``, ``layer<k>.mlp.fc2`` --
  the linears of Swin layer k (0..23 in SwinIR-light, counted across the residual groups);
* ``group<i>.conv`` -- the 3x3 conv closing residual group i (``group<i>.conv.<j>`` for the
  three convs of ``resi_connection: 3conv``).

SwinIR is an unshared network, so each slot occurs once and ``recursive`` builds the same network
as ``none``. ``partial_filter`` rebuilds the group convs from a bank; ``unified_projection`` with
``slot: "*.attn.qkv"`` shares the qkv projection across layers; ``compose`` mixes schemes by slot.
The shallow head (``conv_first``) and the reconstruction tail are ordinary layers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

from restore.api import NoSharing, OptionError, SharingScheme, build_sharing, pad_to_multiple

from .attention import relative_position_index, shift_mask, window_merge, window_partition
from .network import DIV2K_RGB_MEAN, init_like_swinir

Upsampler = Literal["pixelshuffledirect", "pixelshuffle", "nearest+conv", ""]

SWIN_MASK = -100.0  # Swin's additive mask value (not -inf): what the released weights were trained with
RECONSTRUCTION_FEATURES = 64  # width of the 'pixelshuffle' / 'nearest+conv' tails (fixed in SwinIR)


class WindowAttention(nn.Module):
    """Multi-head self-attention within M x M windows, with a relative position bias per head."""

    def __init__(self, scheme: SharingScheme, slot: str, dim: int, window: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads, self.window = num_heads, window
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window, torch.device("cpu")).clone())
        self.qkv = scheme.linear(f"{slot}.qkv", dim, 3 * dim)
        self.proj = scheme.linear(f"{slot}.proj", dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x: (B * windows, N, C); mask: (windows, N, N) or None. Same operation order as SwinIR."""
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).contiguous().unsqueeze(0)
        if mask is not None:
            windows = mask.shape[0]
            attn = attn.view(b // windows, windows, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, n, n)
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)

    def extra_repr(self) -> str:
        return f"window={self.window}, num_heads={self.num_heads}"


class Mlp(nn.Module):
    def __init__(self, scheme: SharingScheme, slot: str, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = scheme.linear(f"{slot}.fc1", dim, hidden)
        self.act = nn.GELU()
        self.fc2 = scheme.linear(f"{slot}.fc2", hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinLayer(nn.Module):
    """One Swin transformer layer: (shifted) window attention and an MLP, each pre-norm and residual.

    Shifted layers keep SwinIR's ``attn_mask`` buffer for the training size `img_size` (it is part
    of the released state_dicts); other sizes use a cached mask with the same values.
    """

    def __init__(self, scheme: SharingScheme, slot: str, dim: int, *, img_size: int, window: int, shift: int,
                 num_heads: int, mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        self.window, self.shift, self.img_size = window, shift, img_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(scheme, f"{slot}.attn", dim, window, num_heads)
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(scheme, f"{slot}.mlp", dim, int(dim * mlp_ratio))
        mask = self._mask(img_size, img_size, torch.device("cpu"), torch.float32).clone() if shift else None
        self.register_buffer("attn_mask", mask)

    def _mask(self, h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return shift_mask(h, w, self.window, self.shift, device, dtype, SWIN_MASK)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """x: (B, H*W, C) tokens of an H x W map (multiples of the window)."""
        h, w = size
        b, _, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        mask = None
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), dims=(1, 2))
            mask = self.attn_mask if size == (self.img_size, self.img_size) else self._mask(h, w, x.device, x.dtype)
        y = window_merge(self.attn(window_partition(y, self.window), mask), self.window, h, w)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), dims=(1, 2))
        x = x + self.drop_path(y.view(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def extra_repr(self) -> str:
        return f"window={self.window}, shift={self.shift}"


class _Layers(nn.Module):
    """SwinIR's ``residual_group``: a list of ``blocks`` (kept for the state_dict keys)."""

    def __init__(self, blocks: list[SwinLayer]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, size)
        return x


class ResidualSwinGroup(nn.Module):
    """RSTB: Swin layers, then a conv on the re-assembled map, plus the group's input."""

    def __init__(self, blocks: list[SwinLayer], conv: nn.Module) -> None:
        super().__init__()
        self.residual_group = _Layers(blocks)
        self.conv = conv

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        y = tokens_to_map(self.residual_group(x, size), size)
        return self.conv(y).flatten(2).transpose(1, 2) + x


class TokenEmbedding(nn.Module):
    """SwinIR's ``patch_embed`` with patch size 1: a feature map to tokens, then LayerNorm."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.flatten(2).transpose(1, 2))


def tokens_to_map(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H*W, C) -> (B, C, H, W) as a view (channels-last strides), as SwinIR does."""
    return x.transpose(1, 2).view(x.shape[0], x.shape[2], *size)


def group_conv(scheme: SharingScheme, slot: str, dim: int, kind: Literal["1conv", "3conv"]) -> nn.Module:
    """The conv closing a residual group (``3conv``: a bottleneck of three convs, SwinIR's)."""
    if kind == "1conv":
        return scheme.conv2d(slot, dim, dim, 3, padding=1)
    return nn.Sequential(
        scheme.conv2d(f"{slot}.0", dim, dim // 4, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
        scheme.conv2d(f"{slot}.2", dim // 4, dim // 4, 1), nn.LeakyReLU(0.2, inplace=True),
        scheme.conv2d(f"{slot}.4", dim // 4, dim, 3, padding=1),
    )


def _pixel_shuffle_tail(features: int, scale: int) -> nn.Sequential:
    """SwinIR's ``Upsample``: conv + PixelShuffle(2) per factor 2, or one step for x3."""
    if scale & (scale - 1) == 0:
        steps = [(4, 2)] * int(math.log2(scale))
    elif scale == 3:
        steps = [(9, 3)]
    else:
        raise OptionError(f"network_g.upsampler: 'pixelshuffle' supports scales 2^n and 3, not {scale}.")
    layers: list[nn.Module] = []
    for factor, step in steps:
        layers += [nn.Conv2d(features, factor * features, 3, padding=1), nn.PixelShuffle(step)]
    return nn.Sequential(*layers)


class SwinIR_light(nn.Module):  # noqa: N801 - the registry name
    """SwinIR-light (SwinIR's ``lightweight_sr`` configuration; 910,152 parameters at x2) on the sharing API.

    `upsampler` defaults to 'pixelshuffledirect' for SR and, at upscale 1, to SwinIR's restoration
    tail (conv + image residual). `sharing` chooses how the body's linears and group convs get
    their weights (default ``none``: SwinIR itself; see the module docstring for the slots).
    """

    def __init__(
        self,
        in_chans: int = 3,
        upscale: int = 2,
        img_size: int = 64,
        window_size: int = 8,
        embed_dim: int = 60,
        depths: tuple[int, ...] = (6, 6, 6, 6),
        num_heads: tuple[int, ...] = (6, 6, 6, 6),
        mlp_ratio: float = 2.0,
        img_range: float = 1.0,
        upsampler: Upsampler | None = None,
        resi_connection: Literal["1conv", "3conv"] = "1conv",
        drop_path_rate: float = 0.1,
        sharing: str | Mapping[str, Any] | SharingScheme | None = "none",
    ) -> None:
        super().__init__()
        if len(num_heads) != len(depths):
            raise OptionError(f"network_g.num_heads: one entry per residual group ({len(depths)}), "
                              f"got {len(num_heads)}.")
        if img_size % window_size:
            raise OptionError(f"network_g.img_size ({img_size}) must be a multiple of window_size ({window_size}).")
        if upsampler is None:
            upsampler = "pixelshuffledirect" if upscale > 1 else ""
        if upsampler == "nearest+conv" and upscale != 4:
            raise OptionError(f"network_g.upsampler: 'nearest+conv' is x4 only, not x{upscale}.")
        self.upscale, self.upsampler, self.window_size, self.img_range = upscale, upsampler, window_size, img_range
        mean = DIV2K_RGB_MEAN if in_chans == 3 else (0.0,) * in_chans
        self.register_buffer("mean", torch.tensor(mean).view(1, in_chans, 1, 1), persistent=False)

        self.sharing = build_sharing(sharing)
        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, padding=1)
        self.patch_embed = TokenEmbedding(embed_dim)
        drop_rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        for group, (depth, heads) in enumerate(zip(depths, num_heads, strict=True)):
            first = sum(depths[:group])
            blocks = [
                SwinLayer(self.sharing, f"layer{first + i}", embed_dim, img_size=img_size, window=window_size,
                          shift=window_size // 2 if i % 2 else 0, num_heads=heads, mlp_ratio=mlp_ratio,
                          drop_path=drop_rates[first + i])
                for i in range(depth)
            ]
            conv = group_conv(self.sharing, f"group{group}.conv", embed_dim, resi_connection)
            self.layers.append(ResidualSwinGroup(blocks, conv))
        self.sharing.finalize()
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = group_conv(NoSharing(), "conv_after_body", embed_dim, resi_connection)
        self._build_tail(embed_dim, in_chans)
        self.apply(init_like_swinir)

    def _build_tail(self, dim: int, out_chans: int) -> None:
        """The reconstruction modules of `upsampler`, under SwinIR's names."""
        features = RECONSTRUCTION_FEATURES
        if self.upsampler in ("pixelshuffle", "nearest+conv"):
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(dim, features, 3, padding=1),
                                                      nn.LeakyReLU(inplace=True))
        if self.upsampler == "pixelshuffle":
            self.upsample = _pixel_shuffle_tail(features, self.upscale)
            self.conv_last = nn.Conv2d(features, out_chans, 3, padding=1)
        elif self.upsampler == "pixelshuffledirect":
            self.upsample = nn.Sequential(nn.Conv2d(dim, out_chans * self.upscale**2, 3, padding=1),
                                          nn.PixelShuffle(self.upscale))
        elif self.upsampler == "nearest+conv":
            self.conv_up1 = nn.Conv2d(features, features, 3, padding=1)
            self.conv_up2 = nn.Conv2d(features, features, 3, padding=1)
            self.conv_hr = nn.Conv2d(features, features, 3, padding=1)
            self.conv_last = nn.Conv2d(features, out_chans, 3, padding=1)
            self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        else:
            self.conv_last = nn.Conv2d(dim, out_chans, 3, padding=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[2], x.shape[3])
        tokens = self.patch_embed(x)
        for group in self.layers:
            tokens = group(tokens, size)
        return tokens_to_map(self.norm(tokens), size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, in_chans, H, W) in [0, 1], any H and W (mirror-padded inside, output cropped)."""
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.window_size, "symmetric")
        x = (x - self.mean) * self.img_range
        first = self.conv_first(x)
        body = self.conv_after_body(self.forward_features(first)) + first
        if self.upsampler == "pixelshuffle":
            y = self.conv_last(self.upsample(self.conv_before_upsample(body)))
        elif self.upsampler == "pixelshuffledirect":
            y = self.upsample(body)
        elif self.upsampler == "nearest+conv":
            y = self.conv_before_upsample(body)
            y = self.lrelu(self.conv_up1(F.interpolate(y, scale_factor=2, mode="nearest")))
            y = self.lrelu(self.conv_up2(F.interpolate(y, scale_factor=2, mode="nearest")))
            y = self.conv_last(self.lrelu(self.conv_hr(y)))
        else:
            y = x + self.conv_last(body)
        y = y / self.img_range + self.mean
        return y[..., : h * self.upscale, : w * self.upscale]
