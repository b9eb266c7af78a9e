"""The decoupled window-attention layer of UPS (the paper's Algorithm 2) and its window helpers.

One layer computes, on M x M windows of its own features ``X = conv_l(LN_l(F))``::

    Q = X U                      (U: the projection shared by the network's attention layers)
    S = act(sim(Q, Q) + B_l)     (sim: cosine or scaled dot product; act: ReLU or softmax;
                                  B_l: per-layer relative position bias, plus the shift mask)
    F_out = F + S X              (V = X: no value projection by default)

The paper states the equations and that cosine + ReLU is best; the per-layer conv type, the
projection size and the extra SwinIR components of the ``alt`` variant are assumptions that the
constructor exposes (see docs/ups.md). Windows are processed as one batch: no per-window loops.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

Similarity = Literal["cosine", "dot"]
Activation = Literal["relu", "softmax"]
AttentionNorm = Literal["none", "tokens"]


# -- window geometry (cached per window size / feature-map size) ------------------------------------

def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * windows, window * window, C); windows and tokens in raster order."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_merge(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of `window_partition`: (B * windows, window * window, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


# The caches hold ordinary tensors even when first filled under torch.inference_mode (evaluation
# before training): an inference tensor could not be used by autograd later.
@lru_cache(maxsize=8)
@torch.inference_mode(False)
def relative_position_index(window: int, device: torch.device) -> torch.Tensor:
    """(N, N) indices into a (2M-1)^2-row bias table: idx(p, q) = (dr + M-1)(2M-1) + (dc + M-1)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)
    return (rel[0] * (2 * window - 1) + rel[1]).to(device)


@lru_cache(maxsize=4)  # one size per forward pass; each dense mask can be 100+ MiB at DIV2K sizes
@torch.inference_mode(False)
def shift_mask(h: int, w: int, window: int, shift: int, device: torch.device, dtype: torch.dtype,
               fill: float = float("-inf")) -> torch.Tensor:
    """(windows, N, N) additive mask of a cyclically shifted map: `fill` between tokens that the roll
    brought together from different image regions, 0 elsewhere.

    UPS uses -inf rather than Swin's -100 so a masked pair gets exactly zero weight under ReLU too,
    however large an unnormalised (dot-product) similarity grows; SwinIR keeps its -100.
    """
    labels = torch.zeros(1, h, w, 1)
    bands = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for region, (rows, cols) in enumerate((r, c) for r in bands for c in bands):
        labels[:, rows, cols, :] = region
    labels = window_partition(labels, window).squeeze(-1)
    different = labels[:, :, None] != labels[:, None, :]
    mask = torch.zeros(different.shape, dtype=dtype).masked_fill(different, fill)
    return mask.to(device)


def relative_position_bias(table: torch.Tensor, window: int) -> torch.Tensor:
    """(groups, N, N) bias gathered from a ((2M-1)^2, groups) table."""
    n = window * window
    index = relative_position_index(window, table.device)
    return table[index.view(-1)].view(n, n, -1).permute(2, 0, 1)


# -- the attention itself -----------------------------------------------------------------------------

def window_attention(q: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, *, groups: int,
                     similarity: Similarity, activation: Activation, norm: AttentionNorm = "none") -> torch.Tensor:
    """Attention of every window at once.

    q: (B*nW, N, d) projected features; v: (B*nW, N, C) values; bias: (g, N, N) or (nW, g, N, N)
    (position bias, plus the shift mask when shifted). Returns (B*nW, N, C). Channel groups of q
    and v pair up: group j's similarity map aggregates group j of the values. ``norm="tokens"``
    divides the (unnormalised) ReLU similarities by the window's token count N.
    """
    bw, n, d = q.shape
    c = v.shape[-1]
    q = q.view(bw, n, groups, d // groups).transpose(1, 2)
    v = v.view(bw, n, groups, c // groups).transpose(1, 2)
    if similarity == "cosine":
        q = F.normalize(q, dim=-1, eps=1e-6)
        s = q @ q.transpose(-2, -1)
    else:
        s = (q @ q.transpose(-2, -1)) * (d // groups) ** -0.5
    if bias.dim() == 4:  # per-window mask: group the batch by window position
        s = (s.view(-1, bias.shape[0], groups, n, n) + bias).view(bw, groups, n, n)
    else:
        s = s + bias
    s = F.relu(s) if activation == "relu" else s.softmax(dim=-1)
    if norm == "tokens":
        s = s / n
    return (s @ v).transpose(1, 2).reshape(bw, n, c)


class DecoupledWindowAttention(nn.Module):
    """One decoupled Swin layer: layer-specific features, then similarity in a shared projection.

    `feature` is the layer-specific extraction (a conv on NCHW), `projection` the shared ``U``
    (C -> d, usually a `SharedRef` from the arch's sharing scheme). ``out_proj``/``mlp_ratio`` add
    SwinIR's output projection and MLP (the ``alt`` variant); ``value_proj`` the ablated V projection.
    """

    def __init__(self, dim: int, *, window: int, shift: int, feature: nn.Module, projection: nn.Module,
                 proj_dim: int, groups: int = 1, similarity: Similarity = "cosine", activation: Activation = "relu",
                 attn_norm: AttentionNorm = "none", value_proj: bool = False, out_proj: bool = False,
                 mlp_ratio: float = 0.0, drop_path: float = 0.0) -> None:
        super().__init__()
        if proj_dim % groups or dim % groups:
            raise ValueError(f"proj_dim ({proj_dim}) and width ({dim}) must be divisible by proj_groups ({groups})")
        if not 0 <= shift < window:
            raise ValueError(f"shift must be in [0, window); got {shift} for window {window}")
        self.window, self.shift, self.groups = window, shift, groups
        self.similarity, self.activation, self.attn_norm = similarity, activation, attn_norm
        self.norm = nn.LayerNorm(dim)
        self.feature = feature
        self.projection = projection
        self.value = nn.Linear(dim, dim) if value_proj else None
        self.out = nn.Linear(dim, dim) if out_proj else None
        self.bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, groups))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()
        hidden = int(dim * mlp_ratio)
        self.mlp = None
        if hidden:
            self.mlp_norm = nn.LayerNorm(dim)
            self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, H, W, C) with H and W multiples of the window; returns the same shape."""
        _, h, w, c = x.shape
        # NHWC -> NCHW as a view (channels_last memory), so the conv needs no copy either way.
        feats = self.feature(self.norm(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        bias = relative_position_bias(self.bias_table, self.window)
        if self.shift:
            feats = torch.roll(feats, (-self.shift, -self.shift), dims=(1, 2))
            mask = shift_mask(h, w, self.window, self.shift, x.device, bias.dtype)
            bias = mask[:, None] + bias
        windows = window_partition(feats, self.window)
        values = windows if self.value is None else self.value(windows)
        y = window_attention(self.projection(windows), values, bias, groups=self.groups,
                             similarity=self.similarity, activation=self.activation, norm=self.attn_norm)
        if self.out is not None:
            y = self.out(y)
        y = window_merge(y, self.window, h, w)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), dims=(1, 2))
        x = x + self.drop_path(y)
        if self.mlp is not None:
            x = x + self.drop_path(self.mlp(self.mlp_norm(x)))
        return x

    def extra_repr(self) -> str:
        return (f"window={self.window}, shift={self.shift}, groups={self.groups}, "
                f"similarity={self.similarity}, activation={self.activation}")
